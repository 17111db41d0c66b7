"""`echo-voice run`: start the four services and the gateway, wait until ready, stop them together."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time

import grpc
import httpx

from echo.v1 import storage_pb2_grpc
from echo_voice.credentials import credentials_path
from echo_voice.first_run import local_key
from gateway.config import load as load_gateway
from services.common.healthcheck import check
from services.common.service_auth import TOKEN_ENV, TOKEN_FILE_ENV, ensure_local_token, service_channel

SERVICES = ("storage", "tts", "stt", "llm")
DEFAULT_PORTS = {"stt": 50051, "llm": 50052, "tts": 50053, "storage": 50054}
_pipes: set[asyncio.Task[None]] = set()  # the loop keeps only weak references to tasks


def _addresses() -> dict[str, tuple[str, int]]:
    """Each service's bind address, read the way the services read it (ECHO_<SVC>_HOST/PORT)."""
    return {
        name: (
            os.environ.get(f"ECHO_{name.upper()}_HOST", "127.0.0.1"),
            int(os.environ.get(f"ECHO_{name.upper()}_PORT", port)),
        )
        for name, port in DEFAULT_PORTS.items()
    }


async def _pipe(name: str, stream: asyncio.StreamReader) -> None:
    width = max(len(n) for n in (*SERVICES, "gateway"))
    while line := await stream.readline():
        sys.stdout.write(f"{name:>{width}} | {line.decode(errors='replace')}")
        sys.stdout.flush()


async def _start(name: str, module: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    task = asyncio.get_running_loop().create_task(_pipe(name, proc.stdout))
    _pipes.add(task)
    task.add_done_callback(_pipes.discard)
    return proc


def _died(procs: dict[str, asyncio.subprocess.Process]) -> str | None:
    """The first child that has exited, as a line for the user; None while all are running."""
    for name, proc in procs.items():
        if proc.returncode is not None:
            return f"the {name} process exited unexpectedly (exit code {proc.returncode}); see its log above"
    return None


async def _wait_ready(
    url: str, procs: dict[str, asyncio.subprocess.Process], stop: asyncio.Event
) -> str | None:
    """Poll the gateway's /readyz (it answers 200 only when all four services are SERVING) until it
    says ready; returns why it never will (a child died), or None once ready or when asked to stop."""
    async with httpx.AsyncClient(timeout=2.0) as http:
        while not stop.is_set():
            if (died := _died(procs)) is not None:
                return died
            try:
                if (await http.get(url)).status_code == 200:
                    return None
            except httpx.HTTPError:
                pass  # not listening yet
            await asyncio.sleep(0.3)
    return None


async def run_stack() -> int:
    """Start everything, print the URLs once the gateway is ready, and run until SIGINT/SIGTERM (exit
    0) or until a child dies (exit 1, naming it). Every child is stopped before returning."""
    addresses = _addresses()
    gateway = load_gateway()
    # The service credential every child's gRPC calls carry: ECHO_SERVICE_TOKEN, else the one kept in
    # the user's config directory (created on the first run), so CLI commands can read it too.
    token = ensure_local_token()
    env = {k: v for k, v in os.environ.items() if k != TOKEN_FILE_ENV}
    env |= {"PYTHONUNBUFFERED": "1", TOKEN_ENV: token}
    for name, (host, port) in addresses.items():
        connect_host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        env.setdefault(f"ECHO_{name.upper()}_ADDR", f"{connect_host}:{port}")
    procs: dict[str, asyncio.subprocess.Process] = {}
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    started = time.monotonic()
    try:
        for name in SERVICES:
            procs[name] = await _start(name, f"services.{name}", env)
            print(f"Echo: started {name} (pid {procs[name].pid})", flush=True)
        print("Echo: loading models (first start takes a little while)...", flush=True)
        pending = set(SERVICES)
        while pending and not stop.is_set():
            if (died := _died(procs)) is not None:
                print(f"Echo: {died}", flush=True)
                return 1
            for name in list(pending):
                if await check(env[f"ECHO_{name.upper()}_ADDR"], timeout=0.5):
                    pending.discard(name)
                    print(f"Echo: {name} ready ({time.monotonic() - started:.1f} s)", flush=True)
            await asyncio.sleep(0.3)
        if stop.is_set():
            return 130
        procs["gateway"] = await _start("gateway", "gateway", env)
        print(f"Echo: started gateway (pid {procs['gateway'].pid})", flush=True)
        connect_host = "127.0.0.1" if gateway.host in ("0.0.0.0", "") else gateway.host
        if (
            died := await _wait_ready(f"http://{connect_host}:{gateway.port}/readyz", procs, stop)
        ) is not None:
            print(f"Echo: {died}", flush=True)
            return 1
        if stop.is_set():
            return 130
        try:
            async with service_channel(env["ECHO_STORAGE_ADDR"], token=token) as channel:
                key, created = await local_key(storage_pb2_grpc.StorageStub(channel))
        except grpc.aio.AioRpcError as e:
            print(f"Echo: could not get the local user's API key from storage: {e.details()}", flush=True)
            return 1
        if created:
            print(f"Echo: created an API key for the user 'local', saved in {credentials_path()}", flush=True)
        base = f"{gateway.host}:{gateway.port}"
        print(
            f"\nEcho is up in {time.monotonic() - started:.1f} s.\n"
            f"  Web voice client:  http://{base}/?token={key}\n"
            f"  Voice WebSocket:   ws://{base}/v1/voice\n"
            f"  Conversations API: http://{base}/v1/conversations\n"
            f"  Readiness:         http://{base}/readyz\n"
            f"  Try:               echo-voice talk some.wav   |   echo-voice chat   (they use that key)\n"
            "Press Ctrl-C to stop.\n",
            flush=True,
        )
        waiters = [asyncio.create_task(p.wait()) for p in procs.values()]
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait([*waiters, stopper], return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        for waiter in waiters:
            waiter.cancel()
        if not stop.is_set() and (died := _died(procs)) is not None:
            print(f"Echo: {died}; stopping everything", flush=True)
            return 1
        return 0
    finally:
        print("Echo: stopping...", flush=True)
        for proc in procs.values():
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        print("Echo: stopped.", flush=True)
