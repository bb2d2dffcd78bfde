"""The encoder protocol every backend satisfies (local, remote, fake), and the presets on top of encode."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import InputError
from ..tasks import Instruction, resolve_instruction


@runtime_checkable
class Encoder(Protocol):
    """What the framework adapters rely on."""

    @property
    def dim(self) -> int: ...

    def encode(
        self,
        inputs: Sequence[Any],
        *,
        instruction: Instruction | str | None = None,
        batch_size: int = 8,
        show_progress: bool | None = None,
        errors: list[InputError] | None = None,
    ) -> np.ndarray: ...

    def encode_queries(self, inputs: Sequence[Any], *, task: str | None = None, **kwargs: Any) -> np.ndarray: ...

    def encode_documents(self, inputs: Sequence[Any], *, task: str | None = None, **kwargs: Any) -> np.ndarray: ...


class PresetMixin:
    """encode_queries / encode_documents in terms of encode and the task presets of the encoder's family."""

    family: Any = None  # the model family's profile (vlm2vec_core.families.Profile); None: VLM2Vec-V2

    def encode(
        self,
        inputs: Sequence[Any],
        *,
        instruction: Instruction | str | None = None,
        batch_size: int = 8,
        show_progress: bool | None = None,
        errors: list[InputError] | None = None,
    ) -> np.ndarray:  # pragma: no cover - every encoder overrides it
        raise NotImplementedError

    def encode_queries(
        self,
        inputs: Sequence[Any],
        *,
        task: str | None = None,
        instruction: Instruction | str | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Embed queries with the task's query instruction (``instruction=`` overrides it); without ``task``, the
        family's task for document pages (``visdoc`` for most families)."""
        return self.encode(
            inputs,
            instruction=resolve_instruction(task or default_task(self.family), "query", instruction, self.family),
            **kwargs,
        )

    def encode_documents(
        self,
        inputs: Sequence[Any],
        *,
        task: str | None = None,
        instruction: Instruction | str | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Embed documents (pages, clips, images, texts) with the task's document instruction."""
        return self.encode(
            inputs,
            instruction=resolve_instruction(task or default_task(self.family), "document", instruction, self.family),
            **kwargs,
        )

    async def aencode(
        self,
        inputs: Sequence[Any],
        *,
        instruction: Instruction | str | None = None,
        batch_size: int = 8,
        show_progress: bool | None = None,
        errors: list[InputError] | None = None,
    ) -> np.ndarray:
        """``encode`` off the event loop (a worker thread); remote encoders override it with real async I/O."""
        return await asyncio.to_thread(
            self.encode,
            inputs,
            instruction=instruction,
            batch_size=batch_size,
            show_progress=show_progress,
            errors=errors,
        )

    async def aencode_queries(
        self,
        inputs: Sequence[Any],
        *,
        task: str | None = None,
        instruction: Instruction | str | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        return await self.aencode(
            inputs,
            instruction=resolve_instruction(task or default_task(self.family), "query", instruction, self.family),
            **kwargs,
        )

    async def aencode_documents(
        self,
        inputs: Sequence[Any],
        *,
        task: str | None = None,
        instruction: Instruction | str | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        return await self.aencode(
            inputs,
            instruction=resolve_instruction(task or default_task(self.family), "document", instruction, self.family),
            **kwargs,
        )


def default_task(family: Any) -> str:
    """The task a family's pages are embedded with (visdoc for most; UniME-V2, trained on images only: image)."""
    return str(family.task_for_kind.get("page", "visdoc")) if family is not None else "visdoc"


def encode_by_task(
    encoder: Encoder,
    inputs: Sequence[Any],
    tasks: Sequence[str | None],
    *,
    role: str = "document",
    errors: list[InputError] | None = None,
    instructions: Mapping[str, Instruction | str | None] | None = None,
    **kwargs: Any,
) -> np.ndarray:
    """Embed inputs that each need their own task preset (pages and clips, say): one call per task, rows in input
    order. ``instructions`` overrides the preset of some tasks (``{task: instruction}``; None keeps it). With
    ``errors``, bad inputs are skipped and recorded with their position in ``inputs``."""
    groups = _task_groups(inputs, tasks)
    rows: dict[int, np.ndarray] = {}
    for task, positions in groups.items():
        method = encoder.encode_queries if role == "query" else encoder.encode_documents
        found: list[InputError] | None = [] if errors is not None else None
        try:
            vectors = method(
                [inputs[i] for i in positions], task=task, errors=found, **_for(task, instructions, kwargs)
            )
        except InputError as exc:
            raise _renumbered(exc, positions) from exc
        rows.update(_collect(positions, vectors, found, errors))
    return _stack(rows, inputs, encoder)


async def aencode_by_task(
    encoder: Encoder,
    inputs: Sequence[Any],
    tasks: Sequence[str | None],
    *,
    role: str = "document",
    errors: list[InputError] | None = None,
    instructions: Mapping[str, Instruction | str | None] | None = None,
    **kwargs: Any,
) -> np.ndarray:
    """``encode_by_task`` with the encoder's own coroutines when it has them (else in a worker thread)."""
    groups = _task_groups(inputs, tasks)
    rows: dict[int, np.ndarray] = {}
    name = "encode_queries" if role == "query" else "encode_documents"
    for task, positions in groups.items():
        found: list[InputError] | None = [] if errors is not None else None
        batch = [inputs[i] for i in positions]
        native = getattr(encoder, f"a{name}", None)
        options = _for(task, instructions, kwargs)
        try:
            if native is not None:
                vectors = await native(batch, task=task, errors=found, **options)
            else:
                vectors = await asyncio.to_thread(getattr(encoder, name), batch, task=task, errors=found, **options)
        except InputError as exc:
            raise _renumbered(exc, positions) from exc
        rows.update(_collect(positions, vectors, found, errors))
    return _stack(rows, inputs, encoder)


def _for(
    task: str | None, instructions: Mapping[str, Instruction | str | None] | None, kwargs: dict[str, Any]
) -> dict[str, Any]:
    override = (instructions or {}).get(task)  # type: ignore[arg-type]  # a None task is a key too
    return {**kwargs, "instruction": override} if override is not None else kwargs


def _task_groups(inputs: Sequence[Any], tasks: Sequence[str | None]) -> dict[str | None, list[int]]:
    if len(tasks) != len(inputs):
        raise ValueError(f"one task per input: got {len(tasks)} tasks for {len(inputs)} inputs")
    groups: dict[str | None, list[int]] = {}
    for position, task in enumerate(tasks):
        groups.setdefault(task, []).append(position)
    return groups


def _renumbered(err: InputError, positions: list[int]) -> InputError:
    """The error of a group's item, renumbered to the item's position among all inputs."""
    index = positions[err.index] if err.index is not None else None
    location = err.location
    if index is not None and location == f"input {err.index}":
        location = f"input {index}"
    return InputError(err.reason, source=err.source, location=location, index=index)


def _collect(
    positions: list[int], vectors: np.ndarray, found: list[InputError] | None, errors: list[InputError] | None
) -> dict[int, np.ndarray]:
    bad = {e.index for e in found or []}
    if errors is not None:
        errors.extend(_renumbered(e, positions) for e in found or [])
    good = [p for k, p in enumerate(positions) if k not in bad]
    return dict(zip(good, vectors, strict=True))


def _stack(rows: dict[int, np.ndarray], inputs: Sequence[Any], encoder: Encoder) -> np.ndarray:
    kept = [rows[i] for i in range(len(inputs)) if i in rows]
    return np.stack(kept).astype(np.float32) if kept else np.zeros((0, encoder.dim), dtype=np.float32)


@dataclass(frozen=True)
class EncoderSpec:
    """An encoder as options name it (the CLI's, or what each Ray actor builds its own from: an encoder object
    itself does not travel, it holds a model). ``remote``: one URL or several (``RemoteEncoder``'s); otherwise
    ``model`` (default VLM2Vec-V2) loads locally, on first use."""

    model: str | None = None
    remote: str | tuple[str, ...] | None = None
    api_key: str | None = None
    family: str | None = None
    truncate_dim: int | None = None
    max_pixels: int | None = None
    dtype: str | None = None
    base_model: str | None = None
    device: str | None = None

    def build(self) -> Any:
        """The encoder (not loaded: the weights load on first use, or with ``.load()``)."""
        if self.remote is not None:
            from .remote import RemoteEncoder

            urls: Any = self.remote if isinstance(self.remote, str) or len(self.remote) != 1 else self.remote[0]
            return RemoteEncoder(
                urls,
                api_key=self.api_key,
                family=self.family,
                truncate_dim=self.truncate_dim,
                max_pixels=self.max_pixels,
            )
        from .loading import DEFAULT_MODEL
        from .local import VLM2VecEncoder

        return VLM2VecEncoder(
            self.model or DEFAULT_MODEL,
            family=self.family,
            truncate_dim=self.truncate_dim,
            max_pixels=self.max_pixels,
            dtype=self.dtype,
            base_model=self.base_model,
            device=self.device,
        )
