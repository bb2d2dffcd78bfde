"""A real `vlm2vec serve` process on 127.0.0.1 over the tiny checkpoint."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

API_KEYS = ("test-key-1", "test-key-2")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    def __init__(self, model_dir: Path, port: int, log: Path, *extra: str) -> None:
        self.model_dir, self.port, self.log, self.extra = model_dir, port, log, extra
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90.0) -> Server:
        env = {**os.environ, "VLM2VEC_API_KEYS": ",".join(API_KEYS), "HF_HUB_OFFLINE": "1"}
        cmd = [
            sys.executable,
            "-m",
            "vlm2vec_core.cli",
            "serve",
            "--model",
            str(self.model_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            *self.extra,
        ]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server did not come up in {timeout} s:\n{self.log.read_text()[-3000:]}")

    def signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture(scope="session")
def server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tiny_model_dir, free_port(), tmp_path_factory.mktemp("server") / "server.log").start()
    yield srv
    srv.stop()


@pytest.fixture
def fresh_server(tiny_model_dir: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A server of the test's own (it may be killed), built by calling the fixture with extra CLI flags."""
    started: list[Server] = []

    def make(*extra: str, port: int | None = None) -> Server:
        srv = Server(tiny_model_dir, port or free_port(), tmp_path / "server.log", *extra).start()
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()
