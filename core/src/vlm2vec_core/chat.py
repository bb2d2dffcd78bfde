"""Answers from a multimodal chat model over retrieved pages and frames (any OpenAI-compatible endpoint).

Configured by ``VLM2VEC_CHAT_BASE_URL`` (or ``OPENAI_BASE_URL``), ``VLM2VEC_CHAT_API_KEY`` (or
``OPENAI_API_KEY``) and ``VLM2VEC_CHAT_MODEL``, or by arguments; shared by the CLI and the examples.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .media import to_data_url
from .store import Hit

log = logging.getLogger(__name__)

SYSTEM = (
    "You answer questions about documents and videos from the page images and video frames you are shown. "
    "Cite the file and page (or time range) you used. If the images do not contain the answer, say so."
)


@dataclass(frozen=True)
class ChatConfig:
    base_url: str
    model: str
    api_key: str | None = None
    timeout: float = 120.0

    @classmethod
    def from_env(
        cls, base_url: str | None = None, model: str | None = None, api_key: str | None = None
    ) -> ChatConfig | None:
        """The configuration from arguments, then the environment; None when no chat model is configured."""
        base = base_url or os.environ.get("VLM2VEC_CHAT_BASE_URL") or os.environ.get("OPENAI_BASE_URL")
        name = model or os.environ.get("VLM2VEC_CHAT_MODEL")
        key = api_key or os.environ.get("VLM2VEC_CHAT_API_KEY") or os.environ.get("OPENAI_API_KEY")
        if not base or not name:
            return None
        return cls(base.rstrip("/"), name, key)


def hit_images(hit: Hit, *, frames_per_clip: int = 4, max_side: int = 1024) -> list[str]:
    """Data URLs showing a hit: the page or image itself, or a few frames spread over a clip."""
    frames = hit.clip_frames(frames_per_clip)
    if frames is not None:
        return [to_data_url(f, max_side=max_side) for f in frames]
    image = hit.image()
    if image is None:  # the cached page image or the image file is gone: the label stays
        log.warning("no image for %s (%s is gone)", hit.label, hit.metadata.get("image_path"))
        return []
    return [to_data_url(image, max_side=max_side)]


def build_messages(question: str, hits: Sequence[Hit], **image_options: Any) -> list[dict[str, Any]]:
    content: list[dict[str, Any]] = [{"type": "text", "text": f"Question: {question}\n\nRetrieved material:"}]
    for n, hit in enumerate(hits, 1):
        content.append({"type": "text", "text": f"[{n}] {hit.label} (score {hit.score:.3f})"})
        content.extend({"type": "image_url", "image_url": {"url": url}} for url in hit_images(hit, **image_options))
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": content}]


def ask(question: str, hits: Sequence[Hit], config: ChatConfig) -> str:
    """The chat model's answer to ``question`` given the hits' images."""
    import httpx

    headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
    body = {"model": config.model, "messages": build_messages(question, hits), "temperature": 0}
    response = httpx.post(f"{config.base_url}/chat/completions", json=body, headers=headers, timeout=config.timeout)
    if response.status_code >= 400:
        raise RuntimeError(
            f"chat model at {config.base_url} answered HTTP {response.status_code}: {response.text[:300]}"
        )
    return str(response.json()["choices"][0]["message"]["content"])
