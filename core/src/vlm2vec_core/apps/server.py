"""``vlm2vec serve``: the local encoder behind vLLM's OpenAI-compatible ``/v1/embeddings`` (extra ``[server]``).

Requests from many clients are batched together (up to ``max_batch_size`` items, waiting at most
``max_wait_ms`` for company); media are decoded and fitted in worker threads, never on the event loop; a full
queue answers 503 with Retry-After; shutdown finishes the requests in flight. See ``vlm2vec_core.encoders.wire``.
"""

# No `from __future__ import annotations` here: FastAPI reads the routes' Request annotations at runtime.

import asyncio
import hmac
import json
import logging
import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..encoders.wire import (
    MEDIA_FORMATS,
    ItemSpec,
    RequestError,
    decode_image,
    decode_video_frames,
    encode_vector,
    parse_request,
    parse_rerank,
)
from ..errors import InputError, require_extra
from ..media.prepare import Prepared

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerConfig:
    model_name: str = "vlm2vec"
    api_keys: tuple[str, ...] = ()
    max_batch_size: int = 16
    max_wait_ms: float = 10.0
    max_queue: int = 512  # items waiting for the model; beyond this, 503
    max_body_bytes: int = 64 << 20
    max_frames: int = 64
    max_inputs: int = 2048
    decode_threads: int = 4
    video_timeout: float = 60.0  # seconds an uploaded video file may take to decode (in a worker process)


class Overloaded(Exception):
    pass


class Batcher:
    """Collects prepared items from concurrent requests into model batches, run in a worker thread."""

    def __init__(self, encoder: Any, max_batch_size: int, max_wait_ms: float, max_queue: int) -> None:
        self.encoder = encoder
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000
        self.max_queue = max_queue
        self.queue: asyncio.Queue[tuple[Prepared, asyncio.Future[tuple[Any, int]]]] = asyncio.Queue()
        self.waiting = 0

    async def submit(self, items: Sequence[Prepared]) -> list[tuple[Any, int]]:
        if self.waiting + len(items) > self.max_queue:
            raise Overloaded
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in items]
        self.waiting += len(items)
        for item, future in zip(items, futures, strict=True):
            self.queue.put_nowait((item, future))
        return list(await asyncio.gather(*futures))

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            deadline = loop.time() + self.max_wait
            while len(batch) < self.max_batch_size:
                try:
                    batch.append(self.queue.get_nowait())
                    continue
                except asyncio.QueueEmpty:
                    pass
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), remaining))
                except TimeoutError:
                    break
            self.waiting -= len(batch)
            items = [item for item, _ in batch]
            try:
                vectors, tokens = await asyncio.to_thread(
                    self.encoder.encode_prepared, items, batch_size=self.max_batch_size
                )
            except Exception as exc:  # a model failure fails this batch's requests, not the server
                log.exception("batch of %d failed", len(batch))
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), vector, count in zip(batch, vectors, tokens, strict=True):
                if not future.done():  # the client may have gone away
                    future.set_result((vector, count))


def create_app(encoder: Any, config: ServerConfig, reranker: Any = None) -> Any:
    """The ASGI app (FastAPI) serving ``encoder`` and/or ``reranker`` (either may be None), loaded at start-up."""
    if encoder is None and reranker is None:
        raise ValueError("a server needs an encoder, a reranker or both")
    try:
        from fastapi import FastAPI, Request
        from fastapi.responses import JSONResponse
    except ImportError as exc:
        raise require_extra("server", "fastapi") from exc
    from concurrent.futures import ThreadPoolExecutor

    decoder = ThreadPoolExecutor(config.decode_threads, thread_name_prefix="vlm2vec-decode")
    # A request larger than the queue could never be admitted: refuse it for its size (422), not as busy (503).
    admissible = min(config.max_inputs, config.max_queue)
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        task = None
        if encoder is not None:
            await asyncio.to_thread(encoder.load)
            batcher = Batcher(encoder, config.max_batch_size, config.max_wait_ms, config.max_queue)
            state["batcher"] = batcher
            state["dim"] = encoder.dim
            state["family"] = encoder.family
            task = asyncio.create_task(batcher.run())
            log.info("serving %s (%s, dim %d)", config.model_name, state["family"].title, state["dim"])
        if reranker is not None:
            await asyncio.to_thread(reranker.load)
            state["rerank_slots"] = asyncio.Semaphore(1)  # one scoring job on the model at a time
            state["rerank_waiting"] = 0
            log.info("serving %s (%s) on /v1/rerank", reranker.model_name, reranker.family.title)
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
            decoder.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="vlm2vec", lifespan=lifespan, docs_url=None, redoc_url=None)

    def error(status: int, message: str, headers: dict[str, str] | None = None) -> Any:
        kind = {
            400: "BadRequestError",
            401: "AuthenticationError",
            413: "RequestTooLarge",
            422: "UnprocessableEntity",
            503: "ServiceUnavailable",
        }.get(status, "InternalServerError")
        return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status, headers=headers)

    def authorized(request: Request) -> bool:
        if not config.api_keys:
            return True
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        given = token.strip().encode() if scheme.lower() == "bearer" else b""
        # Compare against every key, always, in constant time per key.
        return bool(sum(hmac.compare_digest(given, key.encode()) for key in config.api_keys)) and bool(given)

    @app.get("/health")
    async def health() -> Any:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models(request: Request) -> Any:
        if not authorized(request):
            return error(401, "missing or wrong API key (send Authorization: Bearer <key>)")
        data = []
        if encoder is not None:
            data.append(
                {
                    "id": config.model_name,
                    "object": "model",
                    "owned_by": "vlm2vec",
                    "created": 0,
                    "kind": "embedding",
                    "dim": state["dim"],
                    "family": state["family"].name,
                    "truncate_dim": int(getattr(encoder, "truncate_dim", None) or 0),
                    "licence": state["family"].licence,
                    "media_formats": list(MEDIA_FORMATS),
                }
            )
        if reranker is not None:
            data.append(
                {
                    "id": reranker.model_name,
                    "object": "model",
                    "owned_by": "vlm2vec",
                    "created": 0,
                    "kind": "rerank",
                    "family": reranker.family.name,
                    "licence": reranker.family.licence,
                    "media_formats": list(MEDIA_FORMATS),
                }
            )
        return {"object": "list", "data": data}

    async def read_body(request: Request) -> Any:
        """The JSON body, within the size limit (an error response instead when it is not)."""
        try:
            return await read_json(request, config.max_body_bytes)
        except BadBody as exc:
            return error(exc.status, str(exc))

    async def opened(request: Request, model: Any, missing: str) -> Any:
        """The request's JSON body, or the error response: a wrong key, no such model here, a bad body."""
        if not authorized(request):
            return error(401, "missing or wrong API key (send Authorization: Bearer <key>)")
        if model is None:
            return error(400, missing)
        return await read_body(request)

    @app.post("/v1/rerank")
    @app.post("/rerank")
    async def rerank(request: Request) -> Any:
        body = await opened(request, reranker, "this server holds no reranker (start it with --reranker MODEL)")
        if isinstance(body, JSONResponse):
            return body
        try:
            parsed = parse_rerank(body, max_inputs=admissible)
            loop = asyncio.get_running_loop()
            specs = [parsed.query, *parsed.documents]
            inputs = await asyncio.gather(
                *(loop.run_in_executor(decoder, _rerank_input, spec, reranker, config) for spec in specs)
            )
        except RequestError as exc:
            return error(exc.status, exc.message)
        except InputError as exc:
            return error(422, str(exc))
        if state["rerank_waiting"] + len(parsed.documents) > config.max_queue:
            return error(503, "the server is busy: retry shortly", {"Retry-After": "1"})
        state["rerank_waiting"] += len(parsed.documents)
        try:
            async with state["rerank_slots"]:
                ranked = await asyncio.to_thread(
                    reranker.rerank,
                    inputs[0],
                    inputs[1:],
                    top_n=parsed.top_n,
                    instruction=parsed.instruction,
                    task=parsed.task,
                )
        except InputError as exc:
            return error(422, str(exc))
        except ValueError as exc:  # an unknown task, say
            return error(422, str(exc))
        finally:
            state["rerank_waiting"] -= len(parsed.documents)
        results = []
        for index, score in ranked:
            row: dict[str, Any] = {"index": index, "relevance_score": score}
            if parsed.return_documents and isinstance(body["documents"][index], str):
                row["document"] = {"text": body["documents"][index]}
            results.append(row)
        return {"id": f"rerank-{uuid.uuid4().hex}", "model": reranker.model_name, "results": results}

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> Any:
        body = await opened(request, encoder, "this server holds no embedding model (it serves /v1/rerank only)")
        if isinstance(body, JSONResponse):
            return body
        try:
            specs, fmt = parse_request(body, max_inputs=admissible, family=state["family"])
            dimensions = _dimensions(body, state["family"], state["dim"])
            loop = asyncio.get_running_loop()
            items = await asyncio.gather(
                *(
                    loop.run_in_executor(decoder, _prepare_spec, spec, i, encoder, config)
                    for i, spec in enumerate(specs)
                )
            )
        except RequestError as exc:
            return error(exc.status, exc.message)
        except InputError as exc:
            return error(422, str(exc))
        try:
            results = await state["batcher"].submit(items)
        except Overloaded:
            return error(503, "the server is busy: retry shortly", {"Retry-After": "1"})
        data = [
            {"object": "embedding", "index": i, "embedding": encode_vector(_shortened(vector, dimensions), fmt)}
            for i, (vector, _) in enumerate(results)
        ]
        tokens = sum(count for _, count in results)
        return {
            "id": f"embd-{uuid.uuid4().hex}",
            "object": "list",
            "created": int(time.time()),
            "model": config.model_name,
            "data": data,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    return app


def _rerank_input(spec: ItemSpec, reranker: Any, config: ServerConfig) -> Any:
    """A rerank query or document as an Input (media decoded here; fitted by the reranker's own rules)."""
    from ..types import Input

    limits = reranker.limits
    image = video = None
    if spec.image is not None:
        image = decode_image(spec.image, max_decode_pixels=limits.max_decode_pixels)
    if spec.video is not None:
        got = _spec_video(spec.video, limits, reranker.family.media, config)
        video = got if isinstance(got, list) else got.frames
    if image is None and video is None:
        return Input(text=spec.text or "")
    return Input(text=spec.text, image=image, video=video)


def _spec_video(video: Any, limits: Any, profile: Any, config: ServerConfig) -> Any:
    """A request's video part: its frames as sent (a list, to be fitted by the caller's rules), or an uploaded
    file sampled and fitted in an isolated worker (a VideoPrep); a bad one is a 422 naming the part."""
    got = decode_video_frames(
        video, max_frames=config.max_frames, max_decode_pixels=limits.max_decode_pixels, max_bytes=config.max_body_bytes
    )
    if not isinstance(got, bytes):
        return got
    try:
        return _video_file(got, video.where, limits, profile, config.video_timeout)
    except InputError as exc:
        raise RequestError(422, f"{video.where}: {exc.reason}") from exc


def _dimensions(body: Any, family: Any, dim: int) -> int | None:
    """The ``dimensions`` a request asks for (a Matryoshka family's sizes only), or None."""
    wanted = body.get("dimensions") if isinstance(body, dict) else None
    if wanted is None or wanted == dim:
        return None
    if isinstance(wanted, bool) or not isinstance(wanted, int) or wanted < 1 or wanted > dim:
        raise RequestError(422, f"'dimensions' must be an integer from 1 to {dim}, not {wanted!r}")
    try:
        family.check_truncate_dim(wanted, dim)
    except ValueError as exc:
        raise RequestError(422, str(exc)) from exc
    return int(wanted)


def _shortened(vector: Any, dimensions: int | None) -> Any:
    import numpy as np

    if dimensions is None:
        return vector
    head = np.asarray(vector[:dimensions], dtype=np.float32)
    return head / max(float(np.linalg.norm(head)), 1e-12)


def _prepare_spec(spec: ItemSpec, index: int, encoder: Any, config: ServerConfig) -> Prepared:
    """Decode and fit one item's media (a worker thread): the same family rules and limits as the local encoder."""
    from ..media.prepare import assemble, video_prep
    from ..tasks import Instruction

    limits, profile = encoder.limits, encoder.family
    image = video = None
    if spec.image is not None:
        image = decode_image(spec.image, max_decode_pixels=limits.max_decode_pixels)
    if spec.video is not None:
        if profile.video == "none":
            raise RequestError(422, f"{spec.video.where}: {profile.title} takes no video")
        got = _spec_video(spec.video, limits, profile, config)
        try:
            video = video_prep(got, limits, profile) if isinstance(got, list) else got
        except InputError as exc:
            raise RequestError(422, f"{spec.video.where}: {exc.reason}") from exc
    instruction = spec.instruction if spec.instruction is not None else Instruction()
    try:
        prepared = assemble(index, instruction, spec.text, image, video, limits, profile)
    except (InputError, ValueError) as exc:
        raise RequestError(422, f"{spec.where}: {exc}") from exc
    if not profile.chat_prompt:  # the raw families' prompt is the request's own parts in order
        prepared = replace(prepared, prompt=spec.prompt)
    counter = getattr(encoder, "token_count", None)
    if counter is not None:  # a request the server accepts must be one the model can take
        limit = encoder.max_tokens
        # a family with a max length cuts text itself, but never visual tokens
        tokens = prepared.visual_tokens if profile.max_length is not None else counter(prepared)
        if tokens > limit:
            raise RequestError(422, f"{spec.where}: {tokens:,} tokens, over the model's limit of {limit:,}")
    return prepared


def _video_file(data: bytes, where: str, limits: Any, profile: Any, timeout: float) -> Any:
    """An uploaded video file's frames, picked and fitted. Decoded in a worker process (``isolate``): a forged
    file that aborts the native decoder or hangs it costs its request (an InputError, so a 422), not the server."""
    from ..media.isolate import run_isolated

    fd, name = tempfile.mkstemp(prefix="vlm2vec-upload-", suffix=".video")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        return run_isolated(_decode_video, name, limits, profile, timeout=timeout, source=where)
    finally:
        Path(name).unlink(missing_ok=True)


def _decode_video(path: str, limits: Any, profile: Any) -> Any:
    """Runs in the worker process: the file's frames as the family picks and fits them."""
    from ..media.prepare import video_prep

    return video_prep(path, limits, profile)


class BadBody(ValueError):
    """A request body that is too large (413) or not JSON (400)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def read_json(request: Any, max_bytes: int) -> Any:
    """A request's JSON body, read as it streams in and refused once it passes ``max_bytes`` (a declared
    Content-Length over it is refused before reading); raises BadBody. Shared by the server and the page."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise BadBody(413, f"request body of {int(declared):,} bytes is over the limit of {max_bytes:,}")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > max_bytes:
            raise BadBody(413, f"request body is over the limit of {max_bytes:,} bytes")
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise BadBody(400, f"malformed JSON: {exc}") from exc
    except RecursionError as exc:
        raise BadBody(400, "malformed JSON: nested too deeply") from exc


def prefer_sleeping_threads() -> None:
    """Call first thing in a serving process, before torch is imported: OpenMP's idle worker threads then sleep
    (``OMP_WAIT_POLICY=PASSIVE``) instead of spinning between the model's operations, which otherwise takes the
    cores from the threads decoding requests (and from anything else on the machine). Measured on 2 cores that
    other jobs kept busy (load average about 10), remote over loopback took 5.1x as long as local with spinning
    threads and 1.3x with sleeping ones; on an otherwise idle machine both took 1.25x. A value already set is
    kept."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def api_keys_from(env: str | None = None, key_file: str | Path | None = None) -> tuple[str, ...]:
    """Keys from ``$VLM2VEC_API_KEYS`` (comma-separated) and/or a file (one per line, # comments)."""
    keys = [k.strip() for k in (env if env is not None else os.environ.get("VLM2VEC_API_KEYS", "")).split(",")]
    if key_file is not None:
        for line in Path(key_file).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            keys.append(line)
    return tuple(k for k in keys if k)


def serve(encoder: Any, config: ServerConfig, host: str = "127.0.0.1", port: int = 8000, reranker: Any = None) -> None:
    """Run the server until SIGINT/SIGTERM; requests in flight are finished before it exits."""
    try:
        import uvicorn
    except ImportError as exc:
        raise require_extra("server", "uvicorn") from exc
    if not config.api_keys and host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("serving on %s without API keys: set VLM2VEC_API_KEYS or --api-key-file", host)
    uvicorn.run(
        create_app(encoder, config, reranker),
        host=host,
        port=port,
        log_level="info",
        timeout_graceful_shutdown=60,
        access_log=False,
    )
