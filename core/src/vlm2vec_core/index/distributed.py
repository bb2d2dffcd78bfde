"""Indexing on a Ray cluster (extra ``[ray]``): the one-machine indexer's results, from many CPUs and GPUs.

The work splits the way Ray Data splits a batch-inference job:

* the driver (the process calling :func:`index_with_ray`) lists and hashes the files, prunes, skips the files
  the store's ledger holds, and asks the store which items of a half-indexed file it has already;
* Ray CPU tasks render the files, one file per task: a PDF's pages, a video's clips, an image's bytes, one row
  per item carrying its id, its metadata and what to embed (a task that crashes or fails costs its file only);
* actors embed the rows (``map_batches`` with a callable class: one model load per actor), on a GPU each when
  the cluster has GPUs, else on the CPU; or, with ``remote=``, actors that send the rows to ``vlm2vec serve``
  (or vLLM) servers;
* the driver upserts the vectors into the store (a ``chroma run`` server, or the embedded store on the driver's
  disk) and records a file in the ledger once every item of it is stored.

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
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ..encoders.protocol import EncoderSpec, encode_by_task
from ..errors import InputError, require_extra
from ..media.documents import clip_sampler, default_cache_dir, iter_items
from .indexer import IndexReport, check_store, plan_files, task_for_kind
from .pipeline import _fitted, fitting_of
from .store import ChromaStore, FileRecord, VectorStore, is_chroma_collection

log = logging.getLogger(__name__)

# Row types flowing from the render tasks through the encoder actors to the driver.
_ITEM = "item"  # to embed
_STORED = "stored"  # already in the store (a resumed file): passed through, not embedded
_FAILED = "failed"  # the encoder refused it (set by the actors)
_END = "end"  # one per file, after its items: how many there were and the file's rendering problems


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
    cache_dir: str | os.PathLike[str] | None = None,
    dpi: float = 144,
    clip_seconds: float = 10.0,
    batch_size: int = 8,
    rows_per_call: int | None = None,
    file_timeout: float | None = None,
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

    ``file_timeout``: seconds a render task may spend on one file before its worker is killed (the file is then
    reported; POSIX; None: no limit). ``ray_address``: the cluster to join (``"auto"``, ``ray://head:10001``);
    None joins the one this process is connected to already, else ``$RAY_ADDRESS``, else starts one on this
    machine (and stops it at the end). ``progress``: a tqdm-like bar, updated once per item.

    Bad files are listed in the report, never fatal; a file whose render task or encoder actor failed is listed
    too, and left for the next run.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
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
                "sampler": clip_sampler(encoder),
                "fitting": fitting_of(encoder),  # pages and clips travel at the model's size, fitted on the CPUs
                "timeout": file_timeout,
            },
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


# -- the Ray side ----------------------------------------------------------------------------------------


def _run(
    todo: list[tuple[str, str, str]],
    stored: Mapping[str, list[str]],
    spec: EncoderSpec,
    store: VectorStore,
    report: IndexReport,
    *,
    render_args: dict[str, Any],
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
    # A file whose render task fails (or whose worker dies) drops its own block, not the run: it then never
    # completes here, is reported and is tried again next time.
    context.max_errored_blocks = -1
    if progress is not None:
        context.enable_progress_bars = False
    try:
        # Identical copies share their items (ids come from the content): the first is rendered, the others
        # are recorded with it, as index_paths records them (their items already stored).
        first: dict[str, str] = {}
        twins: dict[str, list[str]] = {}
        for source, digest, _ in todo:
            if digest in first:
                twins.setdefault(first[digest], []).append(source)
            else:
                first[digest] = source
        rows = [{"source": s, "digest": d, "stored": list(stored.get(d, []))} for d, s in first.items()]
        files = ray.data.from_items(rows, override_num_blocks=len(rows))  # one file per block, one per task
        items = files.flat_map(
            partial(_render_file, **render_args),
            num_cpus=num_cpus_per_render,
            max_retries=0,  # a file that crashes its worker is not tried again (Ray's default: forever)
        )
        vectors = items.map_batches(
            _EncodeRows,
            fn_constructor_kwargs={"spec": spec, "batch_size": batch_size},
            batch_size=rows_per_call,
            batch_format="numpy",
            concurrency=actors,
            num_gpus=num_gpus_per_actor,
            num_cpus=num_cpus_per_actor,
        )
        ledger = _Ledger(store, report, {s: d for d, s in first.items()}, twins, progress)
        for batch in vectors.iter_batches(batch_size=None, batch_format="numpy"):
            ledger.take(batch)
        ledger.finish()
    finally:
        context.max_errored_blocks, context.enable_progress_bars = saved


def _render_file(
    row: dict[str, Any],
    *,
    cache_dir: str,
    dpi: float,
    clip_seconds: float,
    tasks: Mapping[str, str],
    sampler: Any,
    fitting: Any = None,
    timeout: float | None = None,
) -> list[dict[str, Any]]:
    """One file as rows, in a Ray CPU task: its items (what to embed, pickled) and a last row with their count
    and the file's problems. With ``timeout``, a file that takes longer (a decoder looping on a forged file,
    in native code where no exception reaches) ends the worker process: SIGALRM's default action."""
    with _alarm(timeout):
        return _file_rows(row, cache_dir, dpi, clip_seconds, tasks, sampler, fitting)


@contextmanager
def _alarm(timeout: float | None) -> Iterator[None]:
    """SIGALRM after ``timeout`` seconds (its default action ends the process), where that is possible."""
    import signal

    timed = timeout is not None and hasattr(signal, "setitimer") and signal.getsignal(signal.SIGALRM) == signal.SIG_DFL
    if timed:
        signal.setitimer(signal.ITIMER_REAL, float(timeout or 0))
    try:
        yield
    finally:
        if timed:
            signal.setitimer(signal.ITIMER_REAL, 0)


def _file_rows(
    row: dict[str, Any],
    cache_dir: str,
    dpi: float,
    clip_seconds: float,
    tasks: Mapping[str, str],
    sampler: Any,
    fitting: Any,
) -> list[dict[str, Any]]:
    source, digest = str(row["source"]), str(row["digest"])
    already = set(row["stored"])
    errors: list[InputError] = []
    out: list[dict[str, Any]] = []
    path = Path(source)
    for item in iter_items(
        path,
        cache_dir=cache_dir,
        dpi=dpi,
        clip_seconds=clip_seconds,
        errors=errors,
        digest=digest,
        sampler=sampler,
    ):
        done = item.id in already
        if done:
            payload = b""
        elif item.kind == "image":  # its bytes: the encoder opens them as it opens the file
            payload = path.read_bytes()
        else:
            payload = pickle.dumps(_fitted_input(item, fitting))
        meta = {**item.metadata(), "source": source}
        out.append(_row(_STORED if done else _ITEM, source, digest, item.id, item.kind, tasks[item.kind],
                        item.label, json.dumps(meta), payload))  # fmt: skip
    problems = [{"reason": e.reason, "location": e.location or ""} for e in errors]
    out.append(_row(_END, source, digest, "", "", "", str(len(out)), json.dumps(problems), b""))
    return out


def _fitted_input(item: Any, fitting: Any) -> Any:
    """A page's or a clip's Input at the model's size (as the one-machine pipeline's workers make it: the same
    pixels the encoder would fit), so the actors neither receive nor resize full renders; as rendered when it
    cannot be fitted (the encoder then reports it as it would)."""
    if fitting is None:
        return item.to_input()
    entry = _fitted(item, fitting)
    return entry.input if entry.input is not None else item.to_input()


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
        "label": label,  # for the end row: the number of item rows of the file
        "meta": meta,  # the item's metadata, or the end row's problems (JSON)
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
    expected: int | None = None  # item rows, known when the file's end row arrives
    seen: int = 0
    kept: int = 0  # stored now or already there
    errors: list[InputError] = field(default_factory=list)


class _Ledger:
    """The driver's side: upsert what arrives, and record each file once all of its items are stored."""

    def __init__(
        self,
        store: VectorStore,
        report: IndexReport,
        files: Mapping[str, str],
        twins: Mapping[str, list[str]],
        progress: Any,
    ) -> None:
        self.store, self.report, self.progress, self.twins = store, report, progress, twins
        self.files = {source: _File(digest) for source, digest in files.items()}
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
        for n, kind in enumerate(kinds):
            source = str(batch["source"][n])
            state = self.files[source]
            touched.add(source)
            if kind == _END:
                state.expected = int(batch["label"][n])
                state.errors.extend(
                    InputError(p["reason"], source=source, location=p["location"] or None)
                    for p in json.loads(batch["meta"][n])
                )
                continue
            state.seen += 1
            if kind == _ITEM:
                state.kept += 1
                self.report.items[str(batch["kind"][n])] += 1
            elif kind == _STORED:
                state.kept += 1
                self.report.reused += 1
            else:  # _FAILED
                state.errors.append(InputError(str(batch["meta"][n]), source=source, location=str(batch["label"][n])))
        if self.progress is not None:
            self.progress.update(sum(kind != _END for kind in kinds))
            elapsed = max(time.perf_counter() - self.started, 1e-9)
            rates = ", ".join(f"{n / elapsed:.1f} {k}s/s" for k, n in sorted(self.report.items.items()))
            self.progress.set_postfix_str(rates)
        for source in touched:
            self._close_if_done(source)

    def _close_if_done(self, source: str) -> None:
        state = self.files[source]
        if state.expected is None or state.seen < state.expected:
            return
        del self.files[source]
        self.report.errors.extend(state.errors)
        for twin in self.twins.get(source, []):  # each copy has the same problems, as each would alone
            self.report.errors.extend(InputError(e.reason, source=twin, location=e.location) for e in state.errors)
        # A file whose every item failed (unreadable, or every clip broken) is not recorded as done: the next
        # run tries it again instead of skipping it silently.
        if state.errors and state.kept == 0:
            return
        for path in [source, *self.twins.get(source, [])]:
            self.store.mark_file(FileRecord(path, state.digest, state.expected, time.time()))
            self.report.files_indexed += 1
            if path != source:
                self.report.reused += state.kept

    def finish(self) -> None:
        """Files that never completed: their render task or an encoder actor failed (Ray logged why)."""
        for source, state in self.files.items():
            self.report.errors.extend(state.errors)
            self.report.errors.extend(
                InputError(
                    "a Ray worker failed on this file (its rendering crashed or ran past file_timeout, or an "
                    "encoder actor failed: see Ray's log); it is not recorded as indexed, so the next run tries it "
                    "again",
                    source=path,
                )
                for path in [source, *self.twins.get(source, [])]
            )
        self.files.clear()
