"""Helpers for the CLI tests: the CLI as a real subprocess, a small corpus, a `chroma run` server, a fake chat model."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from mediafixtures import make_frameless_video, make_image, make_pdf, make_video

CHAT_ENV = ("VLM2VEC_CHAT_BASE_URL", "VLM2VEC_CHAT_MODEL", "VLM2VEC_CHAT_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_KEY")
PDF_PAGES = 4
VIDEO_CLIPS = 2  # a 4 s video cut into 2 s clips


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CHAT_ENV}
    return {**env, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1", **extra}


def run_cli(
    *args: str | Path, cwd: Path | None = None, timeout: float = 240, **env: str
) -> subprocess.CompletedProcess[str]:
    """``python -m vlm2vec_core.cli ARGS`` to completion, output captured as text."""
    cmd = [sys.executable, "-m", "vlm2vec_core.cli", *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, env=cli_env(**env), capture_output=True, text=True, timeout=timeout)


def store_args(tmp: Path) -> list[str]:
    return ["--db", str(tmp / "db")]


def model_args(model_dir: Path, tmp: Path) -> list[str]:
    return ["--model", str(model_dir), "--cache-dir", str(tmp / "cache")]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_corpus(root: Path) -> dict[str, Path]:
    """Good files (a PDF, a video, an image, one in a subfolder) and bad ones among them."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "sub").mkdir(exist_ok=True)
    files = {
        "pdf": make_pdf(root / "report.pdf", PDF_PAGES, size=(306, 396)),
        "video": make_video(root / "sub" / "talk.mp4", seconds=4.0, fps=5),
        "image": make_image(root / "photo.png", seed=3),
        "broken_pdf": root / "broken.pdf",
        "empty_image": root / "empty.png",
        "frameless": make_frameless_video(root / "frameless.mp4"),
    }
    files["broken_pdf"].write_bytes(b"this is not a PDF at all\n")
    files["empty_image"].write_bytes(b"")
    return files


GOOD_ITEMS = PDF_PAGES + VIDEO_CLIPS + 1
BAD_NAMES = ("broken.pdf", "empty.png", "frameless.mp4")


@dataclass
class Indexed:
    root: Path  # the corpus folder
    tmp: Path  # --db and --cache-dir live here
    files: dict[str, Path]
    first: subprocess.CompletedProcess[str]  # `index --strict` over the corpus


@pytest.fixture(scope="session")
def indexed(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Indexed:
    """The corpus indexed once by the CLI (``--strict``: it exits 1 because of the bad files)."""
    tmp = tmp_path_factory.mktemp("cli-indexed")
    files = make_corpus(tmp / "corpus")
    first = run_cli(
        "index", tmp / "corpus", *store_args(tmp), *model_args(tiny_model_dir, tmp),
        "--dpi", "72", "--clip-seconds", "2", "--strict",
    )  # fmt: skip
    return Indexed(tmp / "corpus", tmp, files, first)


class ChromaServer:
    def __init__(self, path: Path, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        exe = Path(sys.executable).with_name("chroma")
        cmd = [str(exe), "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(self.port)]
        self.log = log
        with open(log, "ab") as out:
            self.process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)

    def wait(self, timeout: float = 60.0) -> ChromaServer:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"chroma exited with {self.process.returncode}:\n{self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/api/v2/heartbeat", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"chroma did not answer its heartbeat in {timeout} s:\n{self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def chroma_server(tmp_path: Path) -> Iterator[ChromaServer]:
    if not Path(sys.executable).with_name("chroma").exists():
        pytest.skip("the `chroma` executable is not installed beside this Python")
    server = ChromaServer(tmp_path / "chroma-data", tmp_path / "chroma.log").wait()
    yield server
    server.stop()


@dataclass
class FakeChat:
    url: str
    answer: str
    status: int = 200
    requests: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def fake_chat() -> Iterator[FakeChat]:
    """An OpenAI-compatible ``/v1/chat/completions`` on 127.0.0.1 that records requests and answers a canned text."""
    state = FakeChat(url="", answer="The red circle is on page 1 of report.pdf. [canned-answer-7f3a]")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            state.requests.append(
                {"path": self.path, "authorization": self.headers.get("Authorization"), "body": json.loads(body)}
            )
            reply: dict[str, Any]
            if state.status == 200:
                reply = {
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": state.answer}}],
                }
            else:
                reply = {"error": {"message": "the fake model is down"}}
            data = json.dumps(reply).encode()
            self.send_response(state.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    yield state
    server.shutdown()
    server.server_close()
