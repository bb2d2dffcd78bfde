"""Indexing on a Ray cluster (extra ``[ray]``): the one-machine indexer's results, from many CPUs and GPUs.

The work splits the way Ray Data splits a batch-inference job:

* the driver (the process calling :func:`index_with_ray`) lists and hashes the files, prunes, skips the files
  the store's ledger holds, and asks the store which items of a half-indexed file it has already;
* small Ray tasks count the pages of the PDFs and the clips of the videos (32 files a task; an image is one
  item and is not opened);
* Ray CPU tasks render about ``items_per_task`` items each: a PDF or a video longer than that is split into
  ranges of that many pages or clips, one range a task; smaller files are grouped several to a task. A task
  reads its files (or its range) one after the other in a decoding process its Ray worker keeps
  (``vlm2vec_core.media.isolate``, running the one-machine pipeline's ``read_items``), so a file that crashes
  its decoder or runs past ``file_timeout`` costs that file only: the process is replaced and the task goes
  on with its other files.
  It yields one row per item carrying its id, its metadata and what to embed, then one row per file or range
  with their count and the problems met;
* actors embed the rows (``map_batches`` with a callable class: one model load per actor), on a GPU each when
  the cluster has GPUs, else on the CPU; or, with ``remote=``, actors that send the rows to ``vlm2vec serve``
  (or vLLM) servers;
* the driver upserts the vectors into the store (a ``chroma run`` server, or the embedded store on the driver's
  disk) and records a file in the ledger once every item of it, over all of its ranges, is stored.

Ids come from the content (as in :func:`vlm2vec_core.index.indexer.index_paths`), items already stored are not
embedded again, and a file is recorded only when all of its items are in: a run killed at any moment and
started again ends with every item stored exactly once. Ray is imported when the function runs, never before.

On a multi-node cluster every node must see the files (and ``cache_dir``) at the same path: a shared file
system (NFS, a mounted bucket). See docs/scale.md.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ..encoders.progress import IndexProgress
from ..encoders.protocol import EncoderSpec, encode_by_task
from ..errors import InputError, require_extra
from ..media.documents import default_cache_dir
from ..media.isolate import WorkerPool
from .indexer import IndexReport, check_store, plan_files, task_for_kind
from .pipeline import (
    COUNT_BATCH,
    DEPTH,
    Entry,
    ReadJob,
    count_in_workers,
    file_parts,
    fitting_of,
    read_items,
    sampler_args,
)
from .store import ChromaStore, FileRecord, VectorStore, is_chroma_collection

log = logging.getLogger(__name__)

# Items a render task is given: a longer PDF is split into ranges of this many pages, smaller files grouped to
# about this many. A Ray Data task costs about 12-16 ms of scheduling besides its work (measured: 256 one-row
# tasks doing nothing on a local 2-CPU cluster), against about 45 ms to render, fit and thumbnail a letter page at
# 144 dpi (more for dense text) and about 5 ms to check a small image: at 16 items a task that overhead is a few
# per cent even for images (one image a task spent more time scheduling than working), while a 2,000-page PDF
# still makes 125 tasks for the cluster's CPUs, a failed range costs 16 pages' work, and a task's output (16
# fitted pages of about 2.9 MB) stays well under Ray Data's 128 MiB block, so a task holds little memory.
ITEMS_PER_TASK = 16

# Row types flowing from the render tasks through the encoder actors to the driver.
_ITEM = "item"  # to embed
_STORED = "stored"  # already in the store (a resumed file): passed through, not embedded
_FAILED = "failed"  # its media could not be fitted (set by the render task) or the encoder refused it (actors)
_END = "end"  # one per part (a file, or a range of a PDF's pages), after its items: their count and problems


def index_with_ray(
    paths: Iterable[str | os.PathLike[str]],
    store: VectorStore | str | os.PathLike[str],
    *,
    model: str | os.PathLike[str] | None = None,
    remote: str | Sequence[str] | None = None,
    api_key: str | None = None,
    family: str | None = None,
    truncate_dim: int | None = None,
    max_pixels: int | None = None,
    dtype: str | None = None,
    base_model: str | os.PathLike[str] | None = None,
    collection: str = "vlm2vec",
    ray_address: str | None = None,
    actors: int | None = None,
    num_gpus_per_actor: float | None = None,
    num_cpus_per_actor: float = 1,
    num_cpus_per_render: float = 1,
    items_per_task: int = ITEMS_PER_TASK,
    cache_dir: str | os.PathLike[str] | None = None,
    dpi: float = 144,
    clip_seconds: float = 10.0,
    batch_size: int = 8,
    rows_per_call: int | None = None,
    file_timeout: float | None = None,
    password: str | None = None,
    prune: bool = False,
    progress: Any = None,
) -> IndexReport:
    """Index every PDF, video and image under ``paths`` on a Ray cluster; the report of ``index_paths``.

    ``store``: a :class:`~vlm2vec_core.index.store.VectorStore`, a ``chroma run`` URL (``http://host:8000``) or the
    folder of an embedded store (the driver writes it; ``collection`` names the collection of both).

    The encoder: ``model`` (a Hub id or a directory every node can read), loaded once in each of ``actors``
    actors with ``num_gpus_per_actor`` GPUs each (defaults: one actor per GPU of the cluster; a cluster without
    GPUs gets one CPU actor); or ``remote`` servers (one URL or several), called from ``actors`` CPU actors
    (default: one per server). ``family``, ``truncate_dim``, ``max_pixels``, ``dtype`` and ``base_model`` are
    the encoder's; ``batch_size`` its batch, ``rows_per_call`` how many items an actor takes at once (default
    four batches).

    ``items_per_task``: pages, clips and images a render task (``num_cpus_per_render`` CPUs) is given: a PDF
    with more pages is split into ranges of that many (when its page count can be trusted), smaller files are
    grouped to about that many items a task; a video of more clips, into ranges of clips the same way.
    ``file_timeout``: seconds of work a render task may spend on one file or range before the worker process
    decoding it is killed (the file is then reported; None: no limit). ``password``: tried on every encrypted
    PDF (it travels to the render tasks with their arguments). ``ray_address``: the cluster to join
    (``"auto"``, ``ray://head:10001``); None joins the one this process is connected to already, else
    ``$RAY_ADDRESS``, else starts one on this machine (and stops it at the end). ``progress``: a tqdm-like bar,
    updated once per item (its total set once the items are counted).

    Bad files are listed in the report, never fatal; a file whose decoder crashed, or whose render task or
    encoder actor failed, is listed too, and left for the next run.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if items_per_task < 1:
        raise ValueError(f"items_per_task must be positive, got {items_per_task}")
    if file_timeout is not None and not file_timeout > 0:
        raise ValueError(f"file_timeout must be positive, got {file_timeout!r}")
    if model is not None and remote is not None:
        raise ValueError("pass model= (a local model in each actor) or remote= (servers), not both")
    try:
        import ray.data  # the [data] part of the extra

        import ray
    except ImportError as exc:
        raise require_extra("ray", "ray[data]") from exc

    started = time.perf_counter()
    spec = EncoderSpec(
        model=None if model is None else str(model),
        remote=None if remote is None else (remote if isinstance(remote, str) else tuple(remote)),
        api_key=api_key,
        family=family,
        truncate_dim=truncate_dim,
        max_pixels=max_pixels,
        dtype=dtype,
        base_model=None if base_model is None else str(base_model),
    )
    vectors_store = open_store(store, collection=collection)
    encoder = spec.build()  # on the driver: the signature (family, dimension) and the presets, no weights
    check_store(encoder, vectors_store)
    report = IndexReport()
    todo = plan_files(paths, encoder, vectors_store, report, prune=prune)
    if not todo:
        report.seconds = time.perf_counter() - started
        return report

    owned = not ray.is_initialized()
    if owned:
        ray.init(address=ray_address or os.environ.get("RAY_ADDRESS"), log_to_driver=False)
    try:
        gpus = float(ray.cluster_resources().get("GPU", 0))
        if num_gpus_per_actor is None:
            num_gpus_per_actor = 0.0 if remote is not None or gpus == 0 else 1.0
        if actors is None:
            if remote is not None:
                actors = 1 if isinstance(remote, str) else max(1, len(remote))
            elif num_gpus_per_actor > 0:
                actors = max(1, int(gpus // num_gpus_per_actor))
            else:
                actors = 1
        actor_spec = spec
        if remote is None and num_gpus_per_actor == 0:  # a CPU actor, even on a node that has a GPU
            actor_spec = EncoderSpec(**{**spec.__dict__, "device": "cpu"})
        cache = (Path(cache_dir) if cache_dir is not None else default_cache_dir()).resolve()
        stored = _stored_ids(vectors_store, [digest for _, digest, _ in todo])
        family_of_clips, num_frames = sampler_args(encoder)
        _run(
            todo,
            stored,
            actor_spec,
            vectors_store,
            report,
            render_args={
                "cache_dir": str(cache),
                "dpi": dpi,
                "clip_seconds": clip_seconds,
                "tasks": dict(task_for_kind(encoder)),
                "family": family_of_clips,  # the clip sampler's (rebuilt in the decoding process)
                "num_frames": num_frames,
                "fitting": fitting_of(encoder),  # pages and clips travel at the model's size, fitted on the CPUs
                "timeout": file_timeout,
                "password": password,
            },
            items_per_task=items_per_task,
            actors=actors,
            num_gpus_per_actor=num_gpus_per_actor,
            num_cpus_per_actor=num_cpus_per_actor,
            num_cpus_per_render=num_cpus_per_render,
            batch_size=batch_size,
            rows_per_call=rows_per_call or 4 * batch_size,
            progress=progress,
        )
    finally:
        if owned:
            ray.shutdown()
    report.seconds = time.perf_counter() - started
    return report


def open_store(store: VectorStore | str | os.PathLike[str], *, collection: str = "vlm2vec") -> VectorStore:
    """``store`` itself, or the Chroma store it names: a URL (``http(s)://``) is a ``chroma run`` server,
    anything else the folder of an embedded store."""
    if isinstance(store, (str, os.PathLike)):
        text = os.fspath(store)
        if text.startswith(("http://", "https://")):
            return ChromaStore.open(url=text, collection=collection)
        return ChromaStore.open(db=text, collection=collection)
    return store


def _stored_ids(store: VectorStore, digests: Sequence[str]) -> dict[str, list[str]]:
    """Digest -> ids of that content already stored (items of a file a killed run left half done), so that the
    render tasks pass them on without having them embedded again. A store that cannot be asked by content
    gets none: its items are embedded again and upserted under the same ids (the result is the same)."""
    ask = getattr(store, "ids_for_digest", None)
    collection = getattr(store, "items", None)
    found: dict[str, list[str]] = {}
    for digest in dict.fromkeys(digests):
        if ask is not None:
            ids = list(ask(digest))
        elif collection is not None and is_chroma_collection(collection):
            ids = list(collection.get(where={"content_sha256": digest}, include=[])["ids"])
        else:
            ids = []
        if ids:
            found[digest] = ids
    return found


# -- how the work is cut into tasks ------------------------------------------------------------------------


@dataclass(frozen=True)
class Part:
    """A file, a range of a PDF's pages or a range of a video's clips, as a render task reads it (in its Ray
    worker's decoding process)."""

    source: str
    digest: str
    kind: str  # the file's: pdf, video or image
    index: int = 0  # its place among the file's parts
    pages: tuple[int, ...] | None = None  # None: the whole file
    clips: tuple[int, int | None] | None = None  # a video's clips first to stop - 1 (stop None: to its end)

    @property
    def span(self) -> str | None:
        """``pages 17-32`` or ``clips 17-32`` (1-based) for a range, None for a whole file (where errors are
        located)."""
        if self.clips is not None:
            first, stop = self.clips
            return f"clips {first + 1}-" + ("" if stop is None else str(stop))
        if self.pages is None:
            return None
        first, last = self.pages[0], self.pages[-1]
        return f"page {first}" if first == last else f"pages {first}-{last}"


def plan_tasks(
    files: Sequence[tuple[str, str, str]], counts: Sequence[int | None], items_per_task: int = ITEMS_PER_TASK
) -> list[list[Part]]:
    """The render tasks for ``files`` (``(source, digest, file kind)``, each with its counted items, None
    where they could not be counted), each a list of parts, in file order.

    A PDF of more than ``items_per_task`` pages, or a video of more clips, gets one task per range of that many
    pages or clips (the one-machine pipeline's ``file_parts``). A file whose items could not be counted (a PDF
    whose page tree does not hold what it claims, read whole; a video of unknown length) gets a task of its
    own, as does a file of at least
    ``items_per_task`` items. The others are grouped in order, several to a task, up to ``items_per_task``
    items a task."""
    tasks: list[list[Part]] = []
    group: list[Part] = []
    held = 0
    for (source, digest, what), count in zip(files, counts, strict=True):
        ranges = file_parts(what, count, pages=items_per_task, clips=items_per_task)
        if len(ranges) > 1:
            tasks.extend([Part(source, digest, what, n, pages, clips)] for n, (pages, clips) in enumerate(ranges))
            continue
        weight = items_per_task if count is None else max(1, count)
        if group and held + weight > items_per_task:
            tasks.append(group)
            group, held = [], 0
        group.append(Part(source, digest, what))
        held += weight
        if held >= items_per_task:
            tasks.append(group)
            group, held = [], 0
    if group:
        tasks.append(group)
    return tasks


def _count_files(
    pairs: list[tuple[str, str]], clip_seconds: float, timeout: float | None, password: str | None
) -> list[int | None]:
    """A Ray task: the items of ``(path, file kind)`` pairs, read from their headers in this worker's decoding
    process (a header that crashes it or hangs makes the whole batch unknown: those files are then read whole)."""
    return count_in_workers(_decoder(), pairs, clip_seconds, timeout, password)


def _counted(
    files: Sequence[tuple[str, str, str]],
    clip_seconds: float,
    timeout: float | None,
    num_cpus: float,
    password: str | None = None,
) -> list[int | None]:
    """Each file's item count, the PDFs and videos counted in Ray tasks (an image is one item)."""
    import ray

    counts: list[int | None] = [1 if what == "image" else None for _, _, what in files]
    wanted = [n for n, (_, _, what) in enumerate(files) if what != "image"]
    if not wanted:
        return counts
    task = ray.remote(_count_files).options(num_cpus=num_cpus)
    batches = [wanted[i : i + COUNT_BATCH] for i in range(0, len(wanted), COUNT_BATCH)]
    refs = [
        task.remote([(files[n][0], files[n][2]) for n in batch], clip_seconds, timeout, password) for batch in batches
    ]
    for batch, ref in zip(batches, refs, strict=True):
        try:
            got = ray.get(ref)
        except ray.exceptions.RayError as exc:  # its worker died (a lost node): those files are read whole
            log.info("could not count the items of %d file(s) (%s)", len(batch), type(exc).__name__)
            continue
        for n, count in zip(batch, got, strict=True):
            counts[n] = count
    return counts


# -- the Ray side ----------------------------------------------------------------------------------------


def _run(
    todo: list[tuple[str, str, str]],
    stored: Mapping[str, list[str]],
    spec: EncoderSpec,
    store: VectorStore,
    report: IndexReport,
    *,
    render_args: dict[str, Any],
    items_per_task: int,
    actors: int,
    num_gpus_per_actor: float,
    num_cpus_per_actor: float,
    num_cpus_per_render: float,
    batch_size: int,
    rows_per_call: int,
    progress: Any,
) -> None:
    import ray.data

    context = ray.data.DataContext.get_current()
    saved = (context.max_errored_blocks, context.enable_progress_bars)
    # A render task that fails (a bug, a lost node past Ray's retries) or an actor's failed batch drops its own
    # block, not the run: its files then never complete here, are reported and are tried again next time.
    context.max_errored_blocks = -1
    if progress is not None:
        context.enable_progress_bars = False
    bar = IndexProgress(progress)
    try:
        # Identical copies share their items (ids come from the content): the first is rendered, the others
        # are recorded with it, as index_paths records them (their items already stored).
        first: dict[str, tuple[str, str]] = {}
        twins: dict[str, list[str]] = {}
        for source, digest, what in todo:
            if digest in first:
                twins.setdefault(first[digest][0], []).append(source)
            else:
                first[digest] = (source, what)
        files = [(source, digest, what) for digest, (source, what) in first.items()]
        counts = _counted(
            files, render_args["clip_seconds"], render_args["timeout"], num_cpus_per_render, render_args["password"]
        )
        bar.set_total(sum(n or 0 for n in counts))
        plan = plan_tasks(files, counts, items_per_task)
        parts: dict[str, list[Part]] = {}
        for task in plan:
            for part in task:
                parts.setdefault(part.source, []).append(part)
        rows = [{"parts": _packed(task, stored)} for task in plan]
        blocks = ray.data.from_items(rows, override_num_blocks=len(rows))  # one block, so one task, each
        items = blocks.flat_map(partial(_render_task, **render_args), num_cpus=num_cpus_per_render)
        vectors = items.map_batches(
            _EncodeRows,
            fn_constructor_kwargs={"spec": spec, "batch_size": batch_size},
            batch_size=rows_per_call,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_gpus=num_gpus_per_actor,
            num_cpus=num_cpus_per_actor,
        )
        ledger = _Ledger(store, report, parts, twins, progress)
        for batch in vectors.iter_batches(batch_size=None, batch_format="numpy"):
            ledger.take(batch)
        ledger.finish()
        bar.finish()
    finally:
        context.max_errored_blocks, context.enable_progress_bars = saved


def _packed(task: list[Part], stored: Mapping[str, list[str]]) -> str:
    """A task's parts as its one input row (JSON: Arrow needs no schema for it)."""
    return json.dumps(
        [
            {
                "source": p.source,
                "digest": p.digest,
                "kind": p.kind,
                "index": p.index,
                "pages": None if p.pages is None else list(p.pages),
                "clips": None if p.clips is None else list(p.clips),
                "stored": stored.get(p.digest, []),
            }
            for p in task
        ]
    )


_decoding: WorkerPool | None = None


def _decoder() -> WorkerPool:
    """This Ray worker's decoding process (started on its first task, kept for the next ones)."""
    global _decoding
    if _decoding is None or _decoding._closed:
        _decoding = WorkerPool(1, name="vlm2vec-ray-decode")
    return _decoding


def _render_task(
    row: dict[str, Any],
    *,
    cache_dir: str,
    dpi: float,
    clip_seconds: float,
    tasks: Mapping[str, str],
    family: Any = None,
    num_frames: int | None = None,
    fitting: Any = None,
    timeout: float | None = None,
    password: str | None = None,
) -> list[dict[str, Any]]:
    """One render task: each of its parts read in this worker's decoding process, as rows (the items, then one
    end row a part). A part whose decoder crashes or runs past ``timeout`` seconds ends as that part's error;
    the process is replaced and the task goes on with its other parts."""
    import ray

    task_id = ray.get_runtime_context().get_task_id() or ""
    out: list[dict[str, Any]] = []
    for raw in json.loads(row["parts"]):
        clips = None if raw["clips"] is None else (int(raw["clips"][0]), raw["clips"][1])
        part = Part(raw["source"], raw["digest"], raw["kind"], raw["index"], _pages(raw["pages"]), clips)
        job = ReadJob(
            part.source,
            part.digest,
            cache_dir,
            dpi,
            clip_seconds,
            family=family,
            num_frames=num_frames,
            fitting=None if part.kind == "image" else fitting,  # an image travels as its file's bytes
            pages=part.pages,
            clips=part.clips,
            password=password,
        )
        out.extend(_part_rows(part, job, set(raw["stored"]), tasks, timeout, task_id))
    return out


def _pages(pages: list[int] | None) -> tuple[int, ...] | None:
    return None if pages is None else tuple(pages)


def _part_rows(
    part: Part, job: ReadJob, already: set[str], tasks: Mapping[str, str], timeout: float | None, task_id: str
) -> list[dict[str, Any]]:
    problems: list[dict[str, str]] = []
    out: list[dict[str, Any]] = []
    crashed = False
    try:
        work = _decoder().submit(
            _read_rows, part, job, already, tasks, source=part.source, timeout=timeout, depth=DEPTH
        )
        for rows, met in work:
            out.extend(rows)
            problems.extend(met)
    except InputError as err:  # its decoder crashed or ran past the time limit: the rest of the part is lost
        crashed = True
        problems.append({"reason": err.reason, "location": err.location or part.span or ""})
    end = {"part": part.index, "problems": problems, "crashed": crashed, "task": task_id}
    out.append(_row(_END, part.source, part.digest, "", "", "", str(len(out)), json.dumps(end), b""))
    return out


def _read_rows(
    part: Part, job: ReadJob, already: set[str], tasks: Mapping[str, str]
) -> Iterator[tuple[list[dict[str, Any]], list[dict[str, str]]]]:
    """In the decoding process: the part's items as finished rows (what to embed already pickled, so the pixels
    cross from this process to the Ray worker once, as bytes), with the problems met, a few items at a time."""
    for batch in read_items(job):
        rows: list[dict[str, Any]] = []
        problems: list[dict[str, str]] = []
        for event in batch.events:
            if isinstance(event, InputError):
                problems.append({"reason": event.reason, "location": event.location or ""})
            else:
                rows.append(_item_row(part, event, already, tasks))
        yield rows, problems


def _item_row(part: Part, entry: Entry, already: set[str], tasks: Mapping[str, str]) -> dict[str, Any]:
    item = entry.item
    task, meta = tasks[item.kind], json.dumps({**item.metadata(), "source": part.source})
    if item.id in already:
        return _row(_STORED, part.source, part.digest, item.id, item.kind, task, item.label, meta, b"")
    if entry.error is not None:  # its media could not be fitted to the model: reported as the encoder would
        return _row(_FAILED, part.source, part.digest, item.id, item.kind, task, item.label, entry.error.reason, b"")
    if item.kind == "image":  # its bytes: the encoder opens them as it opens the file
        try:
            payload = Path(part.source).read_bytes()
        except OSError as exc:
            reason = f"cannot read the file ({exc.strerror or exc})"
            return _row(_FAILED, part.source, part.digest, item.id, item.kind, task, item.label, reason, b"")
    else:
        payload = pickle.dumps(entry.input if entry.input is not None else item.to_input())
    return _row(_ITEM, part.source, part.digest, item.id, item.kind, task, item.label, meta, payload)


def _row(
    kind_of_row: str,
    source: str,
    digest: str,
    item_id: str,
    kind: str,
    task: str,
    label: str,
    meta: str,
    payload: bytes,
) -> dict[str, Any]:
    return {
        "row": kind_of_row,
        "source": source,
        "digest": digest,
        "id": item_id,
        "kind": kind,
        "task": task,
        "label": label,  # for the end row: the number of item rows of the part
        "meta": meta,  # the item's metadata; a failed item's reason; the end row's part, problems, task (JSON)
        "payload": payload,
    }


class _EncodeRows:
    """A Ray Data actor: one encoder, loaded once, embedding the item rows of each batch (others pass)."""

    def __init__(self, spec: EncoderSpec, batch_size: int) -> None:
        self.encoder = spec.build()
        if hasattr(self.encoder, "load"):
            self.encoder.load()
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        kinds = batch["row"]
        todo = [n for n, kind in enumerate(kinds) if kind == _ITEM]
        inputs = [_input(str(batch["kind"][n]), batch["payload"][n]) for n in todo]
        bad: list[InputError] = []
        vectors = encode_by_task(
            self.encoder, inputs, [str(batch["task"][n]) for n in todo], batch_size=self.batch_size, errors=bad
        )
        failed = {e.index: e.reason for e in bad}
        out_vectors = [b""] * len(kinds)
        rows = kinds.astype(object).copy()
        metas = batch["meta"].astype(object).copy()
        good = iter(vectors)
        for position, n in enumerate(todo):
            if position in failed:
                rows[n] = _FAILED
                metas[n] = failed[position]
            else:
                out_vectors[n] = np.asarray(next(good), dtype=np.float32).tobytes()
        result = {k: v for k, v in batch.items() if k != "payload"}  # the pixels go no further
        result["row"] = rows
        result["meta"] = metas
        result["vector"] = np.array(out_vectors, dtype=object)
        return result


def _input(kind: str, payload: bytes) -> Any:
    """What a render task packed: an image file's bytes, else the pickled Input of a page or a clip."""
    from ..types import Input

    return Input(image=bytes(payload)) if kind == "image" else pickle.loads(payload)


@dataclass
class _File:
    digest: str
    parts: dict[int, Part]  # the parts not ended yet
    expected: int = 0  # item rows of the parts ended
    ids: set[str] = field(default_factory=set)  # item rows seen (a retried task's repeats are not counted)
    kept: int = 0  # stored now or already there
    crashed: bool = False  # a part's decoder crashed or ran past the time limit: not recorded this run
    errors: list[InputError] = field(default_factory=list)

    def add_error(self, error: InputError) -> None:
        """Record ``error`` unless the same one is there (a problem every range of a PDF meets: once)."""
        if all(str(e) != str(error) for e in self.errors):
            self.errors.append(error)


class _Ledger:
    """The driver's side: upsert what arrives, and record each file once all of its items are stored."""

    def __init__(
        self,
        store: VectorStore,
        report: IndexReport,
        parts: Mapping[str, list[Part]],
        twins: Mapping[str, list[str]],
        progress: Any,
    ) -> None:
        self.store, self.report, self.progress, self.twins = store, report, progress, twins
        self.files = {s: _File(p[0].digest, {part.index: part for part in p}) for s, p in parts.items()}
        self.started = time.perf_counter()

    def take(self, batch: Mapping[str, np.ndarray]) -> None:
        kinds = [str(k) for k in batch["row"]]
        good = [n for n, kind in enumerate(kinds) if kind == _ITEM]
        if good:
            self.store.upsert(
                [str(batch["id"][n]) for n in good],
                np.stack([np.frombuffer(batch["vector"][n], dtype=np.float32) for n in good]),
                [json.loads(batch["meta"][n]) for n in good],
            )
        touched: set[str] = set()
        new = 0
        for n, kind in enumerate(kinds):
            source = str(batch["source"][n])
            state = self.files.get(source)
            if state is None:  # a retried task's repeat of a file closed already
                continue
            touched.add(source)
            if kind == _END:
                self._end(source, state, int(batch["label"][n]), json.loads(batch["meta"][n]))
                continue
            item_id = str(batch["id"][n])
            if item_id in state.ids:
                continue
            state.ids.add(item_id)
            new += 1
            if kind == _ITEM:
                state.kept += 1
                self.report.items[str(batch["kind"][n])] += 1
            elif kind == _STORED:
                state.kept += 1
                self.report.reused += 1
            else:  # _FAILED
                state.add_error(InputError(str(batch["meta"][n]), source=source, location=str(batch["label"][n])))
        if self.progress is not None:
            self.progress.update(new)
            elapsed = max(time.perf_counter() - self.started, 1e-9)
            rates = ", ".join(f"{n / elapsed:.1f} {k}s/s" for k, n in sorted(self.report.items.items()))
            self.progress.set_postfix_str(rates)
        for source in touched:
            self._close_if_done(source)

    def _end(self, source: str, state: _File, items: int, end: dict[str, Any]) -> None:
        part = state.parts.pop(int(end["part"]), None)
        if part is None:  # a retried task's repeat
            return
        state.expected += items
        state.crashed = state.crashed or bool(end["crashed"])
        for problem in end["problems"]:
            state.add_error(InputError(problem["reason"], source=source, location=problem["location"] or None))
        log.debug(
            "%s%s: %d item(s), read by Ray task %s",
            source,
            f" ({part.span})" if part.span else "",
            items,
            end["task"],
            extra={"ray_task": end["task"], "ray_part": part},
        )

    def _close_if_done(self, source: str) -> None:
        state = self.files[source]
        if state.parts or len(state.ids) < state.expected:
            return
        del self.files[source]
        self.report.errors.extend(state.errors)
        for twin in self.twins.get(source, []):  # each copy has the same problems, as each would alone
            self.report.errors.extend(InputError(e.reason, source=twin, location=e.location) for e in state.errors)
        # A file a decoder crashed on is not done (what was stored is kept); nor is one whose every item failed
        # (unreadable, or every clip broken): the next run tries them again instead of skipping them silently.
        if state.crashed or (state.errors and state.kept == 0):
            return
        for path in [source, *self.twins.get(source, [])]:
            self.store.mark_file(FileRecord(path, state.digest, state.expected, time.time()))
            self.report.files_indexed += 1
            if path != source:
                self.report.reused += state.kept

    def finish(self) -> None:
        """Files that never completed: a render task or an encoder actor failed (Ray logged why)."""
        for source, state in self.files.items():
            missing = [p.span for p in state.parts.values()]
            where = None if None in missing or not missing else ", ".join(str(s) for s in missing)
            for path in [source, *self.twins.get(source, [])]:
                self.report.errors.extend(InputError(e.reason, source=path, location=e.location) for e in state.errors)
                self.report.errors.append(
                    InputError(
                        "a Ray worker failed on this file (a render task or an encoder actor failed: see Ray's "
                        "log); it is not recorded as indexed, so the next run tries it again",
                        source=path,
                        location=where,
                    )
                )
        self.files.clear()
