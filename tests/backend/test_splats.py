"""Gaussian splats: the CPU rasterizer (against a brute-force reference and finite differences),
fitting, densification, the 3DGS PLY round trip and its errors, and gsplat against the CPU path."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from backend.errors import InputError
from backend.assets.cameras import Camera, look_at
from backend.splats import raster_torch
from backend.splats.densify import CloneSplitPrune, DensifyConfig
from backend.splats.fit import FitConfig, FitViews, fit, from_params, render_views, to_params
from backend.splats.model import Gaussians, from_points, rgb_to_dc
from backend.splats.ply import read_ply, write_ply


@pytest.fixture(autouse=True)
def one_thread():
    """Small tensors on a shared 2-core machine run far faster on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def camera(size: int = 24, eye=(0.3, 0.2, 1.5)) -> Camera:
    return Camera.from_fov(look_at(np.array(eye), np.zeros(3), np.array([0.0, 1.0, 0.0])), 40.0, size, size)


def tiny_scene(dtype=torch.float64, n: int = 5, seed: int = 0) -> Gaussians:
    gen = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=gen) - 0.5) * 0.5
    log_scales = torch.log(0.05 + 0.08 * torch.rand(n, 3, generator=gen))
    quats = torch.nn.functional.normalize(torch.randn(n, 4, generator=gen), dim=-1)
    opacity = torch.logit(0.3 + 0.5 * torch.rand(n, generator=gen))
    sh = torch.zeros(n, 16, 3)
    sh[:, 0] = rgb_to_dc(torch.rand(n, 3, generator=gen))
    sh[:, 1:] = 0.1 * torch.randn(n, 15, 3, generator=gen)
    return Gaussians(means, log_scales, quats, opacity, sh).map(lambda t: t.to(dtype))


def brute_force(g: Gaussians, cam: Camera, background) -> tuple[torch.Tensor, torch.Tensor]:
    """Every pixel composites every visible Gaussian front to back with the same rules (no tiles)."""
    p = raster_torch.project(g, cam)
    ys, xs = torch.meshgrid(torch.arange(cam.height) + 0.5, torch.arange(cam.width) + 0.5, indexing="ij")
    color = torch.zeros(cam.height, cam.width, 3, dtype=g.means.dtype)
    trans = torch.ones(cam.height, cam.width, dtype=g.means.dtype)
    done = torch.zeros(cam.height, cam.width, dtype=torch.bool)
    for i in range(len(p.visible)):  # front to back
        dx, dy = xs - p.means2d[i, 0], ys - p.means2d[i, 1]
        a, b, c = p.conics[i]
        sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
        alpha = torch.clamp_max(p.opacities[i] * torch.exp(-sigma), 0.999)
        alpha = torch.where((sigma >= 0) & (alpha >= 1 / 255), alpha, torch.zeros_like(alpha))
        next_t = trans * (1 - alpha)
        done = done | (next_t <= 1e-4)
        use = ~done
        color = color + (alpha * trans * use)[..., None] * p.colors[i]
        trans = torch.where(use, next_t, trans)
    bg = torch.tensor(background, dtype=g.means.dtype)
    return color + trans[..., None] * bg, 1 - trans


@pytest.mark.parametrize("tile_size", [4, 8])
def test_tiled_render_matches_brute_force(tile_size):
    g = tiny_scene(n=12)
    cam = camera(30)
    out = raster_torch.render(g, cam, (0.2, 0.4, 0.6), tile_size=tile_size)
    ref_color, ref_alpha = brute_force(g, cam, (0.2, 0.4, 0.6))
    assert out.alpha.max() > 0.3  # the scene is really on screen
    torch.testing.assert_close(out.color, ref_color, atol=1e-6, rtol=0)  # bg weight 1 - sum(w) vs T: <= 1e-4 * T
    torch.testing.assert_close(out.alpha, ref_alpha, atol=1e-6, rtol=0)


def test_gradients_are_finite_and_match_finite_differences():
    g = tiny_scene(n=4, seed=3)
    cam = camera(16)
    weights = torch.rand(16, 16, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    def loss_of(tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        out = raster_torch.render(Gaussians(**tensors), cam, (1.0, 1.0, 1.0))
        return (out.color * weights).sum() + 0.5 * out.alpha.sum() + 0.1 * out.depth.sum()

    tensors = {k: v.clone().requires_grad_(True) for k, v in g.tensors().items()}
    loss = loss_of(tensors)
    loss.backward()
    rng = np.random.default_rng(0)
    checked = 0
    for name, t in tensors.items():
        assert t.grad is not None and torch.isfinite(t.grad).all(), name
        flat = t.detach().reshape(-1)
        picks = rng.choice(flat.numel(), size=min(6, flat.numel()), replace=False)
        for k in picks:
            eps = 1e-6
            plus, minus = {n: v.detach().clone() for n, v in tensors.items()}, {n: v.detach().clone() for n, v in tensors.items()}
            plus[name].view(-1)[k] += eps
            minus[name].view(-1)[k] -= eps
            numeric = (loss_of(plus) - loss_of(minus)).item() / (2 * eps)
            analytic = t.grad.reshape(-1)[k].item()
            assert math.isclose(analytic, numeric, rel_tol=1e-4, abs_tol=1e-6), (name, int(k), analytic, numeric)
            checked += 1
    assert checked >= 25
    assert tensors["means"].grad.abs().sum() > 0 and tensors["opacity_logits"].grad.abs().sum() > 0


@pytest.mark.parametrize("rasterizer", ["torch", "cpu"])
def test_fitting_a_few_gaussians_lowers_the_loss_tenfold(rasterizer):
    target = tiny_scene(dtype=torch.float32, n=6, seed=5).with_sh_degree(0)
    cams = [camera(32, eye=(1.5 * math.sin(a), 0.3, 1.5 * math.cos(a))) for a in np.linspace(0, 2 * math.pi, 6, endpoint=False)]
    images, alphas = render_views(target, cams, (1.0, 1.0, 1.0), rasterizer="torch", device="cpu")
    gen = torch.Generator().manual_seed(9)
    start = Gaussians(target.means + 0.04 * torch.randn(6, 3, generator=gen), target.log_scales + 0.3,
                      target.quats + 0.2 * torch.randn(6, 4, generator=gen), torch.zeros(6),
                      torch.zeros(6, 1, 3))
    views = FitViews(cams, images, alphas, (1.0, 1.0, 1.0))

    def loss(g: Gaussians) -> float:
        rendered, _ = render_views(g, cams, (1.0, 1.0, 1.0), rasterizer="torch", device="cpu")
        return float((rendered - images).abs().mean())

    before = loss(start)
    config = FitConfig(iterations=300, sh_degree=0, densify=False, device="cpu", rasterizer=rasterizer,
                       lr_means=2e-3, lr_sh0=2e-2, lr_opacities=5e-2, lr_scales=1e-2, lr_quats=5e-3)
    calls = []
    result = fit(start, views, config, progress=lambda f, s: calls.append(f))
    after = loss(result.gaussians)
    assert before / after >= 10, (before, after)
    assert calls[-1] == pytest.approx(1.0) and len(calls) == 300
    assert result.losses == ["l1", "ssim", "mask"]
    assert result.rasterizer == rasterizer and result.iterations == 300 and not result.stopped_early


def test_fit_stops_early_when_the_heldout_loss_stalls():
    target = tiny_scene(dtype=torch.float32, n=6, seed=5).with_sh_degree(0)
    cams = [camera(24, eye=(1.5 * math.sin(a), 0.3, 1.5 * math.cos(a))) for a in np.linspace(0, 2 * math.pi, 7, endpoint=False)]
    images, alphas = render_views(target, cams, rasterizer="cpu", device="cpu")
    train = FitViews(cams[:5], images[:5], alphas[:5])
    held = FitViews(cams[5:], images[5:], alphas[5:])
    start = Gaussians(target.means + 0.03, target.log_scales, target.quats, target.opacity_logits, target.sh)
    config = FitConfig(iterations=2000, sh_degree=0, densify=False, device="cpu", eval_every=20, patience=2,
                       min_improvement=0.05, lr_means=2e-3, lr_sh0=2e-2)
    result = fit(start, train, config, heldout=held)
    assert result.stopped_early and result.iterations < 2000
    assert result.iterations >= 0.3 * 2000  # not before min_fraction of the run
    steps = [s for s, _ in result.heldout]
    assert steps == list(range(20, result.iterations + 1, 20))
    first, last = result.heldout[0][1], min(v for _, v in result.heldout)
    assert last < first  # it did improve before stalling


def test_densification_keeps_to_the_budget_growing_the_highest_gradients_first():
    g = from_points(np.random.default_rng(1).normal(size=(30, 3)).astype(np.float32) * 0.2, sh_degree=0, opacity=0.5)
    params = to_params(g)
    params["scales"].data[:] = math.log(0.001)  # all small: clones
    optimizers = {k: torch.optim.Adam([p], lr=1e-3) for k, p in params.items()}
    strategy = CloneSplitPrune(DensifyConfig(refine_start=0, refine_every=1, grow_grad2d=0.0, max_gaussians=36))
    state = strategy.initialize_state(scene_scale=1.0)
    means2d = torch.zeros(30, 2, requires_grad=True)
    means2d.grad = torch.arange(30, dtype=torch.float32)[:, None].repeat(1, 2)  # Gaussian i has gradient ~ i
    info = {"means2d": means2d, "gaussian_ids": torch.arange(30), "width": 32, "height": 32, "n_cameras": 1}
    before = params["means"].detach().clone()
    strategy.step_post_backward(params, optimizers, state, 1, info)
    assert state["edits"]["cloned"] == 6 and len(params["means"]) == 36
    torch.testing.assert_close(params["means"][30:], before[24:])  # the clones are of the top 6 gradients


def test_gsplat_strategy_keeps_to_the_budget_and_reports_its_edits():
    """gsplat's DefaultStrategy (plain torch code, but gsplat is installed on CUDA machines only)."""
    pytest.importorskip("gsplat", reason="gsplat is installed on CUDA machines only (pip install gsplat==1.5.3)")
    from backend.splats.strategy_gsplat import strategy as gsplat_strategy

    g = from_points(np.random.default_rng(2).normal(size=(50, 3)).astype(np.float32) * 0.2, sh_degree=1, opacity=0.5)
    params = to_params(g)
    params["scales"].data[:25] = math.log(0.001)  # small: duplicated
    params["scales"].data[25:] = math.log(0.05)  # large: split
    params["opacities"].data[-3:] = -10.0  # transparent: pruned
    optimizers = {k: torch.optim.Adam([p], lr=1e-3) for k, p in params.items()}
    loss = sum(p.sum() for p in params.values())
    loss.backward()
    for opt in optimizers.values():
        opt.step()
    s = gsplat_strategy(DensifyConfig(refine_start=0, refine_every=1, grow_grad2d=0.0, max_gaussians=60))
    state = s.initialize_state(scene_scale=1.0)
    means2d = torch.zeros(1, 50, 2, requires_grad=True)  # gsplat's unpacked [C, N, 2]
    means2d.grad = torch.linspace(1, 2, 50)[None, :, None].repeat(1, 1, 2)
    info = {"means2d": means2d, "radii": torch.ones(1, 50, 2, dtype=torch.int32), "gaussian_ids": None,
            "width": 32, "height": 32, "n_cameras": 1}
    s.step_post_backward(params, optimizers, state, 1, info, packed=False)
    edits = state["edits"]
    assert edits["cloned"] + edits["split"] == 10  # the room under the budget of 60
    assert edits["split"] == 10  # the large ones have the highest gradients
    # the 3 transparent ones have the highest gradients, so they were split first: 6 pruned
    assert edits["pruned"] == 6 and len(params["means"]) == 60 - 6
    assert all(optimizers[k].param_groups[0]["params"][0] is p for k, p in params.items())


def test_fit_stops_when_progress_cancels():
    from backend.errors import Cancelled

    g = tiny_scene(dtype=torch.float32, n=4).with_sh_degree(0)
    cams = [camera(16)]
    images, alphas = render_views(g, cams, rasterizer="torch", device="cpu")

    def cancel(fraction, stage):
        if fraction >= 0.1:
            raise Cancelled("cancelled")

    with pytest.raises(Cancelled):
        fit(g, FitViews(cams, images, alphas), FitConfig(iterations=50, device="cpu", densify=False), cancel)


def test_clone_split_prune_keeps_optimizer_state_in_step():
    g = from_points(np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32) * 0.2, sh_degree=1, opacity=0.5)
    params = to_params(g)
    params["scales"].data[:20] = math.log(0.2)  # large: split
    params["scales"].data[20:] = math.log(0.001)  # small: clone
    params["opacities"].data[-5:] = -10.0  # transparent: prune
    optimizers = {k: torch.optim.Adam([p], lr=1e-3) for k, p in params.items()}
    loss = sum(p.sum() for p in params.values())
    loss.backward()
    for opt in optimizers.values():
        opt.step()
    strategy = CloneSplitPrune(DensifyConfig(refine_start=0, refine_every=1, grow_grad2d=0.0))
    state = strategy.initialize_state(scene_scale=1.0)
    means2d = torch.zeros(40, 2, requires_grad=True)
    means2d.grad = torch.ones(40, 2)
    info = {"means2d": means2d, "gaussian_ids": torch.arange(40), "width": 32, "height": 32, "n_cameras": 1}
    strategy.step_post_backward(params, optimizers, state, 1, info)
    edits = state["edits"]
    # the 5 transparent ones are small, so they are cloned before the prune removes them and their clones
    assert edits == {"cloned": 20, "split": 20, "pruned": 10}
    n = 40 + 20 + 20 - 10  # clones added, each split replaced by two, transparent ones removed
    for name, p in params.items():
        assert p.shape[0] == n, name
        state = optimizers[name].state[p]
        assert state["exp_avg"].shape == p.shape and optimizers[name].param_groups[0]["params"][0] is p
    assert (torch.exp(params["scales"]).max(-1).values < 0.2).all()  # split children are smaller
    from_params(params)  # still a valid model


def test_ply_round_trip_is_exact_with_unit_quaternions(tmp_path):
    for degree in (0, 1, 3):
        g = tiny_scene(dtype=torch.float32, n=50, seed=degree).with_sh_degree(degree)
        g.sh.normal_()
        g.quats.mul_(torch.linspace(0.2, 3.0, 50)[:, None])  # any length in, unit length out
        back = read_ply(write_ply(g, tmp_path / f"g{degree}.ply"))
        for name, value in g.tensors().items():
            if name != "quats":
                assert torch.equal(value, getattr(back, name)), (degree, name)
        torch.testing.assert_close(back.quats, torch.nn.functional.normalize(g.quats, dim=-1), atol=1e-7, rtol=0)
        torch.testing.assert_close(back.quats.norm(dim=-1), torch.ones(50), atol=1e-6, rtol=0)
        again = read_ply(write_ply(back, tmp_path / f"again{degree}.ply"))  # unit in: the same bits out
        assert all(torch.equal(v, getattr(again, k)) for k, v in back.tensors().items())


def test_ply_has_the_reference_property_set_that_gsply_detects(tmp_path):
    import gsply
    from gsply.formats import EXPECTED_PROPERTIES_BY_SH_DEGREE
    from plyfile import PlyData

    for degree in (0, 1, 2, 3):
        g = tiny_scene(dtype=torch.float32, n=40, seed=degree).with_sh_degree(degree)
        g.sh.normal_()
        path = write_ply(g, tmp_path / f"g{degree}.ply")
        names = [p.name for p in PlyData.read(str(path))["vertex"].properties]
        assert names == EXPECTED_PROPERTIES_BY_SH_DEGREE[degree]
        assert gsply.detect_format(path) == (False, degree)
        data = gsply.plyread(str(path))
        np.testing.assert_array_equal(data.means, g.means.numpy())
        np.testing.assert_array_equal(data.scales, g.log_scales.numpy())
        np.testing.assert_array_equal(data.opacities.reshape(-1), g.opacity_logits.numpy())
        np.testing.assert_allclose(data.quats, torch.nn.functional.normalize(g.quats, dim=-1).numpy(), atol=1e-7)
        np.testing.assert_array_equal(data.sh0.reshape(-1, 3), g.sh[:, 0].numpy())
        if degree:
            np.testing.assert_array_equal(np.asarray(data.shN).reshape(40, -1, 3), g.sh[:, 1:].numpy())
    # the original code's zero normals only on request; exact-set readers then refuse the file
    path = write_ply(g, tmp_path / "normals.ply", normals=True)
    vertex = PlyData.read(str(path))["vertex"]
    assert [p.name for p in vertex.properties][:6] == ["x", "y", "z", "nx", "ny", "nz"]
    assert not np.asarray(vertex["nx"]).any()
    assert gsply.detect_format(path) == (False, None)
    assert torch.equal(read_ply(path).sh, g.sh)


def test_damaged_ply_files_give_clear_errors(tmp_path):
    g = tiny_scene(dtype=torch.float32, n=30)
    data = write_ply(g, tmp_path / "good.ply").read_bytes()
    cases = {
        "truncated.ply": data[:-200],
        "header_only.ply": data[:200],
        "garbage.ply": b"ply\nformat binary_little_endian 1.0\nelement vertex 3\n\x00\xff junk",
        "not_a_ply.ply": b"\x89PNG\r\n\x1a\n" + bytes(100),
        "empty.ply": b"",
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(InputError, match=name.replace(".", r"\.")):
            read_ply(tmp_path / name)
    import trimesh

    trimesh.creation.box().export(tmp_path / "mesh.ply")  # a valid PLY, but a mesh, not Gaussians
    with pytest.raises(InputError, match="not a 3DGS PLY"):
        read_ply(tmp_path / "mesh.ply")
    with pytest.raises(InputError, match="no such file"):
        read_ply(tmp_path / "missing.ply")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="gsplat needs a CUDA GPU; this machine has none")
def test_gsplat_matches_the_torch_rasterizer_on_cuda():
    from backend.splats import raster_gsplat

    if not raster_gsplat.available():
        pytest.skip("gsplat is not installed (pip install gsplat==1.5.3)")
    g = tiny_scene(dtype=torch.float32, n=200, seed=2)
    g = Gaussians(g.means * 2, g.log_scales - 0.5, g.quats, g.opacity_logits, g.sh)
    cam = camera(64)
    ref = raster_torch.render(g.to("cuda"), cam, (1.0, 1.0, 1.0))
    tensors = {k: v.cuda().requires_grad_(True) for k, v in g.tensors().items()}
    out = raster_gsplat.render(Gaussians(**tensors), cam, (1.0, 1.0, 1.0))
    torch.testing.assert_close(out.color, ref.color, atol=2e-3, rtol=0)
    torch.testing.assert_close(out.alpha, ref.alpha, atol=2e-3, rtol=0)
    (out.color.sum() + out.alpha.sum()).backward()
    ref_tensors = {k: v.cuda().requires_grad_(True) for k, v in g.tensors().items()}
    ref = raster_torch.render(Gaussians(**ref_tensors), cam, (1.0, 1.0, 1.0))
    (ref.color.sum() + ref.alpha.sum()).backward()
    for name in ("means", "opacity_logits", "sh"):
        torch.testing.assert_close(tensors[name].grad, ref_tensors[name].grad, atol=1e-2, rtol=5e-2)


def test_loss_uses_ms_ssim_from_160_pixels():
    from backend.splats.fit import ImageLoss

    for side, term in ((96, "ssim"), (160, "ms-ssim")):
        loss_fn = ImageLoss(FitConfig(), side, side, torch.device("cpu"))
        assert loss_fn.terms[:3] == ["l1", term, "mask"]
        target = torch.rand(side, side, 3)
        color = target.clone().requires_grad_(True)
        out = raster_torch.Render(color, torch.ones(side, side), torch.zeros(side, side), torch.zeros(0, 2),
                                  torch.zeros(0, dtype=torch.long), torch.zeros(0))
        assert loss_fn(out, target, torch.ones(side, side)).item() == pytest.approx(0.0, abs=1e-5)
        worse = loss_fn(raster_torch.Render(torch.rand(side, side, 3), torch.ones(side, side), None, None, None, None),
                        target, torch.ones(side, side))
        assert worse.item() > 0.1
