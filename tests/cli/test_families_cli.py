"""The indexer and the CLI follow the encoder's model family: tasks per kind, kinds it takes, clip sampling,
the model an index was built with, refusals of another family or truncation, and licence notes."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from clihelp import Indexed, run_cli, store_args

from mediafixtures import make_image, make_pdf, make_video
from vlm2vec_core import FakeEncoder
from vlm2vec_core.apps import cli
from vlm2vec_core.encoders.loading import DEFAULT_MODEL
from vlm2vec_core.families import FAMILIES
from vlm2vec_core.families.vlm2vec import VLM2VEC_V2
from vlm2vec_core.index.indexer import index_paths, search
from vlm2vec_core.index.store import ChromaStore, IndexMismatch


class Spy(FakeEncoder):
    """A FakeEncoder that records the task of every call and the frame count of every clip it embeds."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.document_tasks: list[str] = []
        self.query_tasks: list[str] = []
        self.clip_frames: list[int] = []

    def encode_documents(self, inputs: Any, *, task: str = "visdoc", **kwargs: Any) -> Any:
        self.document_tasks.append(task)
        self.clip_frames += [len(x.video.frames) for x in inputs if getattr(x, "video", None) is not None]
        return super().encode_documents(inputs, task=task, **kwargs)

    def encode_queries(self, inputs: Any, *, task: str = "visdoc", **kwargs: Any) -> Any:
        self.query_tasks.append(task)
        return super().encode_queries(inputs, task=task, **kwargs)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A 2-page PDF, an image and a 2-second video (two 1-second clips of 10 frames each)."""
    docs = tmp_path / "docs"
    docs.mkdir()
    make_pdf(docs / "report.pdf", 2, size=(200, 260))
    make_image(docs / "photo.png", seed=3)
    make_video(docs / "talk.mp4", seconds=2.0, fps=10)
    return docs


def _index(folder: Path, encoder: Any, tmp: Path) -> Any:
    store = ChromaStore.open(db=tmp / "db")
    return index_paths([folder], encoder, store, cache_dir=tmp / "cache", dpi=36, clip_seconds=1.0), store


# -- the indexer ---------------------------------------------------------------------------------------------


def test_unime_v2_reports_the_video_and_indexes_the_rest(folder: Path, tmp_path: Path) -> None:
    encoder = Spy(32, family="unime-v2")
    report, store = _index(folder, encoder, tmp_path)
    assert dict(report.items) == {"page": 2, "image": 1} and report.files_indexed == 2
    (problem,) = report.errors
    assert str(problem) == f"{(folder / 'talk.mp4').resolve()}: UniME-V2 (Qwen2-VL) takes no video"
    assert set(encoder.document_tasks) == {"image"}  # its task for pages and images (it refuses visdoc)
    assert sorted(Path(r.source).name for r in store.files()) == ["photo.png", "report.pdf"]
    hits = search("a red circle", encoder, store, k=5)
    assert encoder.query_tasks == ["image", "image"]  # pages and images; no clips to search
    assert sorted(h.kind for h in hits) == ["image", "page", "page"]


def test_each_kind_is_embedded_and_searched_with_the_familys_task(folder: Path, tmp_path: Path) -> None:
    family = replace(VLM2VEC_V2, task_for_kind={"page": "image", "clip": "video", "image": "image"})
    encoder = Spy(32, family=family)
    report, store = _index(folder, encoder, tmp_path)
    assert dict(report.items) == {"page": 2, "image": 1, "clip": 2} and report.errors == []
    assert set(encoder.document_tasks) == {"image", "video"}
    search("q", encoder, store, kinds=["clip", "page"])
    assert encoder.query_tasks == ["video", "image"]


@pytest.mark.parametrize(("family", "frames"), [("vlm2vec-v2", 8), ("gme", 1)])
def test_clips_sample_their_frames_as_the_family_does(folder: Path, tmp_path: Path, family: str, frames: int) -> None:
    encoder = Spy(32, family=family)
    _index(folder, encoder, tmp_path)
    assert encoder.clip_frames == [frames, frames]  # 10 frames per clip: VLM2Vec takes 8, GME the middle one


def test_another_family_cannot_index_into_or_search_an_index(folder: Path, tmp_path: Path) -> None:
    _, store = _index(folder, FakeEncoder(32), tmp_path)
    gme = FakeEncoder(32, family="gme")
    with pytest.raises(IndexMismatch, match="vectors of two model families do not mix"):
        index_paths([folder], gme, store, cache_dir=tmp_path / "cache")
    with pytest.raises(IndexMismatch, match="vectors of two model families do not mix"):
        search("q", gme, store)


# -- the CLI, in-process over fake encoders -----------------------------------------------------------------


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The CLI builds FakeEncoders from its options; the options of each build are recorded here."""
    calls: list[Any] = []

    def encoder(args: Any) -> FakeEncoder:
        calls.append(args)
        return FakeEncoder(
            64, family=args.family, model_name=args.model or DEFAULT_MODEL, truncate_dim=args.truncate_dim
        )

    monkeypatch.setattr(cli, "_encoder", encoder)
    return calls


def _cli(*args: str | Path) -> int:
    return cli.main([str(a) for a in args])


def test_family_and_truncation_are_recorded_and_search_uses_the_indexs_model(
    folder: Path, tmp_path: Path, made: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    db, cache = tmp_path / "db", tmp_path / "cache"
    model = "Qwen/Qwen3-VL-Embedding-2B"
    assert _cli("index", folder, "--db", db, "--cache-dir", cache, "--model", model,
                "--family", "qwen3-vl-embedding", "--truncate-dim", "32", "--dpi", "36") == 0  # fmt: skip
    signature = ChromaStore.open(db=db).signature()
    assert signature == {"family": "qwen3-vl-embedding", "model": model, "dim": 32, "truncate_dim": 32}
    capsys.readouterr()
    assert _cli("search", "a red circle", "--db", db, "--json") == 0
    assert (made[-1].model, made[-1].family, made[-1].truncate_dim) == (model, "qwen3-vl-embedding", 32)
    assert len(json.loads(capsys.readouterr().out)) == 4  # 2 pages, an image, one clip
    assert _cli("index", folder, "--db", db, "--cache-dir", cache, "--dpi", "36") == 0  # again, no --model
    assert (made[-1].model, made[-1].family, made[-1].truncate_dim) == (model, "qwen3-vl-embedding", 32)
    assert "embedded nothing new" in capsys.readouterr().out


def test_a_new_index_without_model_uses_the_default(folder: Path, tmp_path: Path, made: list[Any]) -> None:
    assert _cli("index", folder / "photo.png", "--db", tmp_path / "db", "--cache-dir", tmp_path / "cache") == 0
    assert (made[-1].model, made[-1].family) == (None, None)  # VLM2VecEncoder's own default, family detected
    assert ChromaStore.open(db=tmp_path / "db").signature()["model"] == DEFAULT_MODEL


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--family", "gme"], "vectors of two model families do not mix"),
        (["--model", "other/model", "--family", "gme", "--truncate-dim", "32"], "two model families do not mix"),
        (["--truncate-dim", "16"], "(truncated to 32-d) but this model makes Qwen3-VL-Embedding vectors of"),
        (["--model", "other/model"], "makes VLM2Vec-V2 vectors of other/model (64-d): vectors of two model"),
        (["--model", "m", "--family", "qwen3-vl-embedding"], "of m (64-d): vectors truncated to another size"),
    ],
)
def test_a_mismatch_exits_2_with_one_line(
    folder: Path,
    tmp_path: Path,
    made: list[Any],
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    expected: str,
) -> None:
    db, cache = tmp_path / "db", tmp_path / "cache"
    model = "Qwen/Qwen3-VL-Embedding-2B"
    family = ["--family", "qwen3-vl-embedding", "--truncate-dim", "32"]
    assert _cli("index", folder / "photo.png", "--db", db, "--cache-dir", cache, "--model", model, *family) == 0
    capsys.readouterr()
    for command in (["search", "q"], ["index", folder / "report.pdf", "--cache-dir", cache]):
        assert _cli(*command, "--db", db, *flags) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1, lines
        assert lines[0].startswith("error: collection 'vlm2vec' holds ") and expected in lines[0], lines[0]
        assert f"--model {model} --family qwen3-vl-embedding --truncate-dim 32" in lines[0]
    assert ChromaStore.open(db=db).count() == 1  # nothing was added


def test_family_choices_come_from_the_registry(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["search", "q", "--family", "nope"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'nope'" in err and all(name in err for name in FAMILIES)


def test_a_model_under_a_non_open_licence_is_noted_once(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    closed = replace(VLM2VEC_V2, licence="CC-BY-NC-4.0")
    assert not closed.open_licence and VLM2VEC_V2.open_licence
    monkeypatch.setattr(cli, "_encoder", lambda args: FakeEncoder(16, family=closed, model_name="some/model"))
    db = tmp_path / "db"
    assert _cli("index", folder / "photo.png", "--db", db, "--cache-dir", tmp_path / "cache") == 0
    err = capsys.readouterr().err
    assert err.count("CC-BY-NC-4.0") == 1
    assert "note: some/model (VLM2Vec-V2) is under the licence CC-BY-NC-4.0" in err
    assert _cli("search", "q", "--db", db) == 0
    assert capsys.readouterr().err.count("CC-BY-NC-4.0") == 1
    monkeypatch.setattr(cli, "_encoder", lambda args: FakeEncoder(16, model_name="some/model"))
    assert _cli("search", "q", "--db", db) == 0
    assert "licence" not in capsys.readouterr().err  # Apache-2.0: nothing to say


def test_unime_v2_through_the_cli_lists_the_video_and_indexes_the_rest(
    folder: Path, tmp_path: Path, made: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "db"
    args = ["--db", db, "--cache-dir", tmp_path / "cache", "--dpi", "36", "--clip-seconds", "1"]
    assert _cli("index", folder, *args, "--family", "unime-v2") == 0
    out, err = capsys.readouterr()
    assert "embedded 1 images, 2 pages from 2 file(s)" in out
    assert "1 problem(s):" in err and "talk.mp4: UniME-V2 (Qwen2-VL) takes no video" in err
    assert "Traceback" not in err
    assert _cli("search", "q", "--db", db, "--json") == 0
    assert sorted(row["kind"] for row in json.loads(capsys.readouterr().out)) == ["image", "page", "page"]


def test_an_unknown_checkpoint_exits_2_naming_the_families(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "llama"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 64}))
    assert _cli("index", folder / "photo.png", "--db", tmp_path / "db", "--model", model) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and "cannot tell its model family" in line
    assert all(name in line for name in FAMILIES)


# -- end to end over the tiny checkpoint ---------------------------------------------------------------------


def test_the_cli_index_records_the_tiny_model_and_search_follows_it(indexed: Indexed, tiny_model_dir: Path) -> None:
    signature = ChromaStore.open(db=indexed.tmp / "db").signature()
    assert signature == {"family": "vlm2vec-v2", "model": str(tiny_model_dir), "dim": 64, "truncate_dim": 0}
    result = run_cli("search", "a red circle", "-k", "3", "--json", *store_args(indexed.tmp))  # no --model
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)) == 3
    assert "assuming" not in result.stderr  # the family came from the index, not from a guess


def test_the_tiny_model_as_another_family_or_truncation_exits_2(indexed: Indexed, tiny_model_dir: Path) -> None:
    gme = run_cli("search", "q", *store_args(indexed.tmp), "--model", tiny_model_dir, "--family", "gme")
    assert gme.returncode == 2
    (line,) = gme.stderr.strip().splitlines()
    assert f"holds VLM2Vec-V2 vectors of {tiny_model_dir} (64-d) but this model makes GME (Qwen2-VL)" in line
    assert f"use that model (--model {tiny_model_dir} --family vlm2vec-v2)" in line
    truncated = run_cli("search", "q", *store_args(indexed.tmp), "--truncate-dim", "32")
    assert truncated.returncode == 2
    (line,) = truncated.stderr.strip().splitlines()
    assert line == "error: VLM2Vec-V2 has no Matryoshka dimensions: its vectors are 64-dimensional only"


def test_serve_passes_family_truncation_pixels_and_dtype(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    served: list[Any] = []
    monkeypatch.setattr("vlm2vec_core.apps.server.serve", lambda encoder, config, **kw: served.append(encoder))
    flags = ["--family", "vlm2vec-v1", "--max-pixels", "50176", "--dtype", "float32"]
    assert cli.main(["serve", "--model", str(tiny_model_dir), *flags]) == 0
    (encoder,) = served
    assert (encoder.family.name, encoder.limits.max_pixels, encoder.truncate_dim) == ("vlm2vec-v1", 50176, None)
    assert cli.main(["serve", "--model", str(tiny_model_dir), "--truncate-dim", "32"]) == 2
    assert "has no Matryoshka dimensions" in capsys.readouterr().err
