"""The measures (pytrec_eval under the hood) on cases checked by hand, graded relevance, the clip overlap rule, and
how references find stored items. No weights needed."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from vlm2vec_core.index.evaluation import (
    UNINDEXED,
    Catalogue,
    Query,
    clip_overlaps,
    mean_metrics,
    percentiles,
    score_runs,
)
from vlm2vec_core.index.store import FileRecord


def _approx(values: dict[str, float], **expected: float) -> None:
    for name, value in expected.items():
        key = name.replace("nDCG", "nDCG@").replace("Recall", "Recall@").replace("MRR", "MRR@").replace("Hit", "Hit@")
        assert values[key] == pytest.approx(value, abs=1e-4), key


def test_measures_on_a_hand_checked_case() -> None:
    qrels = {"q1": {"a": 1}, "q2": {"b": 1, "c": 1}, "q3": {"d": 1}, "q4": {"e": 1}}
    runs = {
        "q1": ["x", "a", "y"],
        "q2": ["b", "x", "y", "z", "w", "c"],
        "q3": [f"n{i}" for i in range(10)] + ["d"],  # the relevant item is 11th
        # q4 retrieved nothing
    }
    got = score_runs(qrels, runs)
    assert set(got) == {"q1", "q2", "q3", "q4"}
    # q1: a at rank 2. DCG = 1/log2(3) = 0.6309, ideal DCG = 1: nDCG@5 = nDCG@10 = 0.6309; recall@1 = 0,
    # recall@5 = recall@10 = 1; reciprocal rank 1/2; no hit at 1.
    _approx(
        got["q1"], nDCG5=1 / math.log2(3), nDCG10=1 / math.log2(3), Recall1=0, Recall5=1, Recall10=1, MRR10=0.5, Hit1=0
    )
    # q2: b at 1, c at 6. DCG@5 = 1, ideal = 1 + 1/log2(3) = 1.6309: nDCG@5 = 0.6131. DCG@10 = 1 + 1/log2(7) =
    # 1.3562: nDCG@10 = 0.8316. Recall@1 = recall@5 = 1/2, recall@10 = 1; RR = 1; hit.
    ideal = 1 + 1 / math.log2(3)
    _approx(
        got["q2"],
        nDCG5=1 / ideal,
        nDCG10=(1 + 1 / math.log2(7)) / ideal,
        Recall1=0.5,
        Recall5=0.5,
        Recall10=1,
        MRR10=1,
        Hit1=1,
    )
    # q3: d at rank 11, past every cutoff: all 0. MRR@10 is 0 too, where trec_eval's uncut recip_rank says 1/11.
    _approx(got["q3"], nDCG10=0, Recall10=0, MRR10=0, Hit1=0)
    _approx(got["q4"], nDCG5=0, nDCG10=0, Recall1=0, Recall5=0, Recall10=0, MRR10=0, Hit1=0)
    means = mean_metrics(got)
    # MRR@10 = (0.5 + 1 + 0 + 0) / 4; Hit@1 = 1/4; Recall@10 = (1 + 1 + 0 + 0) / 4.
    _approx(means, MRR10=0.375, Hit1=0.25, Recall10=0.5, Recall1=0.125)
    assert means["nDCG@5"] == pytest.approx((1 / math.log2(3) + 1 / ideal) / 4, abs=1e-4)


def test_graded_relevance() -> None:
    qrels = {"g": {"a": 2, "b": 1}, "z": {"a": 1, "n": 0}}
    got = score_runs(qrels, {"g": ["b", "a"], "z": ["n", "a"]})
    # g: gains are the grades (trec_eval's linear gains). DCG = 1/log2(2) + 2/log2(3) = 1 + 1.2619 = 2.2619;
    # ideal order a, b: 2 + 1/log2(3) = 2.6309; nDCG = 0.8597. Both grades count as relevant: recall@1 = 1/2.
    assert got["g"]["nDCG@10"] == pytest.approx((1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3)), abs=1e-4)
    assert got["g"]["nDCG@10"] == pytest.approx(0.8597, abs=1e-4)
    assert got["g"]["Recall@1"] == pytest.approx(0.5) and got["g"]["Hit@1"] == 1
    # z: n is judged, grade 0: not relevant. a at rank 2: RR 1/2, no hit, nDCG 1/log2(3).
    _approx(got["z"], MRR10=0.5, Hit1=0, nDCG10=1 / math.log2(3), Recall1=0)


def test_queries_without_a_relevant_item_are_not_scored() -> None:
    assert score_runs({"q": {"a": 0}}, {"q": ["a"]}) == {}


def test_ties_cannot_reorder_a_ranking() -> None:
    # trec_eval ranks by score and breaks ties by id: the ranking's order must win whatever the ids.
    got = score_runs({"q": {"a": 1}}, {"q": ["z", "a"]})
    assert got["q"]["MRR@10"] == 0.5


def test_latency_percentiles() -> None:
    got = percentiles([0.001 * n for n in range(1, 101)])  # 1..100 ms
    assert got["p50"] == pytest.approx(50.5) and got["p95"] == pytest.approx(95.05)


@pytest.mark.parametrize(
    ("clip", "span", "relevant"),
    [
        ((0, 10), (5, 20), True),  # 5 s overlap, half of the shorter (the 10 s clip) exactly
        ((0, 10), (6, 20), False),  # 4 s: under half of 10
        ((0, 10), (9, 10.5), True),  # a short span: 1 s of its 1.5 s
        ((0, 10), (2, 3), True),  # a span inside the clip
        ((10, 20), (0, 40), True),  # a clip inside a long span
        ((0, 10), (10, 20), False),  # touching only
        ((0, 10), (12, 20), False),
    ],
)
def test_clip_overlap_rule(clip: tuple[float, float], span: tuple[float, float], relevant: bool) -> None:
    assert clip_overlaps(clip, span) is relevant


def _catalogue(root: Path) -> Catalogue:
    video, pdf, photo = root / "talk.mp4", root / "docs" / "report.pdf", root / "photo.png"
    metas = [
        {
            "id": f"v-t{s}",
            "kind": "clip",
            "source": str(video),
            "content_sha256": "v",
            "start_seconds": s,
            "end_seconds": s + 10,
        }
        for s in (0.0, 10.0, 20.0)
    ]
    metas += [
        {"id": f"r-p{n}", "kind": "page", "source": str(pdf), "content_sha256": "r", "page": n} for n in (1, 2, 3)
    ]
    metas.append({"id": "i", "kind": "image", "source": str(photo), "content_sha256": "i"})
    copy = FileRecord(str(root / "copy.pdf"), "r", 3, 0.0)  # a copy of report.pdf: its items are report.pdf's
    return Catalogue(metas, [copy])


def test_references_find_stored_items(tmp_path: Path) -> None:
    cat = _catalogue(tmp_path)
    assert cat.resolve("talk.mp4#t=8,22", tmp_path) == ({"v-t10.0": 1}, None)  # 2 s of 10 with the others
    assert cat.resolve("talk.mp4#t=5,12", tmp_path) == ({"v-t0.0": 1}, None)  # 5 s of the 7 s span: yes; 2 s: no
    assert cat.resolve("talk.mp4#t=5,25", tmp_path)[0] == {"v-t0.0": 1, "v-t10.0": 1, "v-t20.0": 1}
    assert cat.resolve("docs/report.pdf#page=2", tmp_path) == ({"r-p2": 1}, None)
    assert cat.resolve("report.pdf#page=3", tmp_path) == ({"r-p3": 1}, None)  # the tail of an indexed path
    assert cat.resolve(str(tmp_path / "copy.pdf") + "#page=1") == ({"r-p1": 1}, None)
    assert set(cat.resolve("talk.mp4", tmp_path)[0]) == {"v-t0.0", "v-t10.0", "v-t20.0"}  # a whole video
    assert cat.resolve("photo.png", tmp_path) == ({"i": 1}, None)
    assert cat.resolve("report.pdf#page=9", tmp_path) == ({}, "page 9 is not indexed (its indexed pages are 1-3)")
    assert cat.resolve("nowhere.pdf#page=1", tmp_path) == ({}, "no indexed file has that path")
    assert cat.resolve("talk.mp4#t=40,50", tmp_path)[1] == "no indexed clip overlaps that span by half of the shorter"


def test_unmatched_references_are_kept_as_misses_and_reported(tmp_path: Path) -> None:
    cat = _catalogue(tmp_path)
    query = Query(
        "q", {"report.pdf#page=2": 2, "gone.pdf#page=1": 1, "talk.mp4#t=2,8": 1}, text="x", file="q.jsonl", line=7
    )
    qrels, problems = cat.qrels(query, tmp_path)
    assert qrels == {"r-p2": 2, UNINDEXED + "gone.pdf#page=1": 1, "v-t0.0": 1}
    assert [str(p) for p in problems] == [
        "q.jsonl:7: relevant 'gone.pdf#page=1' matches nothing indexed (no indexed file has that path); counted as "
        "not found"
    ]


def test_importing_the_package_does_not_import_pytrec_eval() -> None:
    code = (
        "import sys, vlm2vec_core; vlm2vec_core.evaluate; import vlm2vec_core.index.evaluation; "
        "assert 'pytrec_eval' not in sys.modules and 'torch' not in sys.modules, sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
