"""Bake stages on tiny inputs with known answers, and the >= 35 dB reproduction on a torus."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from backend.assets.mesh import make_mesh
from backend.assets.surface_voxels import VoxelGraph, bfs_sources, build_voxels
from backend.assets.viewset import ViewSet
from backend.bake import selection
from backend.bake.baker import bake
from backend.bake.fill import gutter_fill
from backend.bake.params import BakeParams
from backend.bake.seams import level_offsets
from backend.bake.uv_raster import rasterize_uv, texel_samples
from backend.errors import InputError
from bench.synthetic import render_views, torus_mesh

from bake_helpers import camera_towards, cube_mesh, detailed_texture, quad_mesh, shift_image, smooth_texture


def _views(cams, images, masks=None) -> ViewSet:  # type: ignore[no-untyped-def]
    return ViewSet(list(cams), np.asarray(images, dtype=np.float32), masks, [f"v{i}" for i in range(len(cams))])


def _flat(cams, colours) -> ViewSet:  # type: ignore[no-untyped-def]
    h, w = cams[0].height, cams[0].width
    return _views(cams, np.stack([np.broadcast_to(np.asarray(c, np.float32), (h, w, 3)) for c in colours]))


# --- UV rasterization ---------------------------------------------------------------------------

def test_uv_raster_quad_covers_every_texel_with_exact_barycentrics() -> None:
    mesh = quad_mesh()
    tri, bary = rasterize_uv(mesh.uvs, mesh.faces, 8)
    assert (tri >= 0).all()
    uv = (torch.as_tensor(mesh.uvs)[torch.as_tensor(mesh.faces)[tri]] * bary[..., None]).sum(-2)
    rows, cols = torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij")
    assert torch.allclose(uv[..., 0], (cols + 0.5) / 8, atol=1e-6)
    assert torch.allclose(uv[..., 1], 1 - (rows + 0.5) / 8, atol=1e-6)  # row 0 is the top (v = 1)


def test_uv_raster_half_triangle_and_outside_texels() -> None:
    uv = np.array([[0, 0], [1, 0], [0, 1]], dtype=np.float32)  # lower-left half of the texture
    tri, _ = rasterize_uv(uv, np.array([[0, 1, 2]]), 16)
    covered = (tri >= 0).numpy()
    rows, cols = np.mgrid[0:16, 0:16]
    expected = (cols + 0.5) / 16 + (1 - (rows + 0.5) / 16) <= 1
    assert (covered == expected).all()


def test_texel_samples_map_to_surface_points() -> None:
    texels = texel_samples(quad_mesh(2.0), 4)
    assert len(texels) == 16
    assert np.allclose(texels.position[:, 2], 0) and np.allclose(texels.normal, [0, 0, 1])
    assert texels.position[:, 0].min() == pytest.approx(-0.75) and texels.position[:, 1].max() == pytest.approx(0.75)


# --- voxels --------------------------------------------------------------------------------------

def test_voxels_of_a_quad_form_a_connected_grid() -> None:
    mesh = quad_mesh()
    texels = texel_samples(mesh, 32)
    graph, texel_voxel = build_voxels(mesh, texels.position, texels.normal, voxel_res=4)
    assert len(graph) == 16  # one layer of 4 x 4 cells (the plane sits on a cell boundary, clipped into one)
    assert len(graph.edges) == 24  # 2 * 4 * 3 grid neighbours
    assert texel_voxel.min() == 0 and texel_voxel.max() == 15
    assert (graph.edges[:, 0] < graph.edges[:, 1]).all()


def test_thin_plate_sides_are_separate_unconnected_voxels() -> None:
    front, back = quad_mesh(), quad_mesh()
    pos = np.concatenate([front.positions, back.positions + [0, 0, -0.01]])
    faces = np.concatenate([front.faces, back.faces[:, ::-1] + 4])
    uv = np.concatenate([front.uvs * [0.5, 1], back.uvs * [0.5, 1] + [0.5, 0]])
    mesh = make_mesh(pos, faces, uv)
    texels = texel_samples(mesh, 32)
    graph, texel_voxel = build_voxels(mesh, texels.position, texels.normal, voxel_res=4)
    side = texels.normal[:, 2] > 0
    assert not set(texel_voxel[side]) & set(texel_voxel[~side])
    front_vox = set(texel_voxel[side])
    crossing = [(i in front_vox) != (j in front_vox) for i, j in graph.edges]
    assert not any(crossing)


# --- view selection, MRF, fill, seams ------------------------------------------------------------

def test_quad_seen_by_two_cameras_greedy_and_average() -> None:
    mesh = quad_mesh()
    head_on = camera_towards([0, 0, 1])
    oblique = camera_towards([math.sin(math.radians(60)), 0, math.cos(math.radians(60))])
    views = _flat([head_on, oblique], [(1, 0, 0), (0, 0, 1)])
    # views that disagree on purpose: no alignment, whose colour correction would reconcile them, and
    # the label's view alone (soft selection: tested below)
    params = dict(texture_size=16, voxel_res=8, edge_margin=0, align=False, soft_selection=0.0, fit_steps=0)
    greedy = bake(mesh, views, BakeParams(method="greedy", **params))
    assert np.allclose(greedy.texture, [1, 0, 0], atol=1e-5)
    assert greedy.report["label_histogram"] == {"v0": 256}
    average = bake(mesh, views, BakeParams(method="average", **params))
    # weights cos 0 = 1 and cos 60 = 0.5 (exact up to the perspective of the texel's direction)
    assert np.allclose(average.texture.reshape(-1, 3).mean(0), [2 / 3, 0, 1 / 3], atol=0.03)
    mrf = bake(mesh, views, BakeParams(method="mrf", **params))
    assert np.allclose(mrf.texture, [1, 0, 0], atol=1e-5)


def test_cube_with_hidden_face_is_filled_from_its_neighbours() -> None:
    mesh = cube_mesh()
    dirs = [[1, 0.3, 0.2], [-1, 0.3, 0.2], [0.2, 1, 0.3], [0.2, 0.3, 1], [0.2, 0.3, -1],
            [1, 1, 1], [-1, 1, -1], [1, 0.5, -1], [-1, 0.5, 1]]  # never from below
    cams = [camera_towards(d, size=128, distance=2.5) for d in dirs]
    views = _flat(cams, [(0.2, 0.4, 0.6)] * len(cams))
    result = bake(mesh, views, BakeParams(method="mrf", texture_size=48, voxel_res=12, edge_margin=1, fit_steps=0))
    texels = texel_samples(mesh, 48)
    bottom = texels.normal[:, 1] < -0.5
    # the hidden face is unseen; of the others only strips along silhouettes of these few views
    assert bottom.mean() <= result.report["unseen_fraction"] <= bottom.mean() + 0.15
    assert set(result.report["label_histogram"]) <= {f"v{i}" for i in range(len(cams))}
    colours = result.texture[texels.rows, texels.cols]
    assert np.allclose(colours, (0.2, 0.4, 0.6), atol=1e-3)  # hidden face included: filled, not black
    assert np.allclose(result.texture, (0.2, 0.4, 0.6), atol=1e-3)  # gutter too


def test_mrf_smooths_a_noisy_chain_from_the_greedy_labels() -> None:
    n = 40
    edges = np.stack([np.arange(n - 1), np.arange(1, n)], 1)
    truth = (np.arange(n) >= 20).astype(np.int64)
    conf = np.where(truth[:, None] == np.arange(2), 0.8, 0.5)
    flips = [5, 12, 27, 33]  # isolated sites where a view looks slightly better than it is
    conf[flips] = np.where(conf[flips] == 0.8, 0.62, 0.7)  # the wrong view now wins by 0.08
    unary = 2.0 - conf
    greedy = selection.greedy_labels(unary)
    assert (greedy != truth).sum() == len(flips)  # the greedy choice follows the noise
    weights = np.full(len(edges), 0.5)
    labels = selection.mrf_labels(unary, edges, weights, greedy, iterations=-1)
    assert (labels == truth).all()  # each flip costs 2 * 0.5 in smoothness for 0.08 of data
    assert selection.mrf_energy(unary, edges, weights, labels) < selection.mrf_energy(unary, edges, weights, greedy)


def test_potts_weights_follow_ink3d_formula() -> None:
    colour = np.array([[0, 0, 0], [0.3, 0, 0], [0.3, 0, 0.4]], dtype=np.float64)
    edges = np.array([[0, 1], [1, 2]])
    w = selection.potts_weights(edges, colour, 5.0)
    beta = 1 / (2 * np.mean([0.3, 0.4]))
    assert np.allclose(w, [5 / (1 + beta * 0.3), 5 / (1 + beta * 0.4)])


def test_unary_top_k_and_lock() -> None:
    conf = torch.tensor([[0.9, 0.5, 0.0, 0.7], [0.1, 0.0, 0.95, 0.2]])
    cand = selection.top_k(conf, 2)
    assert cand.tolist() == [[0, 3], [2, 3]]
    unary = selection.unary_costs(conf, cand)
    assert np.allclose(unary[0], [1.1, 10, 10, 1.3]) and np.allclose(unary[1], [10, 10, 1.05, 1.8])
    locked = selection.lock_to_reference(unary, conf, reference=0, angle_deg=60)
    assert locked.tolist() == [True, False] and unary[0].argmin() == 0 and unary[0, 3] == selection.LOCKED_COST


def _chain(n: int) -> VoxelGraph:
    edges = np.stack([np.arange(n - 1), np.arange(1, n)], 1)
    return VoxelGraph(np.zeros((n, 3), np.float32), np.zeros((n, 3), np.float32), np.zeros((n, 3), np.int64), edges, 1.0)


def test_bfs_sources_pick_the_nearest_seen_voxel() -> None:
    graph = _chain(7)
    seen = np.array([1, 0, 0, 0, 0, 0, 1], dtype=bool)
    assert bfs_sources(graph, seen).tolist() == [0, 0, 0, 0, 6, 6, 6] or bfs_sources(graph, seen).tolist() == [0, 0, 0, 6, 6, 6, 6]
    assert (bfs_sources(graph, np.zeros(7, bool)) == -1).all()


def test_gutter_fill_copies_the_nearest_chart_texel() -> None:
    tex = np.zeros((4, 4, 3), np.float32)
    filled = np.zeros((4, 4), bool)
    tex[1, 1], filled[1, 1] = (1, 0, 0), True
    tex[2, 3], filled[2, 3] = (0, 1, 0), True
    out = gutter_fill(tex, filled)
    assert np.allclose(out[0, 0], (1, 0, 0)) and np.allclose(out[3, 3], (0, 1, 0)) and np.allclose(out[1, 1], (1, 0, 0))


def test_seam_levelling_cancels_a_view_brightness_step() -> None:
    graph = _chain(10)
    labels = np.array([0] * 5 + [1] * 5)
    seam = np.array([[4, 5]])
    diff = np.array([[0.2, 0.0, -0.1]])  # view 0 is brighter than view 1 at the seam
    g = level_offsets(graph, labels, seam, diff)
    assert np.allclose(g[4] + diff[0] - g[5], 0, atol=1e-3)  # both sides agree after levelling
    assert np.allclose(g[:5], g[0], atol=1e-4) and np.allclose(g[5:], g[5], atol=1e-4)  # constant per region
    assert np.allclose(g[:5].mean(0) + g[5:].mean(0), 0, atol=1e-3)  # split evenly


def test_seam_blend_feathers_the_step_between_two_views() -> None:
    mesh = quad_mesh()
    cams = [camera_towards([math.sin(math.radians(a)), 0, math.cos(math.radians(a))]) for a in (-25, 25)]
    views = _flat(cams, [(1, 0, 0), (0, 0, 1)])
    params = dict(method="greedy", texture_size=64, voxel_res=8, edge_margin=0, align=False, seam_levelling=False,
                  detail_weight=0.0, soft_selection=0.0, fit_steps=0)  # the seam stage alone
    plain = bake(mesh, views, BakeParams(seam_blend=False, **params))
    blended = bake(mesh, views, BakeParams(**params))
    red_plain, red = plain.texture[..., 0], blended.texture[..., 0]
    assert np.abs(np.diff(red_plain, axis=1)).max() == pytest.approx(1.0, abs=1e-5)  # a hard seam
    assert np.abs(np.diff(red, axis=1)).max() < 0.2  # feathered over about two voxels (16 texels)
    assert blended.report["seam_blended_texels"] > 0
    assert ((red > 0.05) & (red < 0.95)).any(1).all()  # every row crosses the seam smoothly
    changed = np.abs(red - red_plain) > 1e-6
    assert changed.any(0).sum() <= 16  # only the strip next to the seam, one voxel each side
    assert np.allclose(blended.texture[:, :4], plain.texture[:, :4]) and np.allclose(blended.texture[:, -4:],
                                                                                       plain.texture[:, -4:])


def test_seam_levelling_improves_a_bake_from_jittered_views() -> None:
    mesh = quad_mesh()
    cams = [camera_towards([-0.5, 0, 1]), camera_towards([0.5, 0, 1])]
    yy, xx = np.mgrid[0:64, 0:64] / 64
    base = np.stack([0.4 + 0.2 * xx, 0.5 + 0.0 * yy, 0.3 + 0.1 * yy], -1).astype(np.float32)
    gt = np.broadcast_to(base.mean((0, 1)), (32, 32, 3))
    views = _views(cams, [np.broadcast_to(base.mean((0, 1)) + 0.08, (64, 64, 3)),
                          np.broadcast_to(base.mean((0, 1)) - 0.08, (64, 64, 3))])
    # alignment off: its per-view colour correction would already cancel the step (tested below); soft
    # selection off: it would blend the two views, which agree within its scale, and halve the step
    params = dict(method="greedy", texture_size=32, voxel_res=16, align=False, soft_selection=0.0, fit_steps=0)
    off = bake(mesh, views, BakeParams(seam_levelling=False, **params))
    on = bake(mesh, views, BakeParams(**params))
    assert len(off.report["label_histogram"]) == 2  # each half from its nearer camera: one seam
    step_off = np.abs(off.texture[:, :16].mean((0, 1)) - off.texture[:, 16:].mean((0, 1))).max()
    step_on = np.abs(on.texture[:, :16].mean((0, 1)) - on.texture[:, 16:].mean((0, 1))).max()
    assert step_off == pytest.approx(0.16, abs=0.01) and step_on < 0.01
    assert np.abs(on.texture - gt).mean() < np.abs(off.texture - gt).mean()


# --- whole bake ------------------------------------------------------------------------------------

def test_mrf_reproduces_ground_truth_texture_from_consistent_views() -> None:
    from backend.assets.cameras import orbit

    mesh = torus_mesh(n=64)
    tex = 128
    gt = smooth_texture(tex)
    cams = orbit("horizontal", 12, 256) + orbit("vertical", 12, 256)[1:]
    images, masks = render_views(mesh, gt, cams)
    result = bake(mesh, _views(cams, images, masks), BakeParams(method="mrf", texture_size=tex, voxel_res=64))
    texels = texel_samples(mesh, tex)
    seen = result.report["seen_fraction"]
    assert seen > 0.95
    err = ((result.texture[texels.rows, texels.cols] - gt[texels.rows, texels.cols]) ** 2).mean(1)
    # PSNR over the texels that some view saw (the unseen ones are BFS-filled estimates)
    seen_mask = _seen_texels(mesh, cams, texels)
    psnr = -10 * math.log10(err[seen_mask].mean())
    assert psnr >= 35.0, psnr
    assert "voxels" in result.report and result.report["seconds_total"] > 0
    seams = result.report["label_seam_edges"]  # the MRF's point: fewer places where views meet
    assert 0 < seams["mrf"] < seams["greedy"] < seams["edges"], seams


def _seen_texels(mesh, cams, texels) -> np.ndarray:  # type: ignore[no-untyped-def]
    from backend.bake.visibility import ViewDepth, camera_tensors, rasterize_views, valid_pixels, visibility

    depth, _ = rasterize_views(mesh, cams)
    tol = 0.01 * float((mesh.positions.max(0) - mesh.positions.min(0)).max())
    vd = ViewDepth(*camera_tensors(cams), depth, valid_pixels(depth, None, 2, 4 * tol), tol)
    pts, nrm = vd.local(texels.position), torch.as_tensor(texels.normal)
    seen = torch.zeros(len(texels), dtype=torch.bool)
    for v in range(len(cams)):
        seen |= visibility(pts, nrm, vd, v)[0] > 0
    return seen.numpy()


# --- alignment ---------------------------------------------------------------------------------------

def _torus_views(tex: int, size: int = 256, frames: int = 12):  # type: ignore[no-untyped-def]
    from backend.assets.cameras import orbit

    mesh = torus_mesh(n=64)
    gt = detailed_texture(tex, cells=24)
    cams = orbit("horizontal", frames, size) + orbit("vertical", frames, size)[1:]
    images, masks = render_views(mesh, gt, cams, supersample=2)
    return mesh, gt, cams, images


def test_flow_recovers_a_known_shift_of_an_image() -> None:
    from backend.bake.align import view_flow

    rng = np.random.default_rng(0)
    import cv2

    img = cv2.GaussianBlur(rng.random((128, 128, 3)).astype(np.float32), (0, 0), 2.0)
    defined = np.zeros((128, 128), bool)
    defined[16:112, 16:112] = True
    flow = view_flow(img, shift_image(img, 2.0, -1.0), defined, max_shift=8.0)
    # expected(x) = observed(x + flow): content moved by (+2, -1) is found at x + (2, -1)
    assert np.allclose(flow[defined].mean(0), [2.0, -1.0], atol=0.3), flow[defined].mean(0)


def test_colour_correction_of_flat_colours_with_no_noise() -> None:
    # three flat colours, not exactly affine: most pixels share one residual, so the residuals' MAD
    # is 0, which used to trim every pixel away (np.polyfit on an empty vector) on noise-free views
    from backend.bake.align import colour_correction

    expected = np.full((64, 64, 3), 0.2, np.float32)
    expected[:, 40:52] = 0.5
    expected[:, 52:] = 0.7
    observed = np.where(expected > 0.6, 0.8, np.where(expected > 0.4, 0.52, 0.24)).astype(np.float32)
    gain, offset = colour_correction(observed, expected, np.ones((64, 64), bool))
    assert np.all(np.isfinite(gain)) and np.allclose(0.2 * gain + offset, 0.24, atol=0.02), (gain, offset)


@pytest.mark.parametrize("passes, drift", [(1, 0.3), (2, 0.5)])
def test_alignment_recovers_a_view_shifted_by_two_pixels(passes: int, drift: float) -> None:
    # dense orbits, as from a video: each texel's estimate averages several views, so the one
    # shifted view barely moves the estimate its neighbours are aligned to. The second pass
    # (the default) moves a few unshifted views near the orbits' shared frame by up to 0.43 px
    # (one pass: < 0.3); on sparse, randomly warped view sets it is worth +0.2..+2 dB held out
    # (bench/RESULTS.md, 2026-12-04), so its tolerance here is 0.5 px.
    mesh, gt, cams, images = _torus_views(512, frames=30)
    k = 5
    images[k] = shift_image(images[k], 2.0, 0.0)
    result = bake(mesh, _views(cams, images), BakeParams(method="mrf", texture_size=512, voxel_res=64,
                                                         align_passes=passes))
    shifts = np.asarray(result.report["alignment"]["shift_px"])
    assert np.linalg.norm(shifts[k] - [2.0, 0.0]) < 0.3, shifts[k]
    others = np.delete(shifts, k, axis=0)
    assert np.linalg.norm(others, axis=1).max() < drift, others


def test_aligned_views_raise_mrf_psnr_on_seen_texels() -> None:
    mesh, gt, cams, images = _torus_views(512)
    rng = np.random.default_rng(3)
    for i in range(len(images)):  # every frame off by 1.5-2.5 px in a random direction, and colour-jittered
        a, r = rng.uniform(0, 2 * math.pi), rng.uniform(1.5, 2.5)
        gain, bias = 1 + rng.uniform(-0.05, 0.05, 3), rng.uniform(-0.025, 0.025, 3)
        images[i] = np.clip(shift_image(images[i], r * math.cos(a), r * math.sin(a)) * gain + bias, 0, 1)
    texels = texel_samples(mesh, 512)
    seen = _seen_texels(mesh, cams, texels)
    psnr = {}
    for align in (False, True):
        result = bake(mesh, _views(cams, images), BakeParams(method="mrf", texture_size=512, voxel_res=64, align=align))
        err = ((result.texture[texels.rows, texels.cols] - gt[texels.rows, texels.cols]) ** 2).mean(1)
        psnr[align] = -10 * math.log10(err[seen].mean())
    assert psnr[True] >= psnr[False] + 2.0, psnr


# --- frame detail ---------------------------------------------------------------------------------

def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(np.ascontiguousarray(image, dtype=np.float32), (0, 0), sigma)


def test_frame_detail_ranks_blurred_frames_below_sharp_ones() -> None:
    mesh = quad_mesh()
    cam = camera_towards([0, 0, 1], size=128)
    image = render_views(mesh, detailed_texture(256, cells=24), [cam], supersample=2)[0][0]
    frames = np.stack([image, _blur(image, 0.5), _blur(image, 0.9), np.full_like(image, 0.4), image])
    valid = torch.ones(frames.shape[:3], dtype=torch.bool)
    valid[4] = False
    valid[4, :8, :8] = True  # too few pixels of the mesh to judge
    detail = selection.frame_detail(torch.as_tensor(frames), valid)
    assert detail[0] > detail[1] > detail[2], detail
    assert np.isnan(detail[3]) and np.isnan(detail[4])  # flat frame, frame that shows too little
    cost = selection.detail_costs(detail, 0.5)
    assert cost[0] == 0 and 0 < cost[1] < cost[2]
    assert cost[3] == cost[4] == np.median(cost[:3])
    assert not selection.detail_costs(detail, 0.0).any()


@pytest.mark.parametrize("method", ["greedy", "mrf"])
def test_selection_prefers_the_sharper_of_two_equally_good_views(method: str) -> None:
    mesh = quad_mesh()
    cams = [camera_towards([math.sin(math.radians(a)), 0, math.cos(math.radians(a))], size=96) for a in (-25, 25)]
    images, _ = render_views(mesh, detailed_texture(256, cells=24), cams, supersample=2)
    params = dict(method=method, texture_size=64, voxel_res=8, align=False, seam_levelling=False)
    for blurred in (0, 1):
        frames = images.copy()
        frames[blurred] = _blur(frames[blurred], 0.9)
        hist = bake(mesh, _views(cams, frames), BakeParams(**params)).report["label_histogram"]
        # all but the texels near the quad's edges that only the other view sees sharply enough
        assert hist.get(f"v{1 - blurred}", 0) > 0.95 * sum(hist.values()), hist
    if method == "greedy":  # Ink3D's unary alone splits the quad by confidence: each view takes the half it faces
        hist = bake(mesh, _views(cams, frames), BakeParams(detail_weight=0.0, **params)).report["label_histogram"]
        assert min(hist.values()) > 0.3 * sum(hist.values()), hist


def test_a_cancel_during_alignment_does_not_wait_for_the_selection_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    import time

    mesh, gt, cams, images = _torus_views(256)
    release = threading.Event()
    real = selection.mrf_labels

    def slow_mrf(*args, **kwargs):  # type: ignore[no-untyped-def]
        release.wait(30)  # an alpha-expansion that is still running when the cancel comes
        return real(*args, **kwargs)

    monkeypatch.setattr(selection, "mrf_labels", slow_mrf)

    class Stop(Exception):
        pass

    def progress(fraction: float, message: str) -> None:
        if message == "aligning views":
            raise Stop

    start = time.perf_counter()
    try:
        with pytest.raises(Stop):
            bake(mesh, _views(cams, images), BakeParams(texture_size=256, voxel_res=32), progress)
        assert time.perf_counter() - start < 20
        assert not release.is_set()
    finally:
        release.set()


def test_optimize_method_reads_the_aligned_views() -> None:
    mesh, gt, cams, images = _torus_views(256)
    rng = np.random.default_rng(5)
    for i in range(len(images)):
        a = rng.uniform(0, 2 * math.pi)
        images[i] = shift_image(images[i], 2 * math.cos(a), 2 * math.sin(a))
    texels = texel_samples(mesh, 256)
    seen = _seen_texels(mesh, cams, texels)
    psnr = {}
    for align in (False, True):
        result = bake(mesh, _views(cams, images), BakeParams(method="optimize", texture_size=256, voxel_res=32,
                                                             align=align, fit_steps=60))
        assert ("alignment" in result.report) == align
        err = ((result.texture[texels.rows, texels.cols] - gt[texels.rows, texels.cols]) ** 2).mean(1)
        psnr[align] = -10 * math.log10(err[seen].mean())
    assert psnr[True] >= psnr[False] + 1.0, psnr


def test_bake_makes_an_xatlas_uv_map_when_the_mesh_has_none() -> None:
    cube = cube_mesh()
    mesh = make_mesh(cube.positions, cube.faces)  # no UVs
    cams = [camera_towards(d, size=48) for d in ([1, 0.4, 0.3], [-1, 0.4, -0.3], [0.2, -1, 0.1])]
    result = bake(mesh, _flat(cams, [(0.9, 0.1, 0.1)] * 3), BakeParams(texture_size=64, voxel_res=8))
    assert result.report["new_uv_map"] and result.vmapping is not None
    assert result.mesh.uvs is not None and len(result.mesh.faces) == len(mesh.faces)
    assert np.allclose(result.mesh.positions, mesh.positions[result.vmapping])
    assert np.allclose(result.texture.reshape(-1, 3).mean(0), (0.9, 0.1, 0.1), atol=1e-3)


def test_optimize_method_fits_a_flat_colour() -> None:
    mesh = quad_mesh()
    views = _flat([camera_towards([0, 0, 1], size=32)], [(0.3, 0.6, 0.9)])
    result = bake(mesh, views, BakeParams(method="optimize", texture_size=16, voxel_res=8, fit_steps=60))
    assert np.allclose(result.texture, (0.3, 0.6, 0.9), atol=0.02)


# --- texture fit ---------------------------------------------------------------------------------------

def _texture_psnr(result, gt, texels, seen) -> float:  # type: ignore[no-untyped-def]
    err = ((result.texture[texels.rows, texels.cols] - gt[texels.rows, texels.cols]) ** 2).mean(1)
    return -10 * math.log10(err[seen].mean())


def test_fit_undoes_blur_and_residual_shifts_of_the_views() -> None:
    import cv2

    mesh, gt, cams, images = _torus_views(128, size=96)
    rng = np.random.default_rng(2)
    sigmas = rng.uniform(0.6, 1.2, len(images))
    for i in range(len(images)):  # soft frames, each left 0.5 px off by an imperfect alignment
        a = rng.uniform(0, 2 * math.pi)
        images[i] = shift_image(cv2.GaussianBlur(images[i], (0, 0), float(sigmas[i])), 0.5 * math.cos(a), 0.5 * math.sin(a))
    texels = texel_samples(mesh, 128)
    seen = _seen_texels(mesh, cams, texels)
    params = dict(texture_size=128, voxel_res=32, align=False)
    plain = bake(mesh, _views(cams, images), BakeParams(fit_steps=0, **params))
    fitted = bake(mesh, _views(cams, images), BakeParams(fit_steps=300, **params))
    assert "fit" not in plain.report
    fit = fitted.report["fit"]
    assert fit["loss_after"] < 0.7 * fit["loss_before"] and "kept_input" not in fit, fit
    assert fit["supersample"] == 1  # 128 texels over 96 px: one subsample per pixel side
    assert 0.4 < fit["blur_px"][1] < 1.4, fit  # the frames' blur (plus the renders' own pixel integration)
    assert _texture_psnr(fitted, gt, texels, seen) >= _texture_psnr(plain, gt, texels, seen) + 1.0


def test_a_fit_that_raises_the_loss_keeps_the_bake(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from backend.bake import fit

    mesh, _, cams, images = _torus_views(64, size=64, frames=6)
    params = dict(texture_size=64, voxel_res=16, align=False)
    plain = bake(mesh, _views(cams, images), BakeParams(fit_steps=0, **params))
    monkeypatch.setattr(fit, "_LR_TEXTURE", 1e3)  # every step throws the texels to 0 or 1
    diverged = bake(mesh, _views(cams, images), BakeParams(fit_steps=5, **params))
    report = diverged.report["fit"]
    assert report["kept_input"] and report["loss_after"] > report["loss_before"], report
    assert np.array_equal(diverged.texture, plain.texture)


def test_fit_is_skipped_for_the_average_baseline_and_locked_bakes() -> None:
    mesh, _, cams, images = _torus_views(64, size=64, frames=6)
    for params in (BakeParams(method="average"), BakeParams(lock_reference=True)):
        result = bake(mesh, _views(cams, images), BakeParams(**{**params.__dict__, "texture_size": 64, "voxel_res": 16,
                                                                 "fit_steps": 20}))
        assert "fit" not in result.report
    with pytest.raises(InputError, match="fit_steps"):
        BakeParams(method="optimize", fit_steps=0)
    with pytest.raises(InputError, match="fit_steps"):
        BakeParams(fit_steps=-1)


def test_supersample_factor_follows_texels_per_pixel_and_the_memory_budget() -> None:
    from backend.bake.fit import supersample_factor

    assert supersample_factor(1024, 256, 10_000) == 4
    assert supersample_factor(2048, 256, 10_000) == 4  # at most 4
    assert supersample_factor(512, 512, 10_000) == 1
    assert supersample_factor(1024, 256, 30_000_000) == 1  # 30 M pixels x 4 would exceed the budget


def test_views_that_see_nothing_name_the_frame() -> None:
    mesh = quad_mesh()
    away = camera_towards([0, 0, 1])
    c2w = away.c2w.copy()
    c2w[:3, 3] = [0, 0, 5]
    c2w[:3, :3] = np.diag([-1.0, 1.0, -1.0])  # at +Z looking further along +Z: the quad is behind it
    from backend.assets.cameras import Camera

    behind = Camera(c2w, away.fx, away.fy, away.cx, away.cy, away.width, away.height)
    views = _flat([away, behind], [(1, 0, 0), (0, 1, 0)])
    with pytest.raises(InputError, match="v1 .*frame 1.*sees none of the mesh"):
        bake(mesh, views, BakeParams(texture_size=16, voxel_res=8))


def test_backfacing_views_only_is_a_clear_error() -> None:
    mesh = quad_mesh()
    views = _flat([camera_towards([0, 0, -1])], [(1, 0, 0)])  # sees the quad's back side only
    with pytest.raises(InputError, match="no view sees any of the mesh"):
        bake(mesh, views, BakeParams(texture_size=16, voxel_res=8))


def test_bad_view_sets_are_refused() -> None:
    mesh = quad_mesh()
    cam = camera_towards([0, 0, 1], size=32)
    with pytest.raises(InputError, match="no images"):
        bake(mesh, ViewSet([cam], None, None, ["a"]), BakeParams(texture_size=16))
    wrong = ViewSet([cam], np.zeros((1, 16, 32, 3), np.float32), None, ["images/a.png"])
    with pytest.raises(InputError, match="images/a.png: image is 32x16 but its camera is 32x32"):
        bake(mesh, wrong, BakeParams(texture_size=16))


def test_params_are_validated() -> None:
    with pytest.raises(InputError):
        BakeParams(method="best")  # type: ignore[arg-type]
    with pytest.raises(InputError):
        BakeParams(texture_size=4)
    with pytest.raises(InputError):
        BakeParams(mrf_iterations=0)
    with pytest.raises(InputError):
        BakeParams(align_passes=0)
    with pytest.raises(InputError, match="detail_weight"):
        BakeParams(detail_weight=-0.1)


def test_consistency_cost_singles_out_the_frame_that_disagrees() -> None:
    """Three views agree on a quad's colours, a fourth is brightened: it costs more at every voxel,
    so greedy with the consistency term mostly leaves it; without the term it keeps its share."""
    mesh = quad_mesh()
    cams = [camera_towards([math.sin(math.radians(a)), 0, math.cos(math.radians(a))], size=64) for a in (-30, -10, 10, 30)]
    images, _ = render_views(mesh, smooth_texture(128), cams, supersample=2)
    images[2] = np.clip(images[2] + 0.3, 0, 1)  # one of the two frames facing best is brightened
    params = dict(method="greedy", texture_size=64, voxel_res=8, align=False, seam_levelling=False, seam_blend=False,
                  detail_weight=0.0)
    plain = bake(mesh, _views(cams, images), BakeParams(**params)).report["label_histogram"]
    consistent = bake(mesh, _views(cams, images), BakeParams(consistency_weight=1.0, **params)).report
    assert plain.get("v2", 0) > 0.3 * sum(plain.values()), plain
    # it keeps only texels near the quad's border that the voxel's label view does not see itself
    assert consistent["label_histogram"].get("v2", 0) < 0.5 * plain["v2"], (plain, consistent["label_histogram"])
    assert consistent["consistency_cost_mean"] > 0
    with pytest.raises(InputError):
        BakeParams(consistency_weight=-1)


# --- per-voxel resolution, sharpening ---------------------------------------------------------------

def test_resolution_cost_prefers_the_closer_of_two_views() -> None:
    """Two cameras on one line of sight at 1.5 and 3 units: the same angle, so Ink3D's unary ties
    them (greedy keeps the first); the resolution term gives the far one half the footprint, cost
    0.5 per unit weight, and greedy then labels every voxel with the close view."""
    mesh = quad_mesh()
    cams = [camera_towards([0, 0, 1], size=64, distance=3.0), camera_towards([0, 0, 1], size=64, distance=1.5)]
    images, _ = render_views(mesh, smooth_texture(64), cams, supersample=2)
    params = dict(method="greedy", texture_size=32, voxel_res=8, align=False, seam_levelling=False, seam_blend=False,
                  detail_weight=0.0)
    plain = bake(mesh, _views(cams, images), BakeParams(resolution_weight=0.0, **params)).report["label_histogram"]
    assert plain.get("v0", 0) > 0.5 * sum(plain.values()), plain
    near = bake(mesh, _views(cams, images), BakeParams(resolution_weight=1.0, **params)).report["label_histogram"]
    assert set(near) == {"v1"}, near

    from backend.bake.visibility import ViewDepth, camera_tensors, rasterize_views, valid_pixels

    graph, _ = build_voxels(mesh, *_centre_samples(mesh), 8)
    depth, _ = rasterize_views(mesh, cams)
    vd = ViewDepth(*camera_tensors(cams), depth, valid_pixels(depth, None, 0, 1.0), 0.01)
    cost = selection.resolution_costs(graph, vd, torch.tensor([[0, 1], [1, -1]]).repeat(len(graph), 1)[:len(graph)])
    assert torch.allclose(cost[0], torch.tensor([0.5, 0.0]), atol=0.02), cost[0]
    assert cost[1, 1] == 0 and cost[1, 0] == 0  # the only candidate is its own finest; -1 ranks cost nothing


def _centre_samples(mesh):  # type: ignore[no-untyped-def]
    texels = texel_samples(mesh, 16)
    return texels.position, texels.normal


def test_sharpening_the_views_brings_back_detail_lost_to_pixel_integration() -> None:
    """Views that resolve the texture's cells at about 3 px each: a texel read from one carries the
    pixel's box and the bilinear lookup; the unsharp mask makes the bake closer to the ground truth
    on the seen texels, and amount 0 leaves the views untouched."""
    mesh = quad_mesh()
    gt = detailed_texture(128, cells=24)
    cams = [camera_towards([0, 0, 1], size=128)]
    images, _ = render_views(mesh, gt, cams, supersample=4)
    params = dict(method="mrf", texture_size=128, voxel_res=8, align=False, seam_levelling=False, seam_blend=False,
                  fit_steps=0)
    texels = texel_samples(mesh, 128)
    err = {}
    for amount in (0.0, 0.5):
        out = bake(mesh, _views(cams, images), BakeParams(sharpen=amount, **params)).texture
        err[amount] = float(((out[texels.rows, texels.cols] - gt[texels.rows, texels.cols]) ** 2).mean())
    assert err[0.5] < 0.93 * err[0.0], err  # measured: 0.88
    from backend.bake.colour import sharpen

    same = torch.as_tensor(images)
    assert sharpen(same, 0.0) is same
    with pytest.raises(InputError, match="sharpen"):
        BakeParams(sharpen=-1)


# --- soft selection ---------------------------------------------------------------------------------

def test_soft_selection_averages_out_the_misregistration_of_single_views() -> None:
    """Four views of the quad from nearly the same direction, each off by half a pixel in its own
    direction: the label's view alone carries its shift into the texture, the soft selection
    blends the equally good views and lands closer to the ground truth; 0 is the label alone."""
    mesh = quad_mesh()
    gt = detailed_texture(128, cells=24)
    cams = [camera_towards([math.sin(math.radians(a)), 0, math.cos(math.radians(a))], size=96) for a in (-6, -2, 2, 6)]
    images, _ = render_views(mesh, gt, cams, supersample=4)
    for i, a in enumerate((0.3, 2.0, 3.5, 5.1)):
        images[i] = shift_image(images[i], 0.5 * math.cos(a), 0.5 * math.sin(a))
    params = dict(method="mrf", texture_size=128, voxel_res=8, align=False, seam_levelling=False, seam_blend=False,
                  fit_steps=0)
    texels = texel_samples(mesh, 128)
    inner = (np.abs(texels.position[:, :2]) < 0.4).all(1)  # away from the quad's border (edge margin)
    err = {}
    for soft in (0.0, 0.1):
        result = bake(mesh, _views(cams, images), BakeParams(soft_selection=soft, **params))
        assert ("soft_selection" in result.report) == (soft > 0)
        err[soft] = float(((result.texture[texels.rows, texels.cols] - gt[texels.rows, texels.cols]) ** 2)[inner].mean())
    assert err[0.1] < 0.8 * err[0.0], err


@pytest.mark.parametrize("colours, blended", [(((1, 0, 0), (0, 0, 1)), False), (((0.5,) * 3, (0.54,) * 3), True)])
def test_soft_selection_blends_views_that_agree_and_not_views_that_disagree(colours, blended: bool) -> None:  # type: ignore[no-untyped-def]
    mesh = quad_mesh()
    cams = [camera_towards([math.sin(math.radians(a)), 0, math.cos(math.radians(a))]) for a in (-20, 20)]
    params = dict(method="greedy", texture_size=16, voxel_res=8, edge_margin=0, align=False, seam_levelling=False,
                  seam_blend=False, fit_steps=0)
    hard = bake(mesh, _flat(cams, colours), BakeParams(soft_selection=0.0, **params)).texture.reshape(-1, 3)
    soft = bake(mesh, _flat(cams, colours), BakeParams(soft_selection=0.1, **params)).texture.reshape(-1, 3)
    pure = np.asarray(colours, np.float32)
    assert (np.abs(hard[:, None] - pure[None]).max(2).min(1) < 1e-5).all()  # each texel: one view's colour
    off_pure = np.abs(soft[:, None] - pure[None]).max(2).min(1)
    if blended:  # the two views cost about the same at every texel: between the two, near the middle
        assert (soft >= 0.5 - 1e-5).all() and (soft <= 0.54 + 1e-5).all()
        # both views count at every texel; towards the quad's edges one faces it more squarely and weighs
        # more (measured: 0.002 off its colour there, 0.017 of the 0.02 midway on the centre line)
        assert off_pure.min() > 0.001 and np.median(off_pure) > 0.005 and off_pure.max() > 0.015, off_pure
    else:  # red against blue: the agreement term leaves each texel its own view's colour
        assert (off_pure < 0.01).all(), off_pure.max()


def test_soft_selection_leaves_voxels_locked_to_the_reference_view_alone() -> None:
    mesh = quad_mesh()
    cams = [camera_towards([math.sin(math.radians(a)), 0, math.cos(math.radians(a))]) for a in (-20, 20)]
    params = dict(method="greedy", texture_size=16, voxel_res=8, edge_margin=0, align=False, seam_levelling=False,
                  seam_blend=False, soft_selection=0.1, lock_reference=True, reference_view=1, lock_angle=90.0)
    texture = bake(mesh, _flat(cams, [(0.5,) * 3, (0.54,) * 3]), BakeParams(**params)).texture
    assert np.allclose(texture, 0.54, atol=1e-5)  # unlocked, the two views blend (test above)


def test_candidate_extra_costs_are_the_unary_terms_past_ink3d() -> None:
    candidates = torch.tensor([[0, 1], [1, -1]])
    extra = selection.candidate_extra_costs(candidates, np.array([0.5, 0.0]), np.array([[0.1, 0.2], [0.3, 0.4]]))
    assert np.allclose(extra, [[0.6, 0.2], [0.3, 0.0]])
    assert not selection.candidate_extra_costs(candidates, None, None).any()
