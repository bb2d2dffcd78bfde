"""A real `vlm2vec serve` process on 127.0.0.1 over the tiny checkpoint."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from servehelp import Server

from procs import free_port


@pytest.fixture(scope="session")
def server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tiny_model_dir, free_port(), tmp_path_factory.mktemp("server") / "server.log").start()
    yield srv
    srv.stop()


@pytest.fixture
def fresh_server(tiny_model_dir: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A server of the test's own (it may be killed), built by calling the fixture with extra CLI flags."""
    started: list[Server] = []

    def make(*extra: str, port: int | None = None) -> Server:
        srv = Server(tiny_model_dir, port or free_port(), tmp_path / "server.log", *extra).start()
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()
