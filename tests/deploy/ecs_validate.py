"""Validate ECS RegisterTaskDefinition requests against botocore's ECS service model.

Reads a JSON object {label: request parameters} on stdin and prints {label: [problems]} (an empty list
when the request matches the model: every key known, every value of the right type, required members
present). Runs in whichever Python has botocore (the project venv with the `aws` extra, or the deploy
tools' venv).
"""

from __future__ import annotations

import json
import sys

import botocore.session
from botocore.validate import ParamValidator


def main() -> None:
    requests = json.load(sys.stdin)
    shape = botocore.session.get_session().get_service_model("ecs").operation_model("RegisterTaskDefinition")
    validator = ParamValidator()
    problems: dict[str, list[str]] = {}
    for label, params in requests.items():
        report = validator.validate(params, shape.input_shape)
        problems[label] = report.generate_report().splitlines() if report.has_errors() else []
    json.dump({"botocore": botocore.__version__, "problems": problems}, sys.stdout)


if __name__ == "__main__":
    main()
