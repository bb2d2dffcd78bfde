"""SIGKILL `vlm2vec index` mid-run, run it again: every page ends up in the store exactly once."""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from contextlib import closing
from pathlib import Path

import chromadb
from clihelp import cli_env, model_args, run_cli, store_args

from mediafixtures import make_pdf
from vlm2vec_core.media.documents import file_digest

PAGES = 40


def _stored(db: Path) -> tuple[list[str], list[dict]]:
    from chromadb.api.client import SharedSystemClient

    SharedSystemClient.clear_system_cache()  # read what is on disk now, not a cached view of it
    got = chromadb.PersistentClient(path=str(db)).get_collection("vlm2vec").get(include=["metadatas"])
    return list(got["ids"]), [dict(m) for m in got["metadatas"] or []]


def _rows(db: Path) -> int:
    """Embeddings in the Chroma store at ``db`` now (read-only: the indexer is writing meanwhile)."""
    path = db / "chroma.sqlite3"
    if not path.is_file():
        return 0
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)) as conn:
            return int(conn.execute("SELECT count(*) FROM embeddings").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet, or locked for a moment
        return 0


def test_killed_mid_run_then_resumed_stores_every_page_once(tmp_path: Path, tiny_model_dir: Path) -> None:
    pdf = make_pdf(tmp_path / "long.pdf", PAGES, size=(306, 396))
    args = ["index", pdf, *store_args(tmp_path), *model_args(tiny_model_dir, tmp_path), "--dpi", "72"]
    cmd = [sys.executable, "-m", "vlm2vec_core.apps.cli", *map(str, args)]
    log = tmp_path / "first.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=cli_env())
    # Pages are read ahead of the model (a bounded number of them, in worker processes), so what is cached
    # says little about what is stored: watch the store itself, and kill once a chunk (16 pages) is in.
    deadline = time.monotonic() + 180
    try:
        while _rows(tmp_path / "db") < 16:
            assert proc.poll() is None, f"the indexer ended before it could be killed:\n{log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, "the indexer made no progress"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL

    ids, _ = _stored(tmp_path / "db")
    assert 0 < len(ids) < PAGES, f"{len(ids)} of {PAGES} pages stored when killed: not a mid-run kill"
    killed_at = len(ids)

    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    summary = result.stdout.strip().splitlines()[-1]
    match = re.search(r"embedded (\d+) pages from 1 file\(s\).*; (\d+) item\(s\) already stored", summary)
    assert match, summary
    assert (int(match[1]), int(match[2])) == (PAGES - killed_at, killed_at)  # nothing embedded twice

    ids, metas = _stored(tmp_path / "db")
    key = file_digest(pdf)[:32]
    assert sorted(ids) == sorted(f"{key}-p{n}" for n in range(1, PAGES + 1))
    assert Counter(m["page"] for m in metas) == Counter(range(1, PAGES + 1))  # each page exactly once
    assert {m["page_count"] for m in metas} == {PAGES}

    again = run_cli(*args)  # and the file is now recorded as indexed whole
    assert again.returncode == 0 and "1 unchanged file(s) skipped" in again.stdout
