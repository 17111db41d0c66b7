"""Generated protobuf code must match protos/: `make protos` regenerates it."""

from __future__ import annotations

import filecmp
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "protos"


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    protos = sorted(PROTO_DIR.glob("echo/v1/*.proto"))
    assert protos, "no .proto files found"
    shutil.copytree(
        PROTO_DIR, tmp_path / "protos", ignore=shutil.ignore_patterns("*.py", "*.pyi", "__pycache__")
    )
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{tmp_path / 'protos'}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            *[str(tmp_path / "protos" / p.relative_to(PROTO_DIR)) for p in protos],
        ],
        check=True,
    )
    generated = sorted(p.relative_to(out) for p in out.rglob("*") if p.suffix in (".py", ".pyi"))
    committed = sorted(p.relative_to(PROTO_DIR) for p in PROTO_DIR.rglob("*_pb2*.py*"))
    assert generated == committed, "generated files differ from the committed set: run `make protos`"
    stale = [str(p) for p in generated if not filecmp.cmp(out / p, PROTO_DIR / p, shallow=False)]
    assert not stale, f"stale generated code (run `make protos`): {stale}"
