"""Typed errors raised at the library's boundary."""

from __future__ import annotations

import logging
from os import PathLike

logger = logging.getLogger("vlm2vec_core")


class InputError(ValueError):
    """An input (file, page, clip, image or text) that cannot be embedded.

    The message names the source, the place inside it (page, time) when there is one, and the reason.
    The parts are kept as attributes so callers can report them their own way.
    """

    def __init__(
        self,
        reason: str,
        *,
        source: str | PathLike[str] | None = None,
        location: str | None = None,
        index: int | None = None,
    ) -> None:
        self.reason = reason
        self.source = None if source is None else str(source)
        self.location = location
        self.index = index
        where = ", ".join(part for part in (self.source, location) if part)
        super().__init__(f"{where}: {reason}" if where else reason)

    def with_index(self, index: int) -> InputError:
        """The same error, tagged with the position of the failing item in a batch."""
        err = InputError(self.reason, source=self.source, location=self.location or f"input {index}", index=index)
        err.__cause__ = self.__cause__ or self
        return err


def report(err: InputError, errors: list[InputError] | None) -> None:
    """Raise ``err``, or, when the caller passed an ``errors`` list, record it there and carry on."""
    if errors is None:
        raise err
    logger.warning("skipped: %s", err)
    errors.append(err)


class MissingDependencyError(ImportError):
    """An optional dependency (an extra) is not installed."""


def require_extra(extra: str, modules: str) -> MissingDependencyError:
    return MissingDependencyError(f'{modules} is needed for this; install it with: pip install "vlm2vec-core[{extra}]"')


class DeviceError(ValueError):
    """A device that does not exist here (``cuda`` without a GPU, a misspelt name)."""


def checked_device(device: str | None, cuda_available: bool) -> str:
    """``device`` as torch names it (``gpu`` is taken for ``cuda``), or DeviceError saying what is there."""
    if device is None:
        return "cuda" if cuda_available else "cpu"
    name = "cuda" + device[3:] if device.lower().startswith("gpu") else device
    kind = name.split(":", 1)[0]
    if kind == "cuda" and not cuda_available:
        raise DeviceError(f"device {device!r}: no CUDA GPU is visible here (use --device cpu, or leave it out)")
    if kind not in ("cuda", "cpu", "mps", "xpu"):
        raise DeviceError(f"unknown device {device!r}: use cpu, cuda or cuda:N")
    return name
