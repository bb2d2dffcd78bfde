"""Fixtures of the search page's tests: a small indexed corpus, `vlm2vec ui` started as the real CLI on
127.0.0.1, an app over an empty index, and Debian's headless Chromium driven by Playwright (never a browser
download: .ci/run installs the `chromium` package)."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from uihelp import ANSWER, CHAT_ENV, CHROMIUM, CHROMIUM_ARGS, App, Corpus, in_process_app

from fakechat import FakeChat
from mediafixtures import make_image, make_pdf, make_video
from procs import Service, free_port


@pytest.fixture(scope="session")
def corpus(tiny_encoder: Any, tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    """Two PDFs in docs/, a 4 s video (two 2 s clips) and an image in media/, indexed with the tiny model."""
    from vlm2vec_core.index.indexer import index_paths
    from vlm2vec_core.index.store import ChromaStore

    tmp = tmp_path_factory.mktemp("ui-corpus")
    root = tmp / "corpus"
    (root / "docs").mkdir(parents=True)
    (root / "media").mkdir()
    files = {
        "report": make_pdf(root / "docs" / "report.pdf", 3, size=(306, 396)),
        "notes": make_pdf(root / "docs" / "notes.pdf", 2, size=(306, 396), seed=5),
        "video": make_video(root / "media" / "talk.mp4", seconds=4.0, fps=10),
        "photo": make_image(root / "media" / "photo.png", seed=3),
    }
    store = ChromaStore.open(db=tmp / "db")
    report = index_paths([root], tiny_encoder, store, cache_dir=tmp / "cache", dpi=72, clip_seconds=2)
    assert not report.errors, report.errors
    return Corpus(root, tmp / "db", files, store.count())


@pytest.fixture(scope="session")
def service(corpus: Corpus, tiny_encoder: Any) -> Any:
    """The same search as the app's, in this process: what the page must show, in this order."""
    from vlm2vec_core.apps.service import SearchService
    from vlm2vec_core.index.store import ChromaStore

    return SearchService(tiny_encoder, ChromaStore.open(db=corpus.db))


@pytest.fixture(scope="session")
def chat() -> Iterator[FakeChat]:
    with FakeChat(answer=ANSWER) as fake:
        yield fake


@pytest.fixture(scope="session")
def app(
    corpus: Corpus, tiny_model_dir: Path, chat: FakeChat, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[App]:
    """``vlm2vec ui --db DB --model TINY --port N`` (the real CLI, in a subprocess), with a chat endpoint."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in CHAT_ENV}
    env |= {"HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
    cmd = [
        sys.executable, "-m", "vlm2vec_core.apps.cli", "ui", "--db", str(corpus.db), "--model", str(tiny_model_dir),
        "--port", str(port), "--chat-base-url", chat.url, "--chat-model", "fake-vlm",
    ]  # fmt: skip
    log = tmp_path_factory.mktemp("ui-log") / "ui.log"
    server = Service(cmd, f"http://127.0.0.1:{port}/health", log, env=env).start(timeout=120)
    yield App(f"http://127.0.0.1:{port}", corpus, chat)
    server.stop()


@pytest.fixture(scope="session")
def empty_app(tiny_encoder: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    """The app over an empty index."""
    from vlm2vec_core.apps.service import SearchService
    from vlm2vec_core.index.store import ChromaStore

    db = tmp_path_factory.mktemp("ui-empty") / "db"
    with in_process_app(SearchService(tiny_encoder, ChromaStore.open(db=db)), str(db)) as url:
        yield App(url, None, where=str(db))


@pytest.fixture(scope="session")
def rerank_app(corpus: Corpus, tiny_encoder: Any, tiny_reranker: Any) -> Iterator[App]:
    """The app over the corpus with the tiny reranker as its second stage."""
    from vlm2vec_core.apps.service import SearchService
    from vlm2vec_core.index.store import ChromaStore

    service = SearchService(tiny_encoder, ChromaStore.open(db=corpus.db), reranker=tiny_reranker, candidates=8)
    with in_process_app(service, str(corpus.db)) as url:
        yield App(url, corpus, where=str(corpus.db))


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (requirements-dev.txt)")
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium (.ci/run does)")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    context.set_default_timeout(20_000)
    tab = context.new_page()
    problems: list[str] = []
    tab.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    tab.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None)
    tab.problems = problems
    yield tab
    context.close()


@pytest.fixture(scope="session")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the screenshots go ($VLM2VEC_UI_SCREENSHOTS, else a temporary folder)."""
    folder = os.environ.get("VLM2VEC_UI_SCREENSHOTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("ui-screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path
