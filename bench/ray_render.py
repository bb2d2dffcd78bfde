"""The Ray path's render stage, side by side in one run: one task per file (how it was first built) against the
tasks ``index_with_ray`` plans now (a long PDF in ranges of ``items_per_task`` pages, small files grouped).

Starts a local Ray cluster on this machine's CPUs and runs only the render stage (the CPU tasks that read, render
and fit pages and images; no encoder), with the same task function and the same options either way: only the
cut into tasks differs (``items_per_task=1`` gives one image a task; a size above the PDF's page count gives the
whole PDF one task).

    .venv/bin/python bench/ray_render.py                     # 256 small PNGs and a 160-page PDF, 2 rounds
    .venv/bin/python bench/ray_render.py --images 64 --pages 48 --rounds 1   # quicker
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests")]
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256, help="small PNGs (64x64)")
    parser.add_argument("--pages", type=int, default=160, help="pages of the generated letter-size PDF")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--dpi", type=float, default=144)
    args = parser.parse_args()

    import ray.data

    import ray
    from mediafixtures import make_image, make_pdf
    from vlm2vec_core import FakeEncoder
    from vlm2vec_core.index import distributed
    from vlm2vec_core.index.indexer import task_for_kind
    from vlm2vec_core.index.pipeline import fitting_of, sampler_args
    from vlm2vec_core.media.documents import file_digest, kind_of

    work = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    images = work / "images"
    images.mkdir()
    for n in range(args.images):
        make_image(images / f"i{n:04d}.png", size=(64, 64), seed=n)
    pdfs = work / "pdf"
    pdfs.mkdir()
    make_pdf(pdfs / "long.pdf", args.pages)

    encoder = FakeEncoder()
    family, frames = sampler_args(encoder)
    options = {
        "cache_dir": str(work / "cache"),
        "dpi": args.dpi,
        "clip_seconds": 10.0,
        "tasks": dict(task_for_kind(encoder)),
        "fitting": fitting_of(encoder),
        "family": family,
        "num_frames": frames,
        "timeout": None,
    }
    cpus = len(os.sched_getaffinity(0))
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False

    def render(files: list[tuple[str, str, str]], items_per_task: int) -> tuple[float, int, int]:
        """Seconds to render ``files`` cut into tasks of ``items_per_task``; the tasks and rows it made."""
        shutil.rmtree(work / "cache", ignore_errors=True)
        started = time.perf_counter()
        counts = distributed._counted(files, 10.0, None, 1)
        plan = distributed.plan_tasks(files, counts, items_per_task)
        rows = [{"parts": distributed._packed(task, {})} for task in plan]
        blocks = ray.data.from_items(rows, override_num_blocks=len(rows))
        out = blocks.flat_map(partial(distributed._render_task, **options), num_cpus=1)
        made = sum(len(batch["row"]) for batch in out.iter_batches(batch_size=None))
        return time.perf_counter() - started, len(plan), made

    try:
        print(f"# {cpus} CPUs, ray {ray.__version__}, render stage only (no encoder), fastest of {args.rounds}")
        cases = [
            (f"{args.images} PNGs of 64x64", images, 1),
            (f"one {args.pages}-page PDF at {args.dpi:g} dpi", pdfs, 10**9),
        ]
        for title, folder, one_per_file in cases:
            files = sorted((str(p), file_digest(p), str(kind_of(p))) for p in folder.iterdir())
            render(files, distributed.ITEMS_PER_TASK)  # warm: workers and their decoding processes start
            best: dict[str, tuple[float, int]] = {}
            for _ in range(args.rounds):
                for label, size in (("one task per file", one_per_file), ("planned", distributed.ITEMS_PER_TASK)):
                    took, tasks, _ = render(files, size)
                    if label not in best or took < best[label][0]:
                        best[label] = (took, tasks)
            (old, old_tasks), (new, new_tasks) = best["one task per file"], best["planned"]
            print(f"  {title}: one task per file {old:.2f} s ({old_tasks} tasks), "
                  f"planned ({distributed.ITEMS_PER_TASK} items a task) {new:.2f} s ({new_tasks} tasks): "
                  f"{old / new:.2f}x")  # fmt: skip
    finally:
        ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
