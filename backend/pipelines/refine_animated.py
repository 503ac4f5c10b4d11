"""Refine an animated asset (4D): a skinned or morph-target glTF, or a sequence of per-frame meshes."""
from __future__ import annotations

from pathlib import Path


def is_animated_gltf(path: Path) -> bool:
    """Whether the glTF has animations driving skins or morph targets."""
    from ..assets.gltf_primitives import load_gltf

    gltf = load_gltf(path)
    return bool(gltf.animations) and (bool(gltf.skins) or any(p.targets for m in gltf.meshes for p in m.primitives))
