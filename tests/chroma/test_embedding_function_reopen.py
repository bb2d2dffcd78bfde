"""A collection created with VLM2VecEmbeddingFunction, opened in a new process that only imports the module
(no embedding_function= passed): chromadb rebuilds the function from the stored config and embeds queries."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

chromadb = pytest.importorskip("chromadb")

from vlm2vec_core import VLM2VecEncoder  # noqa: E402
from vlm2vec_core.index.embedding_function import VLM2VecEmbeddingFunction  # noqa: E402

SCRIPT = """
import json, sys
import chromadb
import vlm2vec_core.index.embedding_function  # registers "vlm2vec" with chromadb: the one import the docs name

col = chromadb.PersistentClient(path=sys.argv[1]).get_collection("docs")
ef = col.configuration["embedding_function"]
found = col.query(query_texts=["quarterly revenue table"], n_results=3, include=["distances"])
col.add(ids=["t4"], documents=["a new page added from the other process"])
added = [float(x) for x in col.get(ids=["t4"], include=["embeddings"])["embeddings"][0]]
print(json.dumps({"ef": type(ef).__name__, "model": ef.get_config()["model"], "ids": found["ids"][0],
                  "distances": found["distances"][0], "count": col.count(), "added": added}))
"""


def test_a_new_process_finds_the_embedding_function_by_its_one_import(
    tiny_model_dir: Path, tiny_encoder: VLM2VecEncoder, tmp_path: Path
) -> None:
    db = tmp_path / "db"
    ef = VLM2VecEmbeddingFunction(str(tiny_model_dir), encoder=tiny_encoder, device="cpu")
    col = chromadb.PersistentClient(path=str(db)).create_collection(
        "docs", embedding_function=ef, configuration={"hnsw": {"space": "cosine"}}
    )
    col.add(ids=["t1", "t2", "t3"], documents=["quarterly revenue table", "team photo", "a red circle"])
    here = col.query(query_texts=["quarterly revenue table"], n_results=3, include=["distances"])

    args = [sys.executable, "-c", SCRIPT, str(db)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    there = json.loads(done.stdout.strip().splitlines()[-1])
    assert there["ef"] == "VLM2VecEmbeddingFunction" and there["model"] == str(tiny_model_dir)
    assert there["ids"] == here["ids"][0]  # the rebuilt function made the same query vector
    assert there["distances"] == pytest.approx(here["distances"][0], abs=1e-4)
    assert there["count"] == 4
    expected = tiny_encoder.encode_documents(["a new page added from the other process"])[0]
    assert there["added"] == pytest.approx(expected.tolist(), abs=1e-4)  # documents embedded there as here
