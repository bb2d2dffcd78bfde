"""A chromadb ``EmbeddingFunction`` backed by the VLM2Vec encoder (extra ``[chroma]``).

For people who use Chroma directly: texts, images (Chroma's numpy arrays, e.g. from ``uris`` with an
``ImageLoader``) and clips by reference (a string ``"talk.mp4#t=10,20"`` naming an existing video) are embedded
as documents by ``__call__`` and as queries by ``embed_query``, with the same vectors as the CLI and the adapters.

Chroma gives an embedding function no hook on the collection it serves: call ``ef.check_collection(col)``
once after opening a collection to record what it holds (model family, checkpoint, dimension, truncation) or
to refuse one filled by another model, as the CLI and the adapters do.

A collection created with this function records it by name (``"vlm2vec"``) and config, and chromadb rebuilds
it from there when another process opens the collection, but only for names registered in that process:
chromadb (1.x) has no entry points for embedding functions, so a process that opens such a collection without
passing ``embedding_function=`` needs this one import first (else chromadb raises "Embedding function vlm2vec
not found")::

    import vlm2vec_core.index.embedding_function  # noqa: F401  (registers "vlm2vec" with chromadb)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..encoders.loading import DEFAULT_MODEL
from ..encoders.protocol import Encoder, encode_by_task
from ..errors import require_extra
from ..types import Input

try:
    from chromadb.api.types import Embeddable, EmbeddingFunction, Embeddings, Space
    from chromadb.utils.embedding_functions import register_embedding_function
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise require_extra("chroma", "chromadb") from exc


@register_embedding_function
class VLM2VecEmbeddingFunction(EmbeddingFunction[Embeddable]):
    """``VLM2VecEmbeddingFunction(model=...)``, ``(remote="http://gpu:8000")`` or ``(encoder=shared_encoder)``.

    ``task`` picks the preset for texts and images (the family's for pages by default: ``visdoc`` for most),
    ``clip_task`` the one for clips
    (``moment``); documents use the preset's document side, ``embed_query`` its query side. ``family`` and
    ``truncate_dim`` go to the encoder built from ``model`` or ``remote`` (default: the family detected from
    the checkpoint, full-size vectors); both are kept in the collection's config.
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        encoder: Encoder | None = None,
        remote: str | None = None,
        api_key_env: str = "VLM2VEC_API_KEY",
        task: str | None = None,
        clip_task: str = "moment",
        device: str | None = None,
        family: str | None = None,
        truncate_dim: int | None = None,
    ) -> None:
        if encoder is not None and (family is not None or truncate_dim is not None):
            raise ValueError("family= and truncate_dim= are for the encoder built here; not with encoder=")
        self.model = model
        self.remote = remote
        self.family = family
        self.truncate_dim = truncate_dim
        self.api_key_env = api_key_env
        self.task = task
        self.clip_task = clip_task
        self.device = device
        self._encoder = encoder

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            if self.remote:
                import os

                from ..encoders.remote import RemoteEncoder

                self._encoder = RemoteEncoder(self.remote, api_key=os.environ.get(self.api_key_env), **self._options())
            else:
                from ..encoders.local import VLM2VecEncoder

                self._encoder = VLM2VecEncoder(self.model, device=self.device, **self._options())
        return self._encoder

    def _options(self) -> dict[str, Any]:
        given = {"family": self.family, "truncate_dim": self.truncate_dim}
        return {k: v for k, v in given.items() if v is not None}

    def signature(self) -> dict[str, Any]:
        """What the vectors are: ``{"family", "model", "dim", "truncate_dim"}`` (finds the checkpoint)."""
        from ..families import vector_signature

        return vector_signature(self.encoder)

    def check_collection(self, collection: Any) -> None:
        """Record this model's vector signature in an empty ``collection``, or raise ``IndexMismatch`` when it
        holds another family's, dimension's or truncation's vectors (see ``vlm2vec_core.index.store``)."""
        from .store import check_collection

        check_collection(collection, self.signature())

    def __call__(self, input: Embeddable) -> Embeddings:
        return self._embed(input, "document")

    def embed_query(self, input: Embeddable) -> Embeddings:
        return self._embed(input, "query")

    def _embed(self, items: Embeddable, role: str) -> Embeddings:
        """Texts take the query or document side of ``task``; images and clips always the document side, so an
        image used as a query meets the stored images on their own terms (image to image)."""
        inputs = [self._as_input(x) for x in items]
        out = np.zeros((len(inputs), self.encoder.dim), dtype=np.float32)
        texts = [i for i, x in enumerate(inputs) if x.modality == "text"]
        media = [i for i, x in enumerate(inputs) if x.modality != "text"]
        if texts:
            out[texts] = encode_by_task(self.encoder, [inputs[i] for i in texts], [self.task] * len(texts), role=role)
        if media:
            tasks = [self.clip_task if inputs[i].video is not None else self.task for i in media]
            out[media] = encode_by_task(self.encoder, [inputs[i] for i in media], tasks, role="document")
        return list(out)

    @staticmethod
    def _as_input(item: Any) -> Input:
        if isinstance(item, str):
            from ..media.documents import kind_of, parse_reference

            path, start, _end, _page = parse_reference(item)
            if start is not None and kind_of(path) == "video" and path.is_file():
                return Input(video=item)
            return Input(text=item)
        if isinstance(item, np.ndarray):
            from PIL import Image

            return Input(image=Image.fromarray(np.ascontiguousarray(item.astype(np.uint8))).convert("RGB"))
        raise TypeError(f"cannot embed a {type(item).__name__}: texts, clip references and image arrays only")

    @staticmethod
    def name() -> str:
        return "vlm2vec"

    def default_space(self) -> Space:
        return "cosine"

    def supported_spaces(self) -> list[Space]:
        return ["cosine", "ip"]

    def get_config(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "remote": self.remote,
            "api_key_env": self.api_key_env,
            "task": self.task,
            "clip_task": self.clip_task,
            # an injected encoder's own family and truncation, so that the rebuilt function makes its vectors
            "family": self.family or _attr(self._encoder, "family", "name"),
            "truncate_dim": self.truncate_dim or _attr(self._encoder, "truncate_dim"),
        }

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> VLM2VecEmbeddingFunction:
        return VLM2VecEmbeddingFunction(
            config.get("model", DEFAULT_MODEL),
            remote=config.get("remote"),
            api_key_env=config.get("api_key_env", "VLM2VEC_API_KEY"),
            task=config.get("task"),
            clip_task=config.get("clip_task", "moment"),
            family=config.get("family"),
            truncate_dim=config.get("truncate_dim"),
        )


def _attr(obj: Any, *names: str) -> Any:
    for name in names:
        obj = getattr(obj, name, None)
    return obj
