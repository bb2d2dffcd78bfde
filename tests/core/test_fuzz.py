"""Mutated PDFs and images, indexed as a folder in worker processes: each file ends as items or as one
InputError naming it; the run itself never dies, hangs or raises (issue 13's fuzzing, small enough for CI).

Mutations are a few bytes changed in the first kilobytes (where headers, page trees and chunk tables live),
with a fixed seed, so a failure reproduces. Videos have their own header fuzzing in test_video_hardening.py.
"""

from __future__ import annotations

import io
import random
from pathlib import Path

from PIL import Image

from mediafixtures import pdf_bytes
from vlm2vec_core.encoders.fake import FakeEncoder
from vlm2vec_core.errors import InputError
from vlm2vec_core.index.indexer import index_paths
from vlm2vec_core.index.store import ChromaStore

SEED = 20261201


def _image_bytes(fmt: str) -> bytes:
    rng = random.Random(1)
    image = Image.new("RGB", (96, 64))
    image.putdata([(rng.randrange(256), rng.randrange(256), 40) for _ in range(96 * 64)])
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def _mutants(data: bytes, count: int, rng: random.Random) -> list[bytes]:
    out = []
    for _ in range(count):
        mutated = bytearray(data)
        window = min(len(mutated), 4096)
        for _ in range(rng.randint(1, 6)):
            at = rng.randrange(window)
            mutated[at] = rng.choice([0x00, 0xFF, 0x7F, 0x80, rng.randrange(256)])
        if rng.random() < 0.2:  # sometimes cut the file short too
            del mutated[rng.randrange(len(mutated) // 2, len(mutated)) :]
        out.append(bytes(mutated))
    return out


def test_a_folder_of_mutated_files_ends_in_items_or_input_errors(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    corpus = tmp_path / "mutants"
    corpus.mkdir()
    seeds = {"pdf": pdf_bytes(2, size=(300, 400)), "png": _image_bytes("PNG"), "jpg": _image_bytes("JPEG")}
    names = []
    for suffix, count in (("pdf", 30), ("png", 25), ("jpg", 15)):
        for n, data in enumerate(_mutants(seeds[suffix], count, rng)):
            path = corpus / f"{suffix}-{n:02d}.{suffix}"
            path.write_bytes(data)
            names.append(path.name)
    store = ChromaStore.open(db=tmp_path / "db")
    report = index_paths(
        [corpus], FakeEncoder(), store, cache_dir=tmp_path / "cache", workers=2, file_timeout=60, dpi=36
    )
    assert all(isinstance(e, InputError) for e in report.errors)
    named = {Path(str(e.source)).name for e in report.errors}
    indexed = {Path(r.source).name for r in store.files()}
    # every file is accounted for: indexed (maybe with some bad pages reported) or reported, never lost
    assert set(names) <= indexed | named, sorted(set(names) - indexed - named)
    assert indexed and named  # the mutations do both: some files survive them, some do not
    assert not list((tmp_path / "cache").glob(".tmp-*"))  # nothing half-written left behind
    # and the run can be repeated: what was indexed is skipped, what failed is tried again and fails the same way
    again = index_paths(
        [corpus], FakeEncoder(), store, cache_dir=tmp_path / "cache", workers=2, file_timeout=60, dpi=36
    )
    assert again.files_unchanged == len(indexed) and {Path(str(e.source)).name for e in again.errors} <= named
