"""Encoding throughput and where the time goes, measured side by side in one run.

    python bench/encode.py                      # tiny test checkpoint on the CPU
    python bench/encode.py --full-size          # Qwen2-VL-2B's architecture, random weights (for a GPU)
    python bench/encode.py --family all         # every model family (tiny Qwen2-VL / Qwen3-VL checkpoints)
    python bench/encode.py --family qwen3-vl-embedding --full-size   # Qwen3-VL-2B's architecture

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
    """Our patching (uint8 patches, float work on the device) beside transformers' processor for the backbone."""
    from vlm2vec_core.media.prepare import prepare_all

    task = encoder.family.task_for_kind["page"]
    batch = list(
        prepare_all(pages, encoder.family.instruction(task, "document"), encoder.limits, family=encoder.family)
    )
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
    from vlm2vec_core.families import FAMILIES

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full-size", action="store_true", help="the 2B architecture of each backbone, random weights")
    parser.add_argument("--family", action="append", choices=[*FAMILIES, "all"], help="repeatable; default vlm2vec-v2")
    parser.add_argument("--device", default=None)
    parser.add_argument("--pages", type=int, default=None)
    parser.add_argument("--video-seconds", type=int, default=None)
    parser.add_argument("--queries", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-pixels", type=int, default=None, help="per image or frame (default: the family's)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    import torch

    import tinymodel
    from vlm2vec_core import VLM2VecEncoder, pdf_pages, video_clips

    families = list(FAMILIES) if "all" in (args.family or []) else (args.family or ["vlm2vec-v2"])
    builders = {
        ("qwen2-vl", False): tinymodel.build_tiny_checkpoint,
        ("qwen2-vl", True): tinymodel.build_full_size_checkpoint,
        ("qwen3-vl", False): tinymodel.build_tiny_qwen3vl_checkpoint,
        ("qwen3-vl", True): tinymodel.build_full_size_qwen3vl_checkpoint,
    }
    n_pages = args.pages or (64 if args.full_size else 16)
    video_seconds = args.video_seconds or (160 if args.full_size else 40)
    work = Path(tempfile.mkdtemp(prefix="vlm2vec-bench-"))
    pdf = make_pdf(work / "bench.pdf", n_pages)
    video = make_video(work / "bench.mp4", video_seconds)
    pages, render_s = timed(lambda: list(pdf_pages(pdf, dpi=144)))
    queries = [
        f"which page shows the {w} for quarter {i % 4 + 1}?"
        for i, w in enumerate(["revenue chart", "architecture", "regional results", "team photo"] * (args.queries // 4))
    ]
    checkpoints: dict[str, tuple[Path, float]] = {}
    runs = []
    preprocessing = None
    for name in families:
        profile = FAMILIES[name]
        if profile.backbone not in checkpoints:
            build = builders[(profile.backbone, args.full_size)]
            checkpoints[profile.backbone] = timed(lambda b=build, n=profile.backbone: b(work / n))
        model_dir, build_s = checkpoints[profile.backbone]
        encoder = VLM2VecEncoder(model_dir, family=name, device=args.device, max_pixels=args.max_pixels)
        _, load_s = timed(encoder.load)
        encoder.encode_documents([f"warm-up {i}" for i in range(4)], task=profile.task_for_kind["page"])
        tasks = profile.task_for_kind
        results = [
            run_encode(encoder, "text queries", queries, 0.0, batch_size=args.batch_size, task=tasks["page"]),
            run_encode(encoder, "PDF pages", pages, render_s, batch_size=args.batch_size, task=tasks["page"]),
        ]
        if "clip" in tasks:
            sampler = profile.sampler(encoder.limits.num_frames)
            clips, decode_s = timed(lambda s=sampler: list(video_clips(video, clip_seconds=5.0, sampler=s)))
            results.append(
                run_encode(encoder, "video clips", clips, decode_s, batch_size=args.batch_size, task=tasks["clip"])
            )
        if preprocessing is None:
            preprocessing = bench_features(encoder, pages[: args.batch_size])
        runs.append(
            {
                "family": name,
                "model": profile.backbone + (" 2B architecture, random bf16 weights" if args.full_size else " tiny"),
                "max_pixels": encoder.limits.max_pixels,
                "num_frames": encoder.limits.num_frames,
                "checkpoint_build_s": round(build_s, 1),
                "model_load_s": round(load_s, 1),
                "encode": results,
            }
        )
        del encoder

    from loaders import bench_pdf, bench_video

    report = {
        "device": args.device or ("cuda" if torch.cuda.is_available() else "cpu"),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() and args.device != "cpu" else None,
        "cpu": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
        "runs": runs,
        "features_vs_transformers_processor": preprocessing,
        "loaders": {"pdf": bench_pdf(pdf, dpi=144), "video": bench_video(video, clip_seconds=10.0)},
    }
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0


def print_report(report: dict[str, Any]) -> None:
    print(
        f"on {report['device']} ({report['gpu'] or report['cpu']}, {report['torch_threads']} threads), "
        f"batch size {report['batch_size']}"
    )
    print(f"{'family':<20}{'input':<14}{'items':>6}{'items/s':>10}  stage split (s)")
    for run in report["runs"]:
        for row in run["encode"]:
            stages = ", ".join(f"{k} {v}" for k, v in row["stages_s"].items())
            print(f"{run['family']:<20}{row['kind']:<14}{row['items']:>6}{row['items_per_s']:>10}  {stages}")
    f = report["features_vs_transformers_processor"]
    print(
        f"preprocessing {f['pages']} pages to model inputs ({report['runs'][0]['family']}): ours {f['ours_s']} s, "
        f"transformers' processor {f['transformers_s']} s ({f['speedup']}x)"
    )
    print("loaders:")
    for name, result in report["loaders"].items():
        print(f"  {name}: " + ", ".join(f"{k}={v}" for k, v in result.items()))


if __name__ == "__main__":
    sys.exit(main())
