"""Fixtures of the Ray tests: one local Ray cluster and one `chroma run` server per module (both start slowly)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from procs import ChromaServer, Service, free_port


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A local Ray cluster of this machine's 2 CPUs and no GPU (the encoder actors run on the CPU)."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report over the network
    if ray.is_initialized():
        ray.shutdown()
    ray.init(
        num_cpus=2,
        num_gpus=0,
        include_dashboard=False,
        log_to_driver=False,
        _temp_dir=str(tmp_path_factory.mktemp("ray")),
    )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChromaServer]:
    if not Path(sys.executable).with_name("chroma").exists():
        pytest.skip("the `chroma` executable is not installed beside this Python")
    tmp = tmp_path_factory.mktemp("chroma")
    server = ChromaServer(tmp / "data", tmp / "chroma.log")
    server.start(timeout=60)
    yield server
    server.stop()


class Served(Service):
    """``vlm2vec serve`` over a checkpoint on loopback (no API keys)."""

    def __init__(self, model_dir: Path, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if k != "VLM2VEC_API_KEYS"}
        cmd = [sys.executable, "-m", "vlm2vec_core.apps.cli", "serve", "--model", str(model_dir)]
        cmd += ["--host", "127.0.0.1", "--port", str(self.port)]
        super().__init__(cmd, f"{self.url}/health", log, {**env, "HF_HUB_OFFLINE": "1"})


@pytest.fixture(scope="module")
def served(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    server = Served(tiny_model_dir, tmp_path_factory.mktemp("serve") / "serve.log")
    server.start(timeout=90)
    yield server
    server.stop()
