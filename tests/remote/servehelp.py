"""A real `vlm2vec serve` process on 127.0.0.1 (helpers; the fixtures are in conftest.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

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


def planned_requests(
    enc: Any, inputs: list[Any], instruction: Any, batch_size: int
) -> list[tuple[Any, dict[str, Any]]]:
    """The requests ``RemoteEncoder.encode`` would send for ``inputs`` (its items and body each), built without
    sending them (the server is never contacted when the encoder knows its family)."""
    from vlm2vec_core.tasks import as_instruction

    items = enc._checked_inputs(inputs, batch_size)
    return list(enc._jobs(items, as_instruction(instruction), batch_size, None, [], lambda n: None))
