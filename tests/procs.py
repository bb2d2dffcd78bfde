"""Server processes for tests and benchmarks: started on loopback, waited for, stopped cleanly."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Service:
    """``cmd`` as a process whose output goes to ``log``; ready once ``ready_url`` answers 200."""

    def __init__(self, cmd: list[str], ready_url: str, log: Path, env: dict[str, str] | None = None) -> None:
        self.cmd, self.ready_url, self.log, self.env = cmd, ready_url, log, env
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90.0) -> Service:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.cmd[0]} exited with {self.process.returncode}:\n{self._tail()}")
            try:
                if httpx.get(self.ready_url, timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.ready_url} did not answer in {timeout} s:\n{self._tail()}")

    def signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def _tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


class ChromaServer(Service):
    """A real ``chroma run`` on loopback."""

    def __init__(self, path: Path, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        exe = Path(sys.executable).with_name("chroma")
        cmd = [str(exe), "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(self.port)]
        super().__init__(cmd, f"{self.url}/api/v2/heartbeat", log)
