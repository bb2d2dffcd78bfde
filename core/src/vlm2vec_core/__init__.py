"""vlm2vec-core: multimodal embeddings (VLM2Vec-V2, GME, Qwen3-VL-Embedding, ...) for text, images, PDF pages and
video clips in one vector space.

Importing this package is light: torch and transformers load only when a local encoder first runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .encoders.fake import FakeEncoder
from .encoders.protocol import Encoder
from .errors import InputError, MissingDependencyError
from .families import FAMILIES, Profile, UnknownFamilyError, get_family
from .tasks import PRESETS, Instruction, TaskPreset, build_prompt, get_preset
from .types import Input, Page, VideoClip, as_input

if TYPE_CHECKING:
    from .apps.chat import ChatConfig, ask
    from .apps.service import SearchService
    from .apps.sheet import contact_sheet
    from .encoders.loading import ModelNotFoundError
    from .encoders.local import VLM2VecEncoder
    from .encoders.local import VLM2VecEncoder as LocalEncoder
    from .encoders.remote import RemoteEncoder
    from .index.distributed import index_with_ray
    from .index.evaluation import evaluate
    from .index.indexer import IndexReport, index_paths, search
    from .index.store import ChromaStore, Hit, VectorStore
    from .media.documents import (
        Item,
        file_digest,
        full_image,
        input_for_metadata,
        input_for_reference,
        iter_items,
        parse_reference,
        walk,
    )
    from .media.pdf import pdf_pages
    from .media.video import read_clip_frames, read_video_frames, video_clips

__version__ = "0.1.0"

_LAZY = {
    "Item": "media.documents",
    "iter_items": "media.documents",
    "walk": "media.documents",
    "evaluate": "index.evaluation",
    "file_digest": "media.documents",
    "parse_reference": "media.documents",
    "input_for_reference": "media.documents",
    "input_for_metadata": "media.documents",
    "full_image": "media.documents",
    "read_clip_frames": "media.video",
    "VLM2VecEncoder": "encoders.local",
    "LocalEncoder": "encoders.local",
    "RemoteEncoder": "encoders.remote",
    "ModelNotFoundError": "encoders.loading",
    "pdf_pages": "media.pdf",
    "video_clips": "media.video",
    "read_video_frames": "media.video",
    "ChromaStore": "index.store",
    "VectorStore": "index.store",
    "Hit": "index.store",
    "index_paths": "index.indexer",
    "search": "index.indexer",
    "IndexReport": "index.indexer",
    "index_with_ray": "index.distributed",
    "SearchService": "apps.service",
    "contact_sheet": "apps.sheet",
    "ChatConfig": "apps.chat",
    "ask": "apps.chat",
}

__all__ = [
    "FAMILIES",
    "PRESETS",
    "ChatConfig",
    "ChromaStore",
    "Encoder",
    "FakeEncoder",
    "Hit",
    "IndexReport",
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
    "SearchService",
    "TaskPreset",
    "UnknownFamilyError",
    "VLM2VecEncoder",
    "VectorStore",
    "VideoClip",
    "as_input",
    "ask",
    "build_prompt",
    "contact_sheet",
    "evaluate",
    "file_digest",
    "full_image",
    "get_family",
    "get_preset",
    "index_paths",
    "index_with_ray",
    "input_for_metadata",
    "input_for_reference",
    "iter_items",
    "parse_reference",
    "pdf_pages",
    "read_clip_frames",
    "read_video_frames",
    "search",
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
