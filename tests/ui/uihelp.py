"""Helpers of the search page's tests (conftest modules of different folders clash on import)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from fakechat import FakeChat

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
