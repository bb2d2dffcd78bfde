"""Helpers of the search page's tests (conftest modules of different folders clash on import)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fakechat import FakeChat
from procs import free_port

CHROMIUM = os.environ.get("VLM2VEC_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CHAT_ENV = ("VLM2VEC_CHAT_BASE_URL", "VLM2VEC_CHAT_MODEL", "VLM2VEC_CHAT_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_KEY")
ANSWER = "The red circle is on page 1 of report.pdf. [canned-ui-answer]"


@dataclass
class Corpus:
    root: Path
    db: Path
    files: dict[str, Path]
    items: int


@dataclass
class App:
    url: str
    corpus: Corpus | None
    chat: FakeChat | None = None
    where: str = ""  # the index as the page names it


@contextmanager
def in_process_app(service: Any, where: str = "", **config: Any) -> Iterator[str]:
    """The app over ``service`` on a thread of this process (uvicorn on 127.0.0.1): its URL."""
    import uvicorn

    from vlm2vec_core.apps.webui import UIConfig, create_app

    port = free_port()
    app = create_app(service, UIConfig(where=where, **config))
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the app did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
