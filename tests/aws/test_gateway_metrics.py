"""The gateway's ActiveSessions metric (gateway/cloudwatch_metrics.py): a real gateway process, real
WebSocket sessions, and the datapoints read back from a moto server through the real SDK, under exactly
the namespace, name and dimension deploy/terraform's scaling policy reads."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
import websockets

from gateway.cloudwatch_metrics import DIMENSION_NAME, METRIC_NAME, publishing
from gateway.config import GatewaySettings
from services.common.config import ConfigError
from tests.e2e.auth import auth_headers, create_key
from tests.servicetools import ServiceProcess, free_port, start_gateway, start_grpc_service

NAMESPACE = "Echo"
DEADLINE_S = 90.0  # generous: a condition that holds at all holds long before this on a loaded machine


@dataclass
class Gateway:
    process: ServiceProcess
    url: str
    service_name: str
    api_key: str

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/v1/voice"


def _gateway_env(service_name: str, **extra: str) -> dict[str, str]:
    return {
        "ECHO_GATEWAY_METRICS_NAMESPACE": NAMESPACE,
        "ECHO_GATEWAY_METRICS_SERVICE_NAME": service_name,
        "ECHO_GATEWAY_METRICS_INTERVAL_S": "0.5",
        # Nothing listens there: these sessions never start a turn, so the services are never called.
        **{f"ECHO_{svc}_ADDR": f"127.0.0.1:{free_port()}" for svc in ("STT", "LLM", "TTS")},
        **extra,
    }


@pytest.fixture(scope="module")
def key_storage(log_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A local storage service, only to check the sessions' API key: (its address, the key)."""
    data_dir = tmp_path_factory.mktemp("metrics-storage")
    process, address = start_grpc_service("storage", {"ECHO_DATA_DIR": str(data_dir)}, log_dir)
    key, _ = create_key(address, "metrics-user")
    yield address, key
    process.stop()


@pytest.fixture
def start_metrics_gateway(
    aws_env: dict[str, str], log_dir: Path, key_storage: tuple[str, str]
) -> Iterator[Any]:
    """Starts `python -m gateway` processes publishing to moto (aws_env); stops them afterwards."""
    started: list[ServiceProcess] = []

    def start(**extra: str) -> Gateway:
        name = f"echo-test-{uuid.uuid4().hex[:8]}-gateway"
        env = _gateway_env(name, ECHO_STORAGE_ADDR=key_storage[0], **extra)
        process, url = start_gateway(env, log_dir, name=name)
        started.append(process)
        return Gateway(process, url, name, key_storage[1])

    yield start
    for process in started:
        process.stop()


def _cloudwatch(aws_env: dict[str, str]) -> Any:
    return boto3.client(
        "cloudwatch", region_name=aws_env["AWS_REGION"], endpoint_url=aws_env["AWS_ENDPOINT_URL"]
    )


def _newest_second(cloudwatch: Any, service_name: str) -> dict[str, Any] | None:
    """The newest 1-second bucket of the gateway's datapoints (moto keeps each datapoint as sent)."""
    now = datetime.now(UTC)
    found = cloudwatch.get_metric_statistics(
        Namespace=NAMESPACE,
        MetricName=METRIC_NAME,
        Dimensions=[{"Name": DIMENSION_NAME, "Value": service_name}],
        StartTime=now - timedelta(minutes=10),
        EndTime=now + timedelta(minutes=1),
        Period=1,
        Statistics=["Minimum", "Maximum", "SampleCount"],
    )["Datapoints"]
    return max(found, key=lambda d: d["Timestamp"]) if found else None


async def _until_published(cloudwatch: Any, gateway: Gateway, sessions: int) -> dict[str, Any]:
    """Waits until every datapoint of the newest second says ``sessions``; returns that bucket."""
    deadline = time.monotonic() + DEADLINE_S
    newest = None
    while time.monotonic() < deadline:
        newest = await asyncio.to_thread(_newest_second, cloudwatch, gateway.service_name)
        if newest and newest["Minimum"] == newest["Maximum"] == sessions:
            return newest
        await asyncio.sleep(0.25)
    raise AssertionError(
        f"ActiveSessions never settled at {sessions}; newest datapoints: {newest}\n"
        + gateway.process.log_tail()
    )


@asynccontextmanager
async def _sessions(gateway: Gateway, count: int) -> AsyncIterator[list[Any]]:
    headers = auth_headers(gateway.api_key)
    opened = [await websockets.connect(gateway.ws_url, additional_headers=headers) for _ in range(count)]
    try:
        yield opened
    finally:
        for ws in opened:
            await ws.close()


async def test_active_sessions_are_published_and_follow_the_open_websockets(
    start_metrics_gateway: Any, aws_env: dict[str, str]
) -> None:
    gateway = await asyncio.to_thread(start_metrics_gateway)
    cloudwatch = _cloudwatch(aws_env)
    # Published from the start, before anyone connects.
    idle = await _until_published(cloudwatch, gateway, 0)
    assert idle["Unit"] == "Count"

    async with _sessions(gateway, 3) as opened:
        await _until_published(cloudwatch, gateway, 3)
        for ws in opened[:2]:
            await ws.close()
        await _until_published(cloudwatch, gateway, 1)
        # The one left is a live session: it still answers (a bad message gets a protocol error).
        await opened[2].send(json.dumps({"type": "no.such.message"}))
        reply = json.loads(await asyncio.wait_for(opened[2].recv(), DEADLINE_S))
        assert reply["type"] == "error"
    await _until_published(cloudwatch, gateway, 0)

    # Exactly the metric the Terraform scaling policy reads: one dimension, ServiceName.
    metrics = cloudwatch.list_metrics(Namespace=NAMESPACE, MetricName=METRIC_NAME)["Metrics"]
    ours = [m for m in metrics if {"Name": DIMENSION_NAME, "Value": gateway.service_name} in m["Dimensions"]]
    assert ours == [
        {
            "Namespace": NAMESPACE,
            "MetricName": METRIC_NAME,
            "Dimensions": [{"Name": DIMENSION_NAME, "Value": gateway.service_name}],
        }
    ]


async def test_unreachable_cloudwatch_does_not_touch_the_sessions(start_metrics_gateway: Any) -> None:
    # CloudWatch at a port where nothing listens: every put fails, and only a warning says so.
    dead = f"http://127.0.0.1:{free_port()}"
    gateway = await asyncio.to_thread(start_metrics_gateway, AWS_ENDPOINT_URL=dead)
    async with _sessions(gateway, 2) as opened:
        for ws in opened:
            await ws.send(json.dumps({"type": "no.such.message"}))
            assert json.loads(await asyncio.wait_for(ws.recv(), DEADLINE_S))["type"] == "error"
        deadline = time.monotonic() + DEADLINE_S
        while "could not publish Echo/ActiveSessions" not in gateway.process.log_tail(200):
            assert time.monotonic() < deadline, gateway.process.log_tail()
            await asyncio.sleep(0.25)
        # Still serving after the failures.
        async with httpx.AsyncClient(timeout=5.0) as http:
            assert (await http.get(f"{gateway.url}/healthz")).status_code == 200
        await opened[0].send(json.dumps({"type": "no.such.message"}))
        assert json.loads(await asyncio.wait_for(opened[0].recv(), DEADLINE_S))["type"] == "error"


def test_a_bad_interval_stops_the_gateway_with_a_clear_error(aws_env: dict[str, str], log_dir: Path) -> None:
    env = _gateway_env("echo-test-bad-gateway", ECHO_GATEWAY_METRICS_INTERVAL_S="0")
    env |= {"ECHO_GATEWAY_HOST": "127.0.0.1", "ECHO_GATEWAY_PORT": str(free_port())}
    process = ServiceProcess("gateway", env, log_dir, name="gateway-bad-interval").start()
    try:
        assert process.proc is not None
        try:
            code = process.proc.wait(DEADLINE_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the gateway started with a zero metrics interval:\n{process.log_tail()}")
        assert code != 0
        assert "ECHO_GATEWAY_METRICS_INTERVAL_S=0.0: must be above 0 seconds" in process.log_tail(200)
    finally:
        process.stop()


async def test_nothing_is_published_unless_a_namespace_is_set() -> None:
    # The local default: no namespace, no publisher (and no AWS call at all).
    assert GatewaySettings().metrics_namespace == ""
    async with publishing(GatewaySettings(), lambda: 7) as publisher:
        assert publisher is None
    with pytest.raises(ConfigError, match="SERVICE_NAME is empty"):
        async with publishing(
            GatewaySettings(metrics_namespace=NAMESPACE, metrics_service_name=""), lambda: 0
        ):
            pass
