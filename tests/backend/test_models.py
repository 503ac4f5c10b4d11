"""Weights registry, `models` CLI and memory checks, on a tiny real Wan VACE folder (no network)."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from backend.errors import InputError, MissingWeightsError  # noqa: E402
from backend.models import registry  # noqa: E402
from backend.models.memory import GiB, InsufficientMemoryError, check_memory, estimate_need  # noqa: E402
from tiny_wan import build_tiny_wan_vace  # noqa: E402

VACE = "wan2.1-vace-1.3b"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_wan_vace(tmp_path_factory.mktemp("built") / "tiny-vace")


@pytest.fixture()
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty models setup: config file and models_dir under tmp, an empty Hub cache, offline."""
    import huggingface_hub.constants as hub

    monkeypatch.setenv("ORBITEX_MODELS_CONFIG", str(tmp_path / "config" / "models.toml"))
    monkeypatch.setenv("ORBITEX_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hub"))
    (tmp_path / "models").mkdir()
    return tmp_path


def test_missing_model_names_model_size_and_command(env: Path) -> None:
    with pytest.raises(MissingWeightsError) as err:
        registry.resolve(VACE)
    message = str(err.value)
    assert VACE in message and "17.5 GB" in message
    assert f"python -m backend models download {VACE}" in message
    assert "Wan-AI/Wan2.1-VACE-1.3B-diffusers" in message


def test_orbitpainter_reports_every_missing_model(env: Path) -> None:
    with pytest.raises(MissingWeightsError) as err:
        registry.resolve("orbitpainter")
    message = str(err.value)
    for name in ("orbitpainter", "wan2.2-fun-a14b-control", "wan2.1-t2v-1.3b-encoders"):
        assert f"'{name}'" in message
    assert "models config" in message  # no Hub repository: says how to install the LoRA files by hand


def test_models_dir_layout(env: Path, tiny_model: Path) -> None:
    shutil.copytree(tiny_model, env / "models" / VACE)
    found = registry.locate(VACE)
    assert found is not None and found.source == "models_dir"
    assert registry.resolve(VACE) == env / "models" / VACE
    assert registry.verify(VACE) == []


def test_incomplete_folder_is_not_installed(env: Path, tiny_model: Path) -> None:
    shutil.copytree(tiny_model, env / "models" / VACE)
    shutil.rmtree(env / "models" / VACE / "vae")
    assert registry.locate(VACE) is None
    with pytest.raises(MissingWeightsError):
        registry.resolve(VACE)


def test_config_file_local_folder_and_revision(env: Path, tiny_model: Path) -> None:
    config = env / "config" / "models.toml"
    config.parent.mkdir()
    config.write_text(f'[models."{VACE}"]\npath = "{tiny_model}"\nrevision = "0123456789abcdef"\n')
    found = registry.locate(VACE)
    assert found is not None and found.source == "config" and found.path == tiny_model
    assert registry.get_spec(VACE).revision == "0123456789abcdef"


def test_bad_config_file(env: Path) -> None:
    config = env / "config" / "models.toml"
    config.parent.mkdir()
    config.write_text("models_dir = [unclosed\n")
    with pytest.raises(InputError, match="models.toml"):
        registry.locate(VACE)


def test_hub_cache_snapshot_is_found_offline(env: Path, tiny_model: Path) -> None:
    repo = env / "hub" / "models--Wan-AI--Wan2.1-VACE-1.3B-diffusers"
    commit = "a" * 40
    shutil.copytree(tiny_model, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    found = registry.locate(VACE)
    assert found is not None and found.source == "hub-cache" and found.path.name == commit


def test_download_honours_hf_hub_offline(env: Path) -> None:
    with pytest.raises(MissingWeightsError, match="HF_HUB_OFFLINE"):
        registry.download("wan2.1-vace-14b")


def test_verify_finds_truncated_and_missing_parts(env: Path, tiny_model: Path) -> None:
    folder = env / "models" / VACE
    shutil.copytree(tiny_model, folder)
    weights = folder / "transformer" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    problems = registry.verify(VACE)
    assert any("truncated" in p and "transformer" in p for p in problems)
    index = json.loads((folder / "model_index.json").read_text())
    index["image_encoder"] = ["transformers", "CLIPVisionModel"]
    (folder / "model_index.json").write_text(json.dumps(index))
    assert any("image_encoder/" in p for p in registry.verify(VACE))


def test_models_cli(env: Path, tiny_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from backend.cli import main

    assert main(["models", "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows[VACE]["state"] == "missing" and "wan2.1-i2v-14b-480p" in rows
    shutil.copytree(tiny_model, env / "models" / VACE)
    assert main(["models", "verify", VACE]) == 0
    assert "ok" in capsys.readouterr().out
    assert main(["models", "download", "wan2.1-vace-14b"]) == 2  # offline: a clear error, no traceback
    assert "HF_HUB_OFFLINE" in capsys.readouterr().err


def test_memory_checks(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    need = estimate_need(tiny_model, frames=61, size=512)
    assert need < GiB and estimate_need(tiny_model, 121, 768) > need
    check_memory(VACE, need, "cpu")  # a tiny model runs on the CPU
    with pytest.raises(InsufficientMemoryError, match="GPU memory"):
        check_memory(VACE, 30 * GiB, "cuda", free_bytes=8 * GiB)
    check_memory(VACE, 6 * GiB, "cuda", free_bytes=8 * GiB)
    monkeypatch.setenv("ORBITEX_CPU_MODEL_LIMIT_GB", "0.0001")
    with pytest.raises(InsufficientMemoryError, match="--force-cpu"):
        check_memory(VACE, need, "cpu")
    check_memory(VACE, need, "cpu", force_cpu=True, free_bytes=64 * GiB)
    with pytest.raises(InsufficientMemoryError, match="available"):
        check_memory(VACE, need, "cpu", force_cpu=True, free_bytes=1)


def test_download_pins_the_commit_it_got_for_orbitpainter_and_its_base(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`models download orbitpainter` fetches the base models it needs first, then the LoRA files
    from the repository the config names; the lock file pins each commit, so later runs resolve it."""
    import huggingface_hub

    got: list[tuple[str, str]] = []

    def fake_snapshot_download(repo_id: str, revision: str = "main", allow_patterns=None, local_files_only=False):  # type: ignore[no-untyped-def]
        commit = ("%040x" % abs(hash(repo_id)))[:40]
        folder = env / "hub" / repo_id.replace("/", "--") / commit
        if local_files_only:
            if revision not in (commit, "main") or not folder.is_dir():
                raise huggingface_hub.errors.LocalEntryNotFoundError("not cached")
            return str(folder)
        got.append((repo_id, revision))
        for pattern in {"alibaba-pai/Wan2.2-Fun-A14B-Control": ["high_noise_model/a.safetensors", "low_noise_model/a.safetensors"],
                        "Wan-AI/Wan2.1-T2V-1.3B": ["models_t5_umt5-xxl-enc-bf16.pth", "Wan2.1_VAE.pth", "google/umt5-xxl/t.json"],
                        "someone/orbitpainter": ["high_noise_lora.safetensors", "low_noise_lora.safetensors"]}[repo_id]:
            (folder / pattern).parent.mkdir(parents=True, exist_ok=True)
            (folder / pattern).write_bytes(b"x")
        return str(folder)

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    with pytest.raises(MissingWeightsError, match="repo_id"):  # no repository named yet: says how
        registry.download("orbitpainter")
    config = env / "config" / "models.toml"
    config.write_text('[models."orbitpainter"]\nrepo_id = "someone/orbitpainter"\n')
    folder = registry.download("orbitpainter")
    assert [r for r, _ in got] == ["alibaba-pai/Wan2.2-Fun-A14B-Control", "Wan-AI/Wan2.1-T2V-1.3B", "someone/orbitpainter"]
    lock = json.loads((env / "config" / "models.lock.json").read_text())
    assert lock["orbitpainter"] == folder.name and len(lock) == 3
    assert registry.get_spec("orbitpainter").revision == folder.name  # later runs load exactly that commit
    assert registry.resolve("orbitpainter") == folder
