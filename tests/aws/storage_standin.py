"""moto server prepared the way Echo's AWS storage expects it, for any test that needs it; and a
stand-in in front of it that answers chosen requests with AWS's own error replies."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import urllib.parse
import uuid
from dataclasses import dataclass
from pathlib import Path

from tests.aws.conftest import FAKE_CREDENTIALS, isolated_aws_env
from tests.aws.standins import HttpStandIn, Reply, Request, Server, start_moto, start_seaweedfs


def run_aws_init(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`echo-voice aws init`, run the way an operator runs it, in ``env``."""
    return subprocess.run(
        [sys.executable, "-m", "echo_voice.cli", "aws", "init"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _initialised(env: dict[str, str]) -> None:
    init = run_aws_init(env)
    assert init.returncode == 0, init.stdout + init.stderr
    assert "table echo-conversations: created" in init.stdout and "bucket echo-audio: created" in init.stdout


def aws_stand_in(log_dir: Path) -> tuple[object, dict[str, str]]:
    """moto server for DynamoDB and S3, with Echo's tables and bucket made by `echo-voice aws init`."""
    server, url = start_moto(log_dir, name="moto-storage")
    env = isolated_aws_env(url)
    try:
        _initialised(env)
    except BaseException:
        server.stop()
        raise
    return server, env


@dataclass
class Servers:
    servers: list[Server]

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.stop()


def seaweedfs_stand_in(log_dir: Path, data_dir: Path) -> tuple[Servers, dict[str, str]]:
    """DynamoDB on moto and S3 on SeaweedFS (real S3 semantics: SigV4 checked, SSE-S3 at rest), each
    named by its SDK endpoint variable, with Echo's tables and bucket made by `echo-voice aws init`."""
    started = Servers([])
    try:
        moto, moto_url = start_moto(log_dir, name="moto-dynamodb")
        started.servers.append(moto)
        weed, weed_url = start_seaweedfs(data_dir, log_dir, env=FAKE_CREDENTIALS)
        started.servers.append(weed)
        env = isolated_aws_env(AWS_ENDPOINT_URL_DYNAMODB=moto_url, AWS_ENDPOINT_URL_S3=weed_url)
        _initialised(env)
    except BaseException:
        started.stop()
        raise
    return started, env


# The error replies DynamoDB (JSON) and S3 (XML) send, by error code: (HTTP status, message).
_DYNAMODB_ERRORS = {
    "AccessDeniedException": (
        400,
        "User: arn:aws:sts::123456789012:assumed-role/echo-storage/task is not authorized to perform: "
        "{action} because no identity-based policy allows the {action} action",
    ),
    "ProvisionedThroughputExceededException": (
        400,
        "The level of configured provisioned throughput for the table was exceeded.",
    ),
    "ThrottlingException": (400, "Rate of requests exceeds the allowed throughput."),
    "UnrecognizedClientException": (400, "The security token included in the request is invalid."),
}
_S3_ERRORS = {
    "AccessDenied": (403, "Access Denied"),
    "SlowDown": (503, "Please reduce your request rate."),
    "InvalidAccessKeyId": (403, "The AWS Access Key Id you provided does not exist in our records."),
}


def operation(request: Request) -> str:
    """The AWS action a request performs, e.g. dynamodb:PutItem or s3:GetObject (path-style S3)."""
    target = request.headers.get("x-amz-target", "")
    if target.startswith("DynamoDB_"):
        return "dynamodb:" + target.split(".", 1)[1]
    path = request.path.split("?", 1)[0].strip("/")
    has_key = "/" in path
    names = {"GET": "GetObject", "PUT": "PutObject", "HEAD": "HeadObject", "DELETE": "DeleteObject"}
    if not has_key:
        names = {"GET": "ListObjects", "PUT": "CreateBucket", "HEAD": "HeadBucket", "DELETE": "DeleteBucket"}
    return "s3:" + names.get(request.method, request.method)


class FaultyAws:
    """An HTTP stand-in in front of moto: every request goes through to moto, except those whose action
    is in ``faults``, which get the error reply AWS sends for that code. moto itself neither denies
    nor throttles; this is how access denied, throttling and revoked keys reach Echo over the wire."""

    def __init__(self, upstream: str) -> None:
        self.upstream = urllib.parse.urlsplit(upstream)
        self.faults: dict[str, str] = {}  # action -> AWS error code
        self.seen: list[str] = []
        self._server = HttpStandIn(self.handle)
        self.url = self._server.url

    def stop(self) -> None:
        self._server.stop()

    def handle(self, request: Request) -> Reply:
        action = operation(request)
        self.seen.append(action)
        code = self.faults.get(action)
        if code is None:
            return self._forward(request)
        request_id = uuid.uuid4().hex
        if action.startswith("dynamodb:"):
            status, message = _DYNAMODB_ERRORS[code]
            body = {
                "__type": f"com.amazonaws.dynamodb.v20120810#{code}",
                "message": message.format(action=action),
            }
            headers = {"content-type": "application/x-amz-json-1.0", "x-amzn-requestid": request_id}
            return Reply(status, headers, [json.dumps(body).encode()])
        status, message = _S3_ERRORS[code]
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{message}</Message>"
            f"<RequestId>{request_id}</RequestId><HostId>echo-test</HostId></Error>"
        )
        return Reply(
            status, {"content-type": "application/xml", "x-amz-request-id": request_id}, [xml.encode()]
        )

    def _forward(self, request: Request) -> Reply:
        connection = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=30)
        try:
            headers = {k: v for k, v in request.headers.items() if k not in _HOP_BY_HOP}
            # The body is forwarded decoded: say so, rather than a transfer encoding it no longer has.
            if request.body or request.method in ("PUT", "POST"):
                headers["content-length"] = str(len(request.body))
            connection.request(request.method, request.path, body=request.body or None, headers=headers)
            response = connection.getresponse()
            body = response.read()
            kept = {k: v for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP}
            return Reply(response.status, kept, [body])
        finally:
            connection.close()


_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "content-length"}
