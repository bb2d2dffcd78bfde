"""Worker processes where a native crash or a hang costs one job: real aborts, segfaults, hangs, forged files.

The functions the workers run live at this module's top level (workers import them by name).
"""

from __future__ import annotations

import logging
import os
import signal
import struct
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mediafixtures import make_video
from vlm2vec_core.errors import InputError
from vlm2vec_core.media.isolate import WorkerPool, crash_reason, run_isolated, shutdown_isolated

# -- what the workers run ---------------------------------------------------------------------------------------


def aborts() -> None:
    os.abort()


def segfaults() -> None:
    os.kill(os.getpid(), signal.SIGSEGV)


def hangs() -> None:
    time.sleep(3600)


def doubled(x: int) -> int:
    return x * 2


def raises_value_error() -> None:
    raise ValueError("a plain bug, not an input problem")


def raises_input_error(path: str) -> None:
    raise InputError("not a video", source=path, location="0.00-1.00 s")


def noisy() -> int:
    """Writes to the descriptors directly, as native decoders do (FFmpeg's warnings, libc's abort message)."""
    os.write(1, b"native stdout noise\n")
    os.write(2, b"native stderr noise\n")
    return 1


def heavy_modules() -> list[str]:
    return [name for name in ("torch", "transformers") if name in sys.modules]


def counts_up(n: int, tally: str) -> object:
    """Yields 0..n-1, writing how many values it has produced so far to ``tally`` before each one."""
    for i in range(n):
        Path(tally).write_text(str(i + 1))
        yield i


def clip_count(path: str) -> int:
    """Read a video's clips with the project's loader (decord behind a PyAV probe)."""
    from vlm2vec_core.media.video import video_clips

    return sum(1 for _ in video_clips(path))


# -- fixtures ------------------------------------------------------------------------------------------------------


def forged_avi(path: Path) -> Path:
    """A 1-second AVI whose headers claim 2^31 - 1 frames (``avih`` total frames, ``strh`` length): decord
    throws std::bad_alloc on it, which aborts the process that opened it."""
    make_video(path, seconds=1.0, fps=10, codec="mpeg4")
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, data.find(b"strh") + 8 + 32, 2**31 - 1)  # strh dwLength
    struct.pack_into("<I", data, data.find(b"avih") + 8 + 16, 2**31 - 1)  # avih dwTotalFrames
    path.write_bytes(bytes(data))
    return path


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

# -- tests -----------------------------------------------------------------------------------------------------------


def test_a_crash_or_a_hang_costs_one_job_and_the_worker_is_replaced() -> None:
    with WorkerPool(2) as pool:
        first = set(pool.pids)
        jobs = [
            pool.submit(aborts, source="a.avi"),
            pool.submit(doubled, 1, source="b"),
            pool.submit(segfaults, source="c.mp4"),
            pool.submit(hangs, source="d.pdf", timeout=1.0),
            pool.submit(doubled, 21, source="e"),
        ]
        outcomes: list[object] = []
        for job in jobs:
            try:
                outcomes.append(job.result())
            except InputError as err:
                outcomes.append(str(err))
        assert outcomes == [
            "a.avi: the decoder crashed (SIGABRT)",
            2,
            "c.mp4: the decoder crashed (SIGSEGV)",
            "d.pdf: took longer than 1 s; skipped",
            42,
        ]
        now = set(pool.pids)
        assert len(now) == 2 and all(_alive(pid) for pid in now)  # crashed and hung workers were replaced...
        assert first - now and not any(_alive(pid) for pid in first - now)  # ...and are gone
        assert pool.submit(doubled, 2, source="f").result() == 4  # and they work
    assert crash_reason(-signal.SIGKILL) == "the decoder crashed (SIGKILL)"


def test_a_time_limit_counts_work_not_waiting_for_the_caller(tmp_path: Path) -> None:
    with WorkerPool(1) as pool:
        job = pool.submit(counts_up, 3, str(tmp_path / "tally"), source="slow-consumer", timeout=0.5, depth=1)
        values = []
        for value in job:
            time.sleep(0.4)  # the caller is slow: 1.2 s in all, over the limit, but the worker is idle meanwhile
            values.append(value)
        assert values == [0, 1, 2]


def test_values_stream_in_order_with_a_bounded_number_computed_ahead(tmp_path: Path) -> None:
    tally = tmp_path / "tally"
    with WorkerPool(1, max_inflight=3) as pool:
        job = pool.submit(counts_up, 30, str(tally), source="stream", depth=2)
        taken = []
        for value in job:
            time.sleep(0.02)  # let the worker run ahead as far as it may
            produced = int(tally.read_text())
            assert produced - value - 1 <= 3 + 2, f"{produced} produced when value {value} was taken"
            taken.append(value)
        assert taken == list(range(30))
        assert pool.peak_inflight <= 3 + 2


def test_a_later_job_runs_ahead_while_the_caller_takes_the_earliest(tmp_path: Path) -> None:
    with WorkerPool(2, max_inflight=6) as pool:
        first = pool.submit(counts_up, 5, str(tmp_path / "first"), source="first", depth=1)
        second = pool.submit(counts_up, 5, str(tmp_path / "second"), source="second", depth=1)
        values = []
        for value in first:
            time.sleep(0.1)
            values.append(value)
        assert int((tmp_path / "second").read_text()) == 5  # computed meanwhile, in the other worker
        assert values + list(second) == [0, 1, 2, 3, 4] * 2


def test_errors_of_the_function_come_back_as_they_are() -> None:
    with WorkerPool(1) as pool:
        with pytest.raises(ValueError, match="a plain bug"):
            pool.submit(raises_value_error, source="x").result()
        with pytest.raises(InputError) as caught:
            pool.submit(raises_input_error, "/v/talk.mp4", source="x").result()
        assert (caught.value.reason, caught.value.source, caught.value.location) == (
            "not a video",
            "/v/talk.mp4",
            "0.00-1.00 s",
        )


@pytest.fixture
def shared_pool() -> Iterator[None]:
    yield
    shutdown_isolated()  # no worker of the shared pool outlives the test


def test_run_isolated_returns_or_names_the_source(shared_pool: None) -> None:
    assert run_isolated(doubled, 5, timeout=30, source="five") == 10
    with pytest.raises(InputError, match=r"^upload\.mp4: the decoder crashed \(SIGABRT\)$"):
        run_isolated(aborts, timeout=30, source="upload.mp4")
    with pytest.raises(InputError, match=r"^upload\.pdf: took longer than 0\.5 s; skipped$"):
        run_isolated(hangs, timeout=0.5, source="upload.pdf")
    assert run_isolated(doubled, 6, timeout=30, source="six") == 12  # the pool goes on


def test_workers_import_neither_torch_nor_transformers(shared_pool: None) -> None:
    pytest.importorskip("torch")
    import torch  # noqa: F401 - loaded in the parent, as when a local model runs

    assert run_isolated(heavy_modules, timeout=60, source="modules") == []


def test_workers_are_gone_after_close_and_after_ctrl_c() -> None:
    pool = WorkerPool(2)
    pids = pool.pids
    assert all(_alive(pid) for pid in pids)
    pool.close()
    assert not any(_alive(pid) for pid in pids)

    with pytest.raises(KeyboardInterrupt), WorkerPool(2) as pool:  # noqa: PT012 - the interrupt is the point
        pids = pool.pids
        pool.submit(hangs, source="busy")
        raise KeyboardInterrupt
    assert not any(_alive(pid) for pid in pids)


def test_a_forged_avi_that_aborts_decord_costs_only_that_file(tmp_path: Path, shared_pool: None) -> None:
    bomb = forged_avi(tmp_path / "bomb.avi")
    good = make_video(tmp_path / "good.mp4", seconds=2.0)
    with pytest.raises(InputError) as caught:
        run_isolated(clip_count, str(bomb), timeout=60, source=bomb)
    # The decoder's abort, or a loader that now refuses the header before decord sees it: the file is named.
    assert caught.value.source == str(bomb)
    assert run_isolated(clip_count, str(good), timeout=60, source=good) == 1


NOISY = """
import logging, sys
from vlm2vec_core.media.isolate import WorkerPool
import test_isolation
if __name__ == "__main__":
    logging.getLogger("vlm2vec_core").setLevel(int(sys.argv[1]))
    with WorkerPool(1) as pool:
        print("result", pool.submit(test_isolation.noisy, source="noisy").result())
"""


@pytest.mark.parametrize("level", [logging.ERROR, logging.WARNING])
def test_native_output_of_workers_never_reaches_stdout_and_stderr_only_when_not_quieted(
    tmp_path: Path, level: int
) -> None:
    import subprocess

    script = tmp_path / "noisy.py"
    script.write_text(NOISY)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), str(Path(__file__).parents[1])])}
    done = subprocess.run(
        [sys.executable, str(script), str(level)], capture_output=True, text=True, env=env, timeout=120, check=True
    )
    assert done.stdout == "result 1\n"  # a CLI's --json output stays clean
    noise = "native stdout noise\nnative stderr noise\n"
    assert done.stderr == ("" if level > logging.WARNING else noise)  # the CLI without -v quiets the library
