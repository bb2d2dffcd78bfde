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

from ..index.store import Hit
from ..media.documents import full_image
from ..media.images import to_data_url

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


def hit_images(hit: Hit, *, frames_per_clip: int = 4, max_side: int = 1024, password: str | None = None) -> list[str]:
    """Data URLs showing a hit to a chat model: the page rendered again from its PDF (at the resolution it was
    indexed at; never its display thumbnail), the image itself, or a few frames spread over a clip from its
    video. A hit whose source is gone or broken shows nothing (its label stays in the prompt)."""
    if hit.kind == "clip":
        frames = hit.clip_frames(frames_per_clip)
        if frames is None:
            log.warning("no frames for %s (%s is gone or unreadable)", hit.label, hit.metadata.get("source"))
            return []
        return [to_data_url(f, max_side=max_side) for f in frames]
    try:
        image = full_image(hit.metadata, password=password)
    except (ValueError, OSError) as exc:  # InputError is a ValueError: the file is gone or broken
        log.warning("no image for %s: %s", hit.label, exc)
        return []
    return [to_data_url(image, max_side=max_side)]


def build_messages(question: str, hits: Sequence[Hit], **image_options: Any) -> list[dict[str, Any]]:
    """The chat request's messages: the question, then each hit's label and images (see :func:`hit_images`)."""
    content: list[dict[str, Any]] = [{"type": "text", "text": f"Question: {question}\n\nRetrieved material:"}]
    for n, hit in enumerate(hits, 1):
        content.append({"type": "text", "text": f"[{n}] {hit.label} (score {hit.score:.3f})"})
        content.extend({"type": "image_url", "image_url": {"url": url}} for url in hit_images(hit, **image_options))
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": content}]


class ChatError(RuntimeError):
    """The chat endpoint is not there, or answered an error (the message says which, and where)."""


def ask(
    question: str,
    hits: Sequence[Hit],
    config: ChatConfig,
    *,
    password: str | None = None,
    messages: list[dict[str, Any]] | None = None,
) -> str:
    """The chat model's answer to ``question`` given the hits' images (``password``: for an encrypted PDF's
    pages). ``messages``: what :func:`build_messages` made already (e.g. to show the images sent), sent as is.
    Raises ChatError when the endpoint cannot be reached or answers an error."""
    import httpx

    headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
    if messages is None:
        messages = build_messages(question, hits, password=password)
    body = {"model": config.model, "messages": messages, "temperature": 0}
    try:
        response = httpx.post(f"{config.base_url}/chat/completions", json=body, headers=headers, timeout=config.timeout)
    except httpx.HTTPError as exc:  # refused, unknown host, timed out
        raise ChatError(f"the chat endpoint {config.base_url} cannot be reached ({exc})") from exc
    if response.status_code >= 400:
        raise ChatError(f"chat model at {config.base_url} answered HTTP {response.status_code}: {response.text[:300]}")
    try:
        return str(response.json()["choices"][0]["message"]["content"])
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise ChatError(f"chat model at {config.base_url} sent no answer in its reply: {response.text[:300]}") from exc
