"""RemoteEncoder: the Encoder protocol over HTTP, to ``vlm2vec serve`` or vLLM servers. No torch needed.

Media are decoded and fitted to the model's pixel limits on the client, then sent losslessly, so the vectors
equal local ones: as raw RGB bytes to a ``vlm2vec serve`` that lists ``raw`` in its ``media_formats`` (nothing
to compress or decompress), else as PNG at the fastest compression level (what vLLM takes). Texts go in
batches (``input``), each image or video item as a ``messages`` request, sent as soon as the item is prepared.

One URL or several: requests are spread over a fleet of servers serving the same model (the least busy first,
round-robin among equals), up to ``max_concurrency`` in flight per server. A server that refuses connections
is skipped (its requests go to the others) and tried again after a pause; 429 and 503 make a request try
another server, then wait with backoff. Every input gets exactly one vector: a request is retried whole, on
one server at a time, and its answer is taken once. At start-up a server that is down or refuses the API key
is reported at once (one RemoteError naming the URL), not after minutes of retries.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..errors import InputError, report, require_extra
from ..families import Profile, family_for_hub_id, get_family
from ..media.images import MAX_DECODE_PIXELS
from ..media.prepare import MediaLimits, Prepared, prepare_or_error
from ..tasks import Instruction, as_instruction
from .progress import Progress
from .protocol import PresetMixin
from .wire import MEDIA_FORMATS, chat_messages, content_parts, decode_embeddings

log = logging.getLogger(__name__)
RETRY_STATUS = frozenset({429, 502, 503, 504})
DOWN_PAUSE = 2.0  # seconds before a server that refused a connection is tried again (doubling, up to 30 s)


class RemoteError(RuntimeError):
    """The server answered with an error that retrying will not fix (or retries ran out)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def normalise_url(url: str) -> str:
    """``http://host:8000`` from ``http://host:8000/``, ``.../v1`` or ``.../v1/`` (the OpenAI/vLLM habit)."""
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValueError(f"a server URL must start with http:// or https://, not {url!r}")
    return url.rstrip("/").removesuffix("/v1").rstrip("/")


@dataclass(eq=False)
class Endpoint:
    """One server of a fleet and what the client knows of it."""

    url: str
    client: Any  # httpx.Client
    inflight: int = 0  # requests now on it
    answered: int = 0  # requests it answered (any status but the retried ones)
    failures: int = 0  # connection failures in a row
    paused_until: float = 0.0  # monotonic time before which it is not picked (down, or busy)
    verified: bool = False  # its /v1/models was checked against the fleet's model
    excluded: str | None = None  # why it is never used (it serves another model)
    last_error: str | None = None

    @property
    def up(self) -> bool:
        return self.excluded is None and self.failures == 0


@dataclass
class _Round:
    """The state of one request's tries over the fleet."""

    tried: set[int] = field(default_factory=set)
    attempt: int = 0
    force: bool = False  # after a wait: pick paused servers too
    why: list[str] = field(default_factory=list)
    retry_after: float = 0.0


def _describe(exc: BaseException) -> str:
    import httpx

    if isinstance(exc, httpx.ConnectError):
        text = str(exc)
        return (
            "connection refused (is the server running?)" if "refused" in text.lower() else f"cannot connect ({text})"
        )
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    return f"{type(exc).__name__}: {exc}"


class HttpService:
    """HTTP clients to one or more ``vlm2vec serve`` (or vLLM) servers: API key, timeouts, the fleet, and retries
    with backoff for connection errors, 429 and 5xx-unavailable; 400/413/422 become InputError, other errors
    RemoteError."""

    def __init__(
        self,
        base_url: str | Sequence[str],
        *,
        api_key: str | None,
        timeout: float,
        max_retries: int,
        backoff: float,
    ) -> None:
        try:
            import httpx
        except ImportError as exc:  # pragma: no cover - httpx is a dependency of core
            raise require_extra("remote", "httpx") from exc
        given = [base_url] if isinstance(base_url, str) else list(base_url)
        urls = list(dict.fromkeys(normalise_url(u) for u in given))
        if not urls:
            raise ValueError("give at least one server URL")
        self.urls = urls
        self.base_url = urls[0]
        self.max_retries = max_retries
        self.backoff = backoff
        self._api_key_given = bool(api_key)
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = httpx.Timeout(timeout, connect=10.0)
        self.endpoints = [
            Endpoint(url, httpx.Client(base_url=url, headers=self._headers, timeout=self._timeout)) for url in urls
        ]
        self._lock = threading.Lock()  # the fleet's counters
        self._discovery = threading.Lock()  # asking the servers what they serve, once
        self._next = 0  # round-robin among equally busy servers
        self._reference: tuple[str, dict[str, Any]] | None = None  # (kind, model entry) the fleet must serve

    def close(self) -> None:
        for endpoint in self.endpoints:
            endpoint.client.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _where(self) -> str:
        return self.base_url if len(self.urls) == 1 else f"the servers {', '.join(self.urls)}"

    # -- discovery -----------------------------------------------------------------------------------------

    def _served(self, kind: str) -> dict[str, Any]:
        """The model of ``kind`` ("embedding" or "rerank") the fleet serves ({} when none says), asked of every
        server at once, without retries: a server that is down is reported now (RemoteError when all are), one
        that refuses the key or serves another model too."""
        import httpx

        def ask(endpoint: Endpoint) -> dict[str, Any] | BaseException:
            try:
                return self._entry(endpoint, kind)
            except (httpx.TransportError, RemoteError) as exc:
                return exc

        if len(self.endpoints) == 1:
            answers = [ask(self.endpoints[0])]
        else:
            with ThreadPoolExecutor(len(self.endpoints), thread_name_prefix="vlm2vec-discover") as pool:
                answers = list(pool.map(ask, self.endpoints))
        problems: list[str] = []
        reference: tuple[Endpoint, dict[str, Any]] | None = None
        for endpoint, answer in zip(self.endpoints, answers, strict=True):
            if isinstance(answer, RemoteError):
                raise answer  # a refused key, a server error: nothing retrying would fix
            if isinstance(answer, BaseException):
                self._went_down(endpoint, _describe(answer))
                problems.append(f"{endpoint.url}: {_describe(answer)}")
                continue
            endpoint.verified = True
            if reference is None:
                reference = (endpoint, answer)
            elif (why := _differs(reference[1], answer)) is not None:
                raise RemoteError(f"{endpoint.url} and {reference[0].url} serve different models ({why})")
        if reference is None:
            raise RemoteError("; ".join(problems) if len(problems) > 1 else problems[0])
        for problem in problems:
            log.warning("%s; going on with the other servers", problem)
        self._reference = (kind, reference[1])
        return dict(reference[1])

    def _entry(self, endpoint: Endpoint, kind: str) -> dict[str, Any]:
        response = endpoint.client.get("/v1/models")
        models = self._checked(endpoint, response).get("data") or []
        for entry in models:
            if entry.get("kind", "embedding") == kind:
                return dict(entry)
        return dict(models[0]) if models and kind == "embedding" else {}

    def _verify(self, endpoint: Endpoint) -> bool:
        """Check a server first reached after start-up against the fleet's model (False: it is excluded)."""
        if endpoint.verified or self._reference is None:
            return True
        kind, reference = self._reference
        entry = self._entry(endpoint, kind)
        why = _differs(reference, entry)
        with self._lock:
            if why is None:
                endpoint.verified = True
            else:
                endpoint.excluded = f"it serves another model ({why})"
                log.error("%s: not used: %s", endpoint.url, endpoint.excluded)
        return why is None

    def wire_format(self) -> str:
        """How media go on the wire: ``media_format`` if given, else raw when the servers list it (known once
        they were asked what they serve), else PNG."""
        chosen: str | None = getattr(self, "media_format", None)
        if chosen is not None:
            return chosen
        entry = self._reference[1] if self._reference is not None else {}
        return "raw" if "raw" in (entry.get("media_formats") or ()) else "png"

    # -- picking a server and retrying ---------------------------------------------------------------------

    def _pick(self, state: _Round) -> Endpoint | None:
        """The least busy server this request has not tried, not paused (unless forced): None when there is none."""
        now = time.monotonic()
        with self._lock:
            n = len(self.endpoints)
            candidates = [
                (e.inflight, (i - self._next) % n, i, e)
                for i, e in enumerate(self.endpoints)
                if e.excluded is None and i not in state.tried and (state.force or e.paused_until <= now)
            ]
            if not candidates:
                return None
            _, _, i, endpoint = min(candidates, key=lambda c: (c[0], c[1]))
            self._next = (i + 1) % n
            endpoint.inflight += 1
            state.tried.add(i)
            return endpoint

    def _went_down(self, endpoint: Endpoint, why: str) -> None:
        with self._lock:
            if endpoint.failures == 0 and len(self.endpoints) > 1:
                log.warning("%s: %s; its requests go to the other servers", endpoint.url, why)
            endpoint.failures += 1
            endpoint.last_error = why
            endpoint.paused_until = time.monotonic() + min(30.0, DOWN_PAUSE * 2 ** (endpoint.failures - 1))

    def _done(self, endpoint: Endpoint, state: _Round, response: Any = None, failure: str | None = None) -> bool:
        """Book a try's outcome; True when the request is to be tried again (elsewhere, or after a wait)."""
        with self._lock:
            endpoint.inflight -= 1
        if failure is not None:
            self._went_down(endpoint, failure)
            state.why.append(f"{endpoint.url}: {failure}")
            return True
        if response.status_code in RETRY_STATUS:
            after = _retry_after(response)
            with self._lock:
                endpoint.paused_until = time.monotonic() + max(after, 0.05)
            state.retry_after = max(state.retry_after, after)
            state.why.append(f"{endpoint.url}: HTTP {response.status_code}")
            return True
        with self._lock:
            endpoint.answered += 1
            if endpoint.failures:
                log.info("%s answers again", endpoint.url)
            endpoint.failures = 0
            endpoint.last_error = None
        return False

    def _wait_for(self, state: _Round) -> float:
        """Seconds to wait once every server was tried (exponential, jittered, at least Retry-After), or
        RemoteError when the retries are spent."""
        why = "; ".join(dict.fromkeys(state.why)) or "no server to send to"
        if state.attempt >= self.max_retries or all(e.excluded for e in self.endpoints):
            raise RemoteError(f"giving up after {state.attempt + 1} attempts: {why}")
        delay = max(state.retry_after, min(10.0, self.backoff * 2**state.attempt) * (0.5 + random.random()))
        log.warning("%s; retrying in %.1f s", why, delay)
        state.attempt += 1
        state.tried.clear()
        state.why.clear()
        state.force = True
        state.retry_after = 0.0
        return delay

    def _send(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        import httpx

        state = _Round()
        while True:
            endpoint = self._pick(state)
            if endpoint is None:
                time.sleep(self._wait_for(state))
                continue
            state.force = False
            try:
                if not self._verify(endpoint):
                    with self._lock:
                        endpoint.inflight -= 1
                    continue
                response = endpoint.client.request(method, path, json=body)
            except httpx.TransportError as exc:
                self._done(endpoint, state, failure=_describe(exc))
                continue
            except BaseException:
                with self._lock:
                    endpoint.inflight -= 1
                raise
            if not self._done(endpoint, state, response):
                return self._checked(endpoint, response)

    async def _asend(
        self, clients: dict[str, Any], method: str, path: str, body: dict[str, Any] | None
    ) -> dict[str, Any]:
        import httpx

        state = _Round()
        while True:
            endpoint = self._pick(state)
            if endpoint is None:
                await asyncio.sleep(self._wait_for(state))
                continue
            state.force = False
            try:
                if not endpoint.verified and not await asyncio.to_thread(self._verify, endpoint):
                    with self._lock:
                        endpoint.inflight -= 1
                    continue
                response = await clients[endpoint.url].request(method, path, json=body)
            except httpx.TransportError as exc:
                self._done(endpoint, state, failure=_describe(exc))
                continue
            except BaseException:
                with self._lock:
                    endpoint.inflight -= 1
                raise
            if not self._done(endpoint, state, response):
                return self._checked(endpoint, response)

    def _async_clients(self) -> dict[str, Any]:
        import httpx

        return {
            e.url: httpx.AsyncClient(base_url=e.url, headers=self._headers, timeout=self._timeout)
            for e in self.endpoints
        }

    def _checked(self, endpoint: Endpoint, response: Any) -> dict[str, Any]:
        if response.status_code >= 400:
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text[:500]
            if response.status_code in (400, 413, 422):
                raise InputError(f"the server refused it: {message}", source=endpoint.url)
            if response.status_code in (401, 403):
                given = "the API key given was refused" if self._api_key_given else "no API key was given"
                raise RemoteError(f"{endpoint.url}: {given} (HTTP {response.status_code}: {message})", 401)
            raise RemoteError(f"{endpoint.url}: HTTP {response.status_code}: {message}", response.status_code)
        try:
            result: dict[str, Any] = response.json()
        except ValueError as exc:
            raise RemoteError(
                f"{endpoint.url}: the answer is not JSON (is this a vlm2vec or vLLM server?): {response.text[:200]!r}"
            ) from exc
        return result


def _tick(tick: Any, n: int, _future: object) -> None:
    tick(n)


def _ordered_map(pool: ThreadPoolExecutor, fn: Any, iterable: Iterable[Any], *, ahead: int) -> Iterator[Any]:
    """``pool.map(fn, iterable)`` that submits at most ``ahead`` calls beyond the result being waited for (where
    ``Executor.map`` submits every call at once, so all results would be held in memory)."""
    pending: deque[Future[Any]] = deque()
    try:
        for arg in iterable:
            pending.append(pool.submit(fn, arg))
            if len(pending) > ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()


def _retry_after(response: Any) -> float:
    after = response.headers.get("retry-after", "")
    return float(after) if after.replace(".", "", 1).isdigit() else 0.0


def _differs(reference: dict[str, Any], entry: dict[str, Any]) -> str | None:
    """What makes two servers' model entries serve different vectors (None when they agree)."""
    for key in ("id", "family", "dim", "truncate_dim", "media_formats"):
        if reference.get(key) != entry.get(key):
            return f"{key} {reference.get(key)!r} vs {entry.get(key)!r}"
    return None


Job = tuple[list[Prepared], dict[str, Any]]
SEND_AHEAD = 2  # requests prepared per sending thread, counting the one it sends
PREPARE_THREADS = 4  # threads fitting and encoding media for the requests


class RemoteEncoder(HttpService, PresetMixin):
    """Same API as VLM2VecEncoder, computed by servers: ``RemoteEncoder("http://gpu-box:8000")``, or a fleet:
    ``RemoteEncoder(["http://gpu-1:8000", "http://gpu-2:8000"])`` (all serving the same model).

    The model family comes from the server (``/v1/models``; for a server that does not say, such as vLLM, from
    the served model's hub id, else VLM2Vec-V2); ``family=`` states what you expect and is checked against it.
    ``truncate_dim`` asks a Matryoshka family for shorter vectors (``dimensions`` in the request).
    ``media_format``: None (default) sends raw RGB to servers that take it (``vlm2vec serve``) and PNG to others;
    ``"png"`` or ``"raw"`` force one lossless form; ``"jpeg"`` is smaller but lossy (vLLM's form for frames).
    ``max_concurrency`` is the number of requests in flight per server.
    """

    def __init__(
        self,
        base_url: str | Sequence[str],
        *,
        api_key: str | None = None,
        model: str | None = None,
        family: str | Profile | None = None,
        truncate_dim: int | None = None,
        timeout: float = 120.0,
        max_retries: int = 6,
        max_concurrency: int = 8,
        backoff: float = 0.5,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        num_frames: int | None = None,
        max_decode_pixels: int = MAX_DECODE_PIXELS,
        media_format: str | None = None,
    ) -> None:
        if media_format is not None and media_format not in MEDIA_FORMATS:
            raise ValueError(
                "media_format must be None (raw to servers that take it, else PNG), 'png' or 'raw' (exact), "
                f"or 'jpeg' (smaller, lossy; what vLLM takes for frames), not {media_format!r}"
            )
        super().__init__(base_url, api_key=api_key, timeout=timeout, max_retries=max_retries, backoff=backoff)
        self.model = model
        self._family_arg = get_family(family) if family is not None else None
        self._family: Profile | None = None
        self.truncate_dim = truncate_dim
        self._pixel_args = (min_pixels, max_pixels, num_frames, max_decode_pixels)
        self._limits: MediaLimits | None = None
        self.max_concurrency = max(1, max_concurrency)
        self.media_format = media_format
        self._dim: int | None = None

    def __repr__(self) -> str:
        return f"RemoteEncoder({self.base_url if len(self.urls) == 1 else self.urls!r})"

    # -- discovery -----------------------------------------------------------------------------------------

    @property
    def model_name(self) -> str:
        return str(self.model or self.base_url)

    @property
    def dim(self) -> int:
        if self._dim is None:
            with self._discovery:
                if self._dim is None:
                    self._dim = self._discover()
        return self._dim

    @property
    def family(self) -> Profile:
        """The served family: asked of the server once, unless ``family=`` was given (then checked on first use)."""
        if self._family is None and self._family_arg is not None:
            return self._family_arg
        if self._family is None:
            self.dim  # noqa: B018 - discovery sets the family
        assert self._family is not None
        return self._family

    @property
    def limits(self) -> MediaLimits:
        if self._limits is None:
            min_pixels, max_pixels, num_frames, max_decode = self._pixel_args
            self._limits = MediaLimits.for_family(
                self.family,
                min_pixels=min_pixels,
                max_pixels=max_pixels,
                num_frames=num_frames,
                max_decode_pixels=max_decode,
            )
        return self._limits

    def _discover(self) -> int:
        """The served model, its family and dimension, checked against what this client was asked for."""
        entry = self._served("embedding")
        if self.model is None:
            self.model = entry.get("id")
        served = entry.get("family")
        if served is not None:
            family = get_family(served)
        else:  # vLLM says nothing of families: the served hub id, or what the caller said
            family = family_for_hub_id(str(self.model)) or self._family_arg or get_family(None)
        if self._family_arg is not None and self._family_arg.name != family.name:
            raise RemoteError(
                f"{self._where()} serves {self.model!r} of the {family.title} family, not {self._family_arg.title}"
            )
        self._family = family
        served_truncation = int(entry.get("truncate_dim") or 0)
        # vLLM does not list the dimension: ask for one vector
        dim = int(entry["dim"]) if "dim" in entry else int(self._post_embeddings({"input": ["dim"]}, 1).shape[1])
        if self.truncate_dim is not None and self.truncate_dim != dim:
            family.check_truncate_dim(self.truncate_dim, dim)
            return self.truncate_dim
        if served_truncation and self.truncate_dim is None:
            self.truncate_dim = served_truncation
        return dim

    # -- encoding ------------------------------------------------------------------------------------------

    def encode(
        self,
        inputs: Sequence[Any],
        *,
        instruction: Instruction | str | None = None,
        batch_size: int = 32,
        show_progress: bool | None = None,
        errors: list[InputError] | None = None,
    ) -> np.ndarray:
        """Embed inputs on the servers; same contract as ``VLM2VecEncoder.encode``. Each request is sent as soon
        as its items are prepared, so the client's preparation overlaps the servers' work; preparation runs at
        most a few requests ahead of the servers, so memory does not grow with the number of inputs."""
        self.dim  # noqa: B018 - ask the server what it serves (and check the family) before preparing for it
        items = self._checked_inputs(inputs, batch_size)
        order: list[int] = []
        sent: list[tuple[list[int], Future[np.ndarray | InputError]]] = []
        senders = self.max_concurrency * len(self.endpoints)
        room = threading.Semaphore(senders * SEND_AHEAD)  # requests prepared and not yet answered

        def run(job: Job) -> np.ndarray | InputError:
            try:
                return self._post_embeddings(job[1], len(job[0]))
            except InputError as exc:
                return exc
            finally:
                room.release()

        pool = ThreadPoolExecutor(senders, thread_name_prefix="vlm2vec-remote")
        with Progress(len(items), show_progress) as bar:
            try:
                for job in self._jobs(items, as_instruction(instruction), batch_size, errors, order, bar.update):
                    room.acquire()
                    future = pool.submit(run, job)
                    future.add_done_callback(functools.partial(_tick, bar.update, len(job[0])))
                    sent.append(([p.index for p in job[0]], future))  # the job (and its media) is dropped once sent
                    del job
                results = [future.result() for _, future in sent]
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
        return self._assemble(order, [indices for indices, _ in sent], results, errors)

    async def aencode(
        self,
        inputs: Sequence[Any],
        *,
        instruction: Instruction | str | None = None,
        batch_size: int = 32,
        show_progress: bool | None = None,
        errors: list[InputError] | None = None,
    ) -> np.ndarray:
        """``encode`` with async I/O: media are prepared in a thread while the requests already prepared are
        sent, as in ``encode`` (and as far ahead of the servers)."""
        await asyncio.to_thread(lambda: self.dim)
        items = self._checked_inputs(inputs, batch_size)
        loop = asyncio.get_running_loop()
        ready: asyncio.Queue[Job | BaseException | None] = asyncio.Queue()
        senders = self.max_concurrency * len(self.endpoints)
        room = threading.Semaphore(senders * SEND_AHEAD)
        stop = threading.Event()
        order: list[int] = []
        limit = asyncio.Semaphore(senders)
        clients = self._async_clients()
        bar = Progress(len(items), show_progress)

        def produce() -> None:  # in a thread: prepares the requests, waiting while enough are ahead
            try:
                for job in self._jobs(items, as_instruction(instruction), batch_size, errors, order, bar.update):
                    while not room.acquire(timeout=0.1):
                        if stop.is_set():
                            return
                    if stop.is_set():
                        return
                    loop.call_soon_threadsafe(ready.put_nowait, job)
            except BaseException as exc:  # handed to the event loop, which raises it in aencode
                loop.call_soon_threadsafe(ready.put_nowait, exc)
            else:
                loop.call_soon_threadsafe(ready.put_nowait, None)

        async def run(job: Job) -> np.ndarray | InputError:
            try:
                async with limit:
                    try:
                        body = await self._asend(clients, "POST", "/v1/embeddings", self._with_defaults(job[1]))
                    except InputError as exc:
                        return exc
                    return decode_embeddings(body, len(job[0]))
            finally:
                room.release()
                bar.update(len(job[0]))

        sent: list[tuple[list[int], asyncio.Task[np.ndarray | InputError]]] = []
        producer = loop.run_in_executor(None, produce)
        try:
            with bar:
                while (job := await ready.get()) is not None:
                    if isinstance(job, BaseException):
                        raise job
                    sent.append(([p.index for p in job[0]], asyncio.ensure_future(run(job))))
                    del job
                results = [await task for _, task in sent]
        finally:
            stop.set()
            for _, task in sent:
                task.cancel()
            await asyncio.gather(*(task for _, task in sent), return_exceptions=True)
            await producer
            for client in clients.values():
                await client.aclose()
        return self._assemble(order, [indices for indices, _ in sent], results, errors)

    @staticmethod
    def _checked_inputs(inputs: Sequence[Any], batch_size: int) -> list[Any]:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if isinstance(inputs, (str, bytes)):
            raise TypeError("encode takes a list of inputs; wrap a single string in a list")
        return list(inputs)

    def _jobs(
        self,
        items: list[Any],
        instruction: Instruction,
        batch_size: int,
        errors: list[InputError] | None,
        order: list[int],
        skipped: Any,
    ) -> Iterator[Job]:
        """Requests as their inputs are prepared (in worker threads, which also encode the media, a bounded
        number of inputs ahead): a media item's at once, texts in batches of ``batch_size``. The indices of good
        inputs are appended to ``order`` in input order; a bad one is reported (``errors``, else raised) and
        counted by ``skipped(1)``."""
        family, limits, fmt = self.family, self.limits, self.wire_format()
        default = family.default_instruction

        def prepare(pair: tuple[int, Any]) -> tuple[Prepared | InputError, dict[str, Any] | None]:
            p = prepare_or_error(pair[1], pair[0], instruction, limits, family)
            if isinstance(p, InputError):
                return p, None
            if family.chat_prompt:  # every item as a system turn and a user turn, as the family's template has it
                return p, {"messages": chat_messages(replace(p, system=p.system or default), fmt)}
            if p.modality == "text":
                return p, None
            return p, {"messages": [{"role": "user", "content": content_parts(p.prompt, p.image, p.frames, fmt)}]}

        texts: list[Prepared] = []
        threads = min(PREPARE_THREADS, max(1, len(items)))
        with ThreadPoolExecutor(threads, thread_name_prefix="vlm2vec-prepare") as pool:
            for p, body in _ordered_map(pool, prepare, enumerate(items), ahead=threads * 2):
                if isinstance(p, InputError):
                    report(p, errors)
                    skipped(1)
                    continue
                order.append(p.index)
                if body is not None:
                    yield [p], body
                    continue
                texts.append(p)
                if len(texts) == batch_size:
                    yield texts, {"input": [t.prompt for t in texts]}
                    texts = []
        if texts:
            yield texts, {"input": [t.prompt for t in texts]}

    def _assemble(
        self,
        order: list[int],
        sent: list[list[int]],
        results: list[np.ndarray | InputError],
        errors: list[InputError] | None,
    ) -> np.ndarray:
        """Rows in input order (``order``: the good inputs' indices; ``sent``: each request's input indices); an
        item the server refused is raised, or recorded in ``errors`` and skipped."""
        rows: dict[int, np.ndarray] = {}
        for indices, result in zip(sent, results, strict=True):
            if isinstance(result, InputError):
                for index in indices:
                    report(
                        InputError(result.reason, source=result.source, location=f"input {index}", index=index), errors
                    )
            else:
                for index, row in zip(indices, result, strict=True):
                    if index in rows:  # each input is sent once: a second vector would be a bug, never stored
                        raise RemoteError(f"input {index} got two vectors")
                    rows[index] = row
        kept = [rows[i] for i in order if i in rows]
        return np.stack(kept).astype(np.float32) if kept else np.zeros((0, self.dim), dtype=np.float32)

    # -- HTTP ----------------------------------------------------------------------------------------------

    def _with_defaults(self, body: dict[str, Any]) -> dict[str, Any]:
        extra = {"dimensions": self.truncate_dim} if self.truncate_dim is not None and self._dim is not None else {}
        return {"model": self.model or "vlm2vec", "encoding_format": "base64", **extra, **body}

    def _post_embeddings(self, body: dict[str, Any], expected: int) -> np.ndarray:
        return decode_embeddings(self._send("POST", "/v1/embeddings", self._with_defaults(body)), expected)


__all__ = ["Endpoint", "HttpService", "RemoteEncoder", "RemoteError", "normalise_url"]
