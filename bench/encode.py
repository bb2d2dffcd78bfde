"""Encoding throughput and where the time goes, measured side by side in one run.

    python bench/encode.py                      # tiny test checkpoint on the CPU
    python bench/encode.py --full-size          # Qwen2-VL-2B's architecture, random weights (for a GPU)

Prints items/s for text queries, PDF pages and video clips, the time split by stage (render or decode,
preparation, processor, forward), and the loaders beside their baselines (pdftoppm, PyAV decoding every
frame). Nothing is downloaded: the checkpoint is built here with random weights (timing only).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "examples"), str(ROOT / "bench")]


def make_pdf(path: Path, n_pages: int) -> Path:
    from make_sample_data import architecture_diagram, photo_page, results_table, revenue_chart

    drawers = [revenue_chart, architecture_diagram, results_table, photo_page]
    pages = [drawers[i % len(drawers)]() for i in range(n_pages)]
    pages[0].save(path, save_all=True, append_images=pages[1:], resolution=150)
    return path


def make_video(path: Path, seconds: int, fps: int = 30, size: tuple[int, int] = (640, 360)) -> Path:
    from fractions import Fraction

    import av

    from make_sample_data import video_frame

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps, 1))
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(seconds * fps):
            frame = video_frame((i / fps) % 20.0, size)
            container.mux(stream.encode(av.VideoFrame.from_image(frame)))
        container.mux(stream.encode(None))
    return path


def timed(fn: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def run_encode(encoder: Any, label: str, items: list[Any], load_seconds: float, **kwargs: Any) -> dict[str, Any]:
    encoder.timings.clear()
    _, seconds = timed(
        lambda: (
            encoder.encode_documents(items, **kwargs)
            if label != "text queries"
            else encoder.encode_queries(items, **kwargs)
        )
    )
    stages = {k: round(v, 3) for k, v in encoder.timings.items()}
    total = load_seconds + seconds
    return {
        "kind": label,
        "items": len(items),
        "items_per_s": round(len(items) / total, 2),
        "seconds": round(total, 3),
        "stages_s": {"render_or_decode": round(load_seconds, 3), **stages},
    }


def bench_features(encoder: Any, pages: list[Any], repeats: int = 3) -> dict[str, Any]:
    """Our patching (uint8 patches, float work on the device) beside transformers' Qwen2-VL processor."""
    from vlm2vec_core.prepare import prepare_all
    from vlm2vec_core.tasks import get_preset

    batch = list(prepare_all(pages, get_preset("visdoc").document, encoder.limits))
    kwargs = {"images_kwargs": {"do_resize": False}, "padding": True, "return_tensors": "pt"}

    def ours() -> None:
        encoder._features(batch)["pixel_values"].sum().item()  # wait for the device

    def theirs() -> None:
        out = encoder._processor(text=[p.prompt for p in batch], images=[p.image for p in batch], **kwargs)
        out["pixel_values"].to(encoder.device).to(encoder._model.dtype).sum().item()

    ours(), theirs()  # warm-up
    ours_s = min(timed(ours)[1] for _ in range(repeats))
    theirs_s = min(timed(theirs)[1] for _ in range(repeats))
    return {
        "pages": len(batch),
        "ours_s": round(ours_s, 4),
        "transformers_s": round(theirs_s, 4),
        "speedup": round(theirs_s / ours_s, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full-size", action="store_true", help="Qwen2-VL-2B architecture, random weights")
    parser.add_argument("--device", default=None)
    parser.add_argument("--pages", type=int, default=None)
    parser.add_argument("--video-seconds", type=int, default=None)
    parser.add_argument("--queries", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-pixels", type=int, default=1_003_520, help="per image or frame (model default)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    import torch

    from tinymodel import build_full_size_checkpoint, build_tiny_checkpoint
    from vlm2vec_core import VLM2VecEncoder, pdf_pages, video_clips

    n_pages = args.pages or (64 if args.full_size else 16)
    video_seconds = args.video_seconds or (160 if args.full_size else 40)
    work = Path(tempfile.mkdtemp(prefix="vlm2vec-bench-"))
    build = build_full_size_checkpoint if args.full_size else build_tiny_checkpoint
    (model_dir, build_s) = timed(lambda: build(work / "model"))
    pdf = make_pdf(work / "bench.pdf", n_pages)
    video = make_video(work / "bench.mp4", video_seconds)

    encoder = VLM2VecEncoder(model_dir, device=args.device, max_pixels=args.max_pixels)
    _, load_s = timed(encoder.load)
    encoder.encode_documents([f"warm-up {i}" for i in range(4)])  # first call pays one-off costs

    queries = [
        f"which page shows the {w} for quarter {i % 4 + 1}?"
        for i, w in enumerate(["revenue chart", "architecture", "regional results", "team photo"] * (args.queries // 4))
    ]
    pages, render_s = timed(lambda: list(pdf_pages(pdf, dpi=144)))
    clips, decode_s = timed(lambda: list(video_clips(video, clip_seconds=5.0)))
    results = [
        run_encode(encoder, "text queries", queries, 0.0, batch_size=args.batch_size),
        run_encode(encoder, "PDF pages", pages, render_s, batch_size=args.batch_size, task="visdoc"),
        run_encode(encoder, "video clips", clips, decode_s, batch_size=args.batch_size, task="moment"),
    ]

    from loaders import bench_pdf, bench_video

    preprocessing = bench_features(encoder, pages[: args.batch_size])

    loaders = {"pdf": bench_pdf(pdf, dpi=144), "video": bench_video(video, clip_seconds=10.0)}
    report = {
        "model": "Qwen2-VL-2B architecture, random bf16 weights" if args.full_size else "tiny test checkpoint",
        "device": encoder.device,
        "gpu": torch.cuda.get_device_name(0) if encoder.device.startswith("cuda") else None,
        "cpu": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
        "max_pixels": args.max_pixels,
        "checkpoint_build_s": round(build_s, 1),
        "model_load_s": round(load_s, 1),
        "encode": results,
        "features_vs_transformers_processor": preprocessing,
        "loaders": loaders,
    }
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0


def print_report(report: dict[str, Any]) -> None:
    print(
        f"model: {report['model']} on {report['device']} ({report['gpu'] or report['cpu']}, "
        f"{report['torch_threads']} threads), batch size {report['batch_size']}, load {report['model_load_s']} s"
    )
    print(f"{'input':<14}{'items':>6}{'items/s':>10}  stage split (s)")
    for row in report["encode"]:
        stages = ", ".join(f"{k} {v}" for k, v in row["stages_s"].items())
        print(f"{row['kind']:<14}{row['items']:>6}{row['items_per_s']:>10}  {stages}")
    f = report["features_vs_transformers_processor"]
    print(
        f"preprocessing {f['pages']} pages to model inputs: ours {f['ours_s']} s, transformers' processor "
        f"{f['transformers_s']} s ({f['speedup']}x)"
    )
    print("loaders:")
    for name, result in report["loaders"].items():
        print(f"  {name}: " + ", ".join(f"{k}={v}" for k, v in result.items()))


if __name__ == "__main__":
    sys.exit(main())
