"""Refine an animated asset (4D): a skinned or morph-target glTF, or a sequence of per-frame meshes.

The topology is fixed over time, so one texture serves every frame: the asset is posed at
`time_frames` times (glTF: evenly over its animation; a sequence: evenly over its files), each
pose rendered from the refine orbit; a pixel is tracked to a finished frame of any time through
its triangle and barycentrics (the same surface point, posed at the reference's time), so the
source view (time 0, orbit frame 0) is followed over time as well as around the object. Every
time's refined frames are baked onto the UVs of that time's pose, and each texel takes the bake of
the time whose frames saw it most; texels the source view sees keep the input texture.
Results: OUT.glb, the input glTF (or the sequence's first file) with the new base colour; skins,
joints, weights and animations are copied bit for bit. OUT.ply: Gaussians attached to the surface
(sampled once, coloured by the refined texture, carried by the pose), one PLY per time in
OUT_files/frames/NNN.ply, an index OUT_files/frames.json, and frame 0 as OUT.ply.
A sequence whose frames differ in topology is refused (refine each frame as its own asset).
"""
from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError
from ..progress import Progress, sub_progress

if TYPE_CHECKING:
    from ..assets.mesh import Mesh
    from .refine_types import Params

SEQUENCE_SUFFIXES = (".obj", ".ply", ".glb", ".gltf")


def is_animated_gltf(path: Path) -> bool:
    """Whether the glTF has animations driving skins or morph targets."""
    from ..assets.gltf_primitives import load_gltf

    gltf = load_gltf(path)
    return bool(gltf.animations) and (bool(gltf.skins) or any(p.targets for m in gltf.meshes for p in m.primitives))


def _sequence_files(path: Path, tmp: Path) -> list[Path]:
    folder = path
    if path.suffix.lower() == ".zip":
        from ..assets.archive import extract_zip

        extract_zip(path, tmp)  # within the archive limits
        folder = tmp
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in SEQUENCE_SUFFIXES)
    if len(files) < 2:
        raise InputError(f"{path.name}: an animated asset needs at least 2 frames; found {len(files)} mesh file(s)")
    return files


def load_animation(path: Path, params: "Params", tmp: Path):  # type: ignore[no-untyped-def]
    """(bake target, texture, posed positions (T, V, 3) in the file's frame, times, description)."""
    from ..assets.load import load_mesh
    from .refine_mesh import load_textured

    if path.suffix.lower() in (".glb", ".gltf"):
        from ..assets.animation import animation_times, posed_positions

        target, texture = load_textured(path)
        keys = animation_times(path)
        if len(keys) < 2 or keys[-1] <= keys[0]:
            raise InputError(f"{path.name}: the animation has a single frame; refine it as a static mesh "
                             "(or give an animation with at least two keyframe times)")
        times = np.linspace(keys[0], keys[-1], params.time_frames)
        positions = posed_positions(path, times, target.gltf)
        return target, texture, positions, times, {"kind": "gltf-animation", "duration_s": float(keys[-1] - keys[0])}
    files = _sequence_files(path, tmp)
    target, texture = load_textured(files[0])
    pick = np.unique(np.linspace(0, len(files) - 1, min(params.time_frames, len(files))).round().astype(int))
    positions = []
    for i in pick:
        mesh = load_mesh(files[i]) if i else target.mesh
        if mesh.num_vertices != target.mesh.num_vertices or not np.array_equal(mesh.faces, target.mesh.faces):
            raise InputError(f"{files[i].name}: the sequence changes topology ({mesh.num_vertices} vertices / "
                             f"{mesh.num_faces} triangles vs {target.mesh.num_vertices} / {target.mesh.num_faces} in "
                             f"{files[0].name}); one texture cannot serve it: refine each frame as its own asset")
        positions.append(mesh.positions)
    return target, texture, np.stack(positions), pick.astype(np.float64), {
        "kind": "mesh-sequence", "files": [files[i].name for i in pick]}


def refine_animated(inputs: dict[str, Path], subjects: list[Path], params: "Params", main: Path, side: Path,
                    progress: Progress) -> tuple[dict[str, Path], dict]:
    from ..assets.images import write_png
    from ..assets.mesh import Normalization
    from ..bake.baker import BakeResult
    from ..assets.cameras import Camera
    from ..track.geometry import DEPTH_TOLERANCE, reproject, surface_points
    from .baked_glb import write_baked_glb
    from .refine_frames import frames_sheet, make_consistent, make_inpainter, refine_cameras, render_mesh, source_c2w
    from .refine_progressive import progressive_inpaint
    from .refine_types import Rendered

    progress(0.0, "loading the animation")
    main.parent.mkdir(parents=True, exist_ok=True)
    # a zipped sequence is unpacked beside the result (in the service: inside the job's folder)
    with tempfile.TemporaryDirectory(prefix=".sequence_", dir=main.parent) as tmp:
        target, texture, posed, times, description = load_animation(Path(inputs["asset"]), params, Path(tmp))
        lo, hi = posed.reshape(-1, 3).min(0).astype(np.float64), posed.reshape(-1, 3).max(0).astype(np.float64)
        norm = Normalization(center=(lo + hi) / 2, scale=1.0 / float((hi - lo).max()))
        meshes = [_posed(target.mesh, norm.apply(p)) for p in posed]

        def render_at(cams: list[Camera]) -> tuple[np.ndarray, np.ndarray]:
            images, masks, _ = render_mesh(meshes[0], texture, cams)
            return images, masks

        c2w, source_info = source_c2w(inputs, params, norm, render_at, subjects)
        orbit_cams, orbit_index = refine_cameras(c2w, params.frames, params.size)
        per_time = len(orbit_cams)
        cameras, images, masks, views, time_of = [], [], [], [], []
        for t, mesh in enumerate(meshes):
            progress(0.02 + 0.08 * t / len(meshes), "rendering views")
            img, msk, vws = render_mesh(mesh, texture, orbit_cams)
            cameras += orbit_cams
            images.append(img)
            masks.append(msk)
            views += vws
            time_of += [t] * per_time
        images_all, masks_all = np.concatenate(images), np.concatenate(masks)
        if not masks_all[0].any():
            raise InputError("the source view sees nothing of the asset at the animation's first frame")
        orbits = [[o + t * per_time for o in cycle] for t in range(len(meshes)) for cycle in orbit_index]
        rendered = Rendered(cameras, images_all, masks_all, views, orbits)
        if params.tracker != "geometry":
            raise InputError("animated assets are tracked through their geometry (fixed topology); use --tracker geometry")
        faces = meshes[0].faces

        def correspond(i: int, refs):  # type: ignore[no-untyped-def]
            v = views[i]
            out = []
            for r in refs:
                same = time_of[r] == time_of[i]
                pts = v.position if same else surface_points(v, meshes[time_of[r]].positions, faces)
                out.append((r, reproject(pts, v.mask, views[r], DEPTH_TOLERANCE, v.normal if same else None)))
            return out

        inpainter = make_inpainter(params, subjects, sub_progress(progress, 0.1, 0.2))
        refined = progressive_inpaint(images_all, masks_all, cameras, 0, params.anchors, correspond, inpainter,
                                      params.prompt, params.dilate, progress=sub_progress(progress, 0.2, 0.5))
        consistency = make_consistent(refined, params, sub_progress(progress, 0.5, 0.55))
        new_texture, bake_report = _bake_over_time(meshes, texture, orbit_cams, refined.images, masks_all, views[0],
                                                   params, sub_progress(progress, 0.55, 0.9))
        progress(0.9, "writing results")
        results: dict[str, Path] = {"frames": frames_sheet(rendered, refined, side / "frames.png")}
        results["texture"] = write_png(side / "texture.png", new_texture)
        if main.suffix.lower() == ".glb":
            write_baked_glb(target, BakeResult(new_texture, target.mesh, None), main)
            results["glb"] = main
        else:
            results.update(_gaussian_sequence(target.mesh, posed, times, new_texture, params, main, side))
    report = {"source": source_info, "animation": description, "times": [float(t) for t in times],
              "inpainter": inpainter.name, "tracker": params.tracker, "bake": bake_report, "consistency": consistency,
              "progressive": {k: v for k, v in refined.report.items() if k != "frames"}}
    return results, report


def _posed(rest: "Mesh", positions: np.ndarray) -> "Mesh":
    from ..assets.mesh import make_mesh

    return make_mesh(positions, rest.faces, rest.uvs)


def _bake_over_time(meshes: list["Mesh"], texture: np.ndarray, orbit_cams, images: np.ndarray,  # type: ignore[no-untyped-def]
                    masks: np.ndarray, source_view, params: "Params", progress: Progress) -> tuple[np.ndarray, dict]:
    """One texture from every time: per time the bake of its refined frames on its pose; per texel
    the time whose frames saw it most; source-seen texels (time 0) keep the input."""
    import cv2

    from ..assets.viewset import ViewSet
    from ..bake.baker import bake
    from ..bake.uv_raster import texel_samples
    from ..track.geometry import DEPTH_TOLERANCE, reproject
    from .refine_mesh import source_seen_texels

    h, w = texture.shape[:2]
    size = params.rebake(max(h, w)).texture_size
    per_time = len(orbit_cams)
    texels = texel_samples(meshes[0], size)
    best = np.full((size, size), -1.0)
    out = np.zeros((size, size, 3), np.float32)
    seconds = 0.0
    for t, mesh in enumerate(meshes):
        sl = slice(t * per_time, (t + 1) * per_time)
        views = ViewSet(list(orbit_cams), images[sl], masks[sl], [f"t{t}_{i:03d}" for i in range(per_time)])
        result = bake(mesh, views, replace(params.rebake(max(h, w)), lock_reference=t == 0),
                      sub_progress(progress, t / len(meshes), (t + 1) / len(meshes)))
        seconds += result.report.get("seconds_total", 0.0)
        from ..track.geometry import mesh_view_geometry
        from ..render.gbuffer import render_gbuffers

        geoms = mesh_view_geometry(render_gbuffers(mesh, list(orbit_cams)), list(orbit_cams))
        posed = (mesh.positions[mesh.faces[texels.tri]] * texels.bary[:, :, None]).sum(1).reshape(-1, 1, 3)
        normals = mesh.face_normals()[texels.tri].reshape(-1, 1, 3)
        count = np.zeros(len(texels))
        for g in geoms:
            count += reproject(posed, np.ones((len(texels), 1), bool), g, DEPTH_TOLERANCE, normals).seen[:, 0]
        score = np.full((size, size), -1.0)
        score[texels.rows, texels.cols] = count
        if t == 0:  # texels no chart covers: the first bake's gutter
            out[:] = result.texture
            best = np.where(score < 0, 0.0, best)
        take = score > best
        out[take] = result.texture[take]
        best = np.maximum(best, score)
    seen = source_seen_texels(meshes[0], size, source_view, DEPTH_TOLERANCE)
    if (size, size) != (h, w):
        out = cv2.resize(out, (w, h), interpolation=cv2.INTER_AREA)
        seen = cv2.resize(seen.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
    final = np.where(seen[..., None], texture, out).astype(np.float32)
    return final, {"times_baked": len(meshes), "seconds_total": round(seconds, 2),
                   "source_seen_texels": round(float(seen.mean()), 4)}


def _gaussian_sequence(rest: "Mesh", posed: np.ndarray, times: np.ndarray, texture: np.ndarray, params: "Params",
                       main: Path, side: Path) -> dict[str, Path]:
    """Surface-attached Gaussians per time (file frame): OUT_files/frames/NNN.ply, frames.json, OUT.ply."""
    from ..assets.material import sample_texture
    from ..assets.mesh import make_mesh
    from ..splats.model import from_points, sample_surface
    from ..splats.ply import write_ply

    count = min(200_000, max(2_000, params.size * params.size // 4))
    _, _, face, bary = sample_surface(rest, count, seed=params.seed)
    uv = (rest.uvs[rest.faces[face]] * bary[:, :, None]).sum(1)
    colours = sample_texture(texture, uv)
    folder = side / "frames"
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for t, positions in enumerate(posed):
        mesh = make_mesh(positions, rest.faces, rest.uvs)
        points = (positions[rest.faces[face]] * bary[:, :, None]).sum(1)
        g = from_points(points, colours, mesh.face_normals()[face], sh_degree=0, opacity=0.95)
        name = f"{t:03d}.ply"
        write_ply(g, folder / name)
        entries.append({"file": f"frames/{name}", "time": float(times[t])})
    index = side / "frames.json"
    index.write_text(json.dumps({"frames": entries, "gaussians": count, "attached_to_surface": True}, indent=2) + "\n")
    shutil.copyfile(folder / "000.ply", main)
    # `sequence` (the frames folder) is served zipped, so a client gets every frame in one download
    return {"gaussians": main, "frames_index": index, "sequence": folder}
