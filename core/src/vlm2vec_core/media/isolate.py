"""Run untrusted decoding in worker processes, where a native crash or a hang costs one file, not the run.

Native decoders (pdfium, FFmpeg through decord or PyAV, libpng) can abort, segfault or loop on a forged header.
A :class:`WorkerPool` runs picklable functions in processes started with the ``forkserver`` context (``spawn``
where there is none: a process that has torch loaded is never forked); the workers import neither torch nor
transformers. A job that kills its worker (SIGABRT from decord's ``std::bad_alloc``, SIGSEGV) or runs past its
time limit ends as an :class:`InputError` naming its source ("the decoder crashed (SIGABRT)", "took longer than
120 s; skipped"); the worker is replaced and the other jobs go on.

A job's function may return a value or be a generator: its values stream back in order, at most ``depth`` of
them in computation at once, and at most ``max_inflight`` (plus the earliest job's ``depth``) computed and not
yet taken over the whole pool, so memory stays bounded however slow the caller is. Jobs are started in the
order they were submitted, and the earliest job is served first, so a caller that takes the jobs' values in
submission order never waits on a later job.

``run_isolated(fn, *args, timeout=..., source=...)`` is the one-call form (a server decoding an upload).
Workers are stopped when the pool closes, on Ctrl-C in the parent, and at interpreter exit; a worker whose
parent dies is stopped by the kernel (Linux) or ends at its next message.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from ..errors import InputError

log = logging.getLogger(__name__)

__all__ = ["Job", "WorkerPool", "crash_reason", "run_isolated", "shutdown_isolated"]

_TICK = 0.05  # seconds between the supervisor's checks of time limits
_GRACE = 2.0  # seconds a stopping worker has to finish its current step before it is killed
_TMP_PREFIX = ".tmp-"  # files written aside, then renamed (documents.cache_image): removed when a worker is killed


# Imported once by the fork server, so that each worker it forks starts with them loaded (never torch).
PRELOAD = ["vlm2vec_core.index.pipeline", "pypdfium2", "av"]


def _context() -> Any:
    methods = multiprocessing.get_all_start_methods()
    if "forkserver" not in methods:
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)  # has effect until the server starts (missing modules are skipped)
    return ctx


def crash_reason(exitcode: int | None) -> str:
    """What a worker's exit code says: ``the decoder crashed (SIGABRT)`` for a signal, else the status."""
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"the decoder crashed ({name})"
    return f"the decoder process ended unexpectedly (exit status {exitcode})"


# -- the worker side -------------------------------------------------------------------------------------------


class _PipeLogHandler(logging.Handler):
    """Sends a worker's log records to the parent, which logs them under the same logger names."""

    def __init__(self, conn: Connection) -> None:
        super().__init__()
        self.conn = conn
        self.job: int | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            payload = {
                "name": record.name,
                "levelno": record.levelno,
                "msg": record.getMessage(),
                "exc_text": self.format(record) if record.exc_info else None,
            }
            self.conn.send(("log", self.job, payload))
        except (OSError, ValueError):  # the parent is gone or the pipe is closed: nothing to report to
            pass


def _on_term(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds Python frames, so files written aside are removed


def _worker_main(conn: Connection, levels: dict[str, int]) -> None:
    """Serve jobs from ``conn`` until told to stop or the parent goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops us
    signal.signal(signal.SIGTERM, _on_term)
    _die_with_parent()
    _quiet_native_output(quiet=levels.get("vlm2vec_core", logging.WARNING) > logging.WARNING)
    handler = _PipeLogHandler(conn)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    for name, level in levels.items():
        logging.getLogger(name or None).setLevel(level)
    credits = 0
    try:
        while True:
            message = conn.recv()
            if message[0] == "stop":
                return
            if message[0] == "credit":  # for a job that has ended already
                continue
            _, job_id, fn, args, credits = message
            handler.job = job_id
            _run_job(conn, job_id, fn, args, credits)
            handler.job = None
    except (EOFError, OSError, KeyboardInterrupt):  # the parent closed the pipe or died
        return


def _quiet_native_output(*, quiet: bool) -> None:
    """Native decoders write to the process's stdout and stderr: never to stdout (a caller's ``--json`` goes
    there), and to stderr only when the parent's logging is not quieted (the CLI without ``-v``); what a job
    has to say comes back as log records and errors instead."""
    try:
        sys.stdout.flush()
        if quiet:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            os.close(devnull)
        os.dup2(2, 1)
    except OSError:  # no such descriptors (an embedded interpreter): leave them
        pass


def _run_job(conn: Connection, job_id: int, fn: Callable[..., Any], args: tuple[Any, ...], credits: int) -> None:
    try:
        result = fn(*args)
        if isinstance(result, Iterator):
            iterator = result
            try:
                while True:
                    while credits <= 0:  # wait until the parent wants more
                        message = conn.recv()
                        if message[0] == "credit" and message[1] == job_id:
                            credits += message[2]
                        elif message[0] == "cancel" and message[1] == job_id:
                            break
                        elif message[0] == "stop":
                            raise EOFError
                    if credits <= 0:  # cancelled
                        break
                    try:
                        value = next(iterator)
                    except StopIteration:
                        break
                    conn.send(("item", job_id, value))
                    credits -= 1
            finally:
                close = getattr(iterator, "close", None)
                if close is not None:
                    close()
            conn.send(("done", job_id, None))
        else:
            conn.send(("done", job_id, result))
    except (EOFError, BrokenPipeError):
        raise
    except Exception as exc:  # handed to the parent as it is, to be raised there
        conn.send(("error", job_id, _picklable(exc)))


def _picklable(exc: BaseException) -> BaseException:
    """``exc`` itself when it survives pickling (with the worker's traceback as a note), else a RuntimeError."""
    import pickle

    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    exc.__traceback__ = None
    try:
        copy = pickle.loads(pickle.dumps(exc))
    except Exception:  # any pickling failure: send the text instead
        return RuntimeError(f"a worker raised {type(exc).__name__}: {exc}\n{text}")
    if hasattr(copy, "add_note"):
        copy.add_note(f"in a worker process:\n{text}")
    return copy


def _die_with_parent() -> None:
    """Linux: ask the kernel to send SIGTERM when the process that started us dies (no orphans after a kill)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # no libc to ask: the worker ends at its next message instead
        pass


# -- the parent side -------------------------------------------------------------------------------------------


@dataclass(eq=False)
class Job:
    """A submitted call: iterate it for a generator's values, or call :meth:`result` for a return value."""

    pool: WorkerPool
    id: int
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    source: str
    timeout: float | None
    depth: int
    buffer: deque[Any] = field(default_factory=deque)
    outstanding: int = 0  # credits granted and not yet answered by a value
    worker: _Worker | None = None
    busy: float = 0.0  # seconds the worker spent on it while it had credit
    state: str = "queued"  # queued, running, done (all values received), failed, cancelled
    error: BaseException | None = None
    result_value: Any = None

    def __iter__(self) -> Iterator[Any]:
        while True:
            value, more = self.pool._take(self)
            if not more:
                return
            yield value

    def result(self) -> Any:
        """The function's return value (raises its InputError, or the crash's or the time limit's)."""
        for _ in self:
            pass
        return self.result_value

    def cancel(self) -> None:
        """Drop the job (its worker stops it before its next value, or it never starts)."""
        self.pool._cancel(self)


class _Worker:
    def __init__(self, pool: WorkerPool) -> None:
        ctx = pool._ctx
        self.conn, child = ctx.Pipe(duplex=True)
        self.process = ctx.Process(
            target=_worker_main, args=(child, pool._levels), name=f"{pool.name}-{pool._started}", daemon=True
        )
        pool._started += 1
        with _main_hidden():
            self.process.start()
        child.close()
        self.job: Job | None = None

    @property
    def pid(self) -> int:
        return int(self.process.pid or 0)

    def kill(self) -> None:
        """SIGKILL (a hung native decoder gets no other say), then remove the files it was writing aside."""
        written = _files_being_written(self.pid)
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)
        for path in written:
            path.unlink(missing_ok=True)
        self.conn.close()


@contextmanager
def _main_hidden() -> Iterator[None]:
    """Start a worker without it importing the parent's main script (as spawn does by default): a script that
    imports torch at its top would bring torch into every worker, and an unguarded one would run again there.
    Job functions must therefore live in importable modules, not in ``__main__``."""
    main = sys.modules.get("__main__")
    saved = {name: main.__dict__[name] for name in ("__file__", "__spec__") if main and name in main.__dict__}
    try:
        for name in saved:
            setattr(main, name, None) if name == "__spec__" else delattr(main, name)
        yield
    finally:
        for name, value in saved.items():
            setattr(main, name, value)


def _files_being_written(pid: int) -> list[Path]:
    """Files ``pid`` holds open that are written aside before a rename (Linux /proc; elsewhere none)."""
    found = []
    try:
        for fd in os.scandir(f"/proc/{pid}/fd"):
            try:
                target = Path(os.readlink(fd.path))
            except OSError:
                continue
            if target.name.startswith(_TMP_PREFIX):
                found.append(target)
    except OSError:
        pass
    return found


_POOLS: weakref.WeakSet[WorkerPool] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:  # no worker outlives the interpreter, nor makes its exit hang
    for pool in list(_POOLS):
        pool.close(grace=0.5)


class WorkerPool:
    """``workers`` processes running submitted jobs; see the module's docstring. Use it as a context manager."""

    def __init__(
        self,
        workers: int,
        *,
        max_inflight: int | None = None,
        name: str = "vlm2vec-decode",
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.name = name
        self.size = workers
        self.max_inflight = max_inflight if max_inflight is not None else 2 * workers
        if self.max_inflight < 1:
            raise ValueError(f"max_inflight must be at least 1, got {max_inflight}")
        self._ctx = _context()
        self._levels = {
            "": logging.getLogger().getEffectiveLevel(),
            "vlm2vec_core": logging.getLogger("vlm2vec_core").getEffectiveLevel(),
        }
        self._lock = threading.Condition(threading.RLock())
        self._jobs: list[Job] = []  # submitted and not finished with, in submission order
        self._next_id = 0
        self._started = 0
        self._closed = False
        self.peak_inflight = 0  # the most values in computation or computed and not taken, at any time
        self._workers: list[_Worker] = []
        self._wakeup_r, self._wakeup_w = self._ctx.Pipe(duplex=False)
        self._supervisor = threading.Thread(target=self._supervise, name=f"{name}-supervisor", daemon=True)
        try:
            for _ in range(workers):
                self._workers.append(_Worker(self))
        except BaseException:
            self.close(grace=0)
            raise
        self._supervisor.start()
        _POOLS.add(self)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pids(self) -> list[int]:
        """Process ids of the current workers."""
        with self._lock:
            return [w.pid for w in self._workers]

    def submit(
        self,
        fn: Callable[..., Any],
        *args: Any,
        source: str | os.PathLike[str],
        timeout: float | None = None,
        depth: int = 2,
    ) -> Job:
        """Queue ``fn(*args)`` (module-level, picklable, as are its arguments and values). ``source`` names what
        it decodes in errors; ``timeout`` bounds the seconds its worker may work on it (time spent waiting for
        the caller to take values does not count); ``depth``: values it may compute at once."""
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        with self._lock:
            if self._closed:
                raise RuntimeError("the worker pool is closed")
            job = Job(self, self._next_id, fn, args, str(source), timeout, max(1, depth))
            self._next_id += 1
            self._jobs.append(job)
            self._schedule()
        return job

    # -- scheduling (under the lock) ---------------------------------------------------------------------

    def _inflight(self) -> int:
        return sum(j.outstanding + len(j.buffer) for j in self._jobs)

    def _schedule(self) -> None:
        """Start queued jobs and grant credits, earliest job first. A job computes at most ``depth`` values at
        once; values computed and not yet taken, over all jobs, stay under ``max_inflight``, except that the
        earliest unfinished job may always compute (the caller may be waiting for it, while later jobs hold
        the rest): at most ``max_inflight + depth`` values exist at any time."""
        inflight = self._inflight()
        idle = [w for w in self._workers if w.job is None]
        earliest = True
        for job in self._jobs:
            if job.state not in ("queued", "running"):
                continue
            limit = self.max_inflight + (job.depth if earliest else 0)
            earliest = False
            if job.state == "queued":
                if not idle or inflight >= limit:
                    break  # jobs start in order
                worker = idle.pop(0)
                grant = min(job.depth, limit - inflight)
                if not self._send(worker, ("job", job.id, job.fn, job.args, grant)):
                    continue
                worker.job, job.worker, job.state, job.outstanding = job, worker, "running", grant
                inflight += grant
            elif job.worker is not None:
                grant = min(job.depth - job.outstanding, limit - inflight)
                if grant > 0 and self._send(job.worker, ("credit", job.id, grant)):
                    job.outstanding += grant
                    inflight += grant
        self.peak_inflight = max(self.peak_inflight, inflight)

    def _send(self, worker: _Worker, message: tuple[Any, ...]) -> bool:
        try:
            worker.conn.send(message)
            return True
        except (OSError, ValueError):  # the worker died: the supervisor sees it and replaces it
            return False

    def _take(self, job: Job) -> tuple[Any, bool]:
        """The job's next value (True), or (None, False) at its end; raises its error."""
        with self._lock:
            while True:
                if job.buffer:
                    value = job.buffer.popleft()
                    self._schedule()
                    return value, True
                if job.state == "done":
                    self._forget(job)
                    return None, False
                if job.state in ("failed", "cancelled"):
                    self._forget(job)
                    if job.error is not None:
                        raise job.error
                    return None, False
                if self._closed:
                    raise RuntimeError("the worker pool is closed")
                self._lock.wait(1.0)

    def _forget(self, job: Job) -> None:
        if job in self._jobs:
            self._jobs.remove(job)
            self._schedule()

    def _cancel(self, job: Job) -> None:
        with self._lock:
            if job.state == "running" and job.worker is not None:
                # The worker drops it before its next value and says "done"; until then it keeps the worker
                # (and its time limit), and its values are ignored.
                self._send(job.worker, ("cancel", job.id))
            if job.state in ("queued", "running"):
                job.state = "cancelled"
            job.buffer.clear()
            job.outstanding = 0
            self._forget(job)
            self._lock.notify_all()

    def _fail(self, job: Job, error: BaseException) -> None:
        job.state, job.error, job.outstanding = "failed", error, 0
        if job.worker is not None:
            job.worker.job = None
            job.worker = None

    # -- the supervisor thread ---------------------------------------------------------------------------

    def _supervise(self) -> None:
        last = time.monotonic()
        while True:
            with self._lock:
                if self._closed:
                    return
                workers = list(self._workers)
            ready = wait([w.conn for w in workers] + [w.process.sentinel for w in workers] + [self._wakeup_r], _TICK)
            now = time.monotonic()
            with self._lock:
                if self._closed:
                    return
                for worker in workers:
                    if worker.conn in ready:
                        self._drain(worker)
                for worker in workers:
                    if worker.process.sentinel in ready or not worker.process.is_alive():
                        self._drain(worker)
                        self._replace(worker, None)
                for worker in list(self._workers):
                    job = worker.job
                    if job is not None and (job.outstanding > 0 or job.state == "cancelled"):
                        job.busy += now - last
                        if job.timeout is not None and job.busy > job.timeout:
                            self._replace(worker, f"took longer than {job.timeout:g} s; skipped")
                last = now
                self._schedule()
                self._lock.notify_all()

    def _drain(self, worker: _Worker) -> None:
        try:
            while worker.conn.poll():
                self._dispatch(worker, worker.conn.recv())
        except (EOFError, OSError):
            pass  # the worker is gone: its sentinel says so and it is replaced

    def _dispatch(self, worker: _Worker, message: tuple[Any, ...]) -> None:
        kind, job_id, payload = message
        if kind == "log":
            _relog(payload)
            return
        job = worker.job
        if job is None or job.id != job_id:  # a cancelled job's late message
            return
        if job.state == "cancelled":
            if kind in ("done", "error"):
                worker.job, job.worker = None, None
            return
        if kind == "item":
            job.buffer.append(payload)
            job.outstanding -= 1
        elif kind == "done":
            job.state, job.result_value, job.outstanding = "done", payload, 0
            worker.job, job.worker = None, None
        elif kind == "error":
            self._fail(job, payload)

    def _replace(self, worker: _Worker, reason: str | None) -> None:
        """Kill ``worker`` (its job fails with ``reason``, or the crash's) and start another in its place."""
        job = worker.job
        exitcode = worker.process.exitcode
        worker.kill()
        if exitcode is None:
            exitcode = worker.process.exitcode
        if job is not None and job.state == "cancelled":
            worker.job = job.worker = None
        elif job is not None:
            self._fail(job, InputError(reason or crash_reason(exitcode), source=job.source))
            log.warning("%s", job.error)
        if worker in self._workers:
            index = self._workers.index(worker)
            if self._closed:
                self._workers.pop(index)
            else:
                self._workers[index] = _Worker(self)

    # -- closing -------------------------------------------------------------------------------------------

    def close(self, grace: float = _GRACE) -> None:
        """Stop every worker: asked first, killed after ``grace`` seconds. Jobs not finished fail."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            workers, self._workers = self._workers, []
            for job in self._jobs:
                if job.state in ("queued", "running"):
                    job.state = "cancelled"
            self._lock.notify_all()
        with suppress(OSError):
            self._wakeup_w.send(b"")
        if self._supervisor.is_alive() and threading.current_thread() is not self._supervisor:
            self._supervisor.join(2)
        for worker in workers:
            self._send(worker, ("stop",))
        deadline = time.monotonic() + grace
        for worker in workers:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.terminate()  # SIGTERM: the worker unwinds (files written aside are removed)
                worker.process.join(0.5)
            worker.kill()
            worker.process.close()
        self._wakeup_r.close()
        self._wakeup_w.close()
        _POOLS.discard(self)


def _relog(payload: dict[str, Any]) -> None:
    logger = logging.getLogger(payload["name"])
    if logger.isEnabledFor(payload["levelno"]):
        text = payload["msg"] + (f"\n{payload['exc_text']}" if payload.get("exc_text") else "")
        logger.log(payload["levelno"], "%s", text)


_shared: WorkerPool | None = None
_shared_lock = threading.Lock()


def run_isolated(fn: Callable[..., Any], *args: Any, timeout: float, source: str | os.PathLike[str]) -> Any:
    """``fn(*args)`` in a worker process of a shared pool: its (picklable) return value, or an InputError naming
    ``source`` when the call crashed its worker or ran past ``timeout`` seconds. Exceptions ``fn`` raises are
    raised here. Thread-safe; the pool (``os.cpu_count()`` workers, at most 4) starts on first use."""
    global _shared
    with _shared_lock:
        if _shared is None or _shared._closed:
            _shared = WorkerPool(min(4, os.cpu_count() or 1), max_inflight=64, name="vlm2vec-isolated")
        pool = _shared
    return pool.submit(fn, *args, source=source, timeout=timeout, depth=1).result()


def shutdown_isolated() -> None:
    """Stop the shared pool of :func:`run_isolated` now (it starts again on the next call)."""
    global _shared
    with _shared_lock:
        pool, _shared = _shared, None
    if pool is not None:
        pool.close()
