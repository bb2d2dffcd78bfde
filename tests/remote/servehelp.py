"""A real `vlm2vec serve` process on 127.0.0.1 (helpers; the fixtures are in conftest.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from procs import Service

API_KEYS = ("test-key-1", "test-key-2")


class Server(Service):
    """``vlm2vec serve`` over a checkpoint, with the test API keys; ``start()`` may be called again after a kill."""

    def __init__(self, model_dir: Path, port: int, log: Path, *extra: str) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "VLM2VEC_API_KEYS": ",".join(API_KEYS), "HF_HUB_OFFLINE": "1"}
        cmd = [
            sys.executable,
            "-m",
            "vlm2vec_core.apps.cli",
            "serve",
            "--model",
            str(model_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *extra,
        ]
        super().__init__(cmd, f"{self.url}/health", log, env)

    def start(self, timeout: float = 90.0) -> Server:
        super().start(timeout)
        return self
