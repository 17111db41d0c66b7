"""Print every .tf file under a directory as JSON {relative path: parsed HCL}.

Run by the deploy tools' venv (python-hcl2 lives there, apart from checkov's clashing `hcl2`):
``.venv-deploy/tools/bin/python tests/deploy/hcl_dump.py deploy/terraform``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import hcl2
from hcl2.utils import SerializationOptions


def main() -> None:
    root = Path(sys.argv[1])
    options = SerializationOptions(strip_string_quotes=True, with_comments=False, explicit_blocks=False)
    parsed = {}
    for path in sorted(root.rglob("*.tf")):
        if ".terraform" in path.parts:
            continue
        with path.open() as handle:
            parsed[path.relative_to(root).as_posix()] = hcl2.load(handle, serialization_options=options)
    json.dump(parsed, sys.stdout)


if __name__ == "__main__":
    main()
