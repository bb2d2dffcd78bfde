"""`vlm2vec ask`: the answer of an OpenAI-compatible chat model over the hit images, or the retrieval alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from clihelp import CHAT_ENV, Indexed, run_cli, store_args

from fakechat import FakeChat
from vlm2vec_core.apps import cli

QUESTION = "Which page shows the red circle?"


def test_answer_from_a_chat_model_configured_by_the_environment(
    indexed: Indexed, tiny_model_dir: Path, fake_chat: FakeChat
) -> None:
    result = run_cli(
        "ask", QUESTION, "-k", "3", *store_args(indexed.tmp), "--model", tiny_model_dir,
        VLM2VEC_CHAT_BASE_URL=fake_chat.url, VLM2VEC_CHAT_MODEL="fake-vlm", VLM2VEC_CHAT_API_KEY="sk-test",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert fake_chat.answer in result.stdout
    table = result.stdout.split(fake_chat.answer)[0].strip().splitlines()
    assert table[0].split() == ["#", "score", "type", "where", "file"] and len(table) == 4  # the retrieval too

    (request,) = fake_chat.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["authorization"] == "Bearer sk-test"
    body = request["body"]
    assert body["model"] == "fake-vlm"
    user = [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
    texts = [part["text"] for part in user if part["type"] == "text"]
    urls = [part["image_url"]["url"] for part in user if part["type"] == "image_url"]
    assert any(QUESTION in text for text in texts)
    assert sum(text.startswith(("[1]", "[2]", "[3]")) for text in texts) == 3  # one label per hit
    assert len(urls) >= 3 and all(url.startswith("data:image/") and ";base64," in url for url in urls)
    assert len(set(urls)) == len(urls)


def test_without_a_chat_model_it_says_so_and_shows_the_retrieval(
    indexed: Indexed, tiny_encoder: Any, monkeypatch: Any, capsys: Any
) -> None:
    for name in CHAT_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(cli, "_encoder", lambda args: tiny_encoder)
    assert cli.main(["ask", QUESTION, "-k", "2", *store_args(indexed.tmp)]) == 0
    out = capsys.readouterr().out
    assert "no chat model configured" in out
    assert "VLM2VEC_CHAT_BASE_URL" in out and "--chat-base-url" in out
    lines = out.split("no chat model configured")[0].strip().splitlines()
    assert lines[0].split() == ["#", "score", "type", "where", "file"] and len(lines) == 3


def test_flags_configure_the_chat_model_and_a_failure_is_one_line(
    indexed: Indexed, tiny_encoder: Any, fake_chat: FakeChat, monkeypatch: Any, capsys: Any
) -> None:
    for name in CHAT_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(cli, "_encoder", lambda args: tiny_encoder)
    flags = ["--chat-base-url", fake_chat.url, "--chat-model", "flag-model", "--type", "page", "-k", "1"]
    assert cli.main(["ask", QUESTION, *flags, *store_args(indexed.tmp)]) == 0
    assert fake_chat.answer in capsys.readouterr().out
    assert fake_chat.requests[-1]["body"]["model"] == "flag-model"
    assert fake_chat.requests[-1]["authorization"] is None  # no key configured: no header

    fake_chat.status = 503
    assert cli.main(["ask", QUESTION, *flags, *store_args(indexed.tmp)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: chat model at") and "503" in err[0]


@pytest.mark.parametrize("kind", ["page", "image"])
def test_a_hit_whose_image_is_gone_is_sent_as_its_label(indexed: Indexed, tmp_path: Path, kind: str) -> None:
    from vlm2vec_core.apps.chat import build_messages
    from vlm2vec_core.index.store import Hit

    hit = Hit("x", 0.5, {"kind": kind, "file_name": "a.pdf", "page": 1, "image_path": str(tmp_path / "gone.png")})
    content = build_messages("q?", [hit])[-1]["content"]
    assert [p["type"] for p in content] == ["text", "text"]
