"""Plain data: what the loaders produce and what the encoder takes. No heavy imports."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image


@dataclass(frozen=True, eq=False)
class Page:
    """One rendered PDF page."""

    source: Path
    page_number: int  # 1-based
    page_count: int
    image: Image.Image  # RGB

    @property
    def location(self) -> str:
        return f"page {self.page_number}"


@dataclass(frozen=True, eq=False)
class VideoClip:
    """A stretch of a video, as the frames sampled uniformly inside it."""

    source: Path
    index: int  # 0-based position of the clip in its video
    start: float  # seconds
    end: float  # seconds
    frames: tuple[Image.Image, ...] = field(repr=False)
    frame_indices: tuple[int, ...] = ()

    @property
    def location(self) -> str:
        return f"{self.start:.2f}-{self.end:.2f} s"

    @property
    def reference(self) -> str:
        """A media-fragment URI (``path#t=start,end``) naming the clip."""
        return f"{self.source}#t={self.start:g},{self.end:g}"


@dataclass(frozen=True, eq=False)
class Input:
    """One item to embed: text, an image, a video, or a mix (text with an image or a video)."""

    text: str | None = None
    image: Any = None  # PIL image, path or bytes
    video: Any = None  # list of frames (PIL images or HxWx3 uint8 arrays), a VideoClip, or a path

    def __post_init__(self) -> None:
        if self.text is None and self.image is None and self.video is None:
            raise ValueError("Input needs at least one of text, image or video")
        if self.text is not None and not isinstance(self.text, str):
            raise TypeError(f"Input.text must be a str, not {type(self.text).__name__}")

    @property
    def modality(self) -> str:
        """'text', 'image', 'video' or 'image+video' (text alongside media does not change it)."""
        parts = [name for name in ("image", "video") if getattr(self, name) is not None]
        return "+".join(parts) or "text"


def as_input(item: object) -> Input:
    """Coerce what users naturally pass (a string, a PIL image, a Page, a VideoClip) to an Input."""
    if isinstance(item, Input):
        return item
    if isinstance(item, str):
        return Input(text=item)
    if isinstance(item, Page):
        return Input(image=item.image)
    if isinstance(item, VideoClip):
        return Input(video=item)
    if _is_pil_image(item):
        return Input(image=item)
    raise TypeError(
        f"cannot embed a {type(item).__name__}: pass a str, a PIL image, a Page, a VideoClip or an Input "
        "(paths must be wrapped: Input(image=path) or Input(video=path))"
    )


def _is_pil_image(obj: object) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        return False
    return isinstance(obj, Image.Image)


def clock(seconds: float) -> str:
    """A time in a video as every part of the suite writes it: ``0:10``, ``1:02.5``, ``61:00``."""
    minutes, secs = divmod(float(seconds), 60)
    return f"{int(minutes)}:{secs:04.1f}" if secs % 1 else f"{int(minutes)}:{int(secs):02d}"
