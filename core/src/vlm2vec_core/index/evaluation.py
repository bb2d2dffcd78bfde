"""Retrieval quality on labelled queries: nDCG, recall, MRR and hit rate (trec_eval's, through pytrec-eval-terrier).

Queries come as a JSONL file, one per line: ``{"id", "query"}`` (text) or ``{"id", "image"}`` (a path, or a page
reference such as ``report.pdf#page=3``), plus ``"relevant"``: references into the indexed files
(``report.pdf#page=3``, ``talk.mp4#t=10,20``, ``photo.png``; a bare PDF or video names all its pages or clips),
each optionally graded (``{"ref": ..., "grade": 2}``; grade 0 is judged not relevant). A BEIR-style folder
(``queries.jsonl``, ``qrels/test.tsv``, a ``corpus/`` of page images named by their corpus ids) loads the same.

How labels meet the index: a reference is resolved against the queries file's folder (then the working directory,
then as the tail of an indexed path) to an indexed file, and from there to its stored items. A video clip counts as
relevant when it overlaps a labelled span by at least half of the shorter of the two (``clip_overlaps``). A
reference that matches nothing indexed is reported and stays in the judgements (it counts as not found).

How queries run: a text query is embedded with each kind's task query side (as ``indexer.search`` does); an image
query with each kind's task *document* side, the side its targets were embedded with (image to image), so a page's
own picture finds that page. With a reranker, the first stage's top ``candidates`` are reordered by it, the rest
follows in first-stage order.

The measures are trec_eval's, computed by ``pytrec_eval`` per query on the ranking cut to its top 10
(``DEPTH``), then averaged over the queries: nDCG@5 and @10 (``ndcg_cut``, linear gains: the grades), Recall@1/5/10
(``recall``), MRR@10 (``recip_rank``: trec_eval's reciprocal rank has no cutoff, so it is computed on the run cut
to 10, which makes it MRR@10) and Hit@1 (``success.1``). A grade of 1 or more is relevant.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, require_extra
from ..media.documents import input_for_reference, kind_of, parse_reference
from ..types import Input
from .store import FileRecord, Hit

log = logging.getLogger(__name__)

DEPTH = 10  # the deepest cutoff of the measures: rankings are cut here before pytrec_eval sees them
METRICS: dict[str, str] = {  # our name -> the pytrec_eval measure (evaluated on rankings cut to DEPTH)
    "nDCG@5": "ndcg_cut_5",
    "nDCG@10": "ndcg_cut_10",
    "Recall@1": "recall_1",
    "Recall@5": "recall_5",
    "Recall@10": "recall_10",
    "MRR@10": "recip_rank",
    "Hit@1": "success_1",
}
_MEASURES = {"ndcg_cut.5,10", "recall.1,5,10", "recip_rank", "success.1"}
UNINDEXED = "unindexed:"  # the id of a labelled reference that matches nothing indexed (never retrieved)


class QueryError(InputError):
    """A labelled query (or a judgement) that cannot be used: ``file:line: reason``."""

    def __init__(self, reason: str, *, file: str | os.PathLike[str], line: int | None = None) -> None:
        self.file = str(file)
        self.line = line
        super().__init__(reason, source=f"{self.file}:{line}" if line is not None else self.file)


@dataclass(frozen=True)
class Query:
    """One labelled query: text or an image, and its relevant references (reference -> grade)."""

    id: str
    relevant: Mapping[str, int]
    text: str | None = None
    image: str | None = None  # a path or a reference (``report.pdf#page=3``)
    file: str = "<queries>"
    line: int | None = None

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.line is not None else self.file

    def describe(self, width: int = 48) -> str:
        what = self.text if self.text is not None else f"[image] {self.image}"
        return what if len(what) <= width else what[: width - 1] + "…"


@dataclass
class QuerySet:
    """Queries read from a file or folder, what was wrong with the rest, and the corpus it names (if any)."""

    queries: list[Query]
    problems: list[QueryError] = field(default_factory=list)
    corpus: list[Path] = field(default_factory=list)  # files or folders to index (a BEIR corpus, a demo folder)
    base_dir: Path = field(default_factory=Path)  # where relative references are resolved first
    source: str = "<queries>"


@dataclass
class EvalResult:
    """The figures of one configuration: means, per query, latency, and what could not be used."""

    name: str
    metrics: dict[str, float]  # mean over the evaluated queries
    per_query: dict[str, dict[str, float]]
    latency_ms: dict[str, float]  # p50 and p95 of one query (embed, search, rerank)
    rankings: dict[str, list[str]]  # query id -> the ids of its top DEPTH items
    details: dict[str, dict[str, Any]]  # query id -> query, first relevant rank, the top hit
    problems: list[InputError] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def queries(self) -> int:
        return len(self.per_query)

    def to_dict(self, *, per_query: bool = True, problems: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            **self.config,
            "queries": self.queries,
            "metrics": {k: round(v, 6) for k, v in self.metrics.items()},
            "latency_ms": {k: round(v, 3) for k, v in self.latency_ms.items()},
        }
        if problems:
            out["problems"] = [str(p) for p in self.problems]
        if per_query:
            out["per_query"] = {
                qid: {**self.details.get(qid, {}), **{k: round(v, 6) for k, v in values.items()}}
                for qid, values in self.per_query.items()
            }
        return out


# -- reading labelled queries ---------------------------------------------------------------------------------


def load_queries(path: str | os.PathLike[str], *, split: str = "test") -> QuerySet:
    """Labelled queries from a JSONL file, a BEIR-style folder (``queries.jsonl``, ``qrels/<split>.tsv``,
    ``corpus/``) or a folder holding a labelled ``queries.jsonl`` beside its media (what ``--make-synthetic``
    writes: its ``corpus/`` is the corpus, else its media but the query images). Bad lines are reported in
    ``problems`` with their line numbers; the rest is kept."""
    root = Path(path)
    if root.is_dir():
        if (root / "qrels").is_dir():
            return _load_beir(root, split)
        if (root / "queries.jsonl").is_file():
            found = load_jsonl(root / "queries.jsonl")
            found.corpus = _folder_corpus(root, found.queries)
            return found
        raise InputError("a folder of queries needs queries.jsonl (and qrels/ for a BEIR-style one)", source=root)
    if not root.is_file():
        raise InputError("no such file or folder", source=root)
    return load_jsonl(root)


def _folder_corpus(root: Path, queries: Sequence[Query]) -> list[Path]:
    """The corpus of a folder of labelled queries: its corpus/ folder, else its media but the query images."""
    if (root / "corpus").is_dir():
        return [root / "corpus"]
    from ..media.documents import walk

    asked = {str(parse_reference(q.image)[0]) for q in queries if q.image is not None}
    return [p for p in walk([root]) if str(p.resolve()) not in asked]


def load_jsonl(path: str | os.PathLike[str]) -> QuerySet:
    """Labelled queries, one JSON object a line (blank lines skipped); see the module's docstring."""
    source = Path(path)
    base = source.resolve().parent
    queries: list[Query] = []
    problems: list[QueryError] = []
    seen: dict[str, int] = {}
    for number, line in _lines(source):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(QueryError(f"not JSON ({exc.msg}, column {exc.colno})", file=source, line=number))
            continue
        try:
            query = parse_query(obj, file=str(source), line=number, base_dir=base)
        except QueryError as err:
            problems.append(err)
            continue
        if query.id in seen:
            problems.append(
                QueryError(f"duplicate id {query.id!r} (first on line {seen[query.id]})", file=source, line=number)
            )
            continue
        seen[query.id] = number
        queries.append(query)
    return QuerySet(queries, problems, base_dir=base, source=str(source))


def parse_query(
    obj: Any,
    *,
    file: str = "<queries>",
    line: int | None = None,
    base_dir: Path | None = None,
    relevant: Mapping[str, int] | None = None,
) -> Query:
    """One query from its JSON object (``QueryError`` naming ``file:line`` when it cannot be used). ``relevant``
    gives the judgements instead of the object's ``"relevant"`` (BEIR's qrels)."""

    def bad(reason: str) -> QueryError:
        return QueryError(reason, file=file, line=line)

    if not isinstance(obj, dict):
        raise bad(f"expected a JSON object, got {type(obj).__name__}")
    qid = obj.get("id", obj.get("_id"))
    if isinstance(qid, bool) or not isinstance(qid, (str, int)) or str(qid) == "":
        raise bad('no "id" (a string or a number)')
    text = obj.get("query", obj.get("text"))
    image = obj.get("image")
    if (text is None) == (image is None):
        raise bad('give either "query" (text) or "image" (a path)' + ("" if text is None else ", not both"))
    for name, value in (("query", text), ("image", image)):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise bad(f'"{name}" must be a non-empty string')
    if image is not None:
        image = _resolve_image(image, base_dir, bad)
    if relevant is None:
        relevant = _judgements(obj.get("relevant"), bad)
    if not any(grade > 0 for grade in relevant.values()):
        raise bad('no relevant reference (a "relevant" entry with a grade above 0)')
    return Query(str(qid), dict(relevant), text=text, image=image, file=file, line=line)


def _judgements(raw: Any, bad: Any) -> dict[str, int]:
    if raw is None:
        raise bad('no "relevant" list of references')
    entries = [raw] if isinstance(raw, (str, dict)) else raw
    if not isinstance(entries, list) or not entries:
        raise bad('"relevant" must be a non-empty list of references')
    out: dict[str, int] = {}
    for entry in entries:
        if isinstance(entry, str):
            ref, grade = entry, 1
        elif isinstance(entry, dict) and isinstance(entry.get("ref"), str):
            ref, grade = entry["ref"], entry.get("grade", 1)
        else:
            raise bad(f'a relevant entry must be a reference or {{"ref": ..., "grade": ...}}, not {json.dumps(entry)}')
        if isinstance(grade, bool) or not isinstance(grade, int) or grade < 0:
            raise bad(f"grade of {ref!r} must be a whole number of 0 or more, not {json.dumps(grade)}")
        if not ref.strip():
            raise bad("an empty reference")
        try:
            parse_reference(ref)
        except ValueError as exc:
            raise bad(str(exc)) from exc
        out[ref] = max(out.get(ref, 0), grade)
    return out


def _resolve_image(image: str, base_dir: Path | None, bad: Any) -> str:
    """The image query as an absolute reference (its file found next to the queries, else from the cwd)."""
    try:
        path, _start, _end, page = parse_reference(image)
    except ValueError as exc:
        raise bad(str(exc)) from exc
    fragment = f"#page={page}" if page is not None else ""
    for candidate in ([base_dir / path] if base_dir is not None and not path.is_absolute() else []) + [path]:
        if candidate.is_file():
            if kind_of(candidate) not in ("image", "pdf") or (kind_of(candidate) == "pdf" and page is None):
                raise bad(f"image {image!r} is not an image file or a PDF page (file.pdf#page=N)")
            return str(candidate.resolve()) + fragment
    raise bad(f"image {image!r} not found")


def _lines(path: Path) -> Iterable[tuple[int, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the queries ({exc})", source=path) from exc
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            yield number, line


def _load_beir(root: Path, split: str) -> QuerySet:
    """BEIR's layout: queries.jsonl ({"_id", "text"}), qrels/<split>.tsv (query-id, corpus-id, score) and a
    corpus of media: ``corpus/`` (a file's stem is its corpus id) and/or corpus.jsonl ({"_id", "image": path})."""
    qrels_path = root / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        have = sorted(p.stem for p in (root / "qrels").glob("*.tsv"))
        raise InputError(f"no qrels/{split}.tsv (splits here: {', '.join(have) or 'none'})", source=root)
    problems: list[QueryError] = []
    corpus_ids = _beir_corpus(root, problems)
    judged: dict[str, dict[str, int]] = {}
    judged_at: dict[str, int] = {}
    for number, line in _lines(qrels_path):
        cols = line.rstrip("\n").split("\t") if "\t" in line else line.split()
        if len(cols) == 4:  # TREC's qrels: query-id, iteration, doc-id, grade
            cols = [cols[0], cols[2], cols[3]]
        if len(cols) != 3:
            problems.append(QueryError("expected query-id, corpus-id and score", file=qrels_path, line=number))
            continue
        qid, cid, score = (c.strip() for c in cols)
        try:
            grade = int(float(score))
        except ValueError:
            if number != 1:  # the header line
                problems.append(QueryError(f"score {score!r} is not a number", file=qrels_path, line=number))
            continue
        if cid not in corpus_ids:
            problems.append(QueryError(f"corpus id {cid!r} is not in the corpus", file=qrels_path, line=number))
            ref = cid
        else:
            ref = str(corpus_ids[cid])
        judged.setdefault(qid, {})[ref] = max(judged.get(qid, {}).get(ref, 0), max(grade, 0))
        judged_at.setdefault(qid, number)
    queries_path = root / "queries.jsonl"
    if not queries_path.is_file():
        raise InputError("a BEIR-style folder needs queries.jsonl", source=root)
    queries: list[Query] = []
    seen: set[str] = set()
    listed: set[str] = set()
    for number, line in _lines(queries_path):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(QueryError(f"not JSON ({exc.msg})", file=queries_path, line=number))
            continue
        qid = str(obj.get("_id", obj.get("id", ""))) if isinstance(obj, dict) else ""
        listed.add(qid)
        if qid and qid not in judged:
            continue  # a query of another split
        try:
            query = parse_query(
                obj, file=str(queries_path), line=number, base_dir=root.resolve(), relevant=judged.get(qid, {})
            )
        except QueryError as err:
            problems.append(err)
            continue
        if query.id not in seen:
            seen.add(query.id)
            queries.append(query)
    for qid in judged:
        if qid not in listed:
            problems.append(
                QueryError(f"query {qid!r} is judged but not in queries.jsonl", file=qrels_path, line=judged_at[qid])
            )
    corpus = sorted(set(corpus_ids.values()))
    return QuerySet(queries, problems, corpus=corpus, base_dir=root.resolve(), source=str(root))


def _beir_corpus(root: Path, problems: list[QueryError]) -> dict[str, Path]:
    ids: dict[str, Path] = {}
    folder = root / "corpus"
    if folder.is_dir():
        for path in sorted(folder.rglob("*")):
            if path.is_file() and kind_of(path) is not None:
                ids[path.stem] = path.resolve()
    listing = root / "corpus.jsonl"
    if listing.is_file():
        for number, line in _lines(listing):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append(QueryError(f"not JSON ({exc.msg})", file=listing, line=number))
                continue
            file = obj.get("image", obj.get("file")) if isinstance(obj, dict) else None
            cid = obj.get("_id", obj.get("id")) if isinstance(obj, dict) else None
            if not isinstance(file, str) or cid is None:
                problems.append(QueryError('expected {"_id", "image": a path}', file=listing, line=number))
                continue
            target = (root / file).resolve()
            if not target.is_file():
                problems.append(QueryError(f"{file!r} not found", file=listing, line=number))
                continue
            ids[str(cid)] = target
    if not ids:
        raise InputError("a BEIR-style folder needs its corpus: corpus/ (media files) or corpus.jsonl", source=root)
    return ids


# -- references -> stored items -------------------------------------------------------------------------------


def clip_overlaps(clip: tuple[float, float], span: tuple[float, float]) -> bool:
    """Whether a clip counts for a labelled span: they overlap by at least half of the shorter of the two."""
    overlap = min(clip[1], span[1]) - max(clip[0], span[0])
    shorter = min(clip[1] - clip[0], span[1] - span[0])
    return overlap > 0 and overlap >= 0.5 * shorter


@dataclass(frozen=True)
class _Stored:
    id: str
    kind: str
    page: int | None
    start: float | None
    end: float | None


class Catalogue:
    """What a store holds, by file: turns labelled references into the ids of stored items."""

    def __init__(self, metadatas: Iterable[Mapping[str, Any]], files: Iterable[FileRecord] = ()) -> None:
        self.by_digest: dict[str, list[_Stored]] = {}
        self.sources: dict[str, str] = {}  # resolved path -> content digest
        for meta in metadatas:
            digest = str(meta.get("content_sha256", meta.get("id", "")))
            page, start, end = meta.get("page"), meta.get("start_seconds"), meta.get("end_seconds")
            self.by_digest.setdefault(digest, []).append(
                _Stored(
                    str(meta["id"]),
                    str(meta.get("kind", "")),
                    int(page) if page is not None else None,
                    float(start) if start is not None else None,
                    float(end) if end is not None else None,
                )
            )
            if meta.get("source"):
                self.sources.setdefault(str(meta["source"]), digest)
        for record in files:  # copies of one content share their items, stored under the first path seen
            self.sources[record.source] = record.digest

    @classmethod
    def of(cls, store: Any) -> Catalogue:
        return cls(stored_metadata(store), store.files() if hasattr(store, "files") else ())

    def resolve(self, reference: str, base_dir: Path | None = None) -> tuple[dict[str, int], str | None]:
        """The stored items a reference names, each with 1 (0 for none), and why there are none."""
        try:
            path, start, end, page = parse_reference(reference)
        except ValueError as exc:
            return {}, str(exc)
        source, why = self._file(path, base_dir)
        if source is None:
            return {}, why
        items = self.by_digest.get(self.sources[source], [])
        if page is not None:
            hits = [i for i in items if i.kind == "page" and i.page == page]
            if not hits:
                pages = sorted(i.page for i in items if i.kind == "page" and i.page is not None)
                have = f"its indexed pages are {pages[0]}-{pages[-1]}" if pages else "it has no indexed pages"
                return {}, f"page {page} is not indexed ({have})"
        elif start is not None and end is not None:
            hits = [
                i
                for i in items
                if i.kind == "clip"
                and i.start is not None
                and i.end is not None
                and clip_overlaps((i.start, i.end), (start, end))
            ]
            if not hits:
                return {}, "no indexed clip overlaps that span by half of the shorter"
        else:
            hits = list(items)
            if not hits:
                return {}, "the file has no indexed items"
        return {i.id: 1 for i in hits}, None

    def _file(self, path: Path, base_dir: Path | None) -> tuple[str | None, str | None]:
        tries = (
            [path]
            if path.is_absolute()
            else [p for p in ((base_dir / path) if base_dir else None, Path.cwd() / path) if p]
        )
        for candidate in tries:
            resolved = str(Path(os.path.abspath(candidate)))
            if resolved in self.sources:
                return resolved, None
            real = str(candidate.resolve())
            if real in self.sources:
                return real, None
        tail = tuple(part for part in path.parts if part not in (".", ""))
        matches = sorted(s for s in self.sources if Path(s).parts[-len(tail) :] == tail) if tail else []
        if len(matches) == 1:
            return matches[0], None
        if matches:
            shown = ", ".join(matches[:3]) + (", ..." if len(matches) > 3 else "")
            return None, f"names {len(matches)} indexed files ({shown}): give more of its path"
        return None, "no indexed file has that path"

    def qrels(self, query: Query, base_dir: Path | None = None) -> tuple[dict[str, int], list[QueryError]]:
        """The query's judgements over stored ids (a reference that matches nothing stays, as an id that is
        never retrieved) and a problem for each such reference."""
        out: dict[str, int] = {}
        problems: list[QueryError] = []
        for ref, grade in query.relevant.items():
            ids, why = self.resolve(ref, base_dir)
            if not ids:
                problems.append(
                    QueryError(
                        f"relevant {ref!r} matches nothing indexed ({why}); counted as not found",
                        file=query.file,
                        line=query.line,
                    )
                )
                ids = {UNINDEXED + ref: 1}
            for doc in ids:
                out[doc] = max(out.get(doc, 0), grade)
        return out, problems


def stored_metadata(store: Any) -> list[dict[str, Any]]:
    """Every stored item's metadata (with its ``id``), from the store's ``metadatas()``."""
    own = getattr(store, "metadatas", None)
    if not callable(own):
        raise TypeError(f"{type(store).__name__} cannot list what it holds: evaluation needs a metadatas() method")
    return [dict(m) for m in own()]


# -- measures ----------------------------------------------------------------------------------------------


def score_runs(
    qrels: Mapping[str, Mapping[str, int]], runs: Mapping[str, Sequence[str]]
) -> dict[str, dict[str, float]]:
    """Per query, the measures of ``METRICS`` (pytrec_eval) of its ranking (ids, best first) against its
    judgements (id -> grade). Rankings are cut to ``DEPTH`` first (so ``recip_rank`` is MRR@10) and given
    strictly decreasing scores (trec_eval ranks by score; ties would be broken by id). A judged query without a
    ranking scores 0 everywhere; a ranking without judgements is ignored."""
    try:
        import pytrec_eval
    except ImportError as exc:
        raise require_extra("eval", "pytrec-eval-terrier") from exc
    judged = {q: {d: int(g) for d, g in rels.items()} for q, rels in qrels.items() if any(g > 0 for g in rels.values())}
    run: dict[str, dict[str, float]] = {}
    for qid in judged:
        ranked = list(dict.fromkeys(runs.get(qid, ())))[:DEPTH]
        run[qid] = {doc: float(DEPTH - rank) for rank, doc in enumerate(ranked)}
    got = (
        pytrec_eval.RelevanceEvaluator(judged, _MEASURES).evaluate({q: r for q, r in run.items() if r})
        if judged
        else {}
    )
    return {qid: {name: float(got.get(qid, {}).get(key, 0.0)) for name, key in METRICS.items()} for qid in judged}


def mean_metrics(per_query: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """The mean of each measure over the queries (0 when there are none)."""
    return {
        name: float(np.mean([values[name] for values in per_query.values()])) if per_query else 0.0 for name in METRICS
    }


def percentiles(latencies: Sequence[float]) -> dict[str, float]:
    if not latencies:
        return {"p50": 0.0, "p95": 0.0}
    arr = np.asarray(latencies, dtype=np.float64) * 1000.0
    return {"p50": float(np.percentile(arr, 50)), "p95": float(np.percentile(arr, 95))}


# -- running -----------------------------------------------------------------------------------------------


def as_query_set(queries: Any) -> QuerySet:
    """A path (JSONL or folder), a QuerySet, or an iterable of ``Query`` objects or JSONL-shaped dicts."""
    if isinstance(queries, QuerySet):
        return queries
    if isinstance(queries, (str, os.PathLike)):
        return load_queries(queries)
    kept: list[Query] = []
    problems: list[QueryError] = []
    for number, raw in enumerate(queries, 1):
        if isinstance(raw, Query):
            kept.append(raw)
            continue
        try:
            kept.append(parse_query(raw, file="<queries>", line=number, base_dir=Path.cwd()))
        except QueryError as err:
            problems.append(err)
    return QuerySet(kept, problems, base_dir=Path.cwd())


def evaluate(
    queries: Any,
    encoder: Any,
    store: Any,
    *,
    reranker: Any = None,
    candidates: int = 50,
    kinds: Sequence[str] | None = None,
    name: str | None = None,
    progress: Any = None,
) -> EvalResult:
    """Run every labelled query against ``store`` (already indexed with ``encoder``'s model) and measure it.

    ``queries``: a JSONL path, a BEIR-style folder, a ``QuerySet``, or ``Query`` objects / JSONL-shaped dicts.
    ``reranker``: any reranker (``Reranker``, ``RemoteReranker``, ``FakeReranker``) to reorder each query's top
    ``candidates``. ``kinds``: search only these kinds (page, clip, image). Bad queries and references that
    match nothing indexed are in ``result.problems``; the rest is evaluated. ``progress``: a tqdm-like bar.
    """
    from .indexer import check_store, rerank_hits, task_for_kind, wanted_kinds

    qset = as_query_set(queries)
    if candidates < 1:
        raise ValueError(f"candidates must be at least 1, got {candidates}")
    wanted = wanted_kinds(kinds)
    check_store(encoder, store)
    tasks = task_for_kind(encoder)
    wanted = [k for k in wanted if k in tasks]  # a kind the family does not take is not in the store
    catalogue = Catalogue.of(store)
    problems: list[InputError] = list(qset.problems)
    qrels: dict[str, dict[str, int]] = {}
    for query in qset.queries:
        judged, missing = catalogue.qrels(query, qset.base_dir)
        qrels[query.id] = judged
        problems += missing
    for model in (encoder, reranker):
        loader = getattr(model, "load", None)
        if callable(loader):
            loader()  # the weights load before the clock starts
    depth = max(DEPTH, candidates if reranker is not None else 0)
    rankings: dict[str, list[str]] = {}
    details: dict[str, dict[str, Any]] = {}
    latencies: list[float] = []
    for query in qset.queries:
        started = time.perf_counter()
        try:
            query_input = Input(text=query.text) if query.text is not None else input_for_reference(str(query.image))
            hits = _first_stage(query_input, query.text is None, encoder, store, tasks, wanted, depth)
            if reranker is not None:
                head, tail = hits[:candidates], hits[candidates:]
                found: list[InputError] = []
                ranked = rerank_hits(query_input, head, reranker, encoder=encoder, errors=found)
                problems += [InputError(f"not reranked: {e}", source=query.where) for e in found]
                placed = {h.id for h in ranked}
                hits = ranked + [h for h in head if h.id not in placed] + tail
        except InputError as exc:
            problems.append(InputError(f"query {query.id!r} could not run: {exc}", source=query.where))
            del qrels[query.id]
            continue
        latencies.append(time.perf_counter() - started)
        rankings[query.id] = [h.id for h in hits][:DEPTH]
        first = next((n for n, h in enumerate(hits, 1) if qrels[query.id].get(h.id, 0) > 0), None)
        details[query.id] = {
            "query": query.describe(200),
            "first_relevant": first,
            "top": hits[0].label if hits else None,
        }
        if progress is not None:
            progress.update(1)
    per_query = score_runs(qrels, rankings)
    config = {
        "model": str(getattr(encoder, "model_name", None) or getattr(encoder, "model", "") or ""),
        "family": getattr(getattr(encoder, "family", None), "name", None),
        "reranker": _model_name(reranker) if reranker is not None else None,
        "candidates": candidates if reranker is not None else None,
    }
    return EvalResult(
        name or config_name(encoder, reranker, candidates),
        mean_metrics(per_query),
        per_query,
        percentiles(latencies),
        rankings,
        details,
        problems,
        config,
    )


def _first_stage(
    query: Input, is_image: bool, encoder: Any, store: Any, tasks: Mapping[str, str], kinds: Sequence[str], depth: int
) -> list[Hit]:
    """The best ``depth`` items over ``kinds``: each kind searched with its task, a text query on the task's
    query side, an image query on its document side (one vector per distinct task)."""
    vectors: dict[str, np.ndarray] = {}
    hits: list[Hit] = []
    for kind in kinds:
        task = tasks[kind]
        if task not in vectors:
            embed = encoder.encode_documents if is_image else encoder.encode_queries
            vectors[task] = np.asarray(embed([query], task=task)[0])
        hits.extend(store.query(vectors[task], depth, kinds=[kind]))
    return sorted(hits, key=lambda h: h.score, reverse=True)[:depth]


def _model_name(model: Any) -> str:
    name = getattr(model, "model_name", None) or getattr(model, "model", None) or getattr(model, "url", None)
    return str(name) if name else type(model).__name__


def config_name(encoder: Any, reranker: Any = None, candidates: int = 50) -> str:
    """``tiny-qwen2vl (gme)``, ``VLM2Vec-V2.0 (vlm2vec-v2) + Qwen3-VL-Reranker-2B@50``."""
    model = _model_name(encoder).rstrip("/")
    short = model.rsplit("/", 1)[-1] if "://" not in model else model
    family = getattr(getattr(encoder, "family", None), "name", None)
    trunc = getattr(encoder, "truncate_dim", None)
    name = short + (f" ({family}{f', {trunc}-d' if trunc else ''})" if family else "")
    if reranker is not None:
        rr = _model_name(reranker).rstrip("/")
        name += f" + {rr.rsplit('/', 1)[-1] if '://' not in rr else rr}@{candidates}"
    return name


# -- reports -----------------------------------------------------------------------------------------------


def format_table(results: Sequence[EvalResult]) -> str:
    """The configurations side by side: one row each, the measures and the query latency."""
    width = max([len("configuration"), *(len(r.name) for r in results)])
    head = f"{'configuration':<{width}}  {'queries':>7}  " + "  ".join(f"{m:>9}" for m in METRICS)
    head += f"  {'p50 ms':>8}  {'p95 ms':>8}"
    lines = [head]
    for r in results:
        row = f"{r.name:<{width}}  {r.queries:>7}  " + "  ".join(f"{r.metrics[m]:>9.3f}" for m in METRICS)
        row += f"  {r.latency_ms['p50']:>8.1f}  {r.latency_ms['p95']:>8.1f}"
        lines.append(row)
    return "\n".join(lines)


def format_per_query(result: EvalResult) -> str:
    """One row per query, worst first (nDCG@10, then MRR@10): where its first relevant item landed, what won."""
    order = sorted(result.per_query, key=lambda q: (result.per_query[q]["nDCG@10"], result.per_query[q]["MRR@10"], q))
    idw = max([2, *(len(q) for q in order)])
    texts = {q: str(result.details.get(q, {}).get("query", ""))[:48] for q in order}
    qw = max([5, *(len(t) for t in texts.values())])
    lines = [result.name, f"  {'id':<{idw}}  nDCG@10  MRR@10  Hit@1  first  {'query':<{qw}}  top hit"]
    for qid in order:
        values, info = result.per_query[qid], result.details.get(qid, {})
        first = info.get("first_relevant")
        lines.append(
            f"  {qid:<{idw}}  {values['nDCG@10']:>7.3f}  {values['MRR@10']:>6.3f}  {values['Hit@1']:>5.0f}  "
            f"{first if first is not None else '-':>5}  {texts[qid]:<{qw}}  {info.get('top') or '-'}"
        )
    return "\n".join(lines)


__all__ = [
    "DEPTH",
    "METRICS",
    "Catalogue",
    "EvalResult",
    "Query",
    "QueryError",
    "QuerySet",
    "clip_overlaps",
    "evaluate",
    "format_per_query",
    "format_table",
    "load_jsonl",
    "load_queries",
    "mean_metrics",
    "parse_query",
    "score_runs",
    "stored_metadata",
]
