"""examples/langchain_agent.py end to end: retrieval alone, and an agent against a fake OpenAI-compatible server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

import mediafixtures

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "langchain_agent.py"
pytest.importorskip("langchain.agents")
pytest.importorskip("langchain_openai")


class _FakeChat(BaseHTTPRequestHandler):
    """POST /v1/chat/completions: first asks for the search tool, then answers from what it was shown."""

    requests: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append(body)
        tools = body.get("tools") or []
        if not any(m["role"] == "tool" for m in body["messages"]):
            call = {
                "id": "call_1",
                "type": "function",
                "function": {"name": tools[0]["function"]["name"], "arguments": json.dumps({"query": "shapes"})},
            }
            message: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": [call]}
        else:
            images = sum(
                1
                for m in body["messages"]
                if isinstance(m.get("content"), list)
                for part in m["content"]
                if part.get("type") == "image_url"
            )
            message = {"role": "assistant", "content": f"ANSWER: I looked at {images} images."}
        payload = {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    root = tmp_path_factory.mktemp("lc-example")
    pdf = mediafixtures.make_pdf(root / "deck.pdf", n_pages=2, size=(150, 200))
    video = mediafixtures.make_video(root / "clip.mp4", seconds=2.0)
    return [str(pdf), str(video)]


def _run(args: list[str], env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("VLM2VEC_CHAT_", "OPENAI_"))}
    clean["VLM2VEC_CACHE"] = str(tmp_path / "cache")
    return subprocess.run(
        [sys.executable, str(EXAMPLE), *args, "--db", str(tmp_path / "db"), "--clip-seconds", "1", "-k", "2"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_without_a_chat_model_it_retrieves_and_says_so(tiny_model_dir: Path, files: list[str], tmp_path: Path) -> None:
    done = _run(["a red shape", "--model", str(tiny_model_dir), "--device", "cpu", "--files", *files], {}, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "No chat model configured" in done.stdout
    assert "4 pages and clips indexed (4 new)" in done.stdout
    assert "1. " in done.stdout and "2. " in done.stdout and "score" in done.stdout


def test_with_an_openai_compatible_endpoint_the_agent_answers_from_the_images(
    tiny_model_dir: Path, files: list[str], tmp_path: Path
) -> None:
    _FakeChat.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeChat)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = {
            "VLM2VEC_CHAT_BASE_URL": f"http://127.0.0.1:{server.server_port}/v1",
            "VLM2VEC_CHAT_MODEL": "fake-vlm",
            "VLM2VEC_CHAT_API_KEY": "sk-test",
        }
        args = ["what shapes are shown?", "--model", str(tiny_model_dir), "--device", "cpu", "--files", *files]
        done = _run(args, env, tmp_path)
    finally:
        server.shutdown()
    assert done.returncode == 0, done.stderr
    assert "ANSWER: I looked at 2 images." in done.stdout
    assert len(_FakeChat.requests) == 2
    tool_message = next(m for m in _FakeChat.requests[1]["messages"] if m["role"] == "tool")
    assert "score" in str(tool_message["content"])
