"""Local servers that speak the AWS wire protocol, started and stopped by the AWS test fixtures."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from aiobotocore.awsrequest import AioAWSResponse
from botocore.awsrequest import HTTPHeaders

from tests.servicetools import free_port


def _bin(name: str) -> str:
    """A console script of the running interpreter's environment (the venv), else from PATH."""
    beside = Path(sys.executable).with_name(name)
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} is not installed; `make test` installs it with the dev extra")
    return found


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"{url} exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}"
            )
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return  # it answered: it is up
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    raise TimeoutError(f"{url} not up after {timeout} s:\n{log.read_text(errors='replace')[-3000:]}")


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"server exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}"
            )
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"port {port} not open after {timeout} s")


class Server:
    """A stand-in process in its own process group, with its output in a log file."""

    def __init__(self, argv: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            argv,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()


def start_moto(log_dir: Path, name: str = "moto", env: dict[str, str] | None = None) -> tuple[Server, str]:
    """``moto_server -H 127.0.0.1 -p PORT``; returns the server and its endpoint URL."""
    port = free_port()
    server = Server([_bin("moto_server"), "-H", "127.0.0.1", "-p", str(port)], log_dir / f"{name}.log", env)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_http(f"{url}/moto-api/", server.proc, server.log)
    except Exception:
        server.stop()
        raise
    return server, url


def _port_and_grpc_port(offset: int = 10000) -> tuple[int, int]:
    """A free port whose ``+ offset`` companion is free too (SeaweedFS derives some gRPC ports so)."""
    for _ in range(50):
        port = free_port()
        if port + offset <= 65535:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port + offset)) != 0:
                    return port, port + offset
    raise RuntimeError("no free port pair for SeaweedFS")


def start_seaweedfs(data_dir: Path, log_dir: Path, env: dict[str, str] | None = None) -> tuple[Server, str]:
    """``weed mini`` (master, volume, filer and S3 in one process) on free ports; returns the S3 URL.

    With AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY in ``env`` it makes them its one identity and checks
    every request's SigV4 signature (presigned URLs included); without them it allows anything.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    ports = {name: free_port() for name in ("s3", "master", "volume", "filer")}
    grpc = {name: free_port() for name in ("s3", "master", "volume", "filer")}
    admin, admin_grpc = _port_and_grpc_port()
    argv = [
        _bin("weed"),
        "mini",
        f"-dir={data_dir}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        *(f"-{name}.port={port}" for name, port in ports.items()),
        *(f"-{name}.port.grpc={port}" for name, port in grpc.items()),
        # Every listener on a free port or off: nothing on the defaults other stand-ins may hold.
        f"-admin.port={admin}",
        f"-admin.port.grpc={admin_grpc}",
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-webdav=false",
        "-master.telemetry=false",  # no network beyond 127.0.0.1
    ]
    server = Server(argv, log_dir / "seaweedfs.log", env)
    try:
        _wait_port(ports["s3"], server.proc, server.log, timeout=90)
    except Exception:
        server.stop()
        raise
    return server, f"http://127.0.0.1:{ports['s3']}"


@dataclass
class Request:
    """One HTTP request as a stand-in sees it."""

    method: str
    path: str  # with the query string, still URL-encoded
    headers: dict[str, str]  # lower-case names
    body: bytes


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    chunks: list[bytes] = field(default_factory=list)
    # Chunked transfer encoding, one HTTP chunk per item, each flushed: how AWS streams event frames.
    stream: bool = False


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked replies, as the SDKs expect
    server: _HttpServer

    def _serve(self) -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = bytearray()
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                body += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
        else:
            body = bytearray(self.rfile.read(int(headers.get("content-length") or 0)))
        reply = self.server.handler(Request(self.command, self.path, headers, bytes(body)))
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if reply.stream:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for chunk in reply.chunks:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            return
        data = b"".join(reply.chunks)
        if not any(name.lower() == "content-length" for name in reply.headers):  # HEAD keeps its own
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _serve

    def log_message(self, format: str, *args: object) -> None:
        pass  # the tests record what matters; no per-request noise


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, handler: Callable[[Request], Reply]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.handler = handler


class HttpStandIn:
    """An HTTP/1.1 server on 127.0.0.1 (a free port) in a thread of the test process, answering every
    request with ``handler``: a stand-in whose script the test changes while Echo's processes call it."""

    def __init__(self, handler: Callable[[Request], Reply]) -> None:
        self._server = _HttpServer(handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="http-standin", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def sdk_response(url: str, reply: Reply) -> AioAWSResponse:
    """``reply`` as the response object a botocore ``before-send`` handler returns: the SDK then parses
    it exactly as if it had come over the network."""
    return AioAWSResponse(url, reply.status, HTTPHeaders.from_dict(reply.headers), _Raw(url, reply.chunks))


class _Content:
    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks
        self._rest = b"".join(chunks)

    async def iter_chunks(self) -> AsyncIterator[tuple[bytes, bool]]:
        for chunk in self._chunks:
            yield chunk, True

    async def read(self, n: int = -1) -> bytes:
        data, self._rest = (self._rest, b"") if n < 0 else (self._rest[:n], self._rest[n:])
        return data


class _Raw:
    """The little of aiohttp's ClientResponse that aiobotocore reads."""

    def __init__(self, url: str, chunks: list[bytes]) -> None:
        self.url = url
        self.content = _Content(chunks)
        self._body = b"".join(chunks)

    async def read(self) -> bytes:
        return self._body

    async def __aenter__(self) -> _Raw:  # `async with body`: aiobotocore enters the response itself
        return self

    async def __aexit__(self, *_: object) -> None:
        pass

    def close(self) -> None:  # closing a stream early closes the response, as with aiohttp
        pass
