"""`vlm2vec info`, `list` and `remove`: an index you can inspect and repair."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from clihelp import run_cli, store_args

from mediafixtures import make_image, make_pdf
from vlm2vec_core import FakeEncoder
from vlm2vec_core.index.indexer import index_paths
from vlm2vec_core.index.store import ChromaStore


def _indexed(tmp: Path) -> Path:
    docs = tmp / "docs"
    (docs / "sub").mkdir(parents=True)
    make_pdf(docs / "report.pdf", 2, size=(200, 260))
    make_image(docs / "sub" / "photo.png", seed=3)
    shutil.copy(docs / "sub" / "photo.png", tmp / "copy.png")  # an identical copy outside docs/
    store = ChromaStore.open(db=tmp / "db")
    index_paths([docs, tmp / "copy.png"], FakeEncoder(model_name="fake-model"), store, cache_dir=tmp / "cache", dpi=36)
    return docs


def test_info_and_list(tmp_path: Path):
    docs = _indexed(tmp_path)
    info = run_cli("info", *store_args(tmp_path), "--json")
    assert info.returncode == 0, info.stderr
    facts = json.loads(info.stdout)
    assert (facts["model"], facts["family"], facts["dim"], facts["files"]) == ("fake-model", "vlm2vec-v2", 64, 3)
    assert facts["items"] == {"image": 1, "page": 2}  # the two copies share one item
    assert facts["cache_files"] == 2 and facts["cache_bytes"] > 0  # the two page thumbnails; images show themselves
    assert "vlm2vec-v2" in run_cli("info", *store_args(tmp_path)).stdout
    assert "2 thumbnails" in run_cli("info", *store_args(tmp_path)).stdout
    (docs / "report.pdf").unlink()
    rows = json.loads(run_cli("list", *store_args(tmp_path), "--json").stdout)
    assert [(Path(r["source"]).name, r["kind"], r["items"], r["present"]) for r in rows] == [
        ("copy.png", "image", 1, True),
        ("report.pdf", "pdf", 2, False),
        ("photo.png", "image", 1, True),
    ]
    assert "(gone)" in run_cli("list", *store_args(tmp_path)).stdout


def test_remove_a_folder_even_when_it_is_gone(tmp_path: Path):
    docs = _indexed(tmp_path)
    shutil.rmtree(docs)
    result = run_cli("remove", docs, *store_args(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "removed 3 item(s) of 2 file(s)" in result.stdout
    assert "copy.png" in result.stdout  # it shared the photo's item: it must be indexed again
    store = ChromaStore.open(db=tmp_path / "db")
    assert store.count() == 0 and store.files() == []
    again = run_cli("remove", docs, *store_args(tmp_path))
    assert again.returncode == 2 and again.stderr.startswith("error: nothing indexed under")


def test_no_index_is_one_sentence(tmp_path: Path):
    for command in ("info", "list"):
        result = run_cli(command, *store_args(tmp_path))
        assert result.returncode == 2 and result.stderr.startswith("error: no index at")
