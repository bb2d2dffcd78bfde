"""`vlm2vec search/ask --rerank`: the second stage over the retrieved candidates, both scores shown."""

from __future__ import annotations

import json
from pathlib import Path

from clihelp import GOOD_ITEMS, Indexed, run_cli, store_args
from PIL import Image

from vlm2vec_core import VLM2VecEncoder
from vlm2vec_core.index.indexer import TASK_FOR_KIND, rerank_hits, search
from vlm2vec_core.index.store import ChromaStore
from vlm2vec_core.media.documents import input_for_metadata
from vlm2vec_core.rerank import FakeReranker, Reranker


def test_search_reranks_the_candidates(indexed: Indexed, tiny_model_dir: Path, tiny_reranker_dir: Path, tmp_path: Path):
    sheet = tmp_path / "sheet.png"
    result = run_cli(
        "search", "a red circle", "-k", "3", "--candidates", str(GOOD_ITEMS), "--json", "--sheet", sheet,
        "--rerank", tiny_reranker_dir, *store_args(indexed.tmp), "--model", tiny_model_dir,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == 3
    reranked = [r["rerank_score"] for r in rows]
    assert reranked == sorted(reranked, reverse=True) and all(0 < s < 1 for s in reranked)
    # The same order as the reranker gives over every candidate of each kind, with the kind's task.
    encoder = VLM2VecEncoder(tiny_model_dir)
    store = ChromaStore.open(db=indexed.tmp / "db")
    candidates = search("a red circle", encoder, store, k=GOOD_ITEMS)
    reranker = Reranker(tiny_reranker_dir)
    expected = []
    for kind in {h.kind for h in candidates}:
        group = [h for h in candidates if h.kind == kind]
        ranked = reranker.rerank(
            "a red circle", [input_for_metadata(h.metadata) for h in group], task=TASK_FOR_KIND[kind]
        )
        expected += [(group[i].id, s) for i, s in ranked]
    expected.sort(key=lambda pair: -pair[1])
    assert [r["id"] for r in rows] == [i for i, _ in expected[:3]]
    assert Image.open(sheet).size[0] > 0
    table = run_cli(
        "search", "a red circle", "-k", "2", "--rerank", tiny_reranker_dir, *store_args(indexed.tmp),
        "--model", tiny_model_dir,
    )  # fmt: skip
    assert table.returncode == 0 and "rerank" in table.stdout.splitlines()[0]


def test_a_missing_reranker_is_one_sentence(indexed: Indexed, tiny_model_dir: Path, tmp_path: Path):
    result = run_cli(
        "search", "x", "--rerank", tmp_path / "nowhere", *store_args(indexed.tmp), "--model", tiny_model_dir
    )
    assert result.returncode == 2 and result.stderr.startswith("error: ") and "Traceback" not in result.stderr


def test_rerank_hits_drops_hits_whose_files_are_gone(indexed: Indexed, tiny_model_dir: Path):
    encoder = VLM2VecEncoder(tiny_model_dir)
    hits = search("a red circle", encoder, ChromaStore.open(db=indexed.tmp / "db"), k=GOOD_ITEMS)
    gone = hits[0].__class__(
        hits[0].id, hits[0].score, {**hits[0].metadata, "image_path": "/gone.png", "reference": "/gone.png"}
    )
    problems: list = []
    out = rerank_hits("a red circle", [gone, *hits[1:]], FakeReranker(), encoder=encoder, errors=problems)
    assert len(out) == len(hits) - 1 and len(problems) == 1 and gone.id not in {h.id for h in out}
