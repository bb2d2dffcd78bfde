"""The remote protocol: vLLM's OpenAI-compatible ``POST /v1/embeddings``, shared by the client and the server.

Two request forms, as vLLM takes them:

- ``{"model": M, "input": ["text", ...]}``: texts, each embedded as given (the prompt is the text).
- ``{"model": M, "messages": [{"role": "user", "content": [parts]}]}``: one multimodal item. Parts are
  ``{"type": "text", "text": ...}``, ``{"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}``
  and ``{"type": "video_url", "video_url": {"url": ...}}`` where a video is a video file as a data URL, or its
  frames as ``data:video/jpeg;base64,<frame>,<frame>,...`` (vLLM's form; ``video/png`` too), or a list of image
  data URLs. The prompt is the parts in order, each image or video standing as its pad token, which is what the
  chat template shipped for vLLM (``templates/vlm2vec_v2.jinja``) produces.

For the chat-prompt families (GME, Qwen3-VL-Embedding) the server renders the family's own prompt instead: a
``system`` message is the instruction (the family's default without one), the user parts are the text, the
image and the video, and an ``input`` text is a user turn under the default instruction; this is what vLLM does
with those models' chat templates, so the client sends them as ``messages`` with their system turn.

Extensions (ignored by vLLM): ``task`` + ``role`` or ``instruction`` make the server assemble the prompt from a
preset instead (``build_prompt``), and ``encoding_format`` may be ``float`` or ``base64`` (little-endian float32).
``dimensions`` (OpenAI's and vLLM's name) asks a Matryoshka family for shorter vectors.
Only ``data:`` URLs are accepted: the server never fetches a URL nor reads a local file.

Our server also takes raw RGB pixels, lossless and with nothing to compress or decompress, which it lists as
``"raw"`` in ``media_formats`` of ``/v1/models``: ``data:image/x-raw-rgb;size=WxH;base64,<W*H*3 bytes, rows top
to bottom>`` wherever an image data URL goes, and a video as a list of such URLs (its frames). The client sends
them only to servers that list them; vLLM gets PNG (or JPEG) data URLs.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from ..errors import InputError
from ..media.images import from_data_url
from ..tasks import IMAGE_PAD, VIDEO_PAD, Instruction, build_prompt, resolve_instruction

if TYPE_CHECKING:
    from ..families import Profile
    from ..media.prepare import Prepared

FRAME_MIME = {"png": "video/png", "jpeg": "video/jpeg"}
MEDIA_FORMATS = ("png", "jpeg", "raw")  # what our server takes (and lists in /v1/models)
RAW_PREFIX = "data:image/x-raw-rgb;"


class RequestError(ValueError):
    """A request the server refuses: HTTP ``status`` and a message naming the offending item."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# -- client side -------------------------------------------------------------------------------------------


def image_data_url(image: Image.Image, fmt: str = "png") -> str:
    """Lossless PNG by default (the fastest level: the server then sees the very pixels the client fitted);
    ``raw``: the RGB bytes themselves (our server only), except for an image that is not RGB or is mostly one
    colour, such as a document page: PNG shrinks a page about 35x for 1 ms more, which costs less than
    moving and parsing the raw bytes (measured end to end on loopback); a photo goes raw (PNG costs it 10x)."""
    if fmt == "raw":
        if image.mode == "RGB" and not _mostly_flat(image):
            payload = base64.b64encode(image.tobytes()).decode("ascii")
            return f"{RAW_PREFIX}size={image.width}x{image.height};base64,{payload}"
        fmt = "png"
    buf = io.BytesIO()
    if fmt == "jpeg":
        image.save(buf, format="JPEG", quality=95)
    else:
        image.save(buf, format="PNG", compress_level=1)
    return f"data:image/{fmt};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


def _mostly_flat(image: Image.Image, share: float = 0.5) -> bool:
    """Whether one grey level covers at least ``share`` of the image (a page's background), judged on a
    small copy (about 0.1 ms for a page)."""
    small = image.reduce(8) if min(image.size) >= 64 else image
    histogram = small.convert("L").histogram()
    return max(histogram) >= share * sum(histogram)


def video_url(frames: list[Image.Image], fmt: str = "png") -> str | list[str]:
    """A video's frames for a ``video_url`` part: vLLM's one-URL form, or for ``raw`` a list of raw images."""
    if fmt == "raw":
        return [image_data_url(frame, "raw") for frame in frames]
    return frames_data_url(frames, fmt)


def frames_data_url(frames: list[Image.Image], fmt: str = "png") -> str:
    """Frames as one data URL, vLLM's ``data:video/jpeg;base64,<f1>,<f2>,...`` form (PNG frames by default)."""
    encoded = []
    for frame in frames:
        url = image_data_url(frame, fmt)
        encoded.append(url.partition(",")[2])
    return f"data:{FRAME_MIME[fmt]};base64," + ",".join(encoded)


def content_parts(
    prompt: str, image: Image.Image | None, frames: list[Image.Image] | None, fmt: str = "png"
) -> list[dict[str, Any]]:
    """Split a prepared prompt at its pad tokens into chat content parts, media in their place."""
    parts: list[dict[str, Any]] = []
    rest = prompt
    while rest:
        positions = [(rest.find(pad), pad) for pad in (IMAGE_PAD, VIDEO_PAD) if pad in rest]
        if not positions:
            parts.append({"type": "text", "text": rest})
            break
        at, pad = min(positions)
        if at:
            parts.append({"type": "text", "text": rest[:at]})
        if pad == IMAGE_PAD:
            if image is None:
                raise ValueError("prompt has an image pad but the input has no image")
            parts.append({"type": "image_url", "image_url": {"url": image_data_url(image, fmt)}})
        else:
            if frames is None:
                raise ValueError("prompt has a video pad but the input has no video")
            parts.append({"type": "video_url", "video_url": {"url": video_url(frames, fmt)}})
        rest = rest[at + len(pad) :]
    return parts


def chat_messages(item: Prepared, fmt: str = "png") -> list[dict[str, Any]]:
    """A chat-prompt family's item as messages: its system turn, then the user turn (videos, images, text)."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": item.system}] if item.system else []
    return [*messages, {"role": "user", "content": _user_parts(item, fmt)}]


def _user_parts(item: Prepared, fmt: str) -> list[dict[str, Any]]:
    """An item's content parts in the chat-prompt families' order: its video, its image, then its text."""
    parts: list[dict[str, Any]] = []
    if item.frames is not None:
        parts.append({"type": "video_url", "video_url": {"url": video_url(item.frames, fmt)}})
    if item.image is not None:
        parts.append({"type": "image_url", "image_url": {"url": image_data_url(item.image, fmt)}})
    if item.text is not None:
        parts.append({"type": "text", "text": item.text})
    return parts


def decode_embeddings(body: dict[str, Any], expected: int) -> np.ndarray:
    """The vectors of an embeddings response, by their ``index``, as float32 (n, dim)."""
    data = body.get("data")
    if not isinstance(data, list) or len(data) != expected:
        raise ValueError(
            f"expected {expected} embeddings in the response, got {len(data) if isinstance(data, list) else data!r}"
        )
    rows: list[np.ndarray | None] = [None] * expected
    for entry in data:
        emb = entry["embedding"]
        vec = np.frombuffer(base64.b64decode(emb), dtype="<f4") if isinstance(emb, str) else np.asarray(emb, "<f4")
        rows[int(entry.get("index", 0))] = vec
    if any(r is None for r in rows):
        raise ValueError("embeddings response is missing indices")
    return np.stack(rows).astype(np.float32)  # type: ignore[arg-type]


# -- server side -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MediaPart:
    kind: str  # "image" or "video"
    url: Any  # str, or for a video a list of image data URLs
    where: str  # e.g. "messages[0].content[1]"


@dataclass(frozen=True)
class ItemSpec:
    """One item of a request before its media are decoded: the prompt and the media in prompt order."""

    prompt: str
    image: MediaPart | None
    video: MediaPart | None
    where: str
    instruction: Instruction | None = None  # the chat-prompt families render the prompt once media are known
    text: str | None = None


def parse_request(body: Any, *, max_inputs: int = 2048, family: Profile | None = None) -> tuple[list[ItemSpec], str]:
    """Validate an embeddings request body and return its items and the encoding format (or RequestError)."""
    if not isinstance(body, dict):
        raise RequestError(400, "the request body must be a JSON object")
    fmt = body.get("encoding_format", "float")
    if fmt not in ("float", "base64"):
        raise RequestError(422, f"encoding_format must be 'float' or 'base64', not {fmt!r}")
    instruction = _instruction(body, family)
    chat = family is not None and family.chat_prompt
    if "messages" in body:
        if "input" in body:
            raise RequestError(422, "give either 'input' or 'messages', not both")
        if chat:
            return [_parse_chat_messages(body["messages"], instruction)], fmt
        return [_parse_messages(body["messages"], instruction)], fmt
    raw = body.get("input")
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise RequestError(422, "'input' must be a string or a non-empty list of strings (or send 'messages')")
    if len(raw) > max_inputs:
        raise RequestError(422, f"'input' has {len(raw)} items, over the limit of {max_inputs}")
    items = []
    for i, text in enumerate(raw):
        if not isinstance(text, str):
            raise RequestError(422, f"input[{i}] must be a string (token ids are not accepted)")
        if chat:
            items.append(ItemSpec("", None, None, f"input[{i}]", instruction or Instruction(), text))
            continue
        prompt = build_prompt(instruction, text) if instruction is not None else (text or "  ")
        items.append(ItemSpec(prompt, None, None, f"input[{i}]"))
    return items, fmt


def _message_parts(messages: Any) -> Iterator[tuple[str, str, str | MediaPart]]:
    """Each part of a ``messages`` list as (role, where, text or media), validated; both parsers read this."""
    if not isinstance(messages, list) or not messages:
        raise RequestError(422, "'messages' must be a non-empty list")
    for m, message in enumerate(messages):
        if not isinstance(message, dict) or "content" not in message:
            raise RequestError(422, f"messages[{m}] must be an object with 'content'")
        content = message["content"]
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        if not isinstance(content, list):
            raise RequestError(422, f"messages[{m}].content must be a string or a list of parts")
        role = str(message.get("role", "user"))
        for p, part in enumerate(content):
            where = f"messages[{m}].content[{p}]"
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and isinstance(part.get("text"), str):
                yield role, where, part["text"]
            elif kind in ("image_url", "video_url"):
                url = part.get(kind)
                url = url.get("url") if isinstance(url, dict) else url
                yield role, where, MediaPart("image" if kind == "image_url" else "video", url, where)
            else:
                raise RequestError(422, f"{where}: unsupported content part (use text, image_url or video_url)")


def _one(media: MediaPart, image: MediaPart | None, video: MediaPart | None) -> tuple[Any, Any]:
    """(image, video) with ``media`` added; a second image or video in one item is refused."""
    if (image if media.kind == "image" else video) is not None:
        raise RequestError(422, f"{media.where}: only one {media.kind} per item")
    return (media, video) if media.kind == "image" else (image, media)


def _parse_chat_messages(messages: Any, instruction: Instruction | None) -> ItemSpec:
    """A system turn (the instruction, unless the body names one) and user parts: text, one image, one video."""
    system: str | None = None
    texts: list[str] = []
    image = video = None
    for role, where, part in _message_parts(messages):
        if isinstance(part, str):
            if role == "system":
                system = (system or "") + part
            else:
                texts.append(part)
        elif role == "system":
            raise RequestError(422, f"{where}: unsupported content part (use text, image_url or video_url)")
        else:
            image, video = _one(part, image, video)
    chosen = instruction if instruction is not None else Instruction(system or "")
    text = "".join(texts) if texts else None
    return ItemSpec("", image, video, "messages", chosen, text)


def _instruction(body: dict[str, Any], family: Profile | None = None) -> Instruction | None:
    task, role, instruction = body.get("task"), body.get("role", "query"), body.get("instruction")
    if task is None and instruction is None:
        return None
    if instruction is not None and not isinstance(instruction, str):
        raise RequestError(422, "'instruction' must be a string")
    if role not in ("query", "document"):
        raise RequestError(422, f"'role' must be 'query' or 'document', not {role!r}")
    try:
        return resolve_instruction(task or "visdoc", role, instruction, family)
    except ValueError as exc:
        raise RequestError(422, str(exc)) from exc


def _parse_messages(messages: Any, instruction: Instruction | None) -> ItemSpec:
    pieces: list[str] = []
    texts: list[str] = []
    image = video = None
    for _role, _where, part in _message_parts(messages):
        if isinstance(part, str):
            pieces.append(part)
            texts.append(part)
        else:
            image, video = _one(part, image, video)
            pieces.append(IMAGE_PAD if part.kind == "image" else VIDEO_PAD)
    if instruction is not None:
        prompt = build_prompt(
            instruction, "".join(texts).strip() or None, image=image is not None, video=video is not None
        )
    else:
        prompt = "".join(pieces) or "  "
    return ItemSpec(prompt, image, video, "messages")


def decode_image(part: MediaPart, *, max_decode_pixels: int) -> Image.Image:
    return decode_image_url(part.url, part.where, max_decode_pixels=max_decode_pixels)


def decode_image_url(url: Any, where: str, *, max_decode_pixels: int) -> Image.Image:
    """An image data URL (PNG, JPEG, ... or raw RGB) as an RGB image, or RequestError naming ``where``."""
    from ..media.images import load_image

    if isinstance(url, str) and url.startswith(RAW_PREFIX):
        return _raw_image(url, where, max_decode_pixels)
    data = _data_bytes(url, where, prefix="data:image/")
    return load_image(data, name=where, max_decode_pixels=max_decode_pixels)


def _raw_image(url: str, where: str, max_decode_pixels: int) -> Image.Image:
    """``data:image/x-raw-rgb;size=WxH;base64,...``: the size is checked against the limit and the payload's
    length before anything is decoded."""
    head, _, payload = url.partition(",")
    params = head[len(RAW_PREFIX) :].split(";")
    size = params[0].removeprefix("size=") if params[0].startswith("size=") else ""
    w, _, h = size.partition("x")
    if (
        params[1:] != ["base64"]
        or not (w.isdigit() and h.isdigit() and len(w) + len(h) < 16)
        or min(int(w), int(h)) < 1
    ):
        raise RequestError(422, f"{where}: a raw image URL is data:image/x-raw-rgb;size=WxH;base64,<RGB bytes>")
    width, height = int(w), int(h)
    if width * height > max_decode_pixels:
        raise RequestError(
            422,
            f"{where}: image is {width}x{height} = {width * height:,} pixels, over the limit of {max_decode_pixels:,}",
        )
    if len(payload) != 4 * width * height:  # W*H*3 bytes are exactly 4*W*H base64 characters
        raise RequestError(
            422,
            f"{where}: a {width}x{height} raw RGB image is {width * height * 3:,} bytes, the URL holds "
            f"about {len(payload) * 3 // 4:,}",
        )
    try:
        data = base64.b64decode(payload, validate=True)
    except ValueError as exc:
        raise RequestError(422, f"{where}: bad base64 in a raw image ({exc})") from exc
    return Image.frombytes("RGB", (width, height), data)


def decode_video_frames(
    part: MediaPart, *, max_frames: int, max_decode_pixels: int, max_bytes: int
) -> list[Image.Image] | bytes:
    """Frames as images, or the bytes of a video file (which the caller decodes from a temporary file)."""
    from ..media.images import load_image

    url = part.url
    if isinstance(url, list):
        if not url or len(url) > max_frames:
            raise RequestError(422, f"{part.where}: a video needs 1 to {max_frames} frames, got {len(url)}")
        return [
            decode_image_url(u, f"{part.where}[{i}]", max_decode_pixels=max_decode_pixels) for i, u in enumerate(url)
        ]
    if isinstance(url, str) and url.startswith(("data:video/jpeg;base64,", "data:video/png;base64,")):
        payload = url.partition(",")[2]
        try:
            frames_b64 = [base64.b64decode(chunk, validate=True) for chunk in payload.split(",")]
        except ValueError as exc:
            raise RequestError(422, f"{part.where}: bad base64 in a frame ({exc})") from exc
    else:
        data = _data_bytes(url, part.where, prefix="data:video/")
        if len(data) > max_bytes:
            raise RequestError(413, f"{part.where}: video of {len(data):,} bytes is over {max_bytes:,}")
        return data
    if not frames_b64 or len(frames_b64) > max_frames:
        raise RequestError(422, f"{part.where}: a video needs 1 to {max_frames} frames, got {len(frames_b64)}")
    return [
        load_image(b, name=f"{part.where} frame {i}", max_decode_pixels=max_decode_pixels)
        for i, b in enumerate(frames_b64)
    ]


def _data_bytes(url: Any, where: str, *, prefix: str) -> bytes:
    if not isinstance(url, str):
        raise RequestError(422, f"{where}: the media URL must be a string")
    if not url.startswith("data:"):
        raise RequestError(
            422, f"{where}: only data: URLs are accepted (this server never fetches URLs or reads files)"
        )
    if not url.startswith(prefix):
        raise RequestError(422, f"{where}: expected a {prefix}... data URL")
    try:
        return from_data_url(url, name=where)
    except InputError as exc:
        raise RequestError(422, str(exc)) from exc


def encode_vector(vector: np.ndarray, fmt: str) -> list[float] | str:
    if fmt == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return [float(x) for x in vector]


# -- rerank: the shape Cohere, Jina and vLLM share ------------------------------------------------------------


def rerank_part(item: Prepared, fmt: str = "png") -> str | dict[str, Any]:
    """A query or document of a rerank request: its text, or ``{"content": [parts]}`` when it has media."""
    if item.image is None and item.frames is None:
        return item.text or ""
    return {"content": _user_parts(item, fmt)}


@dataclass(frozen=True)
class RerankRequest:
    query: ItemSpec
    documents: list[ItemSpec]
    top_n: int | None
    instruction: str | None
    task: str | None
    return_documents: bool


def parse_rerank(body: Any, *, max_inputs: int = 2048) -> RerankRequest:
    """Validate a rerank request body (RequestError naming the offending field otherwise)."""
    if not isinstance(body, dict):
        raise RequestError(400, "the request body must be a JSON object")
    if "query" not in body:
        raise RequestError(422, "'query' is required")
    documents = body.get("documents")
    if isinstance(documents, dict):  # vLLM takes one document object as well as a list
        documents = [documents]
    if not isinstance(documents, list) or not documents:
        raise RequestError(422, "'documents' must be a non-empty list")
    if len(documents) > max_inputs:
        raise RequestError(422, f"'documents' has {len(documents)} items, over the limit of {max_inputs}")
    top_n = body.get("top_n")
    if top_n is not None and (isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1):
        raise RequestError(422, f"'top_n' must be a positive integer, not {top_n!r}")
    for key in ("instruction", "task"):
        if body.get(key) is not None and not isinstance(body[key], str):
            raise RequestError(422, f"'{key}' must be a string")
    return RerankRequest(
        _rerank_item(body["query"], "query"),
        [_rerank_item(d, f"documents[{i}]") for i, d in enumerate(documents)],
        top_n,
        body.get("instruction"),
        body.get("task"),
        bool(body.get("return_documents", False)),
    )


def _rerank_item(raw: Any, where: str) -> ItemSpec:
    if isinstance(raw, str):
        return ItemSpec("", None, None, where, None, raw)
    if isinstance(raw, dict) and "content" in raw:
        try:
            parsed = _parse_chat_messages([{"role": "user", "content": raw["content"]}], Instruction())
        except RequestError as exc:
            raise RequestError(exc.status, exc.message.replace("messages[0].", f"{where}.")) from exc
        image = replace(parsed.image, where=f"{where}.{parsed.image.where.split('.', 1)[1]}") if parsed.image else None
        video = replace(parsed.video, where=f"{where}.{parsed.video.where.split('.', 1)[1]}") if parsed.video else None
        return ItemSpec("", image, video, where, None, parsed.text)
    if isinstance(raw, dict) and isinstance(raw.get("text"), str):  # Cohere's {"text": ...}
        return ItemSpec("", None, None, where, None, raw["text"])
    raise RequestError(422, f"{where} must be a string or an object with 'content' parts")
