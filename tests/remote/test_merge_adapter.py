"""scripts/merge_adapter.py on the tiny checkpoint + DoRA adapter: the merged weights give the same vectors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("torch")
pytest.importorskip("peft")

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "merge_adapter.py"


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300, env=_env())


def _env() -> dict[str, str]:
    import os

    return {**os.environ, "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def merged_dir(tiny_adapter_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("merged") / "model"
    done = run_script(str(tiny_adapter_dir), "--out", str(out), "--dtype", "float32")
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_merged_dir_is_full_weights_with_processor_and_template(merged_dir: Path) -> None:
    assert not (merged_dir / "adapter_config.json").exists()
    assert (merged_dir / "config.json").is_file()
    assert list(merged_dir.glob("*.safetensors"))
    config = json.loads((merged_dir / "processor_config.json").read_text())
    for sub in ("image_processor", "video_processor"):
        assert config[sub]["size"] == {"shortest_edge": 3136, "longest_edge": 1003520}, sub
    template = (ROOT / "core/src/vlm2vec_core/templates/vlm2vec_v2.jinja").read_text()
    saved = merged_dir / "chat_template.jinja"
    assert saved.is_file() and saved.read_text() == template


def test_merged_vectors_equal_the_adapter_vectors(merged_dir: Path, tiny_adapter_dir: Path) -> None:
    from vlm2vec_core import VLM2VecEncoder

    image = Image.new("RGB", (120, 90), (10, 120, 200))
    for x in range(0, 120, 10):
        image.paste((250, 250 - 2 * x, x), (x, 0, x + 5, 90))
    merged = VLM2VecEncoder(merged_dir, device="cpu", dtype="float32")
    adapted = VLM2VecEncoder(tiny_adapter_dir, device="cpu", dtype="float32")
    for encode in (
        lambda enc: enc.encode_queries(["quarterly revenue by region", "the lazy dog"], task="visdoc"),
        lambda enc: enc.encode_documents([image], task="visdoc"),
        lambda enc: enc.encode_queries([image], task="vqa"),
    ):
        a, b = encode(merged), encode(adapted)
        assert a.shape == b.shape
        assert float(np.abs(a - b).max()) < 1e-5
    # The adapter matters: the base model alone gives other vectors (so the comparison above can fail).
    base = VLM2VecEncoder(json.loads((tiny_adapter_dir / "adapter_config.json").read_text())["base_model_name_or_path"])
    q_base = base.encode_queries(["quarterly revenue by region"], task="visdoc")
    q_merged = merged.encode_queries(["quarterly revenue by region"], task="visdoc")
    assert float(np.abs(q_base - q_merged).max()) > 1e-3


def test_plain_rope_is_refused_when_transformers_could_not_restore_the_section(
    tiny_adapter_dir: Path, tmp_path: Path
) -> None:
    done = run_script(str(tiny_adapter_dir), "--out", str(tmp_path / "m"), "--dtype", "float32", "--plain-rope")
    assert done.returncode == 2
    assert "mrope_section" in done.stderr and "[2, 3, 3]" in done.stderr


def test_full_weights_are_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    done = run_script(str(tiny_model_dir), "--out", str(tmp_path / "m"))
    assert done.returncode == 2
    assert "nothing to merge" in done.stderr


def test_drop_mrope_keeps_the_rest(tmp_path: Path) -> None:
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import merge_adapter  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(SCRIPT.parent))
    path = tmp_path / "config.json"
    params = {"mrope_section": [16, 24, 24], "rope_theta": 1000000.0, "rope_type": "default"}
    path.write_text(json.dumps({"text_config": {"hidden_size": 1536, "rope_parameters": params}}))
    merge_adapter._drop_mrope(path)
    text = json.loads(path.read_text())["text_config"]
    assert text == {"hidden_size": 1536, "rope_parameters": {"rope_theta": 1000000.0, "rope_type": "default"}}
