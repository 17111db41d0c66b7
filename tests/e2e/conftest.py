"""The whole local stack as separate processes: four gRPC services and the gateway."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest

from tests.conftest import require_model
from tests.e2e.auth import create_key
from tests.servicetools import (
    ServiceProcess,
    StallingProxy,
    free_port,
    start_gateway,
    start_grpc_service,
)

# The default models: the 135M test LLM is too weak to hold a conversation (it drifts into other
# languages the English voice cannot say), and Qwen 0.5B is fast enough on 2 cores.
TEST_ENV = {
    "ECHO_STT_MODEL": "whisper-tiny.en",
    "ECHO_LLM_MODEL": "qwen2.5-coder-0.5b",
    "ECHO_TTS_VOICE": "piper-joe",
    # The llm service logs each request's messages at DEBUG: tests read the context the model got.
    "ECHO_LLM_LOG_LEVEL": "DEBUG",
}


UNLIMITED = {
    f"ECHO_GATEWAY_{limit}": "0"
    for limit in (
        "SESSIONS_PER_USER",
        "TURNS_PER_MINUTE",
        "REQUESTS_PER_MINUTE",
        "AUDIO_S_PER_DAY",
        "SPEND_USD_PER_DAY",
    )
}


@dataclass
class Stack:
    base: str  # gateway http://host:port
    addresses: dict[str, str]
    processes: dict[str, ServiceProcess]

    @property
    def ws(self) -> str:
        return self.base.replace("http://", "ws://") + "/v1/voice"


@pytest.fixture(scope="session")
def stack(log_dir, tmp_path_factory):
    for model in (TEST_ENV["ECHO_STT_MODEL"], TEST_ENV["ECHO_LLM_MODEL"], TEST_ENV["ECHO_TTS_VOICE"]):
        require_model(model)
    data_dir = tmp_path_factory.mktemp("echo-data")
    env = {**TEST_ENV, "ECHO_DATA_DIR": str(data_dir), "ECHO_STORAGE_DATA_DIR": str(data_dir)}
    processes: dict[str, ServiceProcess] = {}
    addresses: dict[str, str] = {}
    try:
        for name in ("storage", "tts", "stt", "llm"):
            processes[name], addresses[name] = start_grpc_service(name, env, log_dir)
            if name == "storage":
                # Every test talks as this user unless it makes its own key: VoiceClient, `echo-voice`
                # subprocesses and auth_headers() read ECHO_API_KEY.
                os.environ["ECHO_API_KEY"], _ = create_key(addresses["storage"], "test-user")
        gateway_env = {f"ECHO_{n.upper()}_ADDR": a for n, a in addresses.items()}
        # Low temperature keeps replies short and on-topic; the assertions do not depend on wording.
        gateway_env |= {"ECHO_GATEWAY_TEMPERATURE": "0.2", "ECHO_GATEWAY_MAX_TOKENS": "60"}
        # The whole suite talks as one user, faster than a person: per-user limits are test_auth's.
        gateway_env |= UNLIMITED
        processes["gateway"], base = start_gateway(gateway_env, log_dir)
        yield Stack(base, addresses, processes)
    finally:
        os.environ.pop("ECHO_API_KEY", None)
        for proc in reversed(processes.values()):
            proc.stop()


@pytest.fixture()
def gateway_with(stack, log_dir):
    """Start an extra gateway whose addresses are overridden, e.g. one service pointed at a dead port."""
    started: list[ServiceProcess] = []

    def make(dead: tuple[str, ...] = (), env: dict[str, str] | None = None) -> str:
        gateway_env = {f"ECHO_{n.upper()}_ADDR": a for n, a in stack.addresses.items()}
        for name in dead:
            gateway_env[f"ECHO_{name.upper()}_ADDR"] = f"127.0.0.1:{free_port()}"  # nothing listens there
        gateway_env |= {"ECHO_GATEWAY_TEMPERATURE": "0.2", "ECHO_GATEWAY_MAX_TOKENS": "40", **UNLIMITED}
        gateway_env |= env or {}
        proc, base = start_gateway(gateway_env, log_dir, name=f"gateway-{len(started)}-{'-'.join(dead)}")
        started.append(proc)
        return base

    yield make
    for proc in started:
        proc.stop()


@pytest.fixture()
async def stalling():
    """Start StallingProxy servers in front of real services; they are stopped after the test."""
    started: list[StallingProxy] = []

    async def make(target: str, stalled: set[str] | None = None, port: int = 0) -> StallingProxy:
        proxy = await StallingProxy(target, stalled).start(port)
        started.append(proxy)
        return proxy

    yield make
    for proxy in started:
        await proxy.stop()
