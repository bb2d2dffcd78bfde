"""The ``vlm2vec`` command line."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from ..encoders.loading import DEFAULT_MODEL
from ..encoders.remote import RemoteError
from ..errors import DeviceError, MissingDependencyError
from ..families import FAMILIES, UnknownFamilyError
from ..families.rerankers import DEFAULT_RERANKER, RERANKERS
from ..index.store import IndexMismatch
from ..types import clock


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vlm2vec",
        description="multimodal embeddings (VLM2Vec, UniME-V2, GME, Qwen3-VL-Embedding) for documents and video",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    index = commands.add_parser("index", help="embed the PDFs, videos and images under PATHs into Chroma")
    index.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    _store_options(index)
    _encoder_options(index)
    index.add_argument("--prune", action="store_true", help="remove entries of files that are gone or changed")
    index.add_argument("--strict", action="store_true", help="exit with an error when any file is bad")
    index.add_argument("--clip-seconds", type=_positive_float, default=10.0)
    index.add_argument("--dpi", type=float, default=144)
    index.add_argument("--batch-size", type=_positive_int, default=8)
    index.add_argument("--cache-dir", type=Path, default=None, help="page thumbnails (default ~/.cache/vlm2vec)")
    index.add_argument(
        "--workers",
        type=_natural_int,
        default=None,
        help="processes that read and render files while the model runs (default: one per CPU; 0: none)",
    )
    index.add_argument(
        "--file-timeout",
        type=_positive_float,
        default=None,
        metavar="SECONDS",
        help="give up on a file (or an 8-page part of a long PDF) that takes longer to read; it is reported, "
        "the run goes on",
    )
    _password_option(index)
    index.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="render and embed on a Ray cluster (ADDRESS, $RAY_ADDRESS, or a local one); extra [ray]",
    )
    index.add_argument("--actors", type=_positive_int, default=None, help="with --ray: encoder actors (default: GPUs)")
    index.add_argument("--gpus-per-actor", type=_positive_float, default=None, help="with --ray (default 1 on GPUs)")
    index.add_argument(
        "--items-per-task",
        type=_positive_int,
        default=16,
        help="with --ray: pages, clips and images a render task is given (a longer PDF is split into ranges)",
    )

    search = commands.add_parser("search", help="find the pages, clips and images that match a query")
    search.add_argument("query")
    _store_options(search)
    _encoder_options(search)
    search.add_argument("-k", type=_positive_int, default=5, help="number of hits")
    search.add_argument("--type", choices=["page", "clip", "image"], action="append", dest="types")
    search.add_argument("--json", action="store_true", help="print the hits as JSON")
    search.add_argument("--sheet", type=Path, help="also write a contact sheet PNG of the hits")
    _rerank_options(search)
    _password_option(search)

    ask = commands.add_parser("ask", help="answer a question from the hits with a multimodal chat model")
    ask.add_argument("question")
    _store_options(ask)
    _encoder_options(ask)
    ask.add_argument("-k", type=_positive_int, default=4)
    ask.add_argument("--type", choices=["page", "clip", "image"], action="append", dest="types")
    ask.add_argument("--chat-base-url", default=None, help="OpenAI-compatible endpoint ($VLM2VEC_CHAT_BASE_URL)")
    ask.add_argument("--chat-model", default=None, help="$VLM2VEC_CHAT_MODEL")
    ask.add_argument("--chat-api-key", default=None, help="$VLM2VEC_CHAT_API_KEY")
    _rerank_options(ask)
    _password_option(ask)

    info = commands.add_parser("info", help="what an index holds: its model, family and dimension, and counts")
    _store_options(info)
    info.add_argument("--json", action="store_true")
    listing = commands.add_parser("list", help="the files an index holds, with their items and when")
    _store_options(listing)
    listing.add_argument("--json", action="store_true")
    remove = commands.add_parser("remove", help="drop the entries of files or folders from an index")
    remove.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    _store_options(remove)

    serve = commands.add_parser("serve", help="serve the encoder over HTTP (vLLM-compatible /v1/embeddings)")
    serve.add_argument("--model", default=DEFAULT_MODEL, help=f"Hub id or local directory (default {DEFAULT_MODEL})")
    serve.add_argument("--base-model", default=None, help="local copy of an adapter's base model")
    serve.add_argument("--served-model-name", default=None, help="the model id clients see (default: --model)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--device", default=None)
    _model_options(serve)
    serve.add_argument("--api-key-file", default=None, help="file with one API key per line ($VLM2VEC_API_KEYS too)")
    serve.add_argument("--max-batch-size", type=int, default=16)
    serve.add_argument("--max-wait-ms", type=float, default=10.0)
    serve.add_argument("--max-queue", type=int, default=512)
    serve.add_argument("--max-body-mb", type=float, default=64.0)
    serve.add_argument("--max-frames", type=int, default=64)
    serve.add_argument(
        "--video-timeout",
        type=_positive_float,
        default=60.0,
        metavar="SECONDS",
        help="an uploaded video may take this long to decode (in a worker process; default 60)",
    )
    serve.add_argument("--reranker", default=None, metavar="MODEL", help="also serve a reranker on /v1/rerank")
    serve.add_argument("--reranker-family", default=None, choices=list(RERANKERS), help="default: detected")
    serve.add_argument("--no-embeddings", action="store_true", help="serve the reranker only")
    _eval_options(commands)
    ui = commands.add_parser("ui", help="a local search page over the index (http://127.0.0.1:8000/)")
    _store_options(ui)
    _encoder_options(ui)
    _rerank_options(ui)
    ui.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (any other address: no login)")
    ui.add_argument("--port", type=int, default=8000)
    ui.add_argument("--chat-base-url", default=None, help="for the ask panel ($VLM2VEC_CHAT_BASE_URL)")
    ui.add_argument("--chat-model", default=None, help="$VLM2VEC_CHAT_MODEL")
    ui.add_argument("--chat-api-key", default=None, help="$VLM2VEC_CHAT_API_KEY")
    mcp = commands.add_parser("mcp", help="an MCP server for agents: search and list_files over the index (stdio)")
    _store_options(mcp)
    _encoder_options(mcp)
    _rerank_options(mcp)
    mcp.add_argument("--http", action="store_true", help="streamable HTTP at http://HOST:PORT/mcp instead of stdio")
    mcp.add_argument("--host", default=None, help="with --http (default 127.0.0.1; others need API keys)")
    mcp.add_argument("--port", type=int, default=None, help="with --http (default 8765)")
    mcp.add_argument("--api-key-file", default=None, help="with --http: one key per line ($VLM2VEC_API_KEYS too)")
    for sub in commands.choices.values():  # -v anywhere on the line: `vlm2vec index -v ...` as well
        sub.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="details on errors")
    return parser


def _eval_options(commands: Any) -> None:
    evaluate = commands.add_parser(
        "eval",
        help="measure retrieval on labelled queries (nDCG, recall, MRR, hit rate), models and rerankers side by side",
        description="QUERIES: a JSONL file ({id, query|image, relevant: [refs]}), a BEIR-style folder (queries.jsonl, "
        "qrels/test.tsv, corpus/) or a folder with queries.jsonl and its corpus (what --make-synthetic writes).",
    )
    evaluate.add_argument("queries", nargs="?", type=Path, metavar="QUERIES")
    evaluate.add_argument(
        "--make-synthetic", type=Path, metavar="DIR", help="write a labelled demo corpus to DIR (with --model: run it)"
    )
    where = evaluate.add_mutually_exclusive_group()
    where.add_argument("--db", type=Path, default=None, help="an index (embedded Chroma folder) to evaluate over")
    where.add_argument("--chroma-url", default=None, help="a `chroma run` server holding the index")
    evaluate.add_argument("--collection", default="vlm2vec")
    evaluate.add_argument(
        "--corpus", type=Path, action="append", default=[], metavar="PATH", help="files or folders to index first"
    )
    evaluate.add_argument(
        "--model",
        action="append",
        default=[],
        help="a configuration per --model (Hub id, local directory, or a served URL); default: the index's model",
    )
    evaluate.add_argument(
        "--family", action="append", default=[], choices=list(FAMILIES), help="one for all models, or one per --model"
    )
    evaluate.add_argument(
        "--truncate-dim", action="append", default=[], type=_positive_int, help="one for all, or one per --model"
    )
    evaluate.add_argument("--base-model", default=None, help="local copy of an adapter's base model")
    evaluate.add_argument("--api-key", default=None, help="for served models (default $VLM2VEC_API_KEY)")
    evaluate.add_argument("--device", default=None)
    evaluate.add_argument("--max-pixels", type=_positive_int, default=None, help="pixel cap per image or frame")
    evaluate.add_argument("--dtype", choices=["bfloat16", "float16", "float32"], default=None)
    evaluate.add_argument(
        "--rerank",
        action="append",
        nargs="?",
        const=DEFAULT_RERANKER,
        default=[],
        metavar="MODEL",
        help=f"also run each model with this reranker (default {DEFAULT_RERANKER}; a URL for a served one)",
    )
    evaluate.add_argument("--rerank-family", default=None, choices=list(RERANKERS), help="default: detected")
    evaluate.add_argument(
        "--candidates", action="append", default=[], type=_positive_int, help="hits to rerank (default 50; repeatable)"
    )
    evaluate.add_argument("--type", choices=["page", "clip", "image"], action="append", dest="types")
    evaluate.add_argument("--split", default="test", help="the qrels split of a BEIR-style folder (default test)")
    evaluate.add_argument("--json", action="store_true", help="print the figures as JSON")
    evaluate.add_argument("--per-query", action="store_true", help="also each query's figures, worst first")
    evaluate.add_argument("--clip-seconds", type=_positive_float, default=10.0, help="when indexing (default 10)")
    evaluate.add_argument("--dpi", type=float, default=144, help="when indexing (default 144)")
    evaluate.add_argument("--batch-size", type=_positive_int, default=8)
    evaluate.add_argument("--cache-dir", type=Path, default=None, help="page images and thumbnails (default ~/.cache)")


def _store_options(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--db", type=Path, default=Path(".vlm2vec"), help="embedded Chroma folder (default .vlm2vec)")
    where.add_argument("--chroma-url", default=None, help="a `chroma run` server, e.g. http://127.0.0.1:8000")
    parser.add_argument("--collection", default="vlm2vec")


def _encoder_options(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--model",
        default=None,
        help=f"Hub id or local directory (default: the model the index was built with, else {DEFAULT_MODEL})",
    )
    which.add_argument(
        "--remote",
        action="append",
        default=None,
        metavar="URL",
        help="a `vlm2vec serve` (or vLLM) URL instead of a local model; once per server of a fleet",
    )
    parser.add_argument("--base-model", default=None, help="local copy of an adapter's base model")
    parser.add_argument("--api-key", default=None, help="for --remote (default $VLM2VEC_API_KEY)")
    parser.add_argument("--device", default=None)
    _model_options(parser)


def _model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--family",
        choices=list(FAMILIES),
        default=None,
        help="the model family (default: detected from the checkpoint, or the index's)",
    )
    parser.add_argument(
        "--truncate-dim",
        type=_positive_int,
        default=None,
        help="keep this many dimensions of a Matryoshka model's vectors (one of its family's sizes)",
    )
    parser.add_argument(
        "--max-pixels", type=_positive_int, default=None, help="pixel cap per image or frame (default: the family's)"
    )
    parser.add_argument(
        "--dtype", choices=["bfloat16", "float16", "float32"], default=None, help="default: bf16 on CUDA, else fp32"
    )


def _rerank_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rerank",
        nargs="?",
        const=DEFAULT_RERANKER,
        default=None,
        metavar="MODEL",
        help=f"rerank the candidates with a second stage (default {DEFAULT_RERANKER}; a URL for a served one)",
    )
    parser.add_argument("--rerank-family", default=None, choices=list(RERANKERS), help="default: detected")
    parser.add_argument("--candidates", type=_positive_int, default=50, help="how many hits to rerank (default 50)")


def _password_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--password",
        default=os.environ.get("VLM2VEC_PDF_PASSWORD"),
        help="for encrypted PDFs ($VLM2VEC_PDF_PASSWORD; tried on every encrypted PDF of the run)",
    )


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def _natural_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = logging.StreamHandler()
    if args.verbose or args.command == "serve":
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(_Brief())
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else (logging.INFO if args.command == "serve" else logging.WARNING),
        handlers=[handler],
    )
    global _VERBOSE
    _VERBOSE = bool(args.verbose)
    commands = {
        "serve": _serve,
        "index": _index,
        "search": _search,
        "ask": _ask,
        "eval": _eval,
        "info": _info,
        "list": _list,
        "remove": _remove,
        "ui": _ui,
        "mcp": _mcp,
    }
    try:
        return commands[args.command](args)
    except (_Stop, IndexMismatch, UnknownFamilyError, MissingDependencyError) as stop:
        print(f"error: {stop}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "interrupted: what was embedded so far is stored; running the same command again resumes", file=sys.stderr
        )
        return 130
    except (DeviceError, RemoteError) as exc:  # no such device; a server that refuses, or is not there
        if args.verbose:
            raise
        hint = ""
        if isinstance(exc, RemoteError) and exc.status == 401:
            hint = " (pass --api-key KEY or set VLM2VEC_API_KEY)"
        print(f"error: {exc}{hint}", file=sys.stderr)
        return 3


_VERBOSE = False


class _Brief(logging.Formatter):
    """``warning: message``, as the CLI's own errors read (the logger, time and traceback with -v)."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"


def _quiet_third_parties() -> None:
    """transformers' weight-loading bars stay out of the CLI's output unless -v (the CLI is the app layer);
    called where a local model is about to load, so a remote-only run never imports transformers."""
    if _VERBOSE:
        return
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # a remote-only install
        return
    hf_logging.disable_progress_bar()


class _Stop(Exception):
    """A clear, one-sentence reason to stop (printed without a traceback)."""


def _encoder(args: argparse.Namespace) -> Any:
    """The encoder the options name (the weights load on first use)."""
    from ..encoders.protocol import EncoderSpec

    if not args.remote:
        _quiet_third_parties()
    return EncoderSpec(
        model=args.model,
        remote=tuple(args.remote) if args.remote else None,
        api_key=(args.api_key or os.environ.get("VLM2VEC_API_KEY")) if args.remote else None,
        family=args.family,
        truncate_dim=args.truncate_dim,
        max_pixels=args.max_pixels,
        dtype=args.dtype,
        base_model=args.base_model,
        device=args.device,
    ).build()


def _follow_index(args: argparse.Namespace, recorded: dict[str, Any] | None) -> None:
    """Without ``--model``, use the model the index was built with (its family and truncation too, unless
    given); with the index's own model, its family and truncation."""
    if args.remote or not recorded or not recorded.get("model"):
        return
    if args.model is None:
        args.model = recorded["model"]
    if args.model == recorded["model"]:
        if args.family is None:
            args.family = recorded["family"]
        if args.truncate_dim is None and recorded.get("truncate_dim"):
            args.truncate_dim = recorded["truncate_dim"]


def _signed_encoder(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """The encoder and the signature of its vectors (its checkpoint and family found, its dimension read)."""
    from ..encoders.loading import ModelNotFoundError
    from ..families import vector_signature

    encoder = _encoder(args)
    try:
        return encoder, vector_signature(encoder)
    except (ModelNotFoundError, ValueError) as exc:  # no weights; UnknownFamilyError; a truncate_dim not offered
        raise _Stop(str(exc)) from exc


def _checked_encoder(args: argparse.Namespace, store: Any | None) -> tuple[Any, Any]:
    """The encoder and the store (opened now when ``store`` is None), once the store said it holds (or now
    records) vectors of this model; says once which licence the model is under when it is not an open one."""
    encoder, signature = _signed_encoder(args)
    store = store if store is not None else _store(args)
    store.check_signature(signature)
    _licence_note(encoder)
    return encoder, store


def _licence_note(encoder: Any) -> None:
    family = getattr(encoder, "family", None)
    if family is not None and not family.open_licence:
        name = getattr(encoder, "model_name", None) or family.title
        note = f"note: {name} ({family.title}) is under the licence {family.licence}; check that it allows your use"
        print(note, file=sys.stderr)


def _store(args: argparse.Namespace) -> Any:
    from ..index.store import ChromaStore

    if args.chroma_url:
        _check_chroma(args.chroma_url)
    return ChromaStore.open(db=None if args.chroma_url else args.db, url=args.chroma_url, collection=args.collection)


def _check_chroma(url: str) -> None:
    """One cheap request to a `chroma run` server before anything else (a model load) happens."""
    import httpx

    base = url.rstrip("/")
    try:
        response = httpx.get(f"{base}/api/v2/heartbeat", timeout=5.0)
    except httpx.HTTPError as exc:
        raise _Stop(f"no Chroma server answers at {url} ({exc}): start one with `chroma run --path DIR`") from exc
    if response.status_code == 404:  # an older server
        response = httpx.get(f"{base}/api/v1/heartbeat", timeout=5.0)
    if response.status_code >= 400:
        raise _Stop(f"{url} does not answer as a Chroma server (HTTP {response.status_code} on its heartbeat)")


def _recorded(args: argparse.Namespace) -> tuple[Any, dict[str, Any] | None]:
    """The store when there is one already (no db folder is created here) and the signature it records."""
    if not args.chroma_url and not args.db.exists():
        return None, None
    store = _store(args)
    return store, store.signature()


def _existing_store(args: argparse.Namespace) -> Any:
    store, _ = _recorded(args)
    if store is None:
        raise _Stop(f"no index at {args.db}: run `vlm2vec index PATH --db {args.db}` first")
    return store


def _info(args: argparse.Namespace) -> int:
    from collections import Counter

    store = _existing_store(args)
    signature = store.signature() or {}
    metadatas = store.metadatas()
    kinds = Counter(str(m.get("kind", "?")) for m in metadatas)
    cached = {  # the page and clip thumbnails this index's items show (an image item shows its own file)
        m["image_path"] for m in metadatas if m.get("image_path") and m.get("image_path") != m.get("source")
    }
    sizes = [Path(p).stat().st_size for p in cached if Path(p).is_file()]
    facts = {
        "collection": args.collection,
        "where": args.chroma_url or str(args.db),
        "model": signature.get("model"),
        "family": signature.get("family"),
        "dim": signature.get("dim"),
        "truncate_dim": signature.get("truncate_dim") or None,
        "files": len(store.files()),
        "items": dict(sorted(kinds.items())),
        "cache_files": len(sizes),
        "cache_bytes": sum(sizes),
    }
    if args.json:
        print(json.dumps(facts, indent=2))
        return 0
    facts["cache"] = f"{facts.pop('cache_files')} thumbnails, {_size(int(facts.pop('cache_bytes') or 0))}"
    for key, value in facts.items():
        shown = ", ".join(f"{n} {k}s" for k, n in value.items()) if isinstance(value, dict) else value
        print(f"{key:<13}{shown if shown not in (None, '') else '-'}")
    return 0


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024 or unit == "GiB":
            break
    return f"{value:.1f} {unit}"


def _list(args: argparse.Namespace) -> int:
    from .service import file_row

    store = _existing_store(args)
    rows = [file_row(r) for r in sorted(store.files(), key=lambda r: r.source)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no files indexed")
        return 0
    print(f"{'kind':<6}{'items':>6}  {'indexed (UTC)':<26}file")
    for row in rows:
        gone = "" if row["present"] else "  (gone)"
        print(f"{row['kind']:<6}{row['items']:>6}  {row['indexed_at']:<26}{row['source']}{gone}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    from ..index.indexer import remove_paths

    store = _existing_store(args)
    items, files, twins = remove_paths(store, args.paths)
    if not files:
        raise _Stop(f"nothing indexed under {', '.join(map(str, args.paths))}")
    print(f"removed {items} item(s) of {len(files)} file(s)")
    for twin in twins:
        print(f"  {twin} shared its items (an identical copy): run `vlm2vec index` again to restore it")
    return 0


def _indexed(args: argparse.Namespace, paths: list[Path], encoder: Any, store: Any, *, prune: bool) -> Any:
    """``index_paths`` with a progress bar (stderr); bad files are listed once, at the end, not also as they are
    met (the library's warnings are quieted meanwhile unless -v)."""
    from tqdm.auto import tqdm

    from ..index.indexer import index_paths

    library_log = logging.getLogger("vlm2vec_core")
    level = library_log.level
    if not args.verbose:
        library_log.setLevel(logging.ERROR)
    try:
        with tqdm(unit=" items", desc="indexing", disable=None, file=sys.stderr) as bar:
            if getattr(args, "ray", None) is not None:
                return _indexed_on_ray(args, paths, store, prune=prune, progress=bar)
            return index_paths(
                paths,
                encoder,
                store,
                cache_dir=args.cache_dir,
                dpi=args.dpi,
                clip_seconds=args.clip_seconds,
                batch_size=args.batch_size,
                prune=prune,
                progress=bar,
                workers=getattr(args, "workers", None),
                file_timeout=getattr(args, "file_timeout", None),
                password=getattr(args, "password", None),
            )
    finally:
        library_log.setLevel(level)


def _indexed_on_ray(args: argparse.Namespace, paths: list[Path], store: Any, *, prune: bool, progress: Any) -> Any:
    """``vlm2vec index --ray``: the same index, rendered by Ray CPU tasks and embedded by Ray actors."""
    from ..index.distributed import index_with_ray

    if not args.verbose:  # Ray Data's own progress and INFO lines
        for name in ("ray", "ray.data"):
            logging.getLogger(name).setLevel(logging.WARNING)
    return index_with_ray(
        paths,
        store,
        model=None if args.remote else args.model,
        remote=args.remote,
        api_key=args.api_key or os.environ.get("VLM2VEC_API_KEY"),
        family=args.family,
        truncate_dim=args.truncate_dim,
        max_pixels=args.max_pixels,
        dtype=args.dtype,
        base_model=args.base_model,
        ray_address=args.ray or None,
        actors=args.actors,
        num_gpus_per_actor=args.gpus_per_actor,
        cache_dir=args.cache_dir,
        dpi=args.dpi,
        clip_seconds=args.clip_seconds,
        batch_size=args.batch_size,
        file_timeout=args.file_timeout,
        password=getattr(args, "password", None),
        items_per_task=args.items_per_task,
        prune=prune,
        progress=progress,
    )


def _index(args: argparse.Namespace) -> int:
    missing = [p for p in args.paths if not p.exists()]
    store, recorded = _recorded(args)
    if missing and args.prune and store is not None:  # --prune drops what the index holds under a gone folder
        held = [Path(r.source) for r in store.files()]
        missing = [p for p in missing if not any(h == p.resolve() or p.resolve() in h.parents for h in held)]
    if missing:
        raise _Stop(f"no such file or folder: {', '.join(map(str, missing))}")
    _follow_index(args, recorded)
    encoder, store = _checked_encoder(args, store)
    report = _indexed(args, args.paths, encoder, store, prune=args.prune)
    print(report.summary())
    if report.errors:
        print(f"{len(report.errors)} problem(s):", file=sys.stderr)
        for err in report.errors:
            print(f"  {err}", file=sys.stderr)
    return 1 if args.strict and report.errors else 0


def _service(args: argparse.Namespace, *, allow_empty: bool = False) -> Any:
    """The SearchService the options name: the index (which must exist; empty only with ``allow_empty``), the
    encoder it was built with unless told otherwise, and the reranker of ``--rerank`` (with ``--candidates``).
    ``search``, ``ask``, ``ui`` and ``mcp`` all start here."""
    from .service import SearchService

    store, recorded = _recorded(args)
    if store is None:
        raise _Stop(f"no index at {args.db}: run `vlm2vec index PATH --db {args.db}` first")
    if not allow_empty and store.count() == 0:
        raise _Stop(f"the collection {args.collection!r} is empty: run `vlm2vec index PATH` first")
    _follow_index(args, recorded)
    encoder, store = _checked_encoder(args, store)
    reranker = _reranker(args.rerank, args.rerank_family, args) if getattr(args, "rerank", None) else None
    return SearchService(encoder, store, reranker=reranker, candidates=getattr(args, "candidates", 50))


def _hits(args: argparse.Namespace, query: str) -> list[Any]:
    from ..encoders.loading import ModelNotFoundError

    service = _service(args)
    problems: list[Any] = []
    try:
        hits = service.search(query, k=args.k, kinds=args.types, errors=problems)
    except (ModelNotFoundError, UnknownFamilyError) as exc:  # the reranker's weights, found at first use
        raise _Stop(str(exc)) from exc
    for problem in problems:
        print(f"skipped in reranking: {problem}", file=sys.stderr)
    return hits


def _ui(args: argparse.Namespace) -> int:
    from .webui import command

    return command(args, _service)


def _mcp(args: argparse.Namespace) -> int:
    from .mcp_server import command

    return command(args, _service)


def _search(args: argparse.Namespace) -> int:
    hits = _hits(args, args.query)
    if args.json:
        print(json.dumps([_hit_row(n, h) for n, h in enumerate(hits, 1)], indent=2))
    else:
        print(_table(hits))
    if args.sheet:
        from .sheet import contact_sheet

        sheet = contact_sheet(hits, args.sheet, query=args.query, password=args.password)
        print(f"contact sheet: {sheet}", file=sys.stderr)
    return 0


_HIT_KEYS = (
    "kind", "file_name", "source", "reference", "page", "page_count", "start_seconds", "end_seconds",
    "clip_index", "image_path", "content_sha256",
)  # fmt: skip


def _hit_row(rank: int, hit: Any) -> dict[str, Any]:
    """A hit as --json prints it: always the same keys in the same order (then any others, sorted)."""
    row: dict[str, Any] = {"rank": rank, "score": round(hit.score, 6)}
    if hit.rerank_score is not None:
        row["rerank_score"] = round(hit.rerank_score, 6)
    row["id"] = hit.id
    meta = hit.metadata
    row.update({key: meta[key] for key in _HIT_KEYS if key in meta})
    row.update({key: meta[key] for key in sorted(meta) if key not in row and key != "id"})
    return row


def _table(hits: list[Any]) -> str:
    if not hits:
        return "no hits"
    reranked = any(h.rerank_score is not None for h in hits)
    lines = [f"{'#':>2}  {'score':>6}  " + ("rerank  " if reranked else "") + f"{'type':<5}  {'where':<16}  file"]
    for n, hit in enumerate(hits, 1):
        meta = hit.metadata
        if hit.kind == "page":
            where = f"page {meta.get('page')}/{meta.get('page_count')}"
        elif hit.kind == "clip":
            where = f"{clock(meta.get('start_seconds', 0))}-{clock(meta.get('end_seconds', 0))}"
        else:
            where = "-"
        second = f"{hit.rerank_score:6.3f}  " if reranked else ""
        lines.append(f"{n:>2}  {hit.score:6.3f}  {second}{hit.kind:<5}  {where:<16}  {meta.get('source', hit.id)}")
    return "\n".join(lines)


def _ask(args: argparse.Namespace) -> int:
    from .chat import ChatConfig, ChatError, ask

    hits = _hits(args, args.question)
    config = ChatConfig.from_env(args.chat_base_url, args.chat_model, args.chat_api_key)
    print(_table(hits))
    if config is None:
        print(
            "\nno chat model configured (set VLM2VEC_CHAT_BASE_URL and VLM2VEC_CHAT_MODEL, or --chat-base-url "
            "and --chat-model): showing the retrieval only"
        )
        return 0
    if not hits:
        print("\nnothing retrieved to answer from")
        return 0
    try:
        answer = ask(args.question, hits, config, password=args.password)
    except ChatError as exc:  # refused, unknown host, timed out, or an error answered
        raise _Stop(f"{exc}; the hits are above") from exc
    print(f"\n{answer}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from .server import prefer_sleeping_threads

    prefer_sleeping_threads()  # before torch loads: idle OpenMP threads must not take the cores from decoding
    from ..encoders.loading import ModelNotFoundError
    from ..encoders.local import VLM2VecEncoder

    _quiet_third_parties()
    from .server import ServerConfig, api_keys_from, serve

    if args.no_embeddings and not args.reranker:
        print("error: --no-embeddings needs --reranker MODEL", file=sys.stderr)
        return 2
    reranker = _reranker(args.reranker, args.reranker_family, args) if args.reranker else None
    encoder: Any = VLM2VecEncoder(
        args.model,
        family=args.family,
        truncate_dim=args.truncate_dim,
        max_pixels=args.max_pixels,
        dtype=args.dtype,
        base_model=args.base_model,
        device=args.device,
    )
    config = ServerConfig(
        model_name=args.served_model_name or args.model,
        api_keys=api_keys_from(key_file=args.api_key_file),
        max_batch_size=args.max_batch_size,
        max_wait_ms=args.max_wait_ms,
        max_queue=args.max_queue,
        max_body_bytes=int(args.max_body_mb * (1 << 20)),
        max_frames=args.max_frames,
        video_timeout=args.video_timeout,
    )
    try:
        if args.no_embeddings:
            encoder = None
        else:
            encoder.checkpoint  # noqa: B018 - find the weights, the family and the dimension before binding the port
            encoder.family  # noqa: B018
            encoder.dim  # noqa: B018
            _licence_note(encoder)
        if reranker is not None:
            reranker.checkpoint  # noqa: B018
            reranker.family  # noqa: B018
    except (ModelNotFoundError, ValueError) as exc:  # UnknownFamilyError, a truncate_dim the family lacks, ...
        print(f"error: {exc}", file=sys.stderr)
        return 2
    serve(encoder, config, host=args.host, port=args.port, reranker=reranker)
    return 0


def _reranker(model: str, family: str | None, args: argparse.Namespace) -> Any:
    """A local reranker, or a served one when MODEL is a URL (``vlm2vec serve --reranker`` or vLLM)."""
    from ..encoders.loading import ModelNotFoundError
    from ..rerank import RemoteReranker, Reranker

    if model.startswith(("http://", "https://")):
        key = getattr(args, "api_key", None) or os.environ.get("VLM2VEC_API_KEY")
        return RemoteReranker(model, api_key=key, family=family)
    _quiet_third_parties()
    reranker = Reranker(model, family=family, device=args.device, dtype=getattr(args, "dtype", None))
    try:
        reranker.family  # noqa: B018 - find the weights and the family now, with a clear message
    except (ModelNotFoundError, UnknownFamilyError) as exc:
        raise _Stop(str(exc)) from exc
    if not reranker.family.open_licence:
        print(f"note: {reranker.family.title} is licensed {reranker.family.licence}", file=sys.stderr)
    return reranker


def _eval(args: argparse.Namespace) -> int:
    """``vlm2vec eval``: every configuration (model x reranker x candidates) over the same queries."""
    from ..errors import InputError, MissingDependencyError

    if args.make_synthetic is not None:
        from ..index.synthetic import make_synthetic

        print(make_synthetic(args.make_synthetic).summary(), file=sys.stderr if args.json else sys.stdout)
        if args.queries is None and not args.model:
            return 0
        args.queries = args.queries or args.make_synthetic
    if args.queries is None:
        raise _Stop("give QUERIES (a JSONL file or a folder), or --make-synthetic DIR")
    try:
        return _run_eval(args)
    except (InputError, MissingDependencyError) as exc:
        raise _Stop(str(exc)) from exc


def _run_eval(args: argparse.Namespace) -> int:
    from ..index.evaluation import evaluate, format_per_query, format_table, load_queries

    queries = load_queries(args.queries, split=args.split)
    if not queries.queries:
        for bad in queries.problems:
            print(f"  {bad}", file=sys.stderr)
        raise _Stop(f"no usable labelled query in {args.queries}")
    corpus = [*queries.corpus, *args.corpus]
    missing = [str(p) for p in corpus if not p.exists()]
    if missing:
        raise _Stop(f"no such file or folder: {', '.join(missing)}")
    main: Any = None
    recorded: dict[str, Any] | None = None
    if args.chroma_url or args.db is not None:
        if args.db is not None and not args.db.exists() and not corpus:
            raise _Stop(f"no index at {args.db}: run `vlm2vec index PATH --db {args.db}` first, or give --corpus PATH")
        main = _store(args)
        recorded = main.signature()
        if main.count() == 0 and not corpus:
            raise _Stop(f"the collection {args.collection!r} is empty: index it first, or give --corpus PATH")
    elif not corpus:
        raise _Stop("nothing to evaluate against: give --db DIR (an index) or --corpus PATH (files to index)")
    specs = _eval_models(args, recorded)
    rerankers = {name: _reranker(name, args.rerank_family, args) for name in dict.fromkeys(args.rerank)}
    variants: list[tuple[str | None, int]] = [(None, 0)] + [
        (name, n) for name in rerankers for n in (args.candidates or [50])
    ]
    from tqdm.auto import tqdm

    from ..encoders.loading import ModelNotFoundError

    results = []
    problems: list[str] = []
    for spec in specs:
        encoder, signature = _signed_encoder(spec)
        _licence_note(encoder)
        store, cleanup = _eval_store(args, main, signature, corpus, encoder, problems)
        try:
            for name, candidates in variants:
                reranker = rerankers[name] if name is not None else None
                with tqdm(total=len(queries.queries), desc="queries", unit=" q", disable=None, file=sys.stderr) as bar:
                    try:
                        result = evaluate(
                            queries,
                            encoder,
                            store,
                            reranker=reranker,
                            candidates=candidates or 50,
                            kinds=args.types,
                            progress=bar,
                        )
                    except (ModelNotFoundError, UnknownFamilyError) as exc:
                        raise _Stop(str(exc)) from exc
                results.append(result)
                problems += [str(p) for p in result.problems]
        finally:
            cleanup()
    problems = list(dict.fromkeys(problems))
    if args.json:
        payload = {
            "queries": str(args.queries),
            "configurations": [r.to_dict(per_query=args.per_query, problems=False) for r in results],
            "problems": problems,
        }
        print(json.dumps(payload, indent=2))
    else:
        print(format_table(results))
        if args.per_query:
            for result in results:
                print()
                print(format_per_query(result))
    if problems:
        print(f"{len(problems)} problem(s):", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
    return 0


def _eval_models(args: argparse.Namespace, recorded: dict[str, Any] | None) -> list[argparse.Namespace]:
    """One set of encoder options per --model (default: the index's model), with its --family and --truncate-dim."""
    models = list(args.model) or [recorded["model"] if recorded and recorded.get("model") else DEFAULT_MODEL]
    paired: dict[str, list[Any]] = {}
    for option, values in (("family", args.family), ("truncate_dim", args.truncate_dim)):
        if len(values) not in (0, 1, len(models)):
            flag = "--" + option.replace("_", "-")
            raise _Stop(f"give one {flag} for every model, or one per --model in order ({len(models)})")
        paired[option] = list(values) * len(models) if len(values) == 1 else list(values) or [None] * len(models)
    specs = []
    for n, model in enumerate(models):
        spec = argparse.Namespace(**vars(args))
        spec.family, spec.truncate_dim = paired["family"][n], paired["truncate_dim"][n]
        served = model.startswith(("http://", "https://"))
        spec.remote, spec.model = ([model], None) if served else (None, model)
        if not served and recorded and model == recorded.get("model"):
            if spec.family is None:
                spec.family = recorded["family"]
            if spec.truncate_dim is None and recorded.get("truncate_dim"):
                spec.truncate_dim = recorded["truncate_dim"]
        specs.append(spec)
    return specs


def _eval_store(
    args: argparse.Namespace,
    main: Any,
    signature: dict[str, Any],
    corpus: list[Path],
    encoder: Any,
    problems: list[str],
) -> tuple[Any, Any]:
    """The index to evaluate a model over: the given one when it holds (or, empty, will hold) this model's
    vectors (the corpus indexed into it first, incrementally), else a temporary one indexed now from the corpus
    or the given index's files. Returns the store and what to call when done with it."""
    from ..index.store import SIGNATURE_FIELDS

    held = main.signature() if main is not None else None
    if main is not None and (
        main.count() == 0 or (held is not None and all(held[k] == signature[k] for k in SIGNATURE_FIELDS))
    ):
        main.check_signature(signature)
        if corpus:
            _eval_index(args, corpus, encoder, main, problems, "the index")
        return main, lambda: None
    import uuid

    try:
        import chromadb
    except ImportError as exc:
        from ..errors import require_extra

        raise require_extra("chroma", "chromadb") from exc
    from ..index.store import FILES_SUFFIX, ChromaStore

    sources = corpus or sorted({Path(r.source) for r in main.files()})
    if not sources:
        raise _Stop("the index records no files to index again for this model: give --corpus PATH")
    client = chromadb.EphemeralClient()
    name = f"vlm2vec-eval-{uuid.uuid4().hex[:12]}"
    store = ChromaStore(client, name)
    store.check_signature(signature)
    _eval_index(args, sources, encoder, store, problems, "a temporary index")

    def cleanup() -> None:
        for collection in (name, name + FILES_SUFFIX):
            client.delete_collection(collection)

    return store, cleanup


def _eval_index(
    args: argparse.Namespace, paths: list[Path], encoder: Any, store: Any, problems: list[str], where: str
) -> None:
    label = getattr(encoder, "model_name", None) or getattr(encoder, "url", None) or "the model"
    print(f"indexing for {label} into {where}", file=sys.stderr)
    report = _indexed(args, paths, encoder, store, prune=False)
    print(report.summary(), file=sys.stderr)
    problems += [f"indexing: {err}" for err in report.errors]


if __name__ == "__main__":
    sys.exit(main())
