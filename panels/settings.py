"""What the Texture, Bake from Cameras and Batch sections remember per scene (Scene.orbitex_texturing).

The options are the operators' own (the same mixins), so a panel button passes them on as they are.
"""
from __future__ import annotations

import bpy
from bpy.props import CollectionProperty, EnumProperty, PointerProperty

from ..operators.bake_from_cameras import BakeOptions
from ..operators.batch_collection import MODES
from ..operators.refine_subject import RefineOptions
from ..operators.texture_selected import TextureOptions

SCENE_PROPERTY = "orbitex_texturing"
REFINE_PROPERTY = "orbitex_refine"


class OrbitexTexturingSettings(TextureOptions, BakeOptions, bpy.types.PropertyGroup):
    image: PointerProperty(name="Image", type=bpy.types.Image,
                           description="Reference image in this file (used when no image file is set)")
    batch_collection: PointerProperty(name="Collection", type=bpy.types.Collection,
                                      description="Every mesh of this collection (and its children) gets a job")
    batch_mode: EnumProperty(name="Job", items=MODES, default="TEXTURE")


class OrbitexSubjectSlot(bpy.types.PropertyGroup):
    image: PointerProperty(name="Photo", type=bpy.types.Image, description="A photo of the subject")


class OrbitexRefineSettings(RefineOptions, bpy.types.PropertyGroup):
    """What the Refine section remembers per scene (Scene.orbitex_refine)."""

    subjects: CollectionProperty(type=OrbitexSubjectSlot, name="Subject Photos")


def refine_settings(context) -> OrbitexRefineSettings:  # type: ignore[no-untyped-def]
    return getattr(context.scene, REFINE_PROPERTY)


def copy_options(settings: OrbitexTexturingSettings, op, mixins: tuple[type, ...]) -> None:  # type: ignore[no-untyped-def]
    """Set the operator properties `op` (from layout.operator) from the settings' same-named options."""
    for mixin in mixins:
        for name in getattr(mixin, "__annotations__", {}):
            setattr(op, name, getattr(settings, name))
    if TextureOptions in mixins:
        op.image_name = settings.image.name if settings.image is not None and not settings.image_path else ""


def register_properties() -> None:
    setattr(bpy.types.Scene, SCENE_PROPERTY, PointerProperty(type=OrbitexTexturingSettings))
    setattr(bpy.types.Scene, REFINE_PROPERTY, PointerProperty(type=OrbitexRefineSettings))


def unregister_properties() -> None:
    for name in (SCENE_PROPERTY, REFINE_PROPERTY):
        if hasattr(bpy.types.Scene, name):
            delattr(bpy.types.Scene, name)
