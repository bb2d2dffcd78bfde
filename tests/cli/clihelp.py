"""Helpers of the CLI tests: running the CLI, a corpus of good and bad files, a `chroma run` server."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from mediafixtures import make_frameless_video, make_image, make_pdf, make_video

CHAT_ENV = ("VLM2VEC_CHAT_BASE_URL", "VLM2VEC_CHAT_MODEL", "VLM2VEC_CHAT_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_KEY")
PDF_PAGES = 4
VIDEO_CLIPS = 2  # a 4 s video cut into 2 s clips


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CHAT_ENV}
    return {**env, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1", **extra}


def run_cli(
    *args: str | Path, cwd: Path | None = None, timeout: float = 240, **env: str
) -> subprocess.CompletedProcess[str]:
    """``python -m vlm2vec_core.apps.cli ARGS`` to completion, output captured as text."""
    cmd = [sys.executable, "-m", "vlm2vec_core.apps.cli", *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, env=cli_env(**env), capture_output=True, text=True, timeout=timeout)


def store_args(tmp: Path) -> list[str]:
    return ["--db", str(tmp / "db")]


def model_args(model_dir: Path, tmp: Path) -> list[str]:
    return ["--model", str(model_dir), "--cache-dir", str(tmp / "cache")]


def make_corpus(root: Path) -> dict[str, Path]:
    """Good files (a PDF, a video, an image, one in a subfolder) and bad ones among them."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "sub").mkdir(exist_ok=True)
    files = {
        "pdf": make_pdf(root / "report.pdf", PDF_PAGES, size=(306, 396)),
        "video": make_video(root / "sub" / "talk.mp4", seconds=4.0, fps=5),
        "image": make_image(root / "photo.png", seed=3),
        "broken_pdf": root / "broken.pdf",
        "empty_image": root / "empty.png",
        "frameless": make_frameless_video(root / "frameless.mp4"),
    }
    files["broken_pdf"].write_bytes(b"this is not a PDF at all\n")
    files["empty_image"].write_bytes(b"")
    return files


GOOD_ITEMS = PDF_PAGES + VIDEO_CLIPS + 1
BAD_NAMES = ("broken.pdf", "empty.png", "frameless.mp4")


@dataclass
class Indexed:
    root: Path  # the corpus folder
    tmp: Path  # --db and --cache-dir live here
    files: dict[str, Path]
    first: subprocess.CompletedProcess[str]  # `index --strict` over the corpus
