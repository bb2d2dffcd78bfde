"""Helpers of the evaluation tests: JSONL files of labelled queries, in-memory stores, the CLI in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlm2vec_core.index.store import ChromaStore

DPI = 72  # how the `paged` fixture indexes its corpus
CLIP_SECONDS = 1.0
PAGES = 4
CHAT_ENV = ("VLM2VEC_CHAT_BASE_URL", "VLM2VEC_CHAT_MODEL", "VLM2VEC_CHAT_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_KEY")


def write_jsonl(path: Path, rows: Iterable[Any]) -> Path:
    """One line per row: a dict is written as JSON, a str as it is (to write bad lines)."""
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def memory_store() -> ChromaStore:
    """An empty in-memory Chroma store of its own."""
    import chromadb

    return ChromaStore(chromadb.EphemeralClient(), f"eval-test-{uuid.uuid4().hex[:10]}")


def run_cli(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``python -m vlm2vec_core.apps.cli ARGS`` to completion, offline, output captured as text."""
    env = {k: v for k, v in os.environ.items() if k not in CHAT_ENV}
    env.update(HF_HUB_OFFLINE="1", TQDM_DISABLE="1")
    cmd = [sys.executable, "-m", "vlm2vec_core.apps.cli", *map(str, args)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


@dataclass
class Paged:
    """A folder (a PDF, a video, an image) indexed by the tiny checkpoint into ``db``, and labelled queries whose
    queries are the PDF's own page images (rendered as the index rendered them)."""

    corpus: Path
    db: Path
    cache: Path
    queries: Path  # JSONL: one image query per page, its page relevant
    pdf: Path
