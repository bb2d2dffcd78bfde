"""Remote over loopback vs local, and what batching across requests gains, measured side by side in one run.

    python bench/remote.py                       # tiny test checkpoint built here (random weights: timing only)
    python bench/remote.py --model DIR           # any checkpoint directory

1. 64 PDF pages (generated A4, rendered at 144 dpi): ``VLM2VecEncoder.encode_documents`` in this process vs
   ``RemoteEncoder.encode_documents`` against ``vlm2vec serve`` on 127.0.0.1, with images sent raw (the
   default with our server) and as PNG (what vLLM gets): median seconds of ``--rounds`` interleaved rounds,
   remote/local and max |local - remote| for each.
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
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "vlm2vec_core.apps.cli"]
        cmd += ["serve", "--model", str(model), "--host", "127.0.0.1", "--port", str(self.port), *extra]
        env = {k: v for k, v in os.environ.items() if k != "VLM2VEC_API_KEYS"} | {"HF_HUB_OFFLINE": "1"}
        env["OMP_WAIT_POLICY"] = "PASSIVE"  # what `vlm2vec serve` sets (server.prefer_sleeping_threads)
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


def wire_costs(page: Any, side: int) -> dict[str, dict[str, float]]:
    """Milliseconds to put one fitted image on the wire and take it off (the client's ``image_data_url`` and the
    server's ``decode_image_url``, one thread) and its size in KiB, per form: a rendered page, a noisy photo."""
    import numpy as np
    from PIL import Image

    from vlm2vec_core.encoders.wire import decode_image_url, image_data_url
    from vlm2vec_core.media.images import fit_image

    rng = np.random.default_rng(1)
    photo = fit_image(Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)))
    costs: dict[str, dict[str, float]] = {}
    for name, image in (("page", page), ("photo", photo)):
        for form in ("raw", "png"):
            started = time.perf_counter()
            for _ in range(10):
                url = image_data_url(image, form)
                back = decode_image_url(url, "bench", max_decode_pixels=10**8)
            ms = (time.perf_counter() - started) / 10 * 1000
            assert np.array_equal(np.asarray(back), np.asarray(image))
            costs[f"{name} {image.width}x{image.height} {form}"] = {"ms": round(ms, 2), "kib": len(url) // 1024}
    return costs


def request_bodies(texts: list[str], images: list[Any], max_pixels: int) -> dict[str, list[dict[str, Any]]]:
    """One body per item, built by the client's own code path (RemoteEncoder._plan)."""
    from vlm2vec_core.encoders.remote import RemoteEncoder
    from vlm2vec_core.tasks import resolve_instruction

    enc = RemoteEncoder("http://127.0.0.1:9", family="vlm2vec-v2", max_pixels=max_pixels)  # plans, never connects
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
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (medians reported)")
    parser.add_argument("--no-rps", dest="rps", action="store_false", help="skip the requests/s part")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    import numpy as np
    from PIL import Image

    from encode import make_pdf
    from vlm2vec_core import VLM2VecEncoder, pdf_pages
    from vlm2vec_core.encoders.remote import RemoteEncoder

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
            clients = {
                form: RemoteEncoder(batched.url, max_concurrency=8, max_pixels=args.max_pixels, media_format=form)
                for form in (None, "png")  # None: raw RGB, which our server lists in /v1/models
            }
            clients[None].dim  # noqa: B018 - discovery: the server lists raw in its media formats
            assert clients[None].wire_format() == "raw"
            runs: dict[str, Any] = {"local": local.encode_documents}
            runs |= {("raw" if form is None else form): c.encode_documents for form, c in clients.items()}
            for run in runs.values():  # warm every path
                run(pages[:2], task="visdoc")
            seconds: dict[str, list[float]] = {name: [] for name in runs}
            vectors: dict[str, Any] = {}
            for _ in range(args.rounds):  # interleaved, so a noisy neighbour slows every path alike
                for name, run in runs.items():
                    vectors[name], took = timed(lambda run=run: run(pages, task="visdoc"))
                    seconds[name].append(took)
            for c in clients.values():
                c.close()
            costs = wire_costs(clients[None]._plan(pages[:1], None, 1, None)[0][0].image, args.image_side)
            median = {name: float(np.median(s)) for name, s in seconds.items()}
            diffs = {name: float(np.abs(vectors["local"] - vectors[name]).max()) for name in runs if name != "local"}

            texts = [f"query {i}: revenue by region in quarter {i % 4 + 1}" for i in range(args.text_requests)]
            rng = np.random.default_rng(0)
            side = args.image_side
            images = [
                Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8))
                for _ in range(args.image_requests)
            ]
            bodies = request_bodies(texts, images, args.max_pixels)
            rps: dict[str, dict[str, float]] = {}
            for kind, reqs in bodies.items() if args.rps else ():
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
            "rounds": args.rounds,
            "local_s": round(median["local"], 2),
            "remote_s": {form: round(median[form], 2) for form in diffs},
            "remote_over_local": {form: round(median[form] / median["local"], 2) for form in diffs},
            "max_abs_diff": diffs,
            "all_s": {name: [round(x, 2) for x in s] for name, s in seconds.items()},
        },
        "wire_ms_and_kib": costs,
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
        f"{p['n']} PDF pages ({p['pixels_each']:,} px each before fitting), median of {p['rounds']} interleaved "
        f"rounds: local {p['local_s']} s",
    ]
    for form, ratio in p["remote_over_local"].items():
        lines.append(
            f"  remote over loopback, {form} images: {p['remote_s'][form]} s -> remote/local {ratio}x; "
            f"max |local - remote| = {p['max_abs_diff'][form]:.2e}"
        )
    lines.append(
        "one image on and off the wire (client encode + server decode, one thread): "
        + "; ".join(f"{k} {v['ms']} ms, {v['kib']} KiB" for k, v in report["wire_ms_and_kib"].items())
    )
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
