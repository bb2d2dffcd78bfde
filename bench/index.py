"""End-to-end indexing: pages/s for a generated PDF with the tiny checkpoint on the CPU, the share of wall time
spent outside the model's forward pass, and peak memory indexing a short and a long PDF (each in a fresh process).

    .venv/bin/python bench/index.py                       # 100 pages at 144 dpi; memory: 100 vs 1,000 pages
    .venv/bin/python bench/index.py --mem-dpi 72          # the memory runs at a lower dpi (faster)

Results in bench/README.md ("Indexing"). The PDFs hold the four sample page drawings of examples/ (letter size);
the long one repeats the short one's pages (PDFium copies them), so both have the same pages per second.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "examples")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def make_pdf(path: Path, n_pages: int) -> Path:
    """A PDF of ``n_pages`` letter pages: 100 drawn pages (sample chart, diagram, table, photo), repeated."""
    import pypdfium2

    from make_sample_data import architecture_diagram, photo_page, results_table, revenue_chart

    drawers = [revenue_chart, architecture_diagram, results_table, photo_page]
    base = path.with_name(f"base-{min(n_pages, 100)}.pdf")
    if not base.exists():
        pages = [drawers[i % len(drawers)]() for i in range(min(n_pages, 100))]
        pages[0].save(base, save_all=True, append_images=pages[1:], resolution=150)
        del pages
    if n_pages <= 100:
        return base if base == path else _copy(base, path)
    source = pypdfium2.PdfDocument(base)
    out = pypdfium2.PdfDocument.new()
    while len(out) < n_pages:
        out.import_pages(source, list(range(min(len(source), n_pages - len(out)))))
    out.save(path)
    out.close()
    source.close()
    return path


def _copy(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes())
    return dst


def index_once(model: Path, pdf: Path, work: Path, dpi: float, batch_size: int) -> dict[str, Any]:
    """Load the encoder, index ``pdf`` into a fresh embedded Chroma store; timings and the peak RSS."""
    from vlm2vec_core import VLM2VecEncoder
    from vlm2vec_core.indexer import index_paths
    from vlm2vec_core.store import ChromaStore

    started = time.perf_counter()
    encoder = VLM2VecEncoder(model, device="cpu").load()
    load_s = time.perf_counter() - started
    store = ChromaStore.open(db=work / "db")
    encoder.timings.clear()
    started = time.perf_counter()
    report = index_paths([pdf], encoder, store, cache_dir=work / "cache", dpi=dpi, batch_size=batch_size)
    wall = time.perf_counter() - started
    pages = report.items["page"]
    assert pages == store.count(), (pages, store.count(), report.errors)
    forward = encoder.timings.get("forward", 0.0)
    return {
        "pages": pages,
        "dpi": dpi,
        "load_s": round(load_s, 2),
        "wall_s": round(wall, 2),
        "pages_per_s": round(pages / wall, 2),
        "forward_s": round(forward, 2),
        "outside_model_share": round(1 - forward / wall, 3),
        "stages_s": {k: round(v, 2) for k, v in encoder.timings.items()},
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def in_fresh_process(model: Path, pdf: Path, work: Path, dpi: float, batch_size: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", str(pdf), "--model", str(model), "--work", str(work)]
    cmd += ["--dpi", str(dpi), "--batch-size", str(batch_size)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"child failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=100, help="pages of the throughput PDF")
    parser.add_argument("--dpi", type=float, default=144, help="render resolution of the throughput run")
    parser.add_argument("--mem-pages", type=int, nargs=2, default=[100, 1000], metavar=("SHORT", "LONG"))
    parser.add_argument("--mem-dpi", type=float, default=144, help="render resolution of the memory runs")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--model", type=Path, default=None, help="a checkpoint (default: build the tiny one)")
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()

    if args.child is not None:  # one measured run in a fresh process: print its JSON
        print(json.dumps(index_once(args.model, args.child, args.work, args.dpi, args.batch_size)))
        return

    import torch

    with tempfile.TemporaryDirectory(prefix="bench-index-") as tmp:
        work = Path(tmp)
        model = args.model
        if model is None:
            from tinymodel import build_tiny_checkpoint

            model = build_tiny_checkpoint(work / "tiny")
        print(f"# {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads, model {model.name}")  # fmt: skip

        pdf = make_pdf(work / f"throughput-{args.pages}.pdf", args.pages)
        run = in_fresh_process(model, pdf, work / "throughput", args.dpi, args.batch_size)
        print(f"throughput: {json.dumps(run)}")
        print(
            f"  {run['pages']} pages at {args.dpi:g} dpi: {run['pages_per_s']} pages/s end to end "
            f"({run['wall_s']} s), model forward {run['forward_s']} s, "
            f"outside the model {run['outside_model_share']:.0%} of wall time"
        )
        if args.skip_memory:
            return
        peaks = []
        for n in args.mem_pages:
            pdf = make_pdf(work / f"memory-{n}.pdf", n)
            run = in_fresh_process(model, pdf, work / f"memory-{n}", args.mem_dpi, args.batch_size)
            print(f"memory {n}: {json.dumps(run)}")
            peaks.append(run["peak_rss_mib"])
        ratio = peaks[1] / peaks[0]
        print(
            f"  peak RSS {args.mem_pages[0]} pages {peaks[0]:.0f} MiB, {args.mem_pages[1]} pages {peaks[1]:.0f} MiB "
            f"at {args.mem_dpi:g} dpi: ratio {ratio:.2f} (target <= 1.3: {'met' if ratio <= 1.3 else 'MISSED'})"
        )


if __name__ == "__main__":
    main()
