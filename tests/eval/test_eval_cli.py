"""``vlm2vec eval`` and ``vlm2vec_core.evaluate`` with the tiny checkpoints: a page's own picture finds its page,
configurations side by side (two families of one checkpoint, with and without the tiny reranker), BEIR-style input,
and the synthetic demo corpus end to end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from evalhelp import CLIP_SECONDS, DPI, PAGES, Paged, memory_store, run_cli, write_jsonl

from mediafixtures import make_image
from vlm2vec_core import evaluate
from vlm2vec_core.apps import cli
from vlm2vec_core.index.evaluation import METRICS, load_queries
from vlm2vec_core.index.indexer import index_paths
from vlm2vec_core.index.store import ChromaStore


def _eval(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = cli.main(["eval", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_each_pages_own_picture_ranks_it_first(paged: Paged, tiny_encoder: Any) -> None:
    result = evaluate(paged.queries, tiny_encoder, ChromaStore.open(db=paged.db))
    assert result.problems == [] and result.queries == PAGES
    for qid, values in result.per_query.items():
        assert values["Hit@1"] == 1 and values["MRR@10"] == 1 and values["nDCG@10"] == pytest.approx(1), qid
        assert result.details[qid]["top"] == f"report.pdf p.{qid[1:]}"
    assert result.metrics == {name: pytest.approx(1.0) for name in METRICS}


def test_configurations_side_by_side(
    paged: Paged, tiny_model_dir: Path, tiny_reranker_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ChromaStore.open(db=paged.db)
    before = (store.count(), store.signature())
    code, out, err = _eval(
        capsys, paged.queries, "--db", paged.db, "--model", tiny_model_dir, "--model", tiny_model_dir,
        "--family", "vlm2vec-v2", "--family", "gme", "--rerank", tiny_reranker_dir, "--candidates", "3",
        "--cache-dir", paged.cache, "--dpi", DPI, "--clip-seconds", CLIP_SECONDS, "--json", "--per-query",
    )  # fmt: skip
    assert code == 0, err
    configs = json.loads(out)["configurations"]
    name = tiny_model_dir.name
    assert [c["name"] for c in configs] == [
        f"{name} (vlm2vec-v2)",
        f"{name} (vlm2vec-v2) + {tiny_reranker_dir.name}@3",
        f"{name} (gme)",
        f"{name} (gme) + {tiny_reranker_dir.name}@3",
    ]
    assert [c["family"] for c in configs] == ["vlm2vec-v2", "vlm2vec-v2", "gme", "gme"]
    assert [c["candidates"] for c in configs] == [None, 3, None, 3]
    assert all(c["reranker"] == str(tiny_reranker_dir) for c in configs[1::2])
    for config in configs:
        assert config["queries"] == PAGES and set(config["metrics"]) == set(METRICS)
        assert set(config["per_query"]) == {f"p{n}" for n in range(1, PAGES + 1)}
        assert config["latency_ms"]["p50"] > 0
    # Without the reranker, each family finds a page by its own picture (the index's model over the index, GME over
    # a temporary index of the index's files, made now); the reranked runs are whatever the random reranker says.
    assert configs[0]["metrics"]["Hit@1"] == 1 and configs[2]["metrics"]["Hit@1"] == 1
    assert err.count("into a temporary index") == 1 and "into the index" not in err
    assert (store.count(), store.signature()) == before  # the index was not touched


def test_beir_style_folder_indexed_into_a_new_db(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "beir"
    (root / "corpus").mkdir(parents=True)
    (root / "qrels").mkdir()
    for n in range(3):
        make_image(root / "corpus" / f"doc{n}.png", seed=n)
    write_jsonl(root / "queries.jsonl", [{"_id": "q1", "text": "green"}, {"_id": "q2", "text": "blue"}])
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tdoc0\t1\nq2\tdoc1\t1\nq2\tdoc2\t1\n")
    args = (root, "--db", tmp_path / "db", "--model", tiny_model_dir, "--family", "gme", "--cache-dir", tmp_path / "c")
    code, out, err = _eval(capsys, *args)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["configuration", "queries", "nDCG@5"] and len(lines) == 2
    assert lines[1].startswith(f"{tiny_model_dir.name} (gme)") and lines[1].split()[2] == "2"
    assert "embedded 3 images" in err and "into the index" in err
    assert ChromaStore.open(db=tmp_path / "db").signature()["family"] == "gme"
    code, _out, err = _eval(capsys, *args)  # again: the corpus is in the index already
    assert code == 0 and "3 unchanged file(s) skipped" in err


def test_eval_refusals_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    queries = write_jsonl(tmp_path / "q.jsonl", [{"id": "a", "query": "x", "relevant": ["a.png"]}])
    three_families = ["--model", "a", "--model", "b", *["--family", "gme"] * 3]
    for args, message in [
        ((tmp_path / "none.jsonl",), "no such file or folder"),
        ((queries,), "nothing to evaluate against"),
        ((queries, "--db", tmp_path / "nodb"), "no index at"),
        ((queries, "--corpus", tmp_path, *three_families), "give one --family for every model, or one per --model"),
        ((), "give QUERIES"),
    ]:
        code, _out, err = _eval(capsys, *args)
        assert code == 2 and err.startswith("error: ") and message in err, (args, err)
    bad = write_jsonl(tmp_path / "bad.jsonl", ["{", {"id": "x"}])
    code, _out, err = _eval(capsys, bad, "--corpus", tmp_path)
    assert code == 2 and f"{bad}:1: not JSON" in err and f"{bad}:2: give either" in err
    assert err.rstrip().endswith(f"error: no usable labelled query in {bad}")


def test_synthetic_corpus_end_to_end(tiny_model_dir: Path, tiny_encoder: Any, tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    made = run_cli("eval", "--make-synthetic", demo)
    assert made.returncode == 0, made.stderr
    assert "random weights score at chance" in made.stdout and f"vlm2vec eval {demo}" in made.stdout
    assert sorted(p.name for p in (demo / "corpus").iterdir()) == ["facts.pdf", "scenes.mp4"]
    rows = [json.loads(line) for line in (demo / "queries.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and {"image-chart", "graded-revenue", "page-1", "scene-0"} <= {r["id"] for r in rows}
    result = run_cli(
        "eval", demo, "--model", tiny_model_dir, "--dpi", "36", "--cache-dir", tmp_path / "c", "--per-query"
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[0] == "configuration" and lines[1].split()[:3] == [
        tiny_model_dir.name,
        "(vlm2vec-v2)",
        "12",
    ]
    assert lines[3] == lines[1].split("  ")[0] and lines[4].split()[:2] == ["id", "nDCG@10"]
    assert {line.split()[0] for line in lines[5:]} == {r["id"] for r in rows}  # the per-query rows
    assert "embedded 4 clips, 6 pages" in result.stderr and "problem" not in result.stderr
    # The library call on the same corpus gives the same judgements and every query a ranking.
    queries = load_queries(demo)
    store = memory_store()
    index_paths(queries.corpus, tiny_encoder, store, cache_dir=tmp_path / "c", dpi=36)
    figures = evaluate(queries, tiny_encoder, store)
    assert figures.queries == 12 and figures.problems == [] and all(len(r) == 10 for r in figures.rankings.values())
