"""Remote over loopback vs local, and what batching across requests gains, measured side by side in one run.

    python bench/remote.py                       # tiny test checkpoint built here (random weights: timing only)
    python bench/remote.py --model DIR           # any checkpoint directory

1. 64 PDF pages (generated A4, rendered at 144 dpi): ``VLM2VecEncoder.encode_documents`` in this process vs
   ``RemoteEncoder.encode_documents`` against ``vlm2vec serve`` on 127.0.0.1 (seconds, ratio, max |diff|).
2. Requests/s with 1 vs 16 concurrent clients, each request one text or one image (pre-built bodies, so the
   client's own preparation is not timed), against the server as configured (``--max-batch-size 16``) and
   against a second server with ``--max-batch-size 1``: the 16-client gap between the two is what batching
   across requests gains; the rest of the 1 -> 16 gain is overlap of decoding, HTTP and the model.

Client and servers share this machine's cores, so on a small CPU the client's load is part of the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "examples"), str(ROOT / "bench")]

from procs import Service, free_port  # noqa: E402 - tests/ is on the path from here on


class Server(Service):
    """``vlm2vec serve`` in a subprocess, on a free loopback port, without API keys."""

    def __init__(self, model: Path, log: Path, *extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        exe = Path(sys.executable).with_name("vlm2vec")
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "vlm2vec_core.cli"]
        cmd += ["serve", "--model", str(model), "--host", "127.0.0.1", "--port", str(self.port), *extra]
        env = {k: v for k, v in os.environ.items() if k != "VLM2VEC_API_KEYS"} | {"HF_HUB_OFFLINE": "1"}
        super().__init__(cmd, f"{self.url}/health", log, env)

    def wait(self, timeout: float = 120.0) -> Server:
        self.start(timeout)
        return self


def timed(fn: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


async def hammer(url: str, bodies: list[dict[str, Any]], clients: int) -> float:
    """Send every body once with ``clients`` concurrent connections; requests per second."""
    import httpx

    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=300.0, limits=limits) as client:

        async def worker() -> None:
            while True:
                try:
                    body = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                response = await client.post("/v1/embeddings", json=body)
                response.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return len(bodies) / (time.perf_counter() - started)


def request_bodies(texts: list[str], images: list[Any], max_pixels: int) -> dict[str, list[dict[str, Any]]]:
    """One body per item, built by the client's own code path (RemoteEncoder._plan)."""
    from vlm2vec_core.remote import RemoteEncoder
    from vlm2vec_core.tasks import resolve_instruction

    enc = RemoteEncoder("http://127.0.0.1:9", max_pixels=max_pixels)  # only plans, never connects
    try:
        _, text_jobs = enc._plan(texts, resolve_instruction("visdoc", "query"), 1, None)
        _, image_jobs = enc._plan(images, resolve_instruction("visdoc", "document"), 1, None)
        return {
            "text": [enc._with_defaults(body) for _, body in text_jobs],
            "image": [enc._with_defaults(body) for _, body in image_jobs],
        }
    finally:
        enc.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="checkpoint directory (default: tiny, built here)")
    parser.add_argument("--pages", type=int, default=64)
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=200_704,
        help="pixel cap per page/image on both sides (default 200,704 = 256 visual tokens, to stay under 3 min on "
        "a small CPU; the model's own is 1,003,520)",
    )
    parser.add_argument("--text-requests", type=int, default=128)
    parser.add_argument("--image-requests", type=int, default=32)
    parser.add_argument("--image-side", type=int, default=448, help="side of the images in the rps test (px)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    import numpy as np
    from PIL import Image

    from encode import make_pdf
    from vlm2vec_core import VLM2VecEncoder, pdf_pages
    from vlm2vec_core.remote import RemoteEncoder

    with tempfile.TemporaryDirectory(prefix="vlm2vec-bench-remote-") as tmp_name:
        tmp = Path(tmp_name)
        model = args.model
        if model is None:
            from tinymodel import build_tiny_checkpoint

            model = build_tiny_checkpoint(tmp / "tiny")
        batched = Server(model, tmp / "batched.log", "--max-batch-size", "16")
        unbatched = Server(model, tmp / "unbatched.log", "--max-batch-size", "1")
        try:
            pdf = make_pdf(tmp / "pages.pdf", args.pages)
            pages = list(pdf_pages(pdf, dpi=144))
            local = VLM2VecEncoder(model, device="cpu", max_pixels=args.max_pixels).load()
            batched.wait()
            unbatched.wait()
            remote = RemoteEncoder(batched.url, max_concurrency=8, max_pixels=args.max_pixels)
            local.encode_documents(pages[:2], task="visdoc")  # warm both paths
            remote.encode_documents(pages[:2], task="visdoc")
            local_vecs, local_s = timed(lambda: local.encode_documents(pages, task="visdoc"))
            remote_vecs, remote_s = timed(lambda: remote.encode_documents(pages, task="visdoc"))
            remote.close()
            diff = float(np.abs(local_vecs - remote_vecs).max())

            texts = [f"query {i}: revenue by region in quarter {i % 4 + 1}" for i in range(args.text_requests)]
            rng = np.random.default_rng(0)
            side = args.image_side
            images = [
                Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8))
                for _ in range(args.image_requests)
            ]
            bodies = request_bodies(texts, images, args.max_pixels)
            rps: dict[str, dict[str, float]] = {}
            for kind, reqs in bodies.items():
                asyncio.run(hammer(batched.url, reqs[:4], 4))  # warm-up
                rps[kind] = {
                    "1 client": asyncio.run(hammer(batched.url, reqs, 1)),
                    f"{args.clients} clients": asyncio.run(hammer(batched.url, reqs, args.clients)),
                    f"{args.clients} clients, max-batch-size 1": asyncio.run(hammer(unbatched.url, reqs, args.clients)),
                }
        finally:
            batched.stop()
            unbatched.stop()

    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "model": "tiny test checkpoint" if args.model is None else str(args.model),
        "max_pixels": args.max_pixels,
        "pages": {
            "n": len(pages),
            "pixels_each": pages[0].image.width * pages[0].image.height,
            "local_s": round(local_s, 2),
            "remote_s": round(remote_s, 2),
            "remote_over_local": round(remote_s / local_s, 2),
            "max_abs_diff": diff,
        },
        "requests_per_s": {k: {c: round(v, 1) for c, v in d.items()} for k, d in rps.items()},
    }
    print_report(report, args.clients)
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def print_report(report: dict[str, Any], clients: int) -> None:
    p = report["pages"]
    lines = [
        f"machine: {report['machine']}; model: {report['model']}; max_pixels {report['max_pixels']:,}",
        f"{p['n']} PDF pages ({p['pixels_each']:,} px each before fitting): local {p['local_s']} s, "
        f"remote over loopback {p['remote_s']} s -> remote/local {p['remote_over_local']}x; "
        f"max |local - remote| = {p['max_abs_diff']:.2e}",
    ]
    for kind, d in report["requests_per_s"].items():
        one, many, unbatched = d["1 client"], d[f"{clients} clients"], d[f"{clients} clients, max-batch-size 1"]
        lines.append(
            f"single-{kind} requests/s: 1 client {one}, {clients} clients {many} ({many / one:.2f}x); "
            f"{clients} clients without batching (max-batch-size 1) {unbatched} "
            f"-> batching gains {many / unbatched:.2f}x"
        )
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
