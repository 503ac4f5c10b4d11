"""register()/unregister() for the whole extension; unregister leaves nothing behind."""
from __future__ import annotations

import bpy

from . import session
from .preferences import OrbitexPreferences
from ..operators import CLASSES as OPERATOR_CLASSES
from ..panels import CLASSES as PANEL_CLASSES
from ..panels import register_properties, unregister_properties

CLASSES = (OrbitexPreferences, *OPERATOR_CLASSES, *PANEL_CLASSES)


def register() -> None:
    registered = []
    try:
        for cls in CLASSES:
            bpy.utils.register_class(cls)
            registered.append(cls)
    except Exception:
        for cls in reversed(registered):
            bpy.utils.unregister_class(cls)
        raise
    register_properties()  # scene settings of the sidebar sections (after their classes)
    session.startup()


def unregister() -> None:
    session.shutdown()
    unregister_properties()
    for cls in reversed(CLASSES):
        if getattr(cls, "is_registered", False):
            bpy.utils.unregister_class(cls)
