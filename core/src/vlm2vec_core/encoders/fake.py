"""A deterministic, dependency-free encoder for users' own unit tests."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import InputError
from ..families import Profile, get_family
from ..media.prepare import MediaLimits, prepare_all
from ..tasks import Instruction
from .protocol import PresetMixin


class FakeEncoder(PresetMixin):
    """Same API, validation and prompts as VLM2VecEncoder (of any family); vectors are a hash of prompt and pixels.

    Equal inputs give equal vectors, different inputs give (almost surely) different unit vectors. It checks
    and reports bad media exactly like the real encoder, so error handling can be tested without a model.
    """

    def __init__(
        self,
        dim: int = 64,
        *,
        family: str | Profile | None = None,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        model_name: str = "fake",
        truncate_dim: int | None = None,
    ) -> None:
        if dim < 1:
            raise ValueError(f"dim must be positive, got {dim}")
        self.family = get_family(family)
        self.model_name = model_name
        self.truncate_dim = truncate_dim
        self._dim = truncate_dim or dim
        self.limits = MediaLimits.for_family(self.family, min_pixels=min_pixels, max_pixels=max_pixels)
        self.prompts: list[str] = []  # every prompt encoded, in order: handy in tests

    @property
    def dim(self) -> int:
        return self._dim

    def encode(
        self,
        inputs: Sequence[Any],
        *,
        instruction: Instruction | str | None = None,
        batch_size: int = 8,
        show_progress: bool | None = None,
        errors: list[InputError] | None = None,
    ) -> np.ndarray:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        rows = []
        for item in prepare_all(inputs, instruction, self.limits, errors=errors, family=self.family):
            digest = hashlib.sha256(item.prompt.encode())  # SHA-256 runs in hardware on most CPUs: 2x blake2b
            for image in ([item.image] if item.image is not None else []) + (item.frames or []):
                digest.update(repr(image.size).encode())
                digest.update(np.asarray(image).data)  # its buffer (a third of the time of tobytes)
            self.prompts.append(item.prompt)
            rng = np.random.default_rng(int.from_bytes(digest.digest()[:16], "little"))
            rows.append(rng.standard_normal(self._dim))
        out = np.asarray(rows, dtype=np.float32).reshape(len(rows), self._dim)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return (out / np.maximum(norms, 1e-12)).astype(np.float32)
