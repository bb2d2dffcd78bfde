"""Wrong options and missing devices end in one line on stderr and a distinct exit code, not a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from clihelp import Indexed, run_cli, store_args

from vlm2vec_core.encoders.remote import RemoteEncoder


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("device", ["cuda", "gpu", "tpu"])
def test_a_device_that_is_not_there(indexed: Indexed, tiny_model_dir: Path, device: str):
    result = run_cli("search", "x", *store_args(indexed.tmp), "--model", tiny_model_dir, "--device", device)
    assert result.returncode == 3, result.stderr
    assert result.stderr.strip().startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("option", "value"), [("--batch-size", "0"), ("--clip-seconds", "0"), ("--batch-size", "-3")])
def test_impossible_numbers_are_refused_by_the_parser(tmp_path: Path, option: str, value: str):
    result = run_cli("index", tmp_path, option, value)
    assert result.returncode == 2 and option in result.stderr and "Traceback" not in result.stderr


def test_a_remote_url_ending_in_v1_is_taken():
    with RemoteEncoder("http://127.0.0.1:9/v1/", family="vlm2vec-v2") as remote:
        assert remote.base_url == "http://127.0.0.1:9"


def test_a_chroma_url_with_no_server_is_one_line_before_any_model_loads(tmp_path: Path):
    # the model named does not exist: had it been looked for first, the error would say so instead
    args = ("--chroma-url", "http://127.0.0.1:9", "--model", tmp_path / "no-such-model")
    for command in (("index", tmp_path), ("search", "x"), ("info",)):
        result = run_cli(*command, *(args if command[0] != "info" else args[:2]))
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: no Chroma server answers at http://127.0.0.1:9")
        assert "chroma run" in lines[0]


def test_ask_with_a_chat_endpoint_that_is_not_there(indexed: Indexed, tiny_model_dir: Path):
    result = run_cli(
        "ask", "what is it?", *store_args(indexed.tmp), "--model", tiny_model_dir, "-k", "1",
        "--chat-base-url", "http://127.0.0.1:9/v1", "--chat-model", "m",
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        "error: the chat endpoint http://127.0.0.1:9/v1 cannot be reached ([Errno 111] Connection refused); "
        "the hits are above"
    )
    assert " 1  " in result.stdout  # the retrieval was shown


def test_verbose_anywhere_on_the_line_gives_the_details(tmp_path: Path):
    quiet = run_cli("search", "x", "--chroma-url", "http://127.0.0.1:9")
    loud = run_cli("search", "x", "--chroma-url", "http://127.0.0.1:9", "-v")
    assert quiet.returncode == loud.returncode == 2
    assert "DEBUG" not in quiet.stderr and "DEBUG" in loud.stderr  # -v after the subcommand counts too
    before = run_cli("-v", "search", "x", "--chroma-url", "http://127.0.0.1:9")
    assert "DEBUG" in before.stderr


def test_warnings_read_like_the_cli_s_own_lines(tmp_path: Path, tiny_model_dir: Path):
    from mediafixtures import make_image

    # the tiny checkpoint is plain Qwen2-VL weights: a new index assumes the family, with one warning
    (tmp_path / "docs").mkdir()
    make_image(tmp_path / "docs" / "pic.png")
    result = run_cli("index", tmp_path / "docs", *store_args(tmp_path), "--model", tiny_model_dir)
    assert result.returncode == 0, result.stderr
    warning = [line for line in result.stderr.splitlines() if "assuming" in line]
    assert warning and warning[0].startswith("warning: ") and "--family" in warning[0]
    assert "family=... /" not in result.stderr


def test_search_json_keys_come_in_one_order(indexed: Indexed, tiny_model_dir: Path):
    import json

    result = run_cli("search", "page", *store_args(indexed.tmp), "--model", tiny_model_dir, "-k", "6", "--json")
    rows = json.loads(result.stdout)
    assert rows
    for row in rows:
        keys = list(row)
        assert keys[:4] == ["rank", "score", "id", "kind"]
        assert keys.index("file_name") < keys.index("source") < keys.index("reference")
