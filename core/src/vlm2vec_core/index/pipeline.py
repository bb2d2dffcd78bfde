"""The indexing pipeline: files are read, rendered and fitted in worker processes while the encoder runs.

Worker processes (``vlm2vec_core.media.isolate``; no torch there) open the files (native decoders: a crash or a hang
costs that file, not the run), render pages and sample clips (``documents.iter_items``: ids, cache files and
metadata as ever), and fit each item's media to the encoder family's size (the expensive resize: the encoder's
own fitting of a fitted image changes nothing, so the vectors are the ones the in-process path gives). Only
fitted, model-size pixels travel back. The parent takes the items in file order, cuts them into the same
chunks the in-process path makes, and embeds and stores each chunk while the workers prepare the next ones,
with a bounded number of items in flight.

A PDF whose page count the workers could read is split into ranges of pages, and a video whose length they
could read into ranges of clips, so one long PDF or video keeps every core busy (each range gives the items a
run over the whole file gives: same ids, times and frames).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError
from ..media.documents import Item, clip_sampler, iter_items
from ..media.prepare import MediaLimits, Prepared, prepare_or_error
from ..tasks import as_instruction
from ..types import Input, Page, VideoClip

if TYPE_CHECKING:
    from ..media.isolate import WorkerPool

log = logging.getLogger(__name__)

UNIT = 4  # items a worker sends at a time
DEPTH = 2  # messages a job may compute ahead of the parent
RANGE_PAGES = UNIT * DEPTH  # pages per job of a split PDF: a job ends within what it may run ahead
RANGE_CLIPS = UNIT * DEPTH  # clips per job of a split video (each job probes the file's timeline again: ~50 ms
# for 18,000 frames)
COUNT_BATCH = 32  # files counted per worker call
MIN_BYTES_PER_PAGE = 32  # a page count the file is too small to hold is not trusted for splitting
MIN_BYTES_PER_CLIP = 256  # nor a clip count (a header's duration) the file is too small to hold
MAX_WORKERS = 32


def auto_workers() -> int:
    """Worker processes for ``workers=None``: the CPUs this process may use (at most 32)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_WORKERS))


@dataclass(frozen=True)
class Fitting:
    """How the encoder fits media: its family and pixel limits (read in the parent, used in the workers)."""

    family: Any  # a families.Profile
    limits: MediaLimits


def fitting_of(encoder: Any) -> Fitting | None:
    """The encoder's family and limits when it exposes both (local, remote and fake encoders do); else None:
    the workers then send full renders and the encoder fits them itself."""
    from ..families import Profile

    family = getattr(encoder, "family", None)
    limits = getattr(encoder, "limits", None)
    if isinstance(family, Profile) and isinstance(limits, MediaLimits):
        return Fitting(family, limits)
    return None


def sampler_args(encoder: Any) -> tuple[Any, int | None]:
    """What a worker needs to rebuild ``clip_sampler(encoder)``: the family and its frame count."""
    from ..families import Profile

    family = getattr(encoder, "family", None)
    if not isinstance(family, Profile):
        return None, None
    own = getattr(getattr(encoder, "limits", None), "num_frames", None)
    return family, own if isinstance(own, int) else family.num_frames


# -- work done in the worker processes ---------------------------------------------------------------------


@dataclass(frozen=True)
class ReadJob:
    """One file (or a range of its pages) to read, render and fit, in a worker."""

    path: str
    digest: str
    cache_dir: str
    dpi: float
    clip_seconds: float
    family: Any = None
    num_frames: int | None = None
    fitting: Fitting | None = None
    pages: tuple[int, ...] | None = None
    clips: tuple[int, int | None] | None = None  # a video's clips first to stop - 1 (stop None: to the end)
    password: str | None = None  # for encrypted PDFs


@dataclass
class Entry:
    """An item as the worker sends it: content stripped to fitted pixels, or the reason it could not be fitted."""

    item: Item
    input: Input | None = None  # fitted media; None: use item.to_input()
    error: InputError | None = None


@dataclass
class Batch:
    """What a worker sends at a time: events in the order they happened (items, and the loader's problems)."""

    events: list[Entry | InputError] = field(default_factory=list)


def read_items(job: ReadJob) -> Iterator[Batch]:
    """Stream a file's items (with media fitted when ``job.fitting``), ``UNIT`` at a time, with the problems the
    loader met in between, in order."""
    errors: list[InputError] = []
    sampler = clip_sampler(job.family, job.num_frames) if job.family is not None else None
    fitter = _PageFitter(job.fitting) if job.fitting is not None else None
    items = iter_items(
        Path(job.path),
        cache_dir=job.cache_dir,
        dpi=job.dpi,
        clip_seconds=job.clip_seconds,
        errors=errors,
        digest=job.digest,
        sampler=sampler,
        fit=fitter,
        password=job.password,
        pages=job.pages,
        clips=job.clips,
    )
    seen = 0
    batch = Batch()
    for item in items:
        batch.events.extend(errors[seen:])
        seen = len(errors)
        batch.events.append(_fitted(item, job.fitting, fitter))
        if sum(isinstance(e, Entry) for e in batch.events) >= UNIT:
            yield batch
            batch = Batch()
    batch.events.extend(errors[seen:])
    if batch.events:
        yield batch


class _PageFitter:
    """Fits each page as the loader renders it, before its thumbnail is made (which is then shrunk from the
    fitted pixels); the result is kept for the page's item."""

    def __init__(self, fitting: Fitting) -> None:
        self.fitting = fitting
        self.last: tuple[Any, Prepared | InputError] | None = None  # (the render, its fitting)

    def __call__(self, image: Any) -> Any:
        result = _prepared(Input(image=image), self.fitting)
        self.last = (image, result)
        return None if isinstance(result, InputError) else result.image

    def take(self, image: Any) -> Prepared | InputError | None:
        """The fitting of ``image`` when it was the last one fitted (then forgotten), else None."""
        last, self.last = self.last, None
        return last[1] if last is not None and last[0] is image else None


def _prepared(raw: Input, fitting: Fitting) -> Prepared | InputError:
    return prepare_or_error(raw, 0, as_instruction(None), fitting.limits, fitting.family)


def _fitted(item: Item, fitting: Fitting | None, fitter: _PageFitter | None = None) -> Entry:
    if fitting is None:
        return Entry(item)
    result = fitter.take(item.content.image) if fitter is not None and isinstance(item.content, Page) else None
    if result is None:
        result = _prepared(item.to_input(), fitting)
    stripped = replace(item, content=None)
    if isinstance(result, InputError):
        return Entry(stripped, error=result)
    return Entry(stripped, input=_input_of(item, result))


def _input_of(item: Item, prepared: Prepared) -> Input:
    """The fitted media as an Input the encoder fits again to the same pixels."""
    if isinstance(item.content, VideoClip):
        frames = prepared.frames if prepared.frames is not None else [prepared.image]  # a family's middle frame
        return Input(video=replace(item.content, frames=tuple(f for f in frames if f is not None)))
    return Input(image=prepared.image)


def count_items(files: Sequence[tuple[str, str]], clip_seconds: float, password: str | None = None) -> list[int | None]:
    """Items each ``(path, file kind)`` will give, read cheaply from its header (None: cannot tell); ``password``
    opens encrypted PDFs."""
    return [_count(path, kind, clip_seconds, password) for path, kind in files]


def count_in_workers(
    pool: WorkerPool,
    files: Sequence[tuple[str, str]],
    clip_seconds: float,
    timeout: float | None,
    password: str | None = None,
) -> list[int | None]:
    """:func:`count_items` of ``(path, file kind)`` pairs in the processes of ``pool``,
    ``COUNT_BATCH`` files a job: a header that crashes its worker or hangs leaves that batch uncounted (None),
    and those files are then read whole."""
    batches = [files[i : i + COUNT_BATCH] for i in range(0, len(files), COUNT_BATCH)]
    jobs = [
        pool.submit(count_items, batch, clip_seconds, password, source=batch[0][0], timeout=timeout, depth=1)
        for batch in batches
    ]
    counts: list[int | None] = []
    for batch, job in zip(batches, jobs, strict=True):
        try:
            counts.extend(job.result())
        except InputError as err:
            log.info("could not count the items of %d file(s) (%s)", len(batch), err.reason)
            counts.extend([None] * len(batch))
    return counts


def _count(path: str, kind: str, clip_seconds: float, password: str | None) -> int | None:
    if kind == "image":
        return 1
    if kind == "pdf":
        return pdf_page_count(path, password=password)
    if kind == "video":
        return _clip_count(path, clip_seconds)
    return None


def pdf_page_count(path: str, *, password: str | None = None) -> int | None:
    """The pages a PDF holds, when its page tree says so too (its last page loads, and no fewer page objects show
    in its bytes) and the file is large enough to hold that many pages; else None: such a file is read whole,
    where the loader reports what is wrong with its page tree once."""
    import pypdfium2

    from ..media.pdf import page_count

    try:
        size = os.path.getsize(path)
        document = pypdfium2.PdfDocument(path, password=password)
    except (pypdfium2.PdfiumError, OSError):
        return None
    try:
        claimed = len(document)
        if not 0 < claimed <= size // MIN_BYTES_PER_PAGE + 1:
            return None
        try:  # the last page loads: the tree's claim holds where the byte scan below cannot see (object streams)
            document[claimed - 1].close()
        except pypdfium2.PdfiumError:
            return None
    finally:
        document.close()
    try:
        held = page_count(path, password=password)  # a forged page tree's claim is checked against the page objects
    except InputError:
        return None
    return claimed if held == claimed else None


def _clip_count(path: str, clip_seconds: float) -> int | None:
    import av

    try:
        with av.open(path) as container:
            if not container.streams.video:
                return None
            stream = container.streams.video[0]
            if stream.duration is not None and stream.time_base is not None:
                seconds = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                seconds = container.duration / 1_000_000
            else:
                return None
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError):
        return None
    if not (math.isfinite(seconds) and seconds > 0):
        return None
    clips = math.ceil(seconds / clip_seconds)
    try:
        size = os.path.getsize(path)
    except OSError:
        return None
    return clips if clips <= min(1_000_000, size // MIN_BYTES_PER_CLIP + 1) else None


# -- the parent's side -----------------------------------------------------------------------------------------


def page_ranges(count: int | None, *, size: int = RANGE_PAGES) -> list[tuple[int, ...] | None]:
    """The page ranges a PDF of ``count`` pages is read in: ``[None]`` (the whole file) when it is not split."""
    if count is None or count <= size:
        return [None]
    return [tuple(range(start, min(start + size, count + 1))) for start in range(1, count + 1, size)]


def clip_ranges(count: int | None, *, size: int = RANGE_CLIPS) -> list[tuple[int, int | None] | None]:
    """The clip ranges ``(first, stop)`` a video of about ``count`` clips (from its header) is read in; the last
    runs to the end, whatever the header said. ``[None]`` (the whole file) when it is not split."""
    if count is None or count <= size:
        return [None]
    starts = list(range(0, count, size))
    return [(start, start + size) for start in starts[:-1]] + [(starts[-1], None)]


def file_parts(
    kind: str, count: int | None, *, pages: int = RANGE_PAGES, clips: int = RANGE_CLIPS
) -> list[tuple[tuple[int, ...] | None, tuple[int, int | None] | None]]:
    """The parts ``(pages, clips)`` a file of ``kind`` with ``count`` items is read in, one job each: a long
    PDF's page ranges, a long video's clip ranges, else the whole file ``(None, None)``."""
    if kind == "pdf":
        return [(p, None) for p in page_ranges(count, size=pages)]
    if kind == "video":
        return [(None, c) for c in clip_ranges(count, size=clips)]
    return [(None, None)]
