"""Fixtures of the CLI tests (helpers live in clihelp.py: conftest modules of different folders clash)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from clihelp import Indexed, make_corpus, model_args, run_cli, store_args

from fakechat import FakeChat
from procs import ChromaServer


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


@pytest.fixture
def chroma_server(tmp_path: Path) -> Iterator[ChromaServer]:
    if not Path(sys.executable).with_name("chroma").exists():
        pytest.skip("the `chroma` executable is not installed beside this Python")
    server = ChromaServer(tmp_path / "chroma-data", tmp_path / "chroma.log")
    server.start(timeout=60)
    yield server
    server.stop()


@pytest.fixture
def fake_chat() -> Iterator[FakeChat]:
    """An OpenAI-compatible chat endpoint on 127.0.0.1 that records requests and answers a canned text."""
    with FakeChat(answer="The red circle is on page 1 of report.pdf. [canned-answer-7f3a]") as chat:
        yield chat
