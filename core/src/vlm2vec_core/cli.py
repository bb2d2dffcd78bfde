"""The ``vlm2vec`` command line."""

from __future__ import annotations

import argparse
import logging
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vlm2vec", description="VLM2Vec-V2 embeddings for documents and video")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the encoder over HTTP (vLLM-compatible /v1/embeddings)")
    serve.add_argument("--model", default="VLM2Vec/VLM2Vec-V2.0", help="Hub id or local directory")
    serve.add_argument("--base-model", default=None, help="local copy of an adapter's base model")
    serve.add_argument("--served-model-name", default=None, help="the model id clients see (default: --model)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--device", default=None)
    serve.add_argument("--dtype", default=None, help="bfloat16, float16 or float32")
    serve.add_argument("--api-key-file", default=None, help="file with one API key per line ($VLM2VEC_API_KEYS too)")
    serve.add_argument("--max-batch-size", type=int, default=16)
    serve.add_argument("--max-wait-ms", type=float, default=10.0)
    serve.add_argument("--max-queue", type=int, default=512)
    serve.add_argument("--max-body-mb", type=float, default=64.0)
    serve.add_argument("--max-frames", type=int, default=64)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.command == "serve":
        return _serve(args)
    return 2  # pragma: no cover - argparse enforces a command


def _serve(args: argparse.Namespace) -> int:
    from .loading import ModelNotFoundError
    from .local import VLM2VecEncoder
    from .server import ServerConfig, api_keys_from, serve

    encoder = VLM2VecEncoder(args.model, base_model=args.base_model, device=args.device, dtype=args.dtype)
    config = ServerConfig(
        model_name=args.served_model_name or args.model,
        api_keys=api_keys_from(key_file=args.api_key_file),
        max_batch_size=args.max_batch_size,
        max_wait_ms=args.max_wait_ms,
        max_queue=args.max_queue,
        max_body_bytes=int(args.max_body_mb * (1 << 20)),
        max_frames=args.max_frames,
    )
    try:
        encoder.checkpoint  # noqa: B018 - find the weights before binding the port
    except ModelNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201 - the CLI speaks to its user
        return 2
    serve(encoder, config, host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
