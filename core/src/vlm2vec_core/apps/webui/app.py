"""The search page's app (FastAPI): the page itself, a small JSON API, and the indexed media it shows.

Routes:
- ``GET /`` and ``GET /static/{name}``: the page (static/: plain HTML, CSS and JS, no build step, no CDN);
- ``GET /api/info``: what the index holds (model, counts by kind, files), and whether rerank and ask are on;
- ``POST /api/search`` (JSON: text and/or image as a ``data:`` URL, k, kinds, within, rerank): the hits;
- ``POST /api/ask`` (JSON: question, k, kinds, within, rerank): the chat model's answer and what it was sent;
- ``GET /item/{id}/thumb``, ``/storyboard`` (a clip's frames side by side), ``/full`` (a page rendered from its
  PDF now, or the image file), ``/video`` (a clip's video file, with HTTP range requests: 206 responses).

Media are found by item id in the index, never by a path from the request: an id the index does not hold, or
a file it references that is gone, is a 404. When bound to loopback, requests must name a loopback host (a web
page elsewhere cannot reach the app through DNS rebinding), and the API takes JSON bodies only.
"""

# No `from __future__ import annotations` here: FastAPI reads the routes' Request annotations at runtime.

import asyncio
import io
import logging
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ...errors import InputError, require_extra
from ...index.store import Hit
from ..service import SearchService

log = logging.getLogger(__name__)

LOOPBACK = ("127.0.0.1", "localhost", "::1")
STATIC_FILES = {"index.html": "text/html", "app.js": "text/javascript", "style.css": "text/css"}
BROWSER_IMAGES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}
BROWSER_IMAGES |= {".gif": "image/gif", ".bmp": "image/bmp", ".avif": "image/avif"}
VIDEO_TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".webm": "video/webm"}
VIDEO_TYPES |= {".mkv": "video/x-matroska", ".avi": "video/x-msvideo", ".ogv": "video/ogg"}
VIDEO_TYPES |= {".mpeg": "video/mpeg", ".mpg": "video/mpeg", ".ts": "video/mp2t", ".wmv": "video/x-ms-wmv"}
KIND_NAMES = ("page", "clip", "image")
MEDIA_TIMEOUT = 60.0  # seconds a page render or a clip's frames may take (in a worker process)


@dataclass(frozen=True)
class UIConfig:
    """``where``: the index as the user named it (shown on the page); ``chat``: a ``ChatConfig`` for the ask
    panel (None: no panel); ``page_dpi``: how finely a page opened full size is rendered from its PDF;
    ``thumb_side``: the longest side of a result's thumbnail; ``frames``: frames in a clip's storyboard (and
    sent to the chat model per clip); ``max_k``: the most hits one search may ask for."""

    where: str = ""
    collection: str = "vlm2vec"
    chat: Any = None
    page_dpi: float = 150.0
    thumb_side: int = 480
    frames: int = 4
    max_k: int = 200
    max_body_bytes: int = 32 << 20


class _Catalogue:
    """The index's items by id, for the media routes: the hits of recent searches, else a table of every
    item's metadata read from the store when needed; both forgotten when the store's count changes (an index
    or remove run alongside), so an item removed from the index stops being served."""

    def __init__(self, store: Any, recent: int = 5000) -> None:
        self.store = store
        self.limit = recent
        self.recent: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.table: dict[str, dict[str, Any]] | None = None
        self.count = -1
        self.lock = threading.Lock()

    def _fresh(self) -> None:
        count = self.store.count()
        if count != self.count:
            self.recent.clear()
            self.table = None
            self.count = count

    def remember(self, hits: Sequence[Hit]) -> None:
        with self.lock:
            self._fresh()
            for hit in hits:
                self.recent[hit.id] = dict(hit.metadata)
                self.recent.move_to_end(hit.id)
            while len(self.recent) > self.limit:
                self.recent.popitem(last=False)

    def get(self, item_id: str) -> dict[str, Any] | None:
        with self.lock:
            self._fresh()
            if item_id in self.recent:
                return self.recent[item_id]
            if self.table is None:
                self.table = {str(m["id"]): m for m in self.store.metadatas()}
            return self.table.get(item_id)

    def kinds(self) -> dict[str, int]:
        with self.lock:
            self._fresh()
            if self.table is None:
                self.table = {str(m["id"]): m for m in self.store.metadatas()}
            counts = Counter(str(m.get("kind", "?")) for m in self.table.values())
        return dict(sorted(counts.items()))


class _Bytes:
    """A small LRU cache of rendered media (thumbnails, storyboards, pages) by key."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.data: OrderedDict[Any, tuple[bytes, str]] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: Any, make: Callable[[], tuple[bytes, str]]) -> tuple[bytes, str]:
        with self.lock:
            if key in self.data:
                self.data.move_to_end(key)
                return self.data[key]
        value = make()
        with self.lock:
            self.data[key] = value
            while len(self.data) > self.size:
                self.data.popitem(last=False)
        return value


class _Refused(Exception):
    """A request the app answers with an error status and a message (shown on the page as it is)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def create_app(service: SearchService, config: UIConfig | None = None, *, host: str = "127.0.0.1") -> Any:
    """The ASGI app of the search page over ``service`` (its encoder loaded on first search)."""
    try:
        from fastapi import FastAPI, Request
        from fastapi.responses import FileResponse, JSONResponse, Response
        from starlette.middleware.trustedhost import TrustedHostMiddleware
    except ImportError as exc:
        raise require_extra("ui", "fastapi") from exc

    config = config or UIConfig()
    catalogue = _Catalogue(service.store)
    rendered = _Bytes(512)
    searching = threading.Lock()  # one query on the model at a time
    rendering = threading.Lock()  # PDFium is not thread-safe
    static = resources.files(__package__).joinpath("static")

    app = FastAPI(title="vlm2vec ui", docs_url=None, redoc_url=None, openapi_url=None)
    if host in LOOPBACK:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=["127.0.0.1", "localhost", "[::1]"])

    def error(status: int, message: str) -> Any:
        return JSONResponse({"error": {"message": message, "code": status}}, status)

    def item(item_id: str) -> dict[str, Any]:
        meta = catalogue.get(item_id)
        if meta is None:
            raise _Refused(404, f"no item {item_id!r} in this index")
        return meta

    def existing(path: Any, what: str) -> Path:
        if not path:
            raise _Refused(404, f"the index records no {what} for this item")
        found = Path(str(path))
        if not found.is_file():
            raise _Refused(404, f"{what} {found} is gone (moved or deleted since it was indexed)")
        return found

    @app.exception_handler(_Refused)
    async def refused(request: Request, exc: _Refused) -> Any:
        return error(exc.status, exc.message)

    @app.get("/health")
    async def health() -> Any:
        return {"status": "ok"}

    @app.get("/")
    async def page() -> Any:
        return Response(static.joinpath("index.html").read_bytes(), media_type="text/html; charset=utf-8")

    @app.get("/static/{name}")
    async def asset(name: str) -> Any:
        if name not in STATIC_FILES:
            raise _Refused(404, f"no such file: {name}")
        body = static.joinpath(name).read_bytes()
        return Response(body, media_type=f"{STATIC_FILES[name]}; charset=utf-8", headers={"Cache-Control": "no-cache"})

    @app.get("/api/info")
    async def info() -> Any:
        return await asyncio.to_thread(_info, service, catalogue, config)

    async def body_of(request: Request) -> dict[str, Any]:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            raise _Refused(415, "send the request as JSON (Content-Type: application/json)")
        from ..server import BadBody, read_json

        try:
            body = await read_json(request, config.max_body_bytes)
        except BadBody as exc:
            raise _Refused(exc.status, str(exc)) from exc
        if not isinstance(body, dict):
            raise _Refused(400, "the request must be a JSON object")
        return body

    def run_search(query: dict[str, Any], text: Any, image: Any) -> tuple[list[Hit], list[str], float]:
        problems: list[InputError] = []
        started = time.perf_counter()
        try:
            with searching:
                hits = service.search(text, image, errors=problems, **query)
        except ValueError as exc:  # InputError (a bad query image) too
            raise _Refused(422, str(exc)) from exc
        catalogue.remember(hits)
        return hits, [str(p) for p in problems], time.perf_counter() - started

    @app.post("/api/search")
    async def search(request: Request) -> Any:
        body = await body_of(request)
        query = _search_options(body, config)
        text = _optional_str(body, "text")
        image = None
        if body.get("image") is not None:
            if not isinstance(body["image"], str):
                raise _Refused(422, "'image' must be a data: URL")
            image = _image_bytes(body["image"])
        if text is None and image is None:
            raise _Refused(422, "type a query, or give an image (drop one, paste one or pick a file)")
        hits, problems, seconds = await asyncio.to_thread(run_search, query, text, image)
        return {"hits": [_row(h) for h in hits], "problems": problems, "seconds": round(seconds, 3)}

    @app.post("/api/ask")
    async def ask(request: Request) -> Any:
        if config.chat is None:
            raise _Refused(400, "no chat model is configured (start with --chat-base-url and --chat-model)")
        body = await body_of(request)
        question = _optional_str(body, "question")
        if question is None:
            raise _Refused(422, "type a question")
        query = _search_options(body, config, default_k=4)
        hits, problems, _ = await asyncio.to_thread(run_search, query, question, None)
        if not hits:
            return {"answer": None, "sent": [], "hits": [], "problems": problems, "model": config.chat.model}
        answer, sent = await asyncio.to_thread(_ask, question, hits, config)
        return {
            "answer": answer,
            "sent": sent,
            "hits": [_row(h) for h in hits],
            "problems": problems,
            "model": config.chat.model,
        }

    def media(data: tuple[bytes, str]) -> Any:
        return Response(data[0], media_type=data[1], headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/item/{item_id:path}/thumb")
    def thumb(item_id: str) -> Any:
        meta = item(item_id)
        path = existing(meta.get("image_path"), "the thumbnail")
        kind = BROWSER_IMAGES.get(path.suffix.lower())
        if "thumbnail_width" in meta and kind is not None:  # the index's own display thumbnail: small already
            return FileResponse(path, media_type=kind, headers={"Cache-Control": "private, max-age=3600"})
        # an image item's file, or an older index's full-size page render: made small here
        return media(rendered.get(("thumb", str(path)), lambda: _thumbnail(path, config.thumb_side)))

    @app.get("/item/{item_id:path}/storyboard")
    def storyboard(item_id: str) -> Any:
        meta = item(item_id)
        if meta.get("kind") != "clip":
            raise _Refused(404, f"{item_id!r} is not a clip")
        existing(meta.get("source"), "the video")
        hit = Hit(item_id, 0.0, meta)
        return media(rendered.get(("story", item_id), lambda: _storyboard(hit, config.frames)))

    @app.get("/item/{item_id:path}/full")
    def full(item_id: str) -> Any:
        meta = item(item_id)
        kind = meta.get("kind")
        if kind == "page":
            existing(meta.get("source"), "the PDF")

            def render() -> tuple[bytes, str]:
                with rendering:
                    return _page(meta, config.page_dpi)

            return media(rendered.get(("page", item_id), render))
        if kind == "image":
            path = existing(meta.get("source"), "the image")
            if path.suffix.lower() in BROWSER_IMAGES:
                return FileResponse(path, media_type=BROWSER_IMAGES[path.suffix.lower()])
            return media(rendered.get(("image", str(path)), lambda: _as_png(path)))
        raise _Refused(404, f"{item_id!r} has no full-size image (a clip plays at /item/{item_id}/video)")

    @app.get("/item/{item_id:path}/video")
    def video(item_id: str) -> Any:
        meta = item(item_id)
        if meta.get("kind") != "clip":
            raise _Refused(404, f"{item_id!r} is not a clip")
        path = existing(meta.get("source"), "the video")
        kind = VIDEO_TYPES.get(path.suffix.lower(), "application/octet-stream")
        return FileResponse(path, media_type=kind)  # answers Range requests with 206 Partial Content

    return app


def _optional_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Refused(422, f"{key!r} must be a string")
    return value if value.strip() else None


def _search_options(body: dict[str, Any], config: UIConfig, default_k: int = 12) -> dict[str, Any]:
    """``k``, ``kinds``, ``within`` and ``rerank`` of a search request, checked."""
    k = body.get("k", default_k)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= config.max_k:
        raise _Refused(422, f"k must be a whole number from 1 to {config.max_k}, not {k!r}")
    kinds = body.get("kinds")
    if kinds is not None:
        if not isinstance(kinds, list) or not all(isinstance(x, str) for x in kinds):
            raise _Refused(422, "'kinds' must be a list of page, clip, image")
        if not kinds:
            raise _Refused(422, "choose at least one kind (page, clip or image)")
    within = body.get("within")
    if within is not None:
        if isinstance(within, str):
            within = [within]
        if not isinstance(within, list) or not all(isinstance(x, str) for x in within):
            raise _Refused(422, "'within' must be a file or folder of the index (or a list of them)")
        within = [w.strip() for w in within if w.strip()] or None
    rerank = body.get("rerank")
    if rerank is not None and not isinstance(rerank, bool):
        raise _Refused(422, "'rerank' must be true or false")
    return {"k": k, "kinds": kinds, "within": within, "rerank": rerank}


def _image_bytes(url: str) -> bytes:
    from ...media.images import from_data_url

    try:
        return from_data_url(url, name="the query image")
    except InputError as exc:
        raise _Refused(422, str(exc)) from exc


def _row(hit: Hit) -> dict[str, Any]:
    """A hit as the page shows it: where it is, its scores, and the URLs of its media."""
    meta = hit.metadata
    base = f"/item/{quote(hit.id, safe='')}"
    row: dict[str, Any] = {
        "id": hit.id,
        "kind": hit.kind,
        "label": hit.label,
        "file_name": meta.get("file_name") or Path(str(meta.get("source", hit.id))).name,
        "source": meta.get("source"),
        "reference": meta.get("reference"),
        "score": round(hit.score, 6),
        "rerank_score": None if hit.rerank_score is None else round(hit.rerank_score, 6),
        "thumb": f"{base}/thumb",
    }
    if hit.kind == "page":
        row |= {"page": meta.get("page"), "page_count": meta.get("page_count"), "full": f"{base}/full"}
    elif hit.kind == "clip":
        row |= {
            "start": float(meta.get("start_seconds", 0.0)),
            "end": float(meta.get("end_seconds", 0.0)),
            "storyboard": f"{base}/storyboard",
            "video": f"{base}/video",
        }
    else:
        row["full"] = f"{base}/full"
    return row


def _info(service: SearchService, catalogue: _Catalogue, config: UIConfig) -> dict[str, Any]:
    from ...media.documents import kind_of

    facts = service.info()
    signature = facts["signature"]
    files = [
        {
            "source": r.source,
            "name": Path(r.source).name,
            "folder": str(Path(r.source).parent),
            "kind": kind_of(r.source) or "?",
            "items": r.items,
            "present": Path(r.source).is_file(),
        }
        for r in service.files()
    ]
    reranker = service.reranker
    return {
        "where": config.where,
        "collection": config.collection,
        "model": signature.get("model") or None,
        "family": signature.get("family") or None,
        "dim": signature.get("dim") or None,
        "truncate_dim": signature.get("truncate_dim") or None,
        "items": facts["items"],
        "kinds": catalogue.kinds() if facts["items"] else {},
        "files": files,
        "folders": sorted({f["folder"] for f in files}),
        "rerank": getattr(reranker, "model_name", None) if reranker is not None else None,
        "candidates": service.candidates,
        "chat": None if config.chat is None else {"model": config.chat.model, "base_url": config.chat.base_url},
        "frames": config.frames,
    }


def _ask(question: str, hits: list[Hit], config: UIConfig) -> tuple[str, list[dict[str, Any]]]:
    """The chat model's answer, and per hit the images it was sent (as data URLs, to show them)."""
    from ..chat import ChatError, ask, build_messages

    sent: list[dict[str, Any]] = []
    messages = build_messages(question, hits)
    user = messages[-1]["content"]
    for part in user[1:]:
        if part["type"] == "text":
            hit = hits[len(sent)]
            sent.append({"id": hit.id, "label": hit.label, "kind": hit.kind, "images": []})
        elif sent:
            sent[-1]["images"].append(part["image_url"]["url"])
    try:
        answer = ask(question, hits, config.chat, messages=messages)  # the images shown are the ones sent
    except ChatError as exc:  # the endpoint answered an error, or is not there
        raise _Refused(502, str(exc)) from exc
    return answer, sent


def _encoded(image: Any, fmt: str = "JPEG") -> tuple[bytes, str]:
    buffer = io.BytesIO()
    if fmt == "JPEG":
        image.convert("RGB").save(buffer, format="JPEG", quality=85)
        return buffer.getvalue(), "image/jpeg"
    image.save(buffer, format="PNG", compress_level=3)
    return buffer.getvalue(), "image/png"


def _thumbnail(path: Path, side: int) -> tuple[bytes, str]:
    from ...media.images import load_image

    try:
        image = load_image(path)
    except InputError as exc:
        raise _Refused(404, str(exc)) from exc
    if max(image.size) > side:
        image.thumbnail((side, side))
    return _encoded(image)


def _storyboard(hit: Hit, count: int) -> tuple[bytes, str]:
    """``count`` frames spread over a clip in a grid, in time order (the frames a chat model is sent for it)."""
    import math

    from PIL import Image

    frames = hit.clip_frames(count, isolated=MEDIA_TIMEOUT)
    if not frames:
        raise _Refused(404, f"the frames of {hit.label} cannot be read from {hit.metadata.get('source')}")
    height, gap = 144, 2
    width = max(1, round(frames[0].width * height / frames[0].height))
    columns = math.ceil(math.sqrt(len(frames)))
    rows = math.ceil(len(frames) / columns)
    board = Image.new("RGB", (columns * width + gap * (columns - 1), rows * height + gap * (rows - 1)), (0, 0, 0))
    for n, frame in enumerate(frames):
        row, column = divmod(n, columns)
        board.paste(frame.resize((width, height)), (column * (width + gap), row * (height + gap)))
    return _encoded(board)


def _page(meta: dict[str, Any], dpi: float) -> tuple[bytes, str]:
    """A page rendered again from its PDF (an older index's cached full-size render when it is still there)."""
    from ...media.documents import full_image

    try:
        return _encoded(full_image(meta, dpi=dpi, isolated=MEDIA_TIMEOUT), "PNG")
    except InputError as exc:
        raise _Refused(404, str(exc)) from exc


def _as_png(path: Path) -> tuple[bytes, str]:
    from ...media.images import load_image

    try:
        return _encoded(load_image(path), "PNG")
    except InputError as exc:
        raise _Refused(404, str(exc)) from exc
