"""End-to-end indexing: the pipeline side by side (render-only, FakeEncoder in process and with workers on one PDF
and on the same pages as 4 PDFs, and on a real PDF when there is one (--real-pdf), milliseconds per page of each
step a worker takes, the tiny checkpoint, cache per page, remote vs local, clip sampling vs decoding every frame),
then pages/s for a generated PDF with the tiny checkpoint in a fresh process, the share of wall time spent outside
the model's forward pass, and peak memory indexing a short and a long PDF (each in a fresh process).

    .venv/bin/python bench/index.py                       # everything: pipeline on 60 pages, 100, 100 vs 1,000
    .venv/bin/python bench/index.py --only pipeline       # just the side-by-side pipeline table
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
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "examples"), str(ROOT / "bench")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
REAL_PDF = Path("/usr/share/doc/libtasn1-doc/libtasn1.pdf")  # Debian's libtasn1-doc: a 36-page text manual


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


def render_only(pdf: Path, dpi: float) -> float:
    """Pages/s of plain pypdfium2 in this process: open, render every page, convert to an RGB PIL image."""
    import pypdfium2

    started = time.perf_counter()
    document = pypdfium2.PdfDocument(pdf)
    for index in range(len(document)):
        page = document[index]
        bitmap = page.render(scale=dpi / 72)
        image = bitmap.to_pil()
        image.convert("RGB") if image.mode != "RGB" else image.copy()
        bitmap.close()
        page.close()
    pages = len(document)
    document.close()
    return pages / (time.perf_counter() - started)


def split_pdf(pdf: Path, folder: Path, parts: int) -> Path:
    """``pdf``'s pages as ``parts`` PDFs of consecutive pages in ``folder`` (files are read in parallel)."""
    import pypdfium2

    folder.mkdir(parents=True, exist_ok=True)
    source = pypdfium2.PdfDocument(pdf)
    n = len(source)
    for k in range(parts):
        out = pypdfium2.PdfDocument.new()
        out.import_pages(source, list(range(k * n // parts, (k + 1) * n // parts)))
        out.save(folder / f"part-{k}.pdf")
        out.close()
    source.close()
    return folder


def stage_ms(pdf: Path, dpi: float, encoder: Any) -> dict[str, float]:
    """Milliseconds per page of each step a worker takes, in this process: render (``pdf_pages``), fit to the
    encoder's size, the display thumbnail (shrunk from the fitted page, as the workers make it), and the pickling
    of the fitted pixels the worker sends back (there and back)."""
    import pickle

    from vlm2vec_core.index.pipeline import fitting_of
    from vlm2vec_core.media.documents import _from_smaller, thumbnail_bytes
    from vlm2vec_core.media.pdf import pdf_pages

    fitting = fitting_of(encoder)
    assert fitting is not None
    spent = dict.fromkeys(("render", "fit", "thumbnail", "pickle"), 0.0)
    pages = 0
    clock = time.perf_counter()
    for page in pdf_pages(pdf, dpi=dpi):
        now = time.perf_counter()
        spent["render"] += now - clock
        fitted = fitting.family.fit_image(page.image, fitting.limits)
        clock, now = now, time.perf_counter()
        spent["fit"] += now - clock
        _from_smaller(page.image, fitted) or thumbnail_bytes(page.image)
        clock, now = now, time.perf_counter()
        spent["thumbnail"] += now - clock
        pickle.loads(pickle.dumps(fitted))
        clock = time.perf_counter()
        spent["pickle"] += clock - now
        pages += 1
    return {k: 1000 * v / pages for k, v in spent.items()}


def direct_render(pdf: Path, dpi: float, encoder: Any) -> dict[str, float]:
    """The lever this pipeline does not pull (it changes the pixels, so the vectors): pdfium rendering each page
    straight at the size the model takes, instead of at ``dpi`` and then the bicubic fit. Milliseconds per page
    both ways, and how far the direct render's pixels are from the fitted ones (mean |difference| in grey levels
    and PSNR), so the trade can be judged."""
    import numpy as np
    import pypdfium2
    from PIL import Image

    from vlm2vec_core.index.pipeline import fitting_of

    fitting = fitting_of(encoder)
    assert fitting is not None
    document = pypdfium2.PdfDocument(str(pdf))
    spent = {"render+fit": 0.0, "direct": 0.0}
    diffs: list[float] = []
    mses: list[float] = []
    try:
        for index in range(len(document)):
            page = document[index]
            started = time.perf_counter()
            full = page.render(scale=dpi / 72).to_pil().convert("RGB")
            fitted = fitting.family.fit_image(full, fitting.limits)
            middle = time.perf_counter()
            width, height = fitted.size  # the size the model takes: known before rendering, from the page's points
            direct = page.render(scale=width / page.get_width()).to_pil().convert("RGB")
            if direct.size != (width, height):  # pdfium rounds each side: at most a pixel off
                direct = direct.resize((width, height), Image.Resampling.BICUBIC)
            ended = time.perf_counter()
            spent["render+fit"] += middle - started
            spent["direct"] += ended - middle
            a = np.asarray(fitted, dtype=np.float64)
            b = np.asarray(direct, dtype=np.float64)
            diffs.append(float(np.abs(a - b).mean()))
            mses.append(float(((a - b) ** 2).mean()))
            page.close()
        pages = len(document)
    finally:
        document.close()
    mse = float(np.mean(mses))
    return {
        "render_fit_ms": 1000 * spent["render+fit"] / pages,
        "direct_ms": 1000 * spent["direct"] / pages,
        "mean_abs_diff": float(np.mean(diffs)),
        "psnr_db": 10 * np.log10(255**2 / mse) if mse else float("inf"),
    }


def du_kib(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1024


def index_run(pdf: Path, encoder: Any, work: Path, dpi: float, workers: int | None, **kw: Any) -> dict[str, Any]:
    """``index_paths`` of ``pdf`` into a fresh embedded store and cache: pages/s, cache KiB per page, vectors."""
    from vlm2vec_core.index.indexer import index_paths
    from vlm2vec_core.index.store import ChromaStore

    store = ChromaStore.open(db=work / "db")
    started = time.perf_counter()
    report = index_paths(
        [pdf], encoder, store, cache_dir=work / "cache", dpi=dpi, workers=workers, **kw
    )  # a file or folder
    wall = time.perf_counter() - started
    pages = report.items["page"]
    assert pages and not report.errors, report.errors
    got = store.items.get(include=["embeddings"])
    vectors = dict(zip(got["ids"], got["embeddings"], strict=True))
    return {
        "pages": pages,
        "wall_s": wall,
        "pages_per_s": pages / wall,
        "cache_kib_per_page": du_kib(work / "cache") / pages,
        "vectors": vectors,
    }


def video_run(video: Path, work: Path, clip_seconds: float, *, split: bool) -> dict[str, Any]:
    """``index_paths`` of one long video with FakeEncoder and workers=auto: read in clip ranges by all the workers
    (``split``, as now), or whole by one worker (each file one job, as before the ranges)."""
    from vlm2vec_core import FakeEncoder
    from vlm2vec_core.index import indexer
    from vlm2vec_core.index.store import ChromaStore

    saved = indexer.file_parts
    if not split:
        indexer.file_parts = lambda kind, count: [(None, None)]  # type: ignore[assignment]
    try:
        store = ChromaStore.open(db=work / "db")
        started = time.perf_counter()
        report = indexer.index_paths([video], FakeEncoder(), store, cache_dir=work / "cache", clip_seconds=clip_seconds)
        wall = time.perf_counter() - started
    finally:
        indexer.file_parts = saved
    assert report.items["clip"] and not report.errors, report.errors
    got = store.items.get(include=["embeddings"])
    return {
        "clips_per_s": report.items["clip"] / wall,
        "vectors": dict(zip(got["ids"], got["embeddings"], strict=True)),
    }


def pipeline_table(model: Path, work: Path, pages: int, dpi: float, video_seconds: float, real: Path | None) -> None:
    """The issue's numbers, measured side by side in this one run."""
    import numpy as np

    from vlm2vec_core import FakeEncoder, VLM2VecEncoder
    from vlm2vec_core.index.pipeline import auto_workers

    pdf = make_pdf(work / f"pipeline-{pages}.pdf", pages)
    auto = auto_workers()
    rows: dict[str, float] = {}
    started = time.perf_counter()
    index_run(make_pdf(work / "warm-1.pdf", 1), FakeEncoder(), work / "warm", dpi, None)
    startup = time.perf_counter() - started  # the fork server's start (once per process), timed apart
    render = render_only(pdf, dpi)
    rows["render-only (pypdfium2, 1 process)"] = render
    fake0 = index_run(pdf, FakeEncoder(), work / "fake0", dpi, 0)
    fake = index_run(pdf, FakeEncoder(), work / "fake-auto", dpi, None)
    parts = split_pdf(pdf, work / "parts", 4)
    fake_parts = index_run(parts, FakeEncoder(), work / "fake-parts", dpi, None)
    rows["FakeEncoder indexing, workers=0"] = fake0["pages_per_s"]
    rows[f"FakeEncoder indexing, workers=auto ({auto}), one PDF"] = fake["pages_per_s"]
    rows[f"FakeEncoder indexing, workers=auto ({auto}), the pages as 4 PDFs"] = fake_parts["pages_per_s"]
    stages = {"generated": stage_ms(pdf, dpi, FakeEncoder())}
    directs = {"generated": direct_render(pdf, dpi, FakeEncoder())}
    real_rows: dict[str, float] = {}
    if real is not None and real.is_file():  # real pages cost more to fit and thumbnail than to render
        real_render = render_only(real, dpi)
        real_fake = index_run(real, FakeEncoder(), work / "fake-real", dpi, None)
        real_rows = {"render-only": real_render, "FakeEncoder workers=auto": real_fake["pages_per_s"]}
        stages[real.name] = stage_ms(real, dpi, FakeEncoder())
        directs[real.name] = direct_render(real, dpi, FakeEncoder())
    tiny = VLM2VecEncoder(model, device="cpu").load()
    tiny0 = index_run(pdf, tiny, work / "tiny0", dpi, 0)
    tinyw = index_run(pdf, tiny, work / "tiny-auto", dpi, None)
    rows["tiny checkpoint indexing, workers=0"] = tiny0["pages_per_s"]
    rows[f"tiny checkpoint indexing, workers=auto ({auto})"] = tinyw["pages_per_s"]
    same = all(np.array_equal(tiny0["vectors"][k], tinyw["vectors"][k]) for k in tiny0["vectors"])

    from remote import Server  # bench/remote.py: `vlm2vec serve` on a free loopback port
    from vlm2vec_core.encoders.remote import RemoteEncoder

    server = Server(model, work / "serve.log").wait()
    try:
        remote = RemoteEncoder(server.url)
        remote_run = index_run(pdf, remote, work / "remote", dpi, None)
    finally:
        server.stop()
    diff = max(
        float(np.max(np.abs(np.asarray(remote_run["vectors"][k]) - np.asarray(v)))) for k, v in tinyw["vectors"].items()
    )
    rows["tiny checkpoint remote (vlm2vec serve, 127.0.0.1), workers=auto"] = remote_run["pages_per_s"]

    from loaders import bench_video, make_bench_video  # bench/loaders.py

    clips = bench_video(make_bench_video(work / "bench.mp4", seconds=video_seconds))
    whole = video_run(work / "bench.mp4", work / "video-whole", 2.0, split=False)
    ranged = video_run(work / "bench.mp4", work / "video-ranges", 2.0, split=True)
    same_clips = whole["vectors"].keys() == ranged["vectors"].keys() and all(
        np.array_equal(whole["vectors"][k], ranged["vectors"][k]) for k in whole["vectors"]
    )

    print(f"\npipeline, {pages} pages at {dpi:g} dpi ({os.cpu_count()} CPUs):")
    for name, value in rows.items():
        print(f"  {name:<66} {value:7.1f} pages/s")
    ratios = {
        "FakeEncoder workers=auto / render-only, one PDF (target >= 1.0)": fake["pages_per_s"] / render,
        "FakeEncoder workers=auto / render-only, 4 PDFs (target >= 1.0)": fake_parts["pages_per_s"] / render,
        "FakeEncoder workers=auto / workers=0, one PDF": fake["pages_per_s"] / fake0["pages_per_s"],
    }
    for name, value in ratios.items():
        print(f"  {name:<66} {value:7.2f}x")
    if real_rows:
        title = f"{real.name if real else ''}, {real_fake['pages']} pages"
        for label, value in real_rows.items():
            print(f"  {f'{title}: {label}':<66} {value:7.1f} pages/s")
        ratio = real_rows["FakeEncoder workers=auto"] / real_rows["render-only"]
        print(f"  {f'{title}: FakeEncoder workers=auto / render-only':<66} {ratio:7.2f}x")
        print(f"  {f'{title}: cache KiB per page (target <= 40)':<66} {real_fake['cache_kib_per_page']:7.1f}")
    for source, ms in stages.items():
        steps = ", ".join(f"{k} {v:.1f}" for k, v in ms.items())
        print(f"  {f'ms per page in a worker, {source}':<40} {steps} (sum {sum(ms.values()):.1f})")
    for source, d in directs.items():
        print(f"  {f'not done: render at the fitted size, {source}':<40} {d['direct_ms']:.1f} ms a page vs "
              f"render+fit {d['render_fit_ms']:.1f}; pixels off by {d['mean_abs_diff']:.2f} grey levels on average "
              f"(PSNR {d['psnr_db']:.1f} dB)")  # fmt: skip
    print(f"  {'tiny checkpoint workers=auto / workers=0':<66} {tinyw['pages_per_s'] / tiny0['pages_per_s']:7.2f}x"
          f"  (vectors identical: {same})")  # fmt: skip
    print(f"  {'cache KiB per page (target <= 40)':<66} {fake['cache_kib_per_page']:7.1f}")
    print(f"  {'worker start-up, once per process (excluded above)':<66} {startup:7.2f} s")
    print(f"  {'remote / local time (target <= 1.3)':<66} {tinyw['pages_per_s'] / remote_run['pages_per_s']:7.2f}x"
          f"  (max |diff| {diff:.2g})")  # fmt: skip
    title = f"one {video_seconds:g} s video in 2 s clips, FakeEncoder workers=auto: clip ranges / whole"
    rates = f"{ranged['clips_per_s']:.1f} vs {whole['clips_per_s']:.1f} clips/s; vectors identical: {same_clips}"
    print(f"  {title:<66} {ranged['clips_per_s'] / whole['clips_per_s']:7.2f}x  ({rates})")
    print(f"  {'clip sampling vs PyAV decode-all (target >= 4)':<66} {clips['speedup_vs_decode_all']:7.2f}x"
          f"  ({clips['clips']} clips of a {video_seconds:g} s video: {json.dumps(clips)})")  # fmt: skip


def index_once(model: Path, pdf: Path, work: Path, dpi: float, batch_size: int) -> dict[str, Any]:
    """Load the encoder, index ``pdf`` into a fresh embedded Chroma store; timings and the peak RSS."""
    from vlm2vec_core import VLM2VecEncoder
    from vlm2vec_core.index.indexer import index_paths
    from vlm2vec_core.index.store import ChromaStore

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
    parser.add_argument("--only", choices=["pipeline", "throughput"], default=None, help="run one section only")
    parser.add_argument("--pipeline-pages", type=int, default=60, help="pages of the pipeline table's PDF")
    parser.add_argument("--video-seconds", type=float, default=60.0, help="video of the clip sampling row")
    parser.add_argument("--real-pdf", type=Path, default=REAL_PDF, help="a real PDF's rows (skipped when absent)")
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
        if args.only in (None, "pipeline"):
            pipeline_table(model, work, args.pipeline_pages, args.dpi, args.video_seconds, args.real_pdf)
        if args.only == "pipeline":
            return

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
