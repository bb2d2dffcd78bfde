"""``vlm2vec ui``: a local search page over an index (extra ``[server]``: FastAPI and uvicorn).

Search by text or by an image (dropped, pasted or picked), see pages and clips as a grid, filter by kind and by
file or folder, rerank when a reranker is configured, open a page full size (rendered from its PDF) or play a
clip from its start, and ask a chat model when one is configured. Everything the page needs is served by the
package (``static/``: plain HTML, CSS and JS, no build step, nothing from the network); only files the index
references are served, by item id. See ``docs/ui.md``.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
from collections.abc import Callable
from typing import Any

from .app import LOOPBACK, UIConfig, create_app

__all__ = ["UIConfig", "command", "create_app", "serve_ui"]

log = logging.getLogger(__name__)


def serve_ui(
    service: Any, config: UIConfig | None = None, *, host: str = "127.0.0.1", port: int = 8000, sock: Any = None
) -> None:
    """Run the page until Ctrl-C (SIGINT/SIGTERM); ``sock``: a socket already bound (then host and port only
    say which names the app answers to)."""
    from ...errors import require_extra

    try:
        import uvicorn
    except ImportError as exc:
        raise require_extra("ui", "uvicorn") from exc
    app = create_app(service, config, host=host)
    settings = uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False, timeout_graceful_shutdown=5
    )
    uvicorn.Server(settings).run(sockets=[sock] if sock is not None else None)


def listening(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` and listening (port 0: a free one), or OSError saying why not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def command(args: argparse.Namespace, build_service: Callable[..., Any]) -> int:
    """The ``vlm2vec ui`` command: the SearchService the CLI builds from the options (``build_service(args,
    allow_empty=True)``: an empty index opens, and the page says it is empty), its model loaded now; says where
    the page is, and serves it."""
    from ..chat import ChatConfig

    service = build_service(args, allow_empty=True)
    chat = ChatConfig.from_env(args.chat_base_url, args.chat_model, args.chat_api_key)
    where = args.chroma_url or str(args.db)
    config = UIConfig(where=where, collection=args.collection, chat=chat)
    try:  # the port first: a clash is said at once, not after the model loads
        sock = listening(args.host, args.port)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        sys.stderr.write(f"error: cannot listen on {args.host}:{args.port} ({reason}): try another --port\n")
        return 2
    with sock:
        load = getattr(service.encoder, "load", None)
        if callable(load):  # the weights load now, not on the first search
            load()
        if service.reranker is not None and callable(getattr(service.reranker, "load", None)):
            service.reranker.load()
        if args.host not in LOOPBACK:
            sys.stderr.write(
                f"warning: serving on {args.host}: the page has no login, and anyone who reaches this address can "
                "search the index and see its files\n"
            )
        port = sock.getsockname()[1]
        shown = f"[{args.host}]" if ":" in args.host else args.host
        items = service.store.count()
        extras = [f"rerank {getattr(service.reranker, 'model_name', 'on')}"] if service.reranker is not None else []
        extras += [f"ask via {chat.model}"] if chat is not None else []
        suffix = f"; {', '.join(extras)}" if extras else ""
        sys.stderr.write(f"vlm2vec ui: http://{shown}:{port}/ ({items} items in {where}{suffix}; Ctrl-C stops)\n")
        serve_ui(service, config, host=args.host, port=port, sock=sock)
    return 0
