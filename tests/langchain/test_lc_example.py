"""examples/langchain_agent.py end to end: retrieval alone, and an agent against a fake OpenAI-compatible server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import mediafixtures
from fakechat import FakeChat

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "langchain_agent.py"
pytest.importorskip("langchain.agents")
pytest.importorskip("langchain_openai")


def _agent_reply(body: dict[str, Any]) -> dict[str, Any]:
    """First ask for the search tool, then answer from what the tool showed."""
    tools = body.get("tools") or []
    if not any(m["role"] == "tool" for m in body["messages"]):
        call = {
            "id": "call_1",
            "type": "function",
            "function": {"name": tools[0]["function"]["name"], "arguments": json.dumps({"query": "shapes"})},
        }
        return {"role": "assistant", "content": None, "tool_calls": [call]}
    images = sum(
        1
        for m in body["messages"]
        if isinstance(m.get("content"), list)
        for part in m["content"]
        if part.get("type") == "image_url"
    )
    return {"role": "assistant", "content": f"ANSWER: I looked at {images} images."}


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
    with FakeChat(reply=_agent_reply) as chat:
        env = {"VLM2VEC_CHAT_BASE_URL": chat.url, "VLM2VEC_CHAT_MODEL": "fake-vlm", "VLM2VEC_CHAT_API_KEY": "sk-test"}
        args = ["what shapes are shown?", "--model", str(tiny_model_dir), "--device", "cpu", "--files", *files]
        done = _run(args, env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "ANSWER: I looked at 2 images." in done.stdout
    assert len(chat.requests) == 2
    tool_message = next(m for m in chat.requests[1]["body"]["messages"] if m["role"] == "tool")
    assert "score" in str(tool_message["content"])
