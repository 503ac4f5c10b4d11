"""The compiled CPU splat rasterizer (raster_cpu) against the pure-torch reference (raster_torch):
images and gradients of every Gaussian tensor agree to 1e-4 relative, on scenes that reach each
branch (partial edge tiles, saturated pixels that stop early, alphas clamped at 0.999, Gaussians
behind the camera, off screen and beyond the Jacobian's clamp at the border)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.assets.cameras import Camera, look_at
from backend.splats import raster_cpu, raster_torch
from backend.splats.fit import FitConfig, pick_rasterizer
from backend.splats.model import Gaussians, rgb_to_dc


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_scene(n: int, seed: int, dtype=torch.float64, spread: float = 0.6, opacity=(0.3, 0.8)) -> Gaussians:
    gen = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=gen) - 0.5) * spread
    log_scales = torch.log(0.02 + 0.08 * torch.rand(n, 3, generator=gen))
    quats = torch.randn(n, 4, generator=gen) * (0.5 + torch.rand(n, 1, generator=gen))  # not unit length
    lo, hi = opacity
    logits = torch.logit(lo + (hi - lo) * torch.rand(n, generator=gen))
    sh = 0.2 * torch.randn(n, 16, 3, generator=gen)
    sh[:, 0] = rgb_to_dc(torch.rand(n, 3, generator=gen))
    return Gaussians(means, log_scales, quats, logits, sh).map(lambda t: t.to(dtype))


def saturated_stack(dtype=torch.float64) -> Gaussians:
    """Large, nearly opaque Gaussians stacked in depth: pixels saturate (T < 1e-4) after a few, and
    the front ones clamp at alpha 0.999."""
    n = 24
    gen = torch.Generator().manual_seed(7)
    means = torch.zeros(n, 3)
    means[:, 2] = torch.linspace(-0.3, 0.3, n)
    means[:, :2] = 0.05 * torch.randn(n, 2, generator=gen)
    log_scales = torch.log(torch.tensor([[0.16, 0.09, 0.12]])).repeat(n, 1)
    quats = torch.nn.functional.normalize(torch.randn(n, 4, generator=gen), dim=-1)
    logits = torch.logit(torch.tensor([0.9995, 0.97] * (n // 2)))
    sh = torch.zeros(n, 4, 3)
    sh[:, 0] = rgb_to_dc(torch.rand(n, 3, generator=gen))
    return Gaussians(means, log_scales, quats, logits, sh).map(lambda t: t.to(dtype))


def edge_scene(dtype=torch.float64) -> Gaussians:
    """Gaussians behind the camera, beyond the image border (Jacobian clamp) and partly on screen."""
    g = random_scene(40, seed=11, dtype=dtype, spread=0.5)
    means = g.means.clone()
    means[:8, 2] = 2.0  # behind a camera at z = 1.5 looking at -z
    means[8:20, 0] = torch.linspace(0.55, 1.4, 12, dtype=dtype)  # towards and past the right border
    means[20:26, 1] = -0.75  # past the bottom border
    return Gaussians(means, g.log_scales, g.quats, g.opacity_logits, g.sh)


def camera(width: int, height: int, eye=(0.3, 0.2, 1.5)) -> Camera:
    return Camera.from_fov(look_at(np.array(eye), np.zeros(3), np.array([0.0, 1.0, 0.0])), 40.0, width, height)


def render_and_grads(module, g: Gaussians, cam: Camera, weights: torch.Tensor):  # type: ignore[no-untyped-def]
    tensors = {k: v.clone().requires_grad_(True) for k, v in g.tensors().items()}
    out = module.render(Gaussians(**tensors), cam, (0.2, 0.4, 0.6))
    loss = (out.color * weights).sum() + 0.7 * (out.alpha * weights[..., 0]).sum() + 0.1 * out.depth.sum()
    loss.backward()
    return out, {k: v.grad for k, v in tensors.items()}


def assert_relative(actual: torch.Tensor, expected: torch.Tensor, rel: float, what: str) -> None:
    scale = float(expected.detach().abs().max())
    torch.testing.assert_close(actual, expected, rtol=rel, atol=rel * max(scale, 1e-12), msg=what)


SCENES = {
    "random": (lambda dtype: random_scene(120, seed=1, dtype=dtype), (45, 37)),
    "saturated": (saturated_stack, (40, 40)),
    "edges": (edge_scene, (48, 33)),
}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("scene", list(SCENES))
def test_images_and_gradients_match_the_torch_reference(scene, dtype):
    make, (width, height) = SCENES[scene]
    g = make(dtype)
    cam = camera(width, height)
    weights = torch.rand(height, width, 3, generator=torch.Generator().manual_seed(3), dtype=dtype)
    ref, ref_grads = render_and_grads(raster_torch, g, cam, weights)
    out, grads = render_and_grads(raster_cpu, g, cam, weights)
    assert ref.alpha.max() > 0.5
    torch.testing.assert_close(out.visible, ref.visible)  # same culling, same front-to-back order
    for name in ("color", "alpha", "depth"):
        assert_relative(getattr(out, name), getattr(ref, name), 1e-4, f"{scene} {name}")
    for name, grad in ref_grads.items():
        assert grad.abs().sum() > 0, (scene, name)
        assert_relative(grads[name], grad, 1e-4, f"{scene} d/d {name}")


def test_saturated_pixels_stop_early_and_clamp():
    """The stack really reaches both branches: the front Gaussian's alpha hits the 0.999 clamp, and
    the centre pixels stop with T just above 1e-4 although a dozen more nearly opaque Gaussians lie
    behind (composited to the end, T would fall below 1e-6)."""
    g = saturated_stack()
    cam = camera(40, 40)
    out = raster_cpu.render(g, cam)
    assert 0.99 < float(out.alpha.max()) < 1 - 1e-4 + 1e-9
    p = raster_torch.project(g, cam)
    assert float(p.opacities.max()) > 0.999


def test_auto_picks_the_cpu_rasterizer_on_the_cpu():
    assert pick_rasterizer("auto", torch.device("cpu")) == "cpu"
    assert FitConfig().rasterizer == "auto"
