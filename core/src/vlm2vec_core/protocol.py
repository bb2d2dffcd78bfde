"""The encoder protocol every backend satisfies (local, remote, fake), and the presets on top of encode."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .errors import InputError
from .tasks import Instruction, resolve_instruction


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

    def encode_queries(self, inputs: Sequence[Any], *, task: str = "visdoc", **kwargs: Any) -> np.ndarray: ...

    def encode_documents(self, inputs: Sequence[Any], *, task: str = "visdoc", **kwargs: Any) -> np.ndarray: ...


class PresetMixin:
    """encode_queries / encode_documents in terms of encode and the task presets."""

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
        task: str = "visdoc",
        instruction: Instruction | str | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Embed queries with the task's query instruction (``instruction=`` overrides it)."""
        return self.encode(inputs, instruction=resolve_instruction(task, "query", instruction), **kwargs)

    def encode_documents(
        self,
        inputs: Sequence[Any],
        *,
        task: str = "visdoc",
        instruction: Instruction | str | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Embed documents (pages, clips, images, texts) with the task's document instruction."""
        return self.encode(inputs, instruction=resolve_instruction(task, "document", instruction), **kwargs)

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

    async def aencode_queries(self, inputs: Sequence[Any], **kwargs: Any) -> np.ndarray:
        return await asyncio.to_thread(self.encode_queries, inputs, **kwargs)

    async def aencode_documents(self, inputs: Sequence[Any], **kwargs: Any) -> np.ndarray:
        return await asyncio.to_thread(self.encode_documents, inputs, **kwargs)
