"""`vlm2vec ui`'s refusals, each one line before anything is served (no browser needed)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from uihelp import Corpus

from vlm2vec_core.apps import cli


def test_no_index_is_one_line(tmp_path: Path, capsys: Any) -> None:
    db = tmp_path / "nothing-here"
    assert cli.main(["ui", "--db", str(db)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: no index at {db}: run `vlm2vec index PATH --db {db}` first"]
    assert not db.exists()


def test_a_port_in_use_is_said_before_the_model_loads(
    corpus: Corpus, tiny_encoder: Any, monkeypatch: Any, capsys: Any
) -> None:
    monkeypatch.setattr(cli, "_encoder", lambda args: tiny_encoder)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert cli.main(["ui", "--db", str(corpus.db), "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: cannot listen on 127.0.0.1:{port} (")
    assert "in use" in err[-1] and err[-1].endswith("try another --port")
    assert not any("vlm2vec ui: http" in line for line in err)
