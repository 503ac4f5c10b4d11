#!/usr/bin/env bash
# The GPU checks of issue 14, as one prepared script for a lent device machine (NVIDIA, CUDA torch,
# python3.12, no network): under 8 minutes in all. Not run yet: no device machine was lent to the
# task that wrote it (2026-12-03); record what it prints in bench/RESULTS.md when one is.
#
#   bash bench/gpu_check.sh prepare   # HERE, with network: wheels for the device into .whl/, EGL libs into .gl/
#   bash bench/gpu_check.sh run       # THERE (device `run` with carry [".whl", ".gl"]); logs into $OUT
#
# run does, each step with its own time limit so one slow step cannot eat the others:
#   1. the CUDA tests: nvdiffrast rasterizer vs moderngl, gsplat vs the torch splat rasterizer,
#      the nvdiffrast `optimize` bake (tests/backend, -k selects them; the CPU ones run in CI)
#   2. G-buffer timing: 122 views (two 61-frame orbits) at 512^2 of a 100k-triangle mesh, every
#      rasterizer (target: nvdiffrast <= 2 ms/view)
#   3. one denoising step (cfg: 2 forwards) at 61 x 512^2 of Wan2.1 VACE 1.3B and of a Wan2.2-Fun-A14B
#      expert (OrbitPainter's 68 input channels), random bf16 weights (bench/wan_step.py)
#   4. a full bake of 122 views (bench/bake.py, one asset, mrf and optimize)
set -uo pipefail
cd "$(dirname "$0")/.."
# what the device image lacks (its torch, torchvision, numpy, scipy, pillow, opencv, transformers,
# accelerate, safetensors, huggingface-hub and pytest are used as they are)
WHEELS=(diffrp-nvdiffrast gsplat==1.5.3 diffusers==0.42.1 trimesh==5.2.0 pygltflib==1.16.5 plyfile==1.1.5
        xatlas==0.0.11 moderngl==5.13.0 glcontext gco-wrapper==3.0.9 pytorch-msssim==1.0.0 openexr==3.5.3
        imageio-ffmpeg ftfy==6.3.1 jaxtyping dataclasses-json fastapi==0.165.0 python-multipart uvicorn)

prepare() {
  grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >> .git/info/exclude
  grep -qx '/.gl/' .git/info/exclude 2>/dev/null || echo /.gl/ >> .git/info/exclude
  mkdir -p .whl .gl /tmp/amd64/partial
  local platforms=()
  for n in 17 27 28 31 34 35; do platforms+=(--platform "manylinux_2_${n}_x86_64"); done
  for w in "${WHEELS[@]}"; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      "${platforms[@]}" --platform manylinux2014_x86_64 --platform any -d .whl "$w" \
      || echo "prepare: no wheel for $w (the step needing it will say so)"
  done
  local o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  apt-get $o update -q && (cd .gl && apt-get $o download libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
  du -sh .whl .gl
}

step() {  # step NAME SECONDS COMMAND...: run with a limit, log to $OUT/NAME.log, report the exit code
  local name=$1 limit=$2; shift 2
  local start=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "== $name: exit $rc in $((SECONDS - start)) s (limit $limit s)"
  tail -n 25 "$OUT/$name.log"
}

run() {
  : "${OUT:?run this on the device machine (OUT is its output folder)}"
  for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
  export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "wheel install failed"; exit 1; }
  export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 ORBITEX_BACKEND_PYTHON=python3
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
  step cuda_tests 180 python3 -m pytest -q -rs -p no:cacheprovider \
    tests/backend/test_rasterizers.py tests/backend/test_splats.py tests/backend/test_bake.py \
    -k "nvdiffrast or cuda or gsplat or optimize"
  step gbuffers 60 python3 bench/render_gbuffers.py --triangles 100000 --views 122 --size 512
  step wan_step 150 python3 bench/wan_step.py --frames 61 --size 512 --repeats 2
  step bake_122 70 python3 bench/bake.py --assets text --methods mrf,optimize --frames 61 --size 512
}

case "${1:-}" in
  prepare) prepare ;;
  run) run ;;
  *) echo "usage: bash bench/gpu_check.sh prepare|run"; exit 2 ;;
esac
