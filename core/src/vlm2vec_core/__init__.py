"""vlm2vec-core: multimodal embeddings (VLM2Vec-V2, GME, Qwen3-VL-Embedding, ...) for text, images, PDF pages and
video clips in one vector space.

Importing this package is light: torch and transformers load only when a local encoder first runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import InputError, MissingDependencyError
from .fake import FakeEncoder
from .families import FAMILIES, Profile, UnknownFamilyError, get_family
from .protocol import Encoder
from .tasks import PRESETS, Instruction, TaskPreset, build_prompt, get_preset
from .types import Input, Page, VideoClip, as_input

if TYPE_CHECKING:
    from .documents import (
        Item,
        file_digest,
        full_image,
        input_for_metadata,
        input_for_reference,
        iter_items,
        parse_reference,
        walk,
    )
    from .evaluation import evaluate
    from .loading import ModelNotFoundError
    from .local import VLM2VecEncoder
    from .local import VLM2VecEncoder as LocalEncoder
    from .pdf import pdf_pages
    from .remote import RemoteEncoder
    from .video import read_clip_frames, read_video_frames, video_clips

__version__ = "0.1.0"

_LAZY = {
    "Item": "documents",
    "iter_items": "documents",
    "walk": "documents",
    "evaluate": "evaluation",
    "file_digest": "documents",
    "parse_reference": "documents",
    "input_for_reference": "documents",
    "input_for_metadata": "documents",
    "full_image": "documents",
    "read_clip_frames": "video",
    "VLM2VecEncoder": "local",
    "LocalEncoder": "local",
    "RemoteEncoder": "remote",
    "ModelNotFoundError": "loading",
    "pdf_pages": "pdf",
    "video_clips": "video",
    "read_video_frames": "video",
}

__all__ = [
    "FAMILIES",
    "PRESETS",
    "Encoder",
    "FakeEncoder",
    "Input",
    "InputError",
    "Instruction",
    "Item",
    "LocalEncoder",
    "MissingDependencyError",
    "ModelNotFoundError",
    "Page",
    "Profile",
    "RemoteEncoder",
    "TaskPreset",
    "UnknownFamilyError",
    "VLM2VecEncoder",
    "VideoClip",
    "as_input",
    "build_prompt",
    "evaluate",
    "file_digest",
    "full_image",
    "get_family",
    "get_preset",
    "input_for_metadata",
    "input_for_reference",
    "iter_items",
    "parse_reference",
    "pdf_pages",
    "read_clip_frames",
    "read_video_frames",
    "video_clips",
    "walk",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'vlm2vec_core' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), "VLM2VecEncoder" if name == "LocalEncoder" else name)
    globals()[name] = value
    return value
