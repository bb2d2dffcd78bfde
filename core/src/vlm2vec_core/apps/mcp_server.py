"""``vlm2vec mcp``: the index as tools for agents over MCP (extra ``[mcp]``, the official ``mcp`` SDK).

Two tools over the same :class:`~vlm2vec_core.apps.service.SearchService` the CLI's ``search`` uses:

- ``search``: a text query, an image query (base64 or a ``data:`` URL) or both; ``k``, ``kinds``, ``within``
  (files or folders), ``rerank``. The result reads as text (rank, score, file, page or time span, reference), with
  a JPEG of each hit after its line (the page, the image, a strip of frames of a clip), plus the same hits as
  structured content;
- ``list_files``: the files the index holds, with their kind, items and when they were indexed.

Transports: stdio (what desktop clients start) and streamable HTTP at ``http://HOST:PORT/mcp``, with the API keys
of ``vlm2vec serve`` (``$VLM2VEC_API_KEYS``, ``--api-key-file``) required beyond loopback. Bad arguments come
back as tool errors (``isError``) that say what is wrong; logs go to stderr, never to stdout (the stdio wire).
"""

# No `from __future__ import annotations`: the SDK reads the tools' annotations at runtime (pydantic).

import argparse
import base64
import binascii
import hmac
import io
import logging
import sys
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal

from ..errors import InputError, MissingDependencyError, require_extra
from ..types import clock

if TYPE_CHECKING:
    from PIL import Image

    from ..index.store import Hit
    from .service import SearchService

log = logging.getLogger(__name__)

LOOPBACK = ("127.0.0.1", "localhost", "::1")
DEFAULT_PORT = 8765
MAX_K = 50
MEDIA_TIMEOUT = 60.0  # seconds a page render or a clip's frames may take (in a worker process)
PAGE_SIDE = 1024  # a page or an image is sent at most this many pixels a side (JPEG)
FRAME_SIDE = 384  # each frame of a clip's strip
CLIP_FRAMES = 3  # frames per clip hit, side by side in one picture
MAX_PICTURES = 10  # hits past the 10th come as text only (a result stays a few MB at most)
JPEG_QUALITY = 80
RENDER_DPI = 110  # pages are rendered again from their PDF at this resolution (then fitted to PAGE_SIDE)
MAX_IMAGE_BYTES = 20 << 20  # a query image's decoded size
Kind = Literal["page", "clip", "image"]

INSTRUCTIONS = (
    "Search a local index of PDF pages, video clips and images by meaning (a multimodal embedding model). "
    "`search` takes a text query and/or an image (base64 or a data: URL) and answers with the best hits: file, "
    "page or time span, score, a reference (`doc.pdf#page=3`, `talk.mp4#t=10,20`) and a picture of each hit. "
    "`list_files` shows what the index holds; pass its paths (or folders) as `within` to search only there."
)


# --- the tools' work, free of the SDK -------------------------------------------------------------------------


@dataclass
class Part:
    """One content block of a tool result: text, or a JPEG's bytes."""

    text: str | None = None
    jpeg: bytes | None = None


@dataclass
class Answer:
    parts: list[Part]
    structured: dict[str, Any] = field(default_factory=dict)


def decode_image_argument(value: str, *, max_bytes: int = MAX_IMAGE_BYTES) -> bytes:
    """The bytes of the ``image`` argument: a ``data:image/...;base64,`` URL or bare base64 (InputError else)."""
    where = "the image argument"
    text = value.strip()
    if text.startswith("data:"):
        head, sep, payload = text.partition(",")
        if not sep or not head.endswith(";base64"):
            raise InputError("a data: URL must be base64 (data:image/png;base64,...)", source=where)
        if not head.startswith("data:image/"):
            raise InputError(f"a data: URL of {head[5:].split(';')[0] or 'no type'}, not of an image", source=where)
        text = payload
    elif text.startswith(("/", "file:", "http://", "https://", "~")) or (len(text) < 512 and "." in text[-6:]):
        raise InputError(
            "give the image's bytes as base64 or a data: URL (paths and URLs are not read by this server)",
            source=where,
        )
    compact = "".join(text.split())
    if len(compact) * 3 // 4 > max_bytes:
        raise InputError(f"the image is over {max_bytes >> 20} MiB", source=where)
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InputError(f"not valid base64 ({exc})", source=where) from exc
    if not data:
        raise InputError("empty image data", source=where)
    return data


def jpeg_bytes(image: "Image.Image", max_side: int, *, quality: int = JPEG_QUALITY) -> bytes:
    """``image`` as a JPEG at most ``max_side`` pixels a side (aspect kept)."""
    if max(image.size) > max_side:
        image = image.copy()
        image.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def frame_strip(frames: Sequence["Image.Image"], side: int = FRAME_SIDE) -> "Image.Image":
    """Frames side by side, each at most ``side`` pixels a side, on one white strip."""
    from PIL import Image as PILImage

    tiles = []
    for frame in frames:
        tile = frame.convert("RGB").copy()
        tile.thumbnail((side, side))
        tiles.append(tile)
    gap = 4
    width = sum(t.width for t in tiles) + gap * (len(tiles) - 1)
    strip = PILImage.new("RGB", (width, max(t.height for t in tiles)), "white")
    x = 0
    for tile in tiles:
        strip.paste(tile, (x, 0))
        x += tile.width + gap
    return strip


def hit_picture(hit: "Hit") -> tuple[bytes | None, str | None]:
    """A JPEG of the hit and a note for the reader (None when the picture is the hit's own view): a page rendered
    again from its PDF at ``RENDER_DPI`` (``documents.full_image``), an image's file, a strip of frames over a
    clip's span read from its video; the cached display thumbnail when the source moved or broke since indexing
    (said in the note); no picture when that is gone too."""
    from ..media.documents import full_image

    why = "the file is gone"
    try:
        if hit.kind == "clip":
            frames = hit.clip_frames(CLIP_FRAMES, isolated=MEDIA_TIMEOUT)
            if frames:
                return jpeg_bytes(frame_strip(frames), CLIP_FRAMES * FRAME_SIDE + 8), None
            why = "the video cannot be read"
        else:
            picture = full_image(hit.metadata, dpi=RENDER_DPI, isolated=MEDIA_TIMEOUT)
            return jpeg_bytes(picture, PAGE_SIDE), None
    except (InputError, OSError, ValueError) as exc:  # gone, changed or broken since indexing
        why = str(exc) or type(exc).__name__
    thumb = hit.image()
    if thumb is None:
        return None, f"no picture: {why}"
    return jpeg_bytes(thumb, PAGE_SIDE), f"the indexed thumbnail only: {why}"


def _where(meta: dict[str, Any]) -> str:
    if meta.get("kind") == "page":
        return f"page {meta.get('page')} of {meta.get('page_count')}"
    if meta.get("kind") == "clip":
        start, end = float(meta.get("start_seconds", 0)), float(meta.get("end_seconds", 0))
        return f"{clock(start)}-{clock(end)} ({start:g}-{end:g} s)"
    return "image"


def hit_row(rank: int, hit: "Hit") -> dict[str, Any]:
    meta = hit.metadata
    row: dict[str, Any] = {
        "rank": rank,
        "score": round(float(hit.score), 6),
        "kind": hit.kind,
        "file": meta.get("file_name"),
        "source": meta.get("source"),
        "reference": meta.get("reference"),
    }
    if hit.rerank_score is not None:
        row["rerank_score"] = round(float(hit.rerank_score), 6)
    for key in ("page", "page_count", "start_seconds", "end_seconds"):
        if key in meta:
            row[key] = meta[key]
    return row


def describe_hit(row: dict[str, Any]) -> str:
    second = f", rerank {row['rerank_score']:.4f}" if "rerank_score" in row else ""
    meta = {"kind": row["kind"], **row}
    return (
        f"#{row['rank']} {row['file']}, {_where(meta)}: score {row['score']:.4f}{second}\n"
        f"   file: {row['source']}\n   reference: {row['reference']}"
    )


class Tools:
    """What the MCP tools do, over a SearchService; one call at a time (the encoder and PDFium are not
    thread-safe). Bad arguments raise ValueError (InputError among them) with a message for the caller."""

    def __init__(self, service: "SearchService") -> None:
        self.service = service
        self.lock = threading.Lock()

    def warm_up(self) -> None:
        """Load the encoder's (and reranker's) weights now, so the first search does not wait for them."""
        from ..encoders.loading import ModelNotFoundError

        with self.lock:
            for part in (self.service.encoder, self.service.reranker):
                load = getattr(part, "load", None)
                if callable(load):
                    try:
                        load()
                    except (ModelNotFoundError, OSError, ValueError, RuntimeError) as exc:  # said again at first use
                        log.warning("could not load a model ahead of the first search: %s", exc)

    def search(
        self,
        query: str | None = None,
        image: str | None = None,
        *,
        k: int = 5,
        kinds: Sequence[str] | None = None,
        within: Sequence[str] | None = None,
        rerank: bool | None = None,
        images: bool = True,
    ) -> Answer:
        picture = decode_image_argument(image) if image else None
        text = query if query and query.strip() else None
        if text is None and picture is None:
            raise ValueError("give a text `query`, an `image` (base64 or a data: URL), or both")
        if not 1 <= k <= MAX_K:
            raise ValueError(f"k must be between 1 and {MAX_K}, got {k}")
        problems: list[InputError] = []
        with self.lock:
            hits = self.service.search(
                text, picture, k=k, kinds=list(kinds) if kinds else None, within=within, rerank=rerank, errors=problems
            )
            rows = [hit_row(n, h) for n, h in enumerate(hits, 1)]
            pictures = [
                (hit_picture(h) if n < MAX_PICTURES else (None, f"no picture past the first {MAX_PICTURES} hits"))
                if images
                else (None, None)
                for n, h in enumerate(hits)
            ]
        asked = " and ".join(part for part in (repr(text) if text else "", "the image" if picture else "") if part)
        scope = f" within {', '.join(within)}" if within else ""
        head = f"{len(rows)} hit(s) for {asked}{scope}" + (
            " (reranked)" if any("rerank_score" in r for r in rows) else ""
        )
        if not rows:
            head += ": nothing matched" + (" there (see list_files for the indexed paths)" if within else "")
        parts = [Part(text=head)]
        for row, (jpeg, note) in zip(rows, pictures, strict=True):
            line = describe_hit(row)
            if note:
                line += f"\n   ({note})"
            parts.append(Part(text=line))
            if jpeg is not None:
                parts.append(Part(jpeg=jpeg))
        for problem in problems:
            parts.append(Part(text=f"skipped in reranking: {problem}"))
        return Answer(parts, {"hits": rows, "skipped": [str(p) for p in problems]})

    def list_files(self) -> Answer:
        from .service import file_row

        with self.lock:
            info = self.service.info()
            records = self.service.files()
        rows = [file_row(r) for r in records]
        signature = info.get("signature") or {}
        head = (
            f"{len(rows)} file(s), {info.get('items', 0)} item(s); model {signature.get('model', '?')} "
            f"({signature.get('family', '?')}, {signature.get('dim', '?')}-d); rerank "
            + ("available" if info.get("rerank") else "not configured")
        )
        lines = [head] + [
            f"{r['kind']:<6}{r['items']:>5} items  indexed {r['indexed_at']}  {r['source']}"
            + ("" if r["present"] else "  (gone)")
            for r in rows
        ]
        structured = {
            "files": rows,
            "items": info.get("items", 0),
            "model": signature.get("model"),
            "family": signature.get("family"),
            "dim": signature.get("dim"),
            "rerank": bool(info.get("rerank")),
        }
        return Answer([Part(text="\n".join(lines))], structured)


# --- the MCP server -------------------------------------------------------------------------------------------


def _require_mcp() -> None:
    try:
        import mcp.server.mcpserver  # noqa: F401
    except ImportError as exc:
        raise require_extra("mcp", "the MCP SDK (mcp>=2.3)") from exc


def build_server(service: "SearchService", *, warm_up: bool = True) -> Any:
    """An ``MCPServer`` with the ``search`` and ``list_files`` tools over ``service``."""
    _require_mcp()
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError
    from mcp_types import CallToolResult, ImageContent, TextContent, ToolAnnotations
    from pydantic import Field

    from ..encoders.loading import ModelNotFoundError
    from ..encoders.remote import RemoteError

    tools = Tools(service)
    started = threading.Event()

    @asynccontextmanager
    async def lifespan(_server: Any) -> AsyncIterator[None]:
        # Once the transport owns stdout: what loading the weights prints cannot reach the wire.
        if warm_up and not started.is_set():
            started.set()
            threading.Thread(target=tools.warm_up, name="vlm2vec-mcp-warm-up", daemon=True).start()
        yield

    server: Any = MCPServer("vlm2vec", instructions=INSTRUCTIONS, lifespan=lifespan, log_level="WARNING")

    def result(answer: Answer) -> Any:
        content: list[Any] = [
            TextContent(type="text", text=p.text)
            if p.text is not None
            else ImageContent(
                type="image", data=base64.b64encode(p.jpeg or b"").decode("ascii"), mime_type="image/jpeg"
            )
            for p in answer.parts
        ]
        return CallToolResult(content=content, structured_content=answer.structured)

    def run(call: Callable[[], Answer]) -> Any:
        try:
            return result(call())
        except (ValueError, ModelNotFoundError, RemoteError) as exc:  # bad arguments; weights or a server not there
            raise ToolError(str(exc)) from exc

    read_only = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True)

    @server.tool(
        name="search",
        title="Search the index",
        description="Find the PDF pages, video clips and images that best match a text and/or image query. "
        "Each hit: rank, score, file, page or time span, reference, then a picture of it (JPEG).",
        annotations=read_only,
        structured_output=False,
    )
    def search(
        query: Annotated[str | None, Field(description="what to look for, in words")] = None,
        image: Annotated[
            str | None,
            Field(description="an image to look for: the bytes of a PNG/JPEG/WebP file as base64, or a data: URL"),
        ] = None,
        k: Annotated[int, Field(ge=1, le=MAX_K, description="how many hits")] = 5,
        kinds: Annotated[
            list[Kind] | None, Field(description="only these kinds of item (default: all)", min_length=1)
        ] = None,
        within: Annotated[
            list[str] | None,
            Field(description="only files at these paths or under these folders (as list_files shows them)"),
        ] = None,
        rerank: Annotated[
            bool | None,
            Field(description="rerank with the second stage (default: when the server has a reranker)"),
        ] = None,
        images: Annotated[bool, Field(description="attach a picture of each hit")] = True,
    ) -> CallToolResult:
        return run(lambda: tools.search(query, image, k=k, kinds=kinds, within=within, rerank=rerank, images=images))

    @server.tool(
        name="list_files",
        title="List the indexed files",
        description="The files the index holds (path, kind, items, when indexed), its model, and whether "
        "reranking is available.",
        annotations=read_only,
        structured_output=False,
    )
    def list_files() -> CallToolResult:
        return run(tools.list_files)

    @server.custom_route("/health", methods=["GET"])
    async def health(_request: Any) -> Any:
        from starlette.responses import JSONResponse

        return JSONResponse({"status": "ok"})

    return server


def authorized(header: str, keys: Sequence[str]) -> bool:
    """Whether an ``Authorization`` header carries one of ``keys`` as a Bearer token (constant time per key)."""
    scheme, _, token = header.partition(" ")
    given = token.strip().encode() if scheme.lower() == "bearer" else b""
    return bool(sum(hmac.compare_digest(given, key.encode()) for key in keys)) and bool(given)


class BearerKeys:
    """ASGI middleware: every HTTP request but ``/health`` needs ``Authorization: Bearer <one of keys>``."""

    def __init__(self, app: Any, keys: Sequence[str]) -> None:
        self.app, self.keys = app, tuple(keys)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self.keys and scope.get("path") != "/health":
            header = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"authorization"), "")
            if not authorized(header, self.keys):
                from starlette.responses import JSONResponse

                response = JSONResponse(
                    {"error": "missing or wrong API key (send Authorization: Bearer <key>)"},
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def http_app(server: Any, *, host: str, keys: Sequence[str]) -> Any:
    """The streamable HTTP app (``/mcp``, ``/health``), behind the API keys when there are any."""
    app = server.streamable_http_app(host=host)
    return BearerKeys(app, keys) if keys else app


# --- the command ----------------------------------------------------------------------------------------------


class SetupError(ValueError):
    """A reason not to start (printed as one line by the command)."""


def check_binding(host: str, keys: Sequence[str]) -> None:
    if host not in LOOPBACK and not keys:
        raise SetupError(
            f"refusing to serve MCP on {host} without API keys: set VLM2VEC_API_KEYS or --api-key-file "
            "(or bind --host 127.0.0.1)"
        )


def command(args: argparse.Namespace, service_factory: Callable[..., "SearchService"]) -> int:
    """``vlm2vec mcp``: ``service_factory(args, allow_empty=True)`` is the CLI's own (``--db``, ``--model``,
    ``--rerank``, ...). Stops before loading anything when the SDK is missing or the binding is unsafe."""
    from .server import api_keys_from

    try:
        _require_mcp()
        if not args.http and (args.host is not None or args.port is not None or args.api_key_file):
            raise SetupError("--host, --port and --api-key-file go with --http (stdio needs none)")
        host = args.host or "127.0.0.1"
        port = DEFAULT_PORT if args.port is None else args.port
        keys: tuple[str, ...] = ()
        if args.http:
            try:
                keys = api_keys_from(key_file=args.api_key_file)
            except OSError as exc:
                raise SetupError(f"cannot read the API key file {args.api_key_file}: {exc}") from exc
            check_binding(host, keys)
    except (SetupError, MissingDependencyError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    service = service_factory(args, allow_empty=True)
    server = build_server(service)
    if not args.http:
        log.info("MCP server on stdio (index: %s)", args.chroma_url or args.db)
        server.run("stdio")
        return 0
    import uvicorn

    sys.stderr.write(f"MCP server at http://{host}:{port}/mcp" + (" (API keys required)\n" if keys else "\n"))
    uvicorn.run(http_app(server, host=host, keys=keys), host=host, port=port, log_level="warning")
    return 0
