"""Generated protobuf code must match protos/: `make protos` regenerates it."""

from __future__ import annotations

import filecmp
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "protos"


def generated_files(root: Path) -> list[Path]:
    """The generated modules and stubs under ``root``; bytecode caches are not part of them."""
    return sorted(
        p.relative_to(root)
        for p in root.rglob("*_pb2*")
        if p.suffix in (".py", ".pyi") and "__pycache__" not in p.relative_to(root).parts
    )


def protoc(proto_dir: Path, out: Path) -> None:
    """What `make protos` runs, for the .proto files under ``proto_dir``, writing into ``out``."""
    protos = sorted(proto_dir.glob("echo/v1/*.proto"))
    assert protos, "no .proto files found"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{proto_dir}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            *map(str, protos),
        ],
        check=True,
    )


def staleness(proto_dir: Path, tmp_path: Path) -> tuple[list[str], list[str]]:
    """Regenerate ``proto_dir``'s .proto files into a scratch folder and compare with what is there:
    (files missing or extra, files whose content differs)."""
    source = tmp_path / "protos"
    shutil.copytree(proto_dir, source, ignore=shutil.ignore_patterns("*.py", "*.pyi", "__pycache__"))
    out = tmp_path / "out"
    out.mkdir()
    protoc(source, out)
    generated, committed = generated_files(out), generated_files(proto_dir)
    mismatched = sorted(str(p) for p in set(generated) ^ set(committed))
    stale = [
        str(p) for p in generated if p in committed and not filecmp.cmp(out / p, proto_dir / p, shallow=False)
    ]
    return mismatched, stale


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    mismatched, stale = staleness(PROTO_DIR, tmp_path)
    assert not mismatched, f"generated files differ from the committed set (run `make protos`): {mismatched}"
    assert not stale, f"stale generated code (run `make protos`): {stale}"


def test_the_check_ignores_bytecode_and_catches_a_stale_file(tmp_path: Path) -> None:
    """The check itself: compiled caches beside the stubs are not "extra" files, while an edited
    stub, or one whose .proto is gone, is reported."""
    copy = tmp_path / "copy"  # the real contracts, freshly generated as `make protos` would
    shutil.copytree(PROTO_DIR, copy, ignore=shutil.ignore_patterns("*_pb2*", "__pycache__"))
    protoc(copy, copy)
    cache = copy / "echo/v1/__pycache__"
    cache.mkdir()
    for name in ("stt_pb2.cpython-311.pyc", "stt_pb2_grpc.cpython-311.pyc", "stt_pb2.cpython-311.opt-1.pyc"):
        (cache / name).write_bytes(b"\0bytecode")
    assert staleness(copy, tmp_path / "fresh") == ([], [])

    stub = copy / "echo/v1/stt_pb2.py"
    stub.write_text(stub.read_text() + "# edited by hand\n")
    (copy / "echo/v1/gone_pb2.py").write_text("# generated from a .proto that was deleted\n")
    assert staleness(copy, tmp_path / "edited") == (["echo/v1/gone_pb2.py"], ["echo/v1/stt_pb2.py"])
