"""Reading labelled queries (JSONL and BEIR-style folders), bad lines reported with their line numbers, and
``evaluate`` over a real Chroma store with the fake encoder and reranker (no weights)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from evalhelp import memory_store, write_jsonl

from mediafixtures import make_image, make_pdf, make_video
from vlm2vec_core import FakeEncoder, evaluate
from vlm2vec_core.index.evaluation import METRICS, QueryError, load_queries
from vlm2vec_core.index.indexer import index_paths
from vlm2vec_core.rerank import FakeReranker


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    make_pdf(docs / "report.pdf", 3, size=(200, 260))
    make_video(docs / "talk.mp4", seconds=2.0, fps=5)
    make_image(docs / "photo.png", seed=3)
    return docs


def _indexed(folder: Path, tmp: Path, encoder: FakeEncoder | None = None) -> tuple[FakeEncoder, object]:
    encoder = encoder or FakeEncoder(32)
    store = memory_store()
    report = index_paths([folder], encoder, store, cache_dir=tmp / "cache", dpi=36, clip_seconds=1.0)
    assert report.errors == []
    return encoder, store


def test_bad_lines_are_reported_with_their_line_numbers_and_the_rest_evaluated(folder: Path, tmp_path: Path) -> None:
    make_image(tmp_path / "query.png", seed=9)
    path = write_jsonl(
        tmp_path / "q.jsonl",
        [
            {"id": "ok1", "query": "a red circle", "relevant": ["docs/report.pdf#page=1"]},  # 1
            "{not json",  # 2
            "",  # 3: blank lines are skipped
            {"query": "no id", "relevant": ["docs/photo.png"]},  # 4
            {"id": "both", "query": "x", "image": "query.png", "relevant": ["docs/photo.png"]},  # 5
            {"id": "norel", "query": "x"},  # 6
            {"id": "grade", "query": "x", "relevant": [{"ref": "docs/photo.png", "grade": "high"}]},  # 7
            {"id": "ok1", "query": "again", "relevant": ["docs/photo.png"]},  # 8
            {"id": "img", "image": "missing.png", "relevant": ["docs/photo.png"]},  # 9
            {"id": "span", "query": "x", "relevant": ["docs/talk.mp4#t=5,2"]},  # 10
            {"id": "zero", "query": "x", "relevant": [{"ref": "docs/photo.png", "grade": 0}]},  # 11
            "[1, 2]",  # 12
            {"id": 7, "image": "query.png", "relevant": ["docs/talk.mp4#t=0,1", {"ref": "docs/photo.png", "grade": 2}]},
            {"id": "gone", "query": "x", "relevant": ["docs/report.pdf#page=9", "docs/photo.png"]},  # 14
        ],
    )
    loaded = load_queries(path)
    assert [q.id for q in loaded.queries] == ["ok1", "7", "gone"]
    assert [str(p) for p in loaded.problems] == [
        f"{path}:2: not JSON (Expecting property name enclosed in double quotes, column 2)",
        f'{path}:4: no "id" (a string or a number)',
        f'{path}:5: give either "query" (text) or "image" (a path), not both',
        f'{path}:6: no "relevant" list of references',
        f"{path}:7: grade of 'docs/photo.png' must be a whole number of 0 or more, not \"high\"",
        f"{path}:8: duplicate id 'ok1' (first on line 1)",
        f"{path}:9: image 'missing.png' not found",
        f"{path}:10: clip reference 'docs/talk.mp4#t=5,2': start must be before end",
        f'{path}:11: no relevant reference (a "relevant" entry with a grade above 0)',
        f"{path}:12: expected a JSON object, got list",
    ]
    assert all(isinstance(p, QueryError) and p.line is not None for p in loaded.problems)
    assert loaded.queries[1].image == str((tmp_path / "query.png").resolve())
    encoder, store = _indexed(folder, tmp_path)
    result = evaluate(path, encoder, store)
    assert set(result.per_query) == {"ok1", "7", "gone"}  # the rest is evaluated
    assert f"{path}:14: relevant 'docs/report.pdf#page=9' matches nothing indexed" in "\n".join(
        map(str, result.problems)
    )
    assert len(result.problems) == len(loaded.problems) + 1
    assert set(result.metrics) == set(METRICS) and all(0 <= v <= 1 for v in result.metrics.values())


def test_evaluate_takes_dicts_and_finds_a_pages_own_picture(folder: Path, tmp_path: Path) -> None:
    from vlm2vec_core import pdf_pages

    encoder, store = _indexed(folder, tmp_path)
    shot = tmp_path / "page2.png"
    next(iter(pdf_pages(folder / "report.pdf", dpi=36, pages=[2]))).image.save(shot)
    queries = [
        {"id": "own", "image": str(shot), "relevant": [str(folder / "report.pdf") + "#page=2"]},
        {"id": "text", "query": "a moving bar", "relevant": [str(folder / "talk.mp4") + "#t=0,1"]},
        {"id": "pdf-page", "image": f"{folder}/./report.pdf#page=3", "relevant": ["docs/report.pdf#page=3"]},
        {"id": "a-video", "image": str(folder / "talk.mp4"), "relevant": ["docs/report.pdf#page=3"]},
    ]
    result = evaluate(queries, encoder, store)
    assert [str(p) for p in result.problems] == [
        f"<queries>:4: image {str(folder / 'talk.mp4')!r} is not an image file or a PDF page (file.pdf#page=N)"
    ]
    assert result.details["pdf-page"]["query"] == f"[image] {folder / 'report.pdf'}#page=3"  # rendered at 144 dpi
    # The fake encoder's vector is a hash of prompt and pixels: the same picture, embedded on the document side of
    # the page task as the page was, is the same vector.
    assert result.per_query["own"]["Hit@1"] == 1 and result.per_query["own"]["MRR@10"] == 1
    assert result.details["own"]["first_relevant"] == 1 and result.details["own"]["top"] == "report.pdf p.2"
    assert result.queries == 3 and result.latency_ms["p95"] >= result.latency_ms["p50"] > 0
    assert len(result.rankings["text"]) == 3 + 2 + 1  # every item: there are fewer than 10


def test_rerank_reorders_the_candidates_and_keeps_the_rest(folder: Path, tmp_path: Path) -> None:
    encoder, store = _indexed(folder, tmp_path)
    queries = [{"id": str(n), "query": q, "relevant": ["docs/photo.png"]} for n, q in enumerate(["red", "a bar", "x"])]
    path = write_jsonl(tmp_path / "q.jsonl", queries)
    first = evaluate(path, encoder, store)
    reranker = FakeReranker()
    second = evaluate(path, encoder, store, reranker=reranker, candidates=3)
    assert second.config["reranker"] == "FakeReranker" and second.config["candidates"] == 3
    assert second.name == "fake (vlm2vec-v2) + FakeReranker@3" and first.name == "fake (vlm2vec-v2)"
    for qid, ranked in first.rankings.items():
        assert sorted(second.rankings[qid][:3]) == sorted(ranked[:3])  # the top 3, reordered
        assert second.rankings[qid][3:] == ranked[3:]  # then the rest in first-stage order
    assert len(reranker.prompts) == 3 * 3


def test_beir_style_folder(tmp_path: Path) -> None:
    root = tmp_path / "beir"
    (root / "corpus").mkdir(parents=True)
    (root / "qrels").mkdir()
    for n in range(4):
        make_image(root / "corpus" / f"doc{n}.png", seed=n)
    write_jsonl(
        root / "queries.jsonl",
        [
            {"_id": "q1", "text": "the first picture"},
            {"_id": "q2", "text": "the second or third"},
            {"_id": "q9", "text": "a query of another split"},
            "{broken",
        ],
    )
    (root / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\nq1\tdoc0\t1\nq2\tdoc1\t2\nq2\tdoc2\t1\nq2\tdocX\t1\nq3\tdoc3\t1\nq1\tdoc1\tmany\n"
    )
    loaded = load_queries(root)
    assert [q.id for q in loaded.queries] == ["q1", "q2"]
    assert loaded.queries[1].relevant == {
        str((root / "corpus" / "doc1.png").resolve()): 2,
        str((root / "corpus" / "doc2.png").resolve()): 1,
        "docX": 1,
    }
    assert sorted(p.name for p in loaded.corpus) == ["doc0.png", "doc1.png", "doc2.png", "doc3.png"]
    tsv, queries = root / "qrels" / "test.tsv", root / "queries.jsonl"
    assert sorted(str(p) for p in loaded.problems) == sorted(
        [
            f"{tsv}:5: corpus id 'docX' is not in the corpus",
            f"{tsv}:7: score 'many' is not a number",
            f"{queries}:4: not JSON (Expecting property name enclosed in double quotes)",
            f"{tsv}:6: query 'q3' is judged but not in queries.jsonl",
        ]
    )
    encoder = FakeEncoder(32)
    store = memory_store()
    index_paths(loaded.corpus, encoder, store, cache_dir=tmp_path / "cache")
    result = evaluate(loaded, encoder, store)
    assert set(result.per_query) == {"q1", "q2"}
    # q2 can find doc1 and doc2 but never docX: its recall@10 is 2 of 3.
    assert result.per_query["q2"]["Recall@10"] == pytest.approx(2 / 3)
    assert result.per_query["q1"]["Recall@10"] == 1
    with pytest.raises(ValueError, match=r"no qrels/dev.tsv \(splits here: test\)"):
        load_queries(root, split="dev")


def test_result_as_json(folder: Path, tmp_path: Path) -> None:
    encoder, store = _indexed(folder, tmp_path)
    result = evaluate([{"id": "a", "query": "q", "relevant": ["docs/photo.png"]}], encoder, store)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["queries"] == 1 and data["family"] == "vlm2vec-v2" and data["reranker"] is None
    assert set(data["metrics"]) == set(METRICS) and set(data["latency_ms"]) == {"p50", "p95"}
    assert set(data["per_query"]["a"]) >= {"query", "first_relevant", "top", *METRICS}
