"""Local servers that speak the AWS wire protocol, started and stopped by the AWS test fixtures."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

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


def start_seaweedfs(data_dir: Path, log_dir: Path) -> tuple[Server, str]:
    """``weed mini`` (master, volume, filer and S3 in one process) on free ports; returns the S3 URL."""
    s3_port, master, volume, filer = free_port(), free_port(), free_port(), free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        _bin("weed"),
        "mini",
        f"-dir={data_dir}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-s3.port={s3_port}",
        f"-master.port={master}",
        f"-volume.port={volume}",
        f"-filer.port={filer}",
        "-admin.ui=false",
        "-webdav=false",
    ]
    server = Server(argv, log_dir / "seaweedfs.log")
    try:
        _wait_port(s3_port, server.proc, server.log, timeout=90)
    except Exception:
        server.stop()
        raise
    return server, f"http://127.0.0.1:{s3_port}"
