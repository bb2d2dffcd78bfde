"""Wrong options and missing devices end in one line on stderr and a distinct exit code, not a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from clihelp import Indexed, run_cli, store_args

from vlm2vec_core.remote import RemoteEncoder


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
