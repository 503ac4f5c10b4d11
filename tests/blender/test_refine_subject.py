"""orbitex.refine_subject end to end against a real local backend (tiny frames): a textured mesh gets
the refined texture as a new material (old one kept, one undo step); Gaussians come back as a new
object; a 4D Gaussian sequence imports as per-frame point clouds that follow the timeline; bad
input is refused before anything is sent."""
from __future__ import annotations

import json
from pathlib import Path

import bpy
import numpy as np
import pytest

from orbitex_testing import NEEDS_BACKEND
from test_reconstruct_gaussians import textured_sphere

TINY = dict(frames=4, size=48, source_view="0")


def _photo(name: str) -> bpy.types.Image:
    """A subject photo datablock: a red/blue pattern (not one flat colour)."""
    image = bpy.data.images.new(name, 64, 64, alpha=True)
    pixels = np.ones((64, 64, 4), np.float32)
    yy, xx = np.mgrid[0:64, 0:64]
    pixels[..., 0] = (yy > 32) * 0.9
    pixels[..., 1] = 0.2 + 0.1 * np.sin(xx / 5.0)
    pixels[..., 2] = (yy <= 32) * 0.9
    image.pixels[:] = pixels.ravel()
    return image


def _gaussian_columns(count: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(count, 3))
    points = 0.4 * directions / np.linalg.norm(directions, axis=1, keepdims=True)
    columns = {a: points[:, i] for i, a in enumerate("xyz")}
    columns.update({f"f_dc_{i}": rng.normal(size=count) for i in range(3)})
    columns.update({"opacity": np.full(count, 2.0), **{f"scale_{i}": np.full(count, -3.5) for i in range(3)}})
    columns.update({"rot_0": np.ones(count), "rot_1": np.zeros(count), "rot_2": np.zeros(count),
                    "rot_3": np.zeros(count)})
    return {k: v.astype(np.float32) for k, v in columns.items()}


@NEEDS_BACKEND
def test_refine_textured_mesh_adds_a_material_in_one_undo_step(session):
    obj = textured_sphere("Refine Ball")
    photo = _photo("Refine Photo")
    old = [s.material.name for s in obj.material_slots]
    bpy.ops.ed.undo_push(message="before refine")
    result = bpy.ops.orbitex.refine_subject("EXEC_DEFAULT", True, subjects=[{"name": photo.name}], **TINY)
    assert result == {"FINISHED"}
    obj = bpy.data.objects["Refine Ball"]
    slots = [s.material.name for s in obj.material_slots]
    assert slots[:-1] == old and slots[-1] == "Refine Ball Orbitex refine"
    job = session.board.jobs()[-1]
    assert (job.type, job.state) == ("refine", "done") and job.inputs["subject"].is_file()
    assert job.params["consistency"] == "none"  # the weight-free refit alone unless asked
    image = next(n.image for n in obj.material_slots[-1].material.node_tree.nodes if n.type == "TEX_IMAGE")
    pixels = np.array(image.pixels[:]).reshape(image.size[1], image.size[0], 4)
    assert pixels[..., :3].std() > 0.05  # a real texture, not a flat fill
    bpy.ops.ed.undo()  # the refine was one step: the old material alone is back
    obj = bpy.data.objects["Refine Ball"]
    assert [s.material.name for s in obj.material_slots] == old


@NEEDS_BACKEND
def test_refine_from_the_ui_returns_at_once_and_the_timer_applies_it(session):
    from types import SimpleNamespace

    from orbitex.operators.refine_subject import ORBITEX_OT_refine_subject
    from texturing_testing import invoke, tick_until

    obj = textured_sphere("Refine UI Ball")
    bpy.context.view_layer.objects.active = obj
    photo = _photo("Refine UI Photo")
    result, reports = invoke(ORBITEX_OT_refine_subject, subjects=[SimpleNamespace(name=photo.name)], **TINY)
    assert result == {"FINISHED"} and reports == [("INFO", "Orbitex refine job submitted for 'Refine UI Ball'")]
    job = session.board.jobs()[-1]
    assert job.type == "refine" and job.active  # left to the timer
    tick_until(session, lambda: not job.active)
    assert job.state == "done", job.message
    assert bpy.data.objects["Refine UI Ball"].material_slots[-1].material.name == "Refine UI Ball Orbitex refine"


@NEEDS_BACKEND
def test_refine_gaussians_adds_a_new_object(session, tmp_path: Path):
    from orbitex.addon.ply_format import read_gaussians, write_gaussians
    from orbitex.addon.scene_gaussians import export_gaussians, import_gaussians

    ply = write_gaussians(tmp_path / "in.ply", _gaussian_columns(400, 0))
    source = import_gaussians(ply, "Refine Splats")
    again = read_gaussians(export_gaussians(source, tmp_path / "out.ply"))  # the upload is the object itself
    assert np.allclose(again.positions, read_gaussians(ply).positions)
    bpy.context.view_layer.objects.active = source
    names = {o.name for o in bpy.data.objects}
    params = {**TINY, "subjects": [{"name": _photo("Splat Photo").name}]}
    assert bpy.ops.orbitex.refine_subject(**params) == {"FINISHED"}
    assert {o.name for o in bpy.data.objects} - names == {"Refine Splats refined"}
    refined = bpy.data.objects["Refine Splats refined"]
    assert refined.type == "POINTCLOUD" and len(refined.data.points) > 0
    assert np.allclose(np.array(refined.matrix_world), np.array(source.matrix_world))


def test_gaussian_sequence_follows_the_timeline(tmp_path: Path):
    from orbitex_testing import enabled_addon

    with enabled_addon():
        from orbitex.addon.ply_format import write_gaussians
        from orbitex.addon.scene_gaussians import import_gaussian_sequence

        folder = tmp_path / "frames"
        entries = []
        for t in range(3):
            columns = _gaussian_columns(50, 0)  # the same Gaussians, moved by each frame
            columns["x"] = columns["x"] + 0.5 * t
            write_gaussians(folder / f"{t:03d}.ply", columns)
            entries.append({"file": f"frames/{t:03d}.ply", "time": 0.1 * t})
        index = tmp_path / "frames.json"
        index.write_text(json.dumps({"frames": entries}))
        scene = bpy.context.scene
        scene.frame_start = 1
        parent = import_gaussian_sequence(index, folder, "Walk Gaussians")
        children = sorted(parent.children, key=lambda c: c["orbitex_sequence_frame"])
        assert len(children) == 3 and all(c.type == "POINTCLOUD" for c in children)
        for k in range(3):
            scene.frame_set(1 + k)
            assert [not c.hide_viewport for c in children] == [i == k for i in range(3)]
            assert [not c.hide_render for c in children] == [i == k for i in range(3)]
        # each frame's Gaussians are where that frame put them (+0.5 in x per frame, file frame)
        xs = [np.mean([p.co.x for p in c.data.points]) for c in children]
        assert np.allclose(np.diff(xs), 0.5, atol=1e-4)
        broken = tmp_path / "broken.json"
        broken.write_text(json.dumps({"frames": [{"file": "frames/missing.ply"}]}))
        before = set(bpy.data.objects.keys())
        with pytest.raises(Exception):
            import_gaussian_sequence(broken, folder, "Broken")
        assert set(bpy.data.objects.keys()) == before  # nothing half-made


def test_refine_refuses_bad_input_before_sending(tmp_path: Path):
    from orbitex_testing import enabled_addon, new_mesh_object

    with enabled_addon():
        plain = new_mesh_object("Refine Plain")
        bpy.context.view_layer.objects.active = plain
        with pytest.raises(RuntimeError, match="has no texture: texture it first"):
            bpy.ops.orbitex.refine_subject(subjects=[{"name": "x"}])
        ball = textured_sphere("Refine Nophoto")
        bpy.context.view_layer.objects.active = ball
        with pytest.raises(RuntimeError, match="at least one photo of the subject"):
            bpy.ops.orbitex.refine_subject()
        with pytest.raises(RuntimeError, match="neither an image in this file nor an image file"):
            bpy.ops.orbitex.refine_subject(subjects=[{"name": str(tmp_path / "nope.png")}])
        # the UI path refuses the same way, before any job is listed
        from orbitex.addon import session
        from orbitex.operators.refine_subject import ORBITEX_OT_refine_subject
        from texturing_testing import invoke

        result, reports = invoke(ORBITEX_OT_refine_subject, subjects=[])
        assert result == {"CANCELLED"} and not session.board.jobs()
        assert len(reports) == 1 and reports[0][0] == "ERROR" and "at least one photo of the subject" in reports[0][1]


def test_the_refine_panels_photo_list_adds_and_removes(tmp_path: Path):
    from orbitex_testing import enabled_addon

    with enabled_addon():
        from orbitex.operators.refine_subject import MAX_SUBJECTS
        from orbitex.panels.settings import refine_settings

        subjects = refine_settings(bpy.context).subjects
        subjects.clear()
        with pytest.raises(RuntimeError, match="poll"):  # nothing to remove yet: the button is greyed out
            bpy.ops.orbitex.refine_subject_remove(index=0)
        photo = _photo("List Photo")
        photo.filepath_raw = str(tmp_path / "photo.png")
        photo.file_format = "PNG"
        photo.save()
        assert bpy.ops.orbitex.refine_subject_add(filepath=str(tmp_path / "photo.png")) == {"FINISHED"}
        assert len(subjects) == 1 and subjects[0].image.filepath_raw.endswith("photo.png")
        with pytest.raises(RuntimeError, match="cannot open"):
            bpy.ops.orbitex.refine_subject_add(filepath=str(tmp_path / "missing.png"))
        assert len(subjects) == 1  # the failed slot is taken back
        while len(subjects) < MAX_SUBJECTS:
            assert bpy.ops.orbitex.refine_subject_add() == {"FINISHED"}  # an empty slot to pick an image into
        with pytest.raises(RuntimeError, match=f"at most {MAX_SUBJECTS} subject photos"):
            bpy.ops.orbitex.refine_subject_add()
        assert bpy.ops.orbitex.refine_subject_remove(index=0) == {"FINISHED"}
        assert len(subjects) == MAX_SUBJECTS - 1 and subjects[0].image is None
        subjects.clear()
