"""RemoteEncoder: the Encoder protocol over HTTP, to a ``vlm2vec serve`` or a vLLM server. No torch needed.

Media are decoded, fitted to the model's pixel limits and compressed on the client (lossless PNG by default,
so the vectors equal local ones), texts go in batches (``input``), each image or video item as a ``messages``
request, up to ``max_concurrency`` at once; connection errors, 429 and 503 are retried with backoff.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import numpy as np

from .errors import InputError, report, require_extra
from .families import Profile, family_for_hub_id, get_family
from .media import MAX_DECODE_PIXELS
from .prepare import MediaLimits, Prepared, keep_good, prepare_or_error
from .progress import Progress
from .protocol import PresetMixin
from .tasks import Instruction, as_instruction
from .wire import chat_messages, content_parts, decode_embeddings

log = logging.getLogger(__name__)
RETRY_STATUS = frozenset({429, 502, 503, 504})


class RemoteError(RuntimeError):
    """The server answered with an error that retrying will not fix (or retries ran out)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class HttpService:
    """An HTTP client to a ``vlm2vec serve`` (or vLLM): API key, timeouts, and retries with backoff for connection
    errors, 429 and 5xx-unavailable; 400/413/422 become InputError, other errors RemoteError."""

    def __init__(self, base_url: str, *, api_key: str | None, timeout: float, max_retries: int, backoff: float) -> None:
        try:
            import httpx
        except ImportError as exc:  # pragma: no cover - httpx is a dependency of core
            raise require_extra("remote", "httpx") from exc
        self.base_url = base_url.rstrip("/").removesuffix("/v1")  # the OpenAI/vLLM habit: http://host:8000/v1
        self.max_retries = max_retries
        self.backoff = backoff
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = httpx.Timeout(timeout, connect=10.0)
        self._client = httpx.Client(base_url=self.base_url, headers=self._headers, timeout=self._timeout)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _served(self, kind: str) -> dict[str, Any]:
        """The first model of ``kind`` ("embedding" or "rerank") that ``/v1/models`` lists ({} when none says)."""
        models = self._send("GET", "/v1/models", None).get("data") or []
        for entry in models:
            if entry.get("kind", "embedding") == kind:
                return dict(entry)
        return dict(models[0]) if models and kind == "embedding" else {}

    def _async_client(self) -> Any:
        import httpx

        return httpx.AsyncClient(base_url=self.base_url, headers=self._headers, timeout=self._timeout)

    def _send(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        import time

        import httpx

        for attempt in range(self.max_retries + 1):
            try:
                response = self._client.request(method, path, json=body)
            except (httpx.TransportError, httpx.TimeoutException) as exc:
                time.sleep(self._retry_delay(attempt, None, f"{type(exc).__name__}: {exc}"))
                continue
            if response.status_code not in RETRY_STATUS:
                return self._checked(response)
            time.sleep(self._retry_delay(attempt, response, None))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _asend(self, client: Any, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        import httpx

        for attempt in range(self.max_retries + 1):
            try:
                response = await client.request(method, path, json=body)
            except (httpx.TransportError, httpx.TimeoutException) as exc:
                await asyncio.sleep(self._retry_delay(attempt, None, f"{type(exc).__name__}: {exc}"))
                continue
            if response.status_code not in RETRY_STATUS:
                return self._checked(response)
            await asyncio.sleep(self._retry_delay(attempt, response, None))
        raise AssertionError("unreachable")  # pragma: no cover

    def _retry_delay(self, attempt: int, response: Any, failure: str | None) -> float:
        """Seconds to wait before retrying (exponential, jittered, at least Retry-After); RemoteError at the end."""
        why = failure or f"HTTP {response.status_code}"
        if attempt >= self.max_retries:
            raise RemoteError(
                f"{self.base_url}: giving up after {attempt + 1} attempts ({why})",
                None if response is None else response.status_code,
            )
        delay = min(10.0, self.backoff * 2**attempt) * (0.5 + random.random())
        if response is not None and (after := response.headers.get("retry-after", "")).replace(".", "", 1).isdigit():
            delay = max(delay, float(after))
        log.warning("%s: %s; retrying in %.1f s", self.base_url, why, delay)
        return delay

    def _checked(self, response: Any) -> dict[str, Any]:
        if response.status_code >= 400:
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text[:500]
            if response.status_code in (400, 413, 422):
                raise InputError(f"the server refused it: {message}", source=self.base_url)
            raise RemoteError(f"{self.base_url}: HTTP {response.status_code}: {message}", response.status_code)
        result: dict[str, Any] = response.json()
        return result


class RemoteEncoder(HttpService, PresetMixin):
    """Same API as VLM2VecEncoder, computed by a server: ``RemoteEncoder("http://gpu-box:8000")``.

    The model family comes from the server (``/v1/models``; for a server that does not say, such as vLLM, from
    the served model's hub id, else VLM2Vec-V2); ``family=`` states what you expect and is checked against it.
    ``truncate_dim`` asks a Matryoshka family for shorter vectors (``dimensions`` in the request).
    """

    def __init__(
        self,
        base_url: str,
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
        media_format: str = "png",
    ) -> None:
        if media_format not in ("png", "jpeg"):
            raise ValueError("media_format must be 'png' (exact) or 'jpeg' (smaller; what vLLM takes for frames)")
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
        return f"RemoteEncoder({self.base_url!r})"

    # -- discovery -----------------------------------------------------------------------------------------

    @property
    def model_name(self) -> str:
        return str(self.model or self.base_url)

    @property
    def dim(self) -> int:
        if self._dim is None:
            with self._lock:
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
                f"{self.base_url} serves {self.model!r} of the {family.title} family, not {self._family_arg.title}"
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
        """Embed inputs on the server; same contract as ``VLM2VecEncoder.encode``."""
        self.dim  # noqa: B018 - ask the server what it serves (and check the family) before preparing for it
        prepared, jobs = self._plan(inputs, instruction, batch_size, errors)

        def run(job: tuple[list[Prepared], dict[str, Any]]) -> np.ndarray | InputError:
            try:
                return self._post_embeddings(job[1], len(job[0]))
            except InputError as exc:
                return exc

        results: list[np.ndarray | InputError] = []
        with (
            ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="vlm2vec-remote") as pool,
            Progress(len(prepared), show_progress) as bar,
        ):
            for job, result in zip(jobs, pool.map(run, jobs), strict=True):
                results.append(result)
                bar.update(len(job[0]))
        return self._assemble(prepared, jobs, results, errors)

    async def aencode(
        self,
        inputs: Sequence[Any],
        *,
        instruction: Instruction | str | None = None,
        batch_size: int = 32,
        show_progress: bool | None = None,
        errors: list[InputError] | None = None,
    ) -> np.ndarray:
        """``encode`` with async I/O (media are still prepared in a worker thread)."""

        await asyncio.to_thread(lambda: self.dim)
        prepared, jobs = await asyncio.to_thread(self._plan, inputs, instruction, batch_size, errors)
        limit = asyncio.Semaphore(self.max_concurrency)
        async with self._async_client() as client:

            async def run(job: tuple[list[Prepared], dict[str, Any]]) -> np.ndarray | InputError:
                async with limit:
                    try:
                        body = await self._asend(client, "POST", "/v1/embeddings", self._with_defaults(job[1]))
                    except InputError as exc:
                        return exc
                    return decode_embeddings(body, len(job[0]))

            results = await asyncio.gather(*(run(job) for job in jobs))
        return self._assemble(prepared, jobs, list(results), errors)

    def _plan(
        self,
        inputs: Sequence[Any],
        instruction: Instruction | str | None,
        batch_size: int,
        errors: list[InputError] | None,
    ) -> tuple[list[Prepared], list[tuple[list[Prepared], dict[str, Any]]]]:
        """Prepare inputs locally (fit media) and cut them into requests: text batches and one per media item."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if isinstance(inputs, (str, bytes)):
            raise TypeError("encode takes a list of inputs; wrap a single string in a list")
        instr = as_instruction(instruction)
        items = list(inputs)
        family, limits = self.family, self.limits
        workers = min(4, max(1, len(items)))
        with ThreadPoolExecutor(workers, thread_name_prefix="vlm2vec-prepare") as pool:
            results = list(
                pool.map(lambda pair: prepare_or_error(pair[1], pair[0], instr, limits, family), enumerate(items))
            )
        prepared = list(keep_good(results, errors))
        if family.chat_prompt:  # every item as a system turn and a user turn, as the family's chat template has it
            default = family.default_instruction
            return prepared, [
                ([p], {"messages": chat_messages(replace(p, system=p.system or default), self.media_format)})
                for p in prepared
            ]
        texts = [p for p in prepared if p.modality == "text"]
        jobs: list[tuple[list[Prepared], dict[str, Any]]] = [
            (chunk, {"input": [p.prompt for p in chunk]})
            for chunk in (texts[i : i + batch_size] for i in range(0, len(texts), batch_size))
        ]
        for p in prepared:
            if p.modality != "text":
                parts = content_parts(p.prompt, p.image, p.frames, self.media_format)
                jobs.append(([p], {"messages": [{"role": "user", "content": parts}]}))
        return prepared, jobs

    def _assemble(
        self,
        prepared: list[Prepared],
        jobs: list[tuple[list[Prepared], dict[str, Any]]],
        results: list[np.ndarray | InputError],
        errors: list[InputError] | None,
    ) -> np.ndarray:
        """Rows in input order; an item the server refused is raised, or recorded in ``errors`` and skipped."""
        rows: dict[int, np.ndarray] = {}
        for (chunk, _), result in zip(jobs, results, strict=True):
            if isinstance(result, InputError):
                for p in chunk:
                    report(
                        InputError(result.reason, source=result.source, location=f"input {p.index}", index=p.index),
                        errors,
                    )
            else:
                rows.update(zip((p.index for p in chunk), result, strict=True))
        kept = [rows[p.index] for p in prepared if p.index in rows]
        return np.stack(kept).astype(np.float32) if kept else np.zeros((0, self.dim), dtype=np.float32)

    # -- HTTP with retries ---------------------------------------------------------------------------------

    def _with_defaults(self, body: dict[str, Any]) -> dict[str, Any]:
        extra = {"dimensions": self.truncate_dim} if self.truncate_dim is not None and self._dim is not None else {}
        return {"model": self.model or "vlm2vec", "encoding_format": "base64", **extra, **body}

    def _post_embeddings(self, body: dict[str, Any], expected: int) -> np.ndarray:
        return decode_embeddings(self._send("POST", "/v1/embeddings", self._with_defaults(body)), expected)


__all__ = ["HttpService", "RemoteEncoder", "RemoteError"]
