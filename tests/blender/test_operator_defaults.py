"""The operators' defaults are the backend's: every operator property named like a param of its job
type (top level, or inside a nested object such as texture's `bake`) has the default that a real
local backend serves in GET /job-types (BackendClient.job_types()). The few deliberate differences
are listed below with the reason; a new property or a changed backend default that drifts fails."""
from __future__ import annotations

from typing import Any

import bpy
import pytest

from orbitex_testing import NEEDS_BACKEND

pytestmark = NEEDS_BACKEND

# operator -> the job types it submits (batch_collection: texture or bake)
OPERATORS = {
    "texture_selected": ("texture",),
    "bake_from_cameras": ("bake",),
    "batch_collection": ("texture", "bake"),
    "reconstruct_gaussians": ("reconstruct",),
    "complete_back": ("complete",),
    "refine_subject": ("refine",),
    "render_orbit_preview": ("render-orbit",),
}
# the names each operator must match at least (so the check cannot pass by matching nothing)
EXPECTED = {
    "texture_selected": {"generator", "frames", "size", "seed", "texture_size", "voxel_res"},
    "bake_from_cameras": {"method", "texture_size", "voxel_res", "align"},
    "batch_collection": {"generator", "frames", "method", "texture_size", "voxel_res", "align"},
    "reconstruct_gaussians": {"view_count", "size", "iterations", "gaussians", "rounds", "sh_degree"},
    "complete_back": {"engine", "scene", "resolution", "symmetry"},
    "refine_subject": {"inpainter", "frames", "size", "source_view", "anchors", "consistency"},
    "render_orbit_preview": set(),
}
# deliberate differences: (operator, property) -> why
DIFFERENT = {
    ("render_orbit_preview", "frames"): "a preview: a contact sheet of a few views (backend default 61)",
    ("render_orbit_preview", "size"): "a preview: small views (backend default 512)",
    ("bake_from_cameras", "views_frame"): "the frame of the chosen view set (AUTO|BLENDER|GLTF); bake_params() maps it",
    ("batch_collection", "views_frame"): "as bake_from_cameras",
    ("complete_back", "direction"): "sent only when Scan Direction is Vector (backend None: estimated)",
}
# operator properties with Blender's types for a backend value: how to read them as the backend's
AS_BACKEND = {
    "uv_map": lambda text: text or None,  # StringProperty: empty = the backend's None (the first map)
    "anchors": lambda text: [float(a) for a in text.split(",")],  # comma-separated degrees
}


def _param_defaults(schema: dict[str, Any]) -> dict[str, Any]:
    """name -> default of a params schema, nested objects' params included (texture's bake)."""
    defaults: dict[str, Any] = {}
    for name, prop in schema["properties"].items():
        if prop.get("type") == "object" and "properties" in prop:
            defaults |= _param_defaults(prop)
        else:
            defaults[name] = prop.get("default")
    return defaults


def _rna_default(prop: bpy.types.Property) -> Any:
    if getattr(prop, "is_array", False):
        return list(prop.default_array)
    return prop.default


@pytest.fixture(scope="module")
def backend_defaults(session) -> dict[str, dict[str, Any]]:  # type: ignore[no-untyped-def]
    types = session.connect().job_types()
    return {job_type: _param_defaults(types[job_type]["params"]) for job_type in types}


@pytest.mark.parametrize("operator", sorted(OPERATORS))
def test_operator_defaults_are_the_backends(backend_defaults, operator: str) -> None:  # type: ignore[no-untyped-def]
    rna = getattr(bpy.ops.orbitex, operator).get_rna_type()
    matched, drift = set(), []
    for prop in rna.properties:
        if prop.identifier == "rna_type" or prop.type in ("POINTER", "COLLECTION"):
            continue
        for job_type in OPERATORS[operator]:
            defaults = backend_defaults[job_type]
            if prop.identifier not in defaults or (operator, prop.identifier) in DIFFERENT:
                continue
            matched.add(prop.identifier)
            ours = AS_BACKEND.get(prop.identifier, lambda value: value)(_rna_default(prop))
            theirs = defaults[prop.identifier]
            if ours != (pytest.approx(theirs) if isinstance(theirs, float) else theirs):
                drift.append(f"{prop.identifier}: operator {ours!r}, {job_type} backend {theirs!r}")
    assert not drift, f"orbitex.{operator} defaults differ from the backend's: " + "; ".join(drift)
    assert EXPECTED[operator] <= matched, f"not checked: {sorted(EXPECTED[operator] - matched)}"
    for op, name in DIFFERENT:  # each listed difference names a property and a param that exist
        if op == operator:
            assert name in rna.properties and any(name in backend_defaults[t] for t in OPERATORS[op]), name
