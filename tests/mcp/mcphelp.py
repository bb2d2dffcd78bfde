"""Helpers of the MCP tests (conftest modules of different folders clash, so they live here)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

PDF_PAGES = 3
VIDEO_CLIPS = 2  # a 4 s video cut into 2 s clips
GONE_PAGES = 1  # old.pdf, deleted once indexed
ALL_ITEMS = PDF_PAGES + VIDEO_CLIPS + 1 + GONE_PAGES


@dataclass
class McpIndex:
    root: Path  # the indexed files
    db: Path
    model: Path
    files: dict[str, Path]

    def command(self, *extra: str) -> list[str]:
        """``vlm2vec mcp`` over this index (as ``python -m vlm2vec_core.apps.cli``, the venv's own Python)."""
        return [
            sys.executable,
            "-m",
            "vlm2vec_core.apps.cli",
            "mcp",
            "--db",
            str(self.db),
            "--model",
            str(self.model),
            *extra,
        ]


def server_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VLM2VEC_")}
    return {**env, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1", **extra}
