"""`vlm2vec search`: the table, --json, --type, the contact sheet, and the empty-collection message."""

from __future__ import annotations

import json
import re
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from clihelp import GOOD_ITEMS, PDF_PAGES, Indexed, run_cli, store_args
from PIL import Image

from vlm2vec_core.apps import cli
from vlm2vec_core.apps.sheet import HEADER, LABEL, TILE, contact_sheet
from vlm2vec_core.index.indexer import search
from vlm2vec_core.index.store import ChromaStore, Hit


def test_json_hits_and_a_contact_sheet(indexed: Indexed, tiny_model_dir: Path, tmp_path: Path) -> None:
    sheet = tmp_path / "out" / "sheet.png"
    result = run_cli(
        "search", "a red circle", "-k", str(GOOD_ITEMS), "--json", "--sheet", sheet,
        *store_args(indexed.tmp), "--model", tiny_model_dir,
        cwd=tmp_path,  # another folder than the one indexed from
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["rank"] for r in rows] == list(range(1, GOOD_ITEMS + 1))
    scores = [r["score"] for r in rows]
    assert scores == sorted(scores, reverse=True) and all(-1.0 <= s <= 1.0 for s in scores)
    assert sorted(r["kind"] for r in rows) == sorted(["page"] * PDF_PAGES + ["clip"] * 2 + ["image"])
    for row in rows:
        assert Path(row["source"]).is_file() and row["source"].startswith(str(indexed.root.resolve()))
        if row["kind"] == "page":
            assert 1 <= row["page"] <= row["page_count"] == PDF_PAGES
        if row["kind"] == "clip":
            assert row["end_seconds"] > row["start_seconds"] >= 0
    assert f"contact sheet: {sheet}" in result.stderr

    image = Image.open(sheet)
    image.load()
    assert image.format == "PNG"
    columns, rows_ = 4, -(-GOOD_ITEMS // 4)
    assert image.size == (columns * TILE, HEADER + rows_ * (TILE + LABEL))  # the query's band on top
    band = np.asarray(image.convert("L"))[:HEADER]
    assert band.std() > 5  # the query is written there
    pixels = np.asarray(image.convert("RGB"), dtype=np.int16)[HEADER:]
    tiles = [
        pixels[r * (TILE + LABEL) + 4 : r * (TILE + LABEL) + TILE - 4, c * TILE + 4 : (c + 1) * TILE - 4]
        for n in range(GOOD_ITEMS)
        for r, c in [divmod(n, columns)]
    ]
    for tile in tiles:  # a picture in every tile, not a blank or a placeholder
        assert tile.std() > 10
    for a, b in combinations(range(len(tiles)), 2):  # every hit shows a different thumbnail
        assert np.abs(tiles[a] - tiles[b]).mean() > 1.0, (a, b)
    for n in range(GOOD_ITEMS):  # and a label under each
        r, c = divmod(n, columns)
        label = pixels[r * (TILE + LABEL) + TILE + 2 : (r + 1) * (TILE + LABEL) - 2, c * TILE + 4 : (c + 1) * TILE - 4]
        assert (label < 128).any()


def test_table_with_type_filter(indexed: Indexed, tiny_model_dir: Path) -> None:
    result = run_cli(
        "search", "a chart", "-k", "3", "--type", "page",
        *store_args(indexed.tmp), "--model", tiny_model_dir,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].split() == ["#", "score", "type", "where", "file"]
    assert len(lines) == 4
    for n, line in enumerate(lines[1:], 1):
        match = re.fullmatch(rf"\s*{n}\s+(-?\d\.\d{{3}})\s+page\s+page (\d)/{PDF_PAGES}\s+(\S+)", line)
        assert match, line
        assert match[3].endswith("report.pdf")


def test_table_shows_time_ranges_for_clips(indexed: Indexed, tiny_encoder: Any, monkeypatch: Any, capsys: Any) -> None:
    monkeypatch.setattr(cli, "_encoder", lambda args: tiny_encoder)
    assert cli.main(["search", "q", "-k", "5", "--type", "clip", "--type", "image", *store_args(indexed.tmp)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()[1:]
    assert len(lines) == 3  # 2 clips and 1 image, nothing else
    clips = sorted(line.split()[3] for line in lines if " clip " in line)
    assert clips == ["0:00-0:02", "0:02-0:04"]  # the one time format (types.clock)
    assert any(re.search(r" image\s+-\s+\S+photo\.png$", line) for line in lines)


def test_searching_without_an_index_says_to_index_first(tmp_path: Path) -> None:
    missing = run_cli("search", "anything", "--db", tmp_path / "db", "--model", tmp_path / "no-model-needed")
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        f"error: no index at {tmp_path / 'db'}: run `vlm2vec index PATH --db {tmp_path / 'db'}` first"
    ]
    assert not (tmp_path / "db").exists()  # nothing created
    ChromaStore.open(db=tmp_path / "db")  # an empty collection
    empty = run_cli("search", "anything", "--db", tmp_path / "db", "--model", tmp_path / "no-model-needed")
    assert empty.returncode == 2
    assert empty.stderr.strip().splitlines() == [
        "error: the collection 'vlm2vec' is empty: run `vlm2vec index PATH` first"
    ]


def test_an_index_of_another_model_is_refused_clearly(indexed: Indexed, tmp_path: Path) -> None:
    from vlm2vec_core import FakeEncoder
    from vlm2vec_core.index.indexer import index_paths
    from vlm2vec_core.index.store import DimensionMismatch

    store = ChromaStore.open(db=indexed.tmp / "db")
    with pytest.raises(DimensionMismatch, match="holds 64-dimensional vectors but this model makes 8"):
        search("q", FakeEncoder(dim=8), store)
    with pytest.raises(DimensionMismatch, match="another model"):
        index_paths([indexed.root], FakeEncoder(dim=8), store, cache_dir=tmp_path / "cache")


def test_k_must_be_positive(tmp_path: Path, capsys: Any) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["search", "q", "-k", "0", "--db", str(tmp_path / "db")])
    assert exc.value.code == 2
    assert "must be at least 1" in capsys.readouterr().err


def test_sheet_survives_a_missing_image(indexed: Indexed, tiny_encoder: Any, tmp_path: Path) -> None:
    store = ChromaStore.open(db=indexed.tmp / "db")
    hits = search("q", tiny_encoder, store, k=2, kinds=["page"])
    gone = Hit("gone", 0.5, {**hits[0].metadata, "image_path": str(tmp_path / "deleted.png")})
    out = contact_sheet([gone, hits[1]], tmp_path / "s.png", columns=2)
    image = np.asarray(Image.open(out).convert("RGB"), dtype=np.int16)
    assert image.shape == (TILE + LABEL, 2 * TILE, 3)
    assert np.abs(image[:TILE, :TILE] - image[:TILE, TILE:]).mean() > 1.0
