"""Session fixtures: the tiny random checkpoint and adapters, built offline once per test run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Nothing in the tests may reach the network: a Hub id must fail fast, not hang on retries.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    from tinymodel import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny-qwen2vl"))


@pytest.fixture(scope="session")
def tiny_adapter_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tinymodel import build_dora_adapter

    return build_dora_adapter(tiny_model_dir, tmp_path_factory.mktemp("tiny-dora"))


@pytest.fixture(scope="session")
def tiny_encoder(tiny_model_dir: Path):  # type: ignore[no-untyped-def]
    from vlm2vec_core import VLM2VecEncoder

    return VLM2VecEncoder(tiny_model_dir).load()


@pytest.fixture(scope="session")
def tiny_qwen3vl_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    from tinymodel import build_tiny_qwen3vl_checkpoint

    return build_tiny_qwen3vl_checkpoint(tmp_path_factory.mktemp("tiny-qwen3vl"))


@pytest.fixture(scope="session")
def tiny_qwen3vl_encoder(tiny_qwen3vl_dir: Path):  # type: ignore[no-untyped-def]
    from vlm2vec_core import VLM2VecEncoder

    return VLM2VecEncoder(tiny_qwen3vl_dir).load()


@pytest.fixture(scope="session")
def tiny_reranker_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Qwen3-VL generative checkpoint with yes/no in its vocabulary (Qwen3-VL-Reranker's shape)."""
    pytest.importorskip("torch")
    from tinymodel import build_tiny_qwen3vl_reranker_checkpoint

    return build_tiny_qwen3vl_reranker_checkpoint(tmp_path_factory.mktemp("tiny-qwen3vl-reranker"))


@pytest.fixture(scope="session")
def tiny_qwen25vl_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Qwen2.5-VL generative checkpoint with its chat template (UniME-V2-Reranker's backbone)."""
    pytest.importorskip("torch")
    from tinymodel import build_tiny_qwen25vl_checkpoint

    return build_tiny_qwen25vl_checkpoint(tmp_path_factory.mktemp("tiny-qwen25vl"))


@pytest.fixture(scope="session")
def tiny_reranker(tiny_reranker_dir: Path):  # type: ignore[no-untyped-def]
    from vlm2vec_core.rerank import Reranker

    return Reranker(tiny_reranker_dir).load()
