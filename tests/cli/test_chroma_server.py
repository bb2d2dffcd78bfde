"""The same CLI against a real `chroma run` server on 127.0.0.1 (HttpClient) instead of the embedded store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import chromadb
from clihelp import PDF_PAGES, run_cli

from mediafixtures import make_image, make_pdf
from procs import ChromaServer
from vlm2vec_core.index.indexer import index_paths
from vlm2vec_core.index.store import ChromaStore


def test_index_and_search_through_a_chroma_server(
    chroma_server: ChromaServer, tiny_model_dir: Path, tiny_encoder: Any, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    make_pdf(docs / "report.pdf", PDF_PAGES, size=(306, 396))
    make_image(docs / "photo.png", seed=5)
    where = ["--chroma-url", chroma_server.url, "--collection", "served"]
    result = run_cli(
        "index", docs, *where, "--model", tiny_model_dir, "--cache-dir", tmp_path / "cache", "--dpi", "72",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"embedded 1 images, {PDF_PAGES} pages from 2 file(s)" in result.stdout
    assert not (tmp_path / ".vlm2vec").exists()  # nothing went to the embedded default

    client = chromadb.HttpClient(host="127.0.0.1", port=chroma_server.port)
    assert client.get_collection("served").count() == PDF_PAGES + 1
    assert len(client.get_collection("served__files").get()["ids"]) == 2  # the file ledger lives there too

    # The ledger works over HTTP: a second run (in-process, same server) embeds nothing; a deleted file is pruned.
    store = ChromaStore.open(url=chroma_server.url, collection="served")
    again = index_paths([docs], tiny_encoder, store, cache_dir=tmp_path / "cache", dpi=72)
    assert (again.files_unchanged, sum(again.items.values())) == (2, 0)
    (docs / "photo.png").unlink()
    pruned = index_paths([docs], tiny_encoder, store, cache_dir=tmp_path / "cache", dpi=72, prune=True)
    assert pruned.pruned == 1 and store.count() == PDF_PAGES

    found = run_cli("search", "a chart", "-k", "3", "--json", *where, "--model", tiny_model_dir)
    assert found.returncode == 0, found.stderr
    rows = json.loads(found.stdout)
    assert [r["rank"] for r in rows] == [1, 2, 3]
    assert {r["kind"] for r in rows} == {"page"} and all(r["source"].endswith("report.pdf") for r in rows)
