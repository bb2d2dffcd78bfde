"""`vlm2vec index` as a subprocess: bad files among good ones, --strict, a second run, and the one-line errors."""

from __future__ import annotations

import re
from pathlib import Path

import chromadb
from clihelp import BAD_NAMES, GOOD_ITEMS, PDF_PAGES, VIDEO_CLIPS, Indexed, model_args, run_cli, store_args


def _items(db: Path) -> list[dict]:
    client = chromadb.PersistentClient(path=str(db))
    got = client.get_collection("vlm2vec").get(include=["metadatas"])
    return [dict(m) for m in got["metadatas"] or []]


def test_strict_index_stores_the_good_files_and_lists_the_bad_ones(indexed: Indexed) -> None:
    result = indexed.first
    assert result.returncode == 1, result.stderr  # --strict with bad files
    assert f"embedded {VIDEO_CLIPS} clips, 1 images, {PDF_PAGES} pages from 3 file(s)" in result.stdout
    assert "Traceback" not in result.stderr
    assert f"{len(BAD_NAMES)} problem(s):" in result.stderr
    listed = result.stderr.split(f"{len(BAD_NAMES)} problem(s):", 1)[1].strip().splitlines()
    assert len(listed) == len(BAD_NAMES)
    for name in BAD_NAMES:
        assert result.stderr.count(name) == 1, f"{name} reported more than once:\n{result.stderr}"
    for name in BAD_NAMES:  # each bad file named once at the end, with its reason
        (line,) = [row for row in listed if name in row]
        assert re.search(rf"{re.escape(name)}.*: \S", line), line
    assert any("not a PDF" in row for row in listed)
    metas = _items(indexed.tmp / "db")
    assert len(metas) == GOOD_ITEMS
    assert sorted(m["kind"] for m in metas) == sorted(["page"] * PDF_PAGES + ["clip"] * VIDEO_CLIPS + ["image"])
    assert not any(name in m["source"] for m in metas for name in BAD_NAMES)
    for meta in metas:  # paths in the store are absolute, so search works from any folder
        assert Path(meta["source"]).is_absolute() and Path(meta["image_path"]).is_absolute()
        assert Path(meta["image_path"]).is_file()


def test_second_run_embeds_nothing_and_exits_0_without_strict(indexed: Indexed, tiny_model_dir: Path) -> None:
    result = run_cli(
        "index", indexed.root, *store_args(indexed.tmp), *model_args(tiny_model_dir, indexed.tmp),
        "--dpi", "72", "--clip-seconds", "2",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "embedded nothing new from 0 file(s)" in result.stdout
    assert "3 unchanged file(s) skipped" in result.stdout
    assert f"{len(BAD_NAMES)} problem(s):" in result.stderr  # still listed, but not an error without --strict
    assert len(_items(indexed.tmp / "db")) == GOOD_ITEMS


def test_a_missing_path_exits_2_with_one_line(tmp_path: Path) -> None:
    result = run_cli("index", tmp_path / "nowhere", "--db", tmp_path / "db")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [f"error: no such file or folder: {tmp_path / 'nowhere'}"]
    assert not (tmp_path / "db").exists()  # nothing opened before the check


def test_missing_weights_say_how_to_point_at_a_local_copy(tmp_path: Path) -> None:
    data = Path(__file__).resolve().parents[2] / "examples" / "data"
    target = data if data.exists() else tmp_path
    result = run_cli("index", target, "--model", "VLM2Vec/VLM2Vec-V2.0", "--db", tmp_path / "db", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "--model ADAPTER --base-model BASE" in lines[0] and "hf download VLM2Vec/VLM2Vec-V2.0" in lines[0]
    assert "hf download Qwen/Qwen2-VL-2B-Instruct" in lines[0]
    assert "Traceback" not in result.stderr
