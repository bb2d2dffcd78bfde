"""Video loading: frame sampling, clips, decoding only what is needed, and bad input."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import mediafixtures
from vlm2vec_core.errors import InputError
from vlm2vec_core.media.video import read_video_frames, uniform_frame_indices, video_clips
from vlm2vec_core.types import VideoClip

FPS = 10


@pytest.fixture(scope="module")
def video3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3.0 s at 10 fps: 30 frames, a new background colour every second."""
    return mediafixtures.make_video(tmp_path_factory.mktemp("video") / "three.mp4", seconds=3.0, fps=FPS)


class _BatchSpy:
    """Records the indices of every batch of frames the video reader is asked to decode."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from vlm2vec_core.media import video

        self.calls: list[list[int]] = []
        original = video._Reader.frames
        spy = self

        def frames(reader: video._Reader, indices: list[int]) -> list[np.ndarray]:
            spy.calls.append([int(i) for i in indices])
            return original(reader, indices)

        monkeypatch.setattr(video._Reader, "frames", frames)


@pytest.fixture
def batch_spy(monkeypatch: pytest.MonkeyPatch) -> _BatchSpy:
    return _BatchSpy(monkeypatch)


# --- uniform_frame_indices -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "num", "expected"),
    [
        (30, 8, [0, 4, 8, 12, 16, 20, 24, 29]),
        (10, 8, [0, 1, 2, 3, 5, 6, 7, 9]),
        (8, 8, list(range(8))),
        (5, 8, [0, 1, 2, 3, 4]),
        (1, 8, [0]),
        (0, 8, []),
        (-3, 8, []),
        (100, 1, [0]),
    ],
)
def test_uniform_frame_indices(total: int, num: int, expected: list[int]) -> None:
    assert uniform_frame_indices(total, num) == expected


def test_uniform_frame_indices_matches_upstream_formula() -> None:
    for total in (9, 17, 250, 1001):
        assert uniform_frame_indices(total) == np.linspace(0, total - 1, 8).astype(int).tolist()
        assert all(isinstance(i, int) for i in uniform_frame_indices(total))


# --- clips -----------------------------------------------------------------------------------------------


def test_one_second_clips(video3: Path) -> None:
    clips = list(video_clips(video3, clip_seconds=1.0))
    assert [c.index for c in clips] == [0, 1, 2]
    assert [(c.start, c.end) for c in clips] == [(0.0, 1.0), (1.0, 2.0), (2.0, 3.0)]
    for k, clip in enumerate(clips):
        assert isinstance(clip, VideoClip)
        assert clip.source == video3
        assert clip.frame_indices == tuple(10 * k + i for i in (0, 1, 2, 3, 5, 6, 7, 9))
        assert len(clip.frames) == 8
        assert all(f.mode == "RGB" and f.size == (160, 120) for f in clip.frames)


def test_a_range_of_clips_is_those_clips_of_a_whole_run(video3: Path) -> None:
    whole = list(video_clips(video3, clip_seconds=1.0))
    for chosen, expected in (((1, 2), whole[1:2]), ((1, None), whole[1:]), ((0, 99), whole), ((3, None), [])):
        got = list(video_clips(video3, clip_seconds=1.0, clips=chosen))
        assert [(c.index, c.start, c.end, c.frame_indices) for c in got] == [
            (c.index, c.start, c.end, c.frame_indices) for c in expected
        ]
        for a, b in zip(got, expected, strict=True):
            assert [f.tobytes() for f in a.frames] == [f.tobytes() for f in b.frames]
    with pytest.raises(ValueError, match="first <= stop"):
        video_clips(video3, clips=(2, 1))


def test_clip_frames_show_their_own_second(video3: Path) -> None:
    """Each clip's frames come from its own second (the background colour changes every second)."""
    for k, clip in enumerate(video_clips(video3, clip_seconds=1.0)):
        expected = np.array(mediafixtures.video_frame(k, 0, FPS, (160, 120)).getpixel((4, 4)), dtype=float)
        for frame in clip.frames:
            assert np.abs(np.array(frame.getpixel((4, 4)), dtype=float) - expected).max() < 30, (k, expected)


def test_last_shorter_clip_is_kept(video3: Path) -> None:
    clips = list(video_clips(video3, clip_seconds=1.3))
    assert [(c.start, c.end) for c in clips] == [(0.0, 1.3), (1.3, 2.6), (2.6, 3.0)]
    assert clips[0].frame_indices == tuple(np.linspace(0, 12, 8).astype(int).tolist())
    assert clips[1].frame_indices == tuple(13 + i for i in np.linspace(0, 12, 8).astype(int).tolist())
    assert clips[2].frame_indices == (26, 27, 28, 29)  # fewer than 8 frames: all of them, no padding
    assert len(clips[2].frames) == 4


def test_frames_inside_each_clip(video3: Path) -> None:
    for clip in video_clips(video3, clip_seconds=0.7, num_frames=3):
        times = [i / FPS for i in clip.frame_indices]
        assert all(clip.start - 1e-6 <= t < clip.end for t in times), clip
        assert list(clip.frame_indices) == sorted(set(clip.frame_indices))


def test_stride_overlaps(video3: Path) -> None:
    clips = list(video_clips(video3, clip_seconds=1.0, stride_seconds=0.5))
    assert [c.start for c in clips] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    assert [c.end for c in clips] == [1.0, 1.5, 2.0, 2.5, 3.0, 3.0]
    assert clips[1].frame_indices == tuple(5 + i for i in (0, 1, 2, 3, 5, 6, 7, 9))
    assert clips[-1].frame_indices == (25, 26, 27, 28, 29)


def test_stride_longer_than_clip_leaves_gaps(video3: Path) -> None:
    clips = list(video_clips(video3, clip_seconds=0.5, stride_seconds=1.0))
    assert [(c.start, c.end) for c in clips] == [(0.0, 0.5), (1.0, 1.5), (2.0, 2.5)]
    assert clips[1].frame_indices == (10, 11, 12, 13, 14)


def test_fewer_frames_than_requested(video3: Path) -> None:
    clips = list(video_clips(video3, clip_seconds=0.5, num_frames=8))
    assert len(clips) == 6
    assert all(len(c.frames) == 5 for c in clips)
    assert clips[3].frame_indices == (15, 16, 17, 18, 19)


def test_clip_shorter_than_a_frame_gets_the_frame_on_screen(video3: Path) -> None:
    clips = list(video_clips(video3, clip_seconds=0.05, stride_seconds=0.25))
    assert [c.frame_indices for c in clips[:4]] == [(0,), (2,), (5,), (7,)]


def test_decodes_only_needed_frames_lazily(video3: Path, batch_spy: _BatchSpy) -> None:
    gen = video_clips(video3, clip_seconds=1.0)
    assert batch_spy.calls == []
    first = next(gen)
    assert batch_spy.calls == [list(first.frame_indices)]  # one clip decoded, 8 of its 10 frames
    rest = list(gen)
    assert batch_spy.calls == [list(c.frame_indices) for c in [first, *rest]]
    assert all(len(call) == 8 for call in batch_spy.calls)


def test_timestamps_fall_back_to_fps(tmp_path: Path) -> None:
    """AVI stores no per-frame times (FFmpeg derives them from the order): the frame rate gives the same clips."""
    path = mediafixtures.make_video(tmp_path / "three.avi", seconds=3.0, fps=FPS)
    clips = list(video_clips(path, clip_seconds=1.3))
    assert [(c.start, c.end) for c in clips] == [(0.0, 1.3), (1.3, 2.6), (2.6, 3.0)]
    assert clips[2].frame_indices == (26, 27, 28, 29)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"clip_seconds": 0}, "clip_seconds"),
        ({"clip_seconds": -1.0}, "clip_seconds"),
        ({"stride_seconds": 0}, "stride_seconds"),
        ({"num_frames": 0}, "num_frames"),
        ({"num_frames": 2.5}, "num_frames"),
    ],
)
def test_argument_validation(video3: Path, kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        video_clips(video3, **kwargs)  # type: ignore[arg-type]


# --- read_video_frames -----------------------------------------------------------------------------------


def test_read_video_frames(video3: Path, batch_spy: _BatchSpy) -> None:
    frames = read_video_frames(video3)
    assert len(frames) == 8
    assert all(f.mode == "RGB" and f.size == (160, 120) for f in frames)
    assert batch_spy.calls == [[0, 4, 8, 12, 16, 20, 24, 29]]


def test_read_video_frames_fewer_than_requested(video3: Path) -> None:
    assert len(read_video_frames(video3, num_frames=50)) == 30
    with pytest.raises(ValueError, match="num_frames"):
        read_video_frames(video3, num_frames=0)


# --- bad input -------------------------------------------------------------------------------------------


def _bad_files(directory: Path) -> dict[str, Path]:
    """One file per kind of bad input, keyed by a short name."""
    good = mediafixtures.make_video(directory / "good.mp4", seconds=3.0, fps=FPS)
    files: dict[str, Path] = {}
    files["empty"] = directory / "empty.mp4"
    files["empty"].write_bytes(b"")
    files["text"] = directory / "text.mp4"
    files["text"].write_text("this is not a video\n" * 20)
    files["png"] = mediafixtures.make_image(directory / "image.png").rename(directory / "image.mp4")
    for fraction in (0.5, 0.9):
        for faststart in (False, True):
            name = f"cut{int(fraction * 100)}{'_faststart' if faststart else ''}"
            path = mediafixtures.make_video(directory / f"{name}.mp4", seconds=3.0, fps=FPS, faststart=faststart)
            files[name] = mediafixtures.truncate(path, fraction)
    files["frameless"] = mediafixtures.make_frameless_video(directory / "frameless.mp4")
    files["audio"] = mediafixtures.make_audio(directory / "audio.mp4")
    files["missing"] = directory / "missing.mp4"
    assert good.exists()
    return files


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return _bad_files(tmp_path_factory.mktemp("bad"))


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("missing", "file not found"),
        ("empty", r"empty file \(0 bytes\)"),
        ("text", "not a readable video"),
        ("png", r"an image \(png_pipe\), not a video"),
        ("cut50", "truncated"),
        ("cut90", "truncated"),
        ("frameless", "no video stream"),
        ("audio", r"no video stream \(only audio\)"),
    ],
)
def test_bad_file_names_file_and_reason(bad_files: dict[str, Path], name: str, reason: str) -> None:
    path = bad_files[name]
    with pytest.raises(InputError, match=reason) as info:
        list(video_clips(path, clip_seconds=1.0))
    assert info.value.source == str(path)
    assert str(info.value).startswith(f"{path}: ")
    with pytest.raises(InputError, match=reason):
        read_video_frames(path)
    errors: list[InputError] = []
    assert list(video_clips(path, errors=errors)) == []
    assert [e.source for e in errors] == [str(path)]


def test_bad_inputs_never_crash_or_hang_the_process(tmp_path: Path) -> None:
    """FFmpeg is native code: run every bad input in a child process, which must exit cleanly and quickly."""
    files = _bad_files(tmp_path)
    corrupt = mediafixtures.zero_tail(
        mediafixtures.make_video(tmp_path / "corrupt.mp4", seconds=6.0, fps=FPS, faststart=True), 0.5
    )
    paths = [*files.values(), corrupt]
    script = textwrap.dedent(
        """
        import sys
        from vlm2vec_core.media.video import video_clips, read_video_frames
        from vlm2vec_core.errors import InputError
        for path in sys.argv[1:]:
            errors = []
            list(video_clips(path, clip_seconds=1.0, errors=errors))
            try:
                read_video_frames(path)
            except InputError:
                pass
            print("ok", path, len(errors), flush=True)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("ok ") == len(paths)


@pytest.fixture(scope="module")
def corrupt_tail(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Index intact, last quarter of the bytes zeroed: the first clips decode, the last ones do not.

    Where the damage starts depends on the bytes; the tests only rely on clips far from it.
    """
    path = mediafixtures.make_video(
        tmp_path_factory.mktemp("corrupt") / "corrupt.mp4", seconds=10.0, fps=FPS, faststart=True
    )
    return mediafixtures.zero_tail(path, 0.75)


def test_mid_file_decode_failure_names_the_time(corrupt_tail: Path) -> None:
    gen = video_clips(corrupt_tail, clip_seconds=1.0)
    assert next(gen).index == 0
    expected = r"corrupt\.mp4, \d+\.\d\d-\d+\.\d\d s: frames failed to decode: frame \d+ \(\d+\.\d\d s\) did not"
    with pytest.raises(InputError, match=expected) as info:
        list(gen)
    assert re.fullmatch(r"\d+\.00-\d+\.00 s", info.value.location or "")
    with pytest.raises(InputError, match=r"frames failed to decode") as info:
        read_video_frames(corrupt_tail)  # the whole video's sample: the time of the first frame missing
    assert re.fullmatch(r"[5-9]\.\d0 s", info.value.location or ""), info.value


def test_mid_file_decode_failure_is_collected_once(corrupt_tail: Path) -> None:
    """The zeroed tail fails in every clip from where it starts: that is one problem, reported once."""
    errors: list[InputError] = []
    clips = list(video_clips(corrupt_tail, clip_seconds=1.0, errors=errors))
    assert [c.index for c in clips] == list(range(len(clips)))  # the good part, in order
    assert 5 <= len(clips) < 10
    (error,) = errors
    assert error.source == str(corrupt_tail)
    assert error.location == f"{len(clips)}.00-10.00 s"
    assert f"in {10 - len(clips)} consecutive clips" in error.reason


def test_bad_file_between_good_ones_is_collected(tmp_path: Path, video3: Path) -> None:
    other = mediafixtures.make_video(tmp_path / "other.mp4", seconds=2.0, fps=FPS, seed=1)
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    errors: list[InputError] = []
    clips = [c for p in (video3, bad, other) for c in video_clips(p, clip_seconds=1.0, errors=errors)]
    assert [(c.source.name, c.index) for c in clips] == [
        ("three.mp4", 0),
        ("three.mp4", 1),
        ("three.mp4", 2),
        ("other.mp4", 0),
        ("other.mp4", 1),
    ]
    assert [e.source for e in errors] == [str(bad)]


def test_frame_on_a_boundary_with_rounding_noise_goes_to_the_later_clip() -> None:
    from vlm2vec_core.media.video import _clip_frame_indices, _default_sampler, _Timeline

    # Container timestamps a hair early (as float32 / time-base rounding gives): frame 10 starts at 0.9999 s.
    starts = np.arange(30) / FPS - 1e-4
    starts[0] = 0.0
    timeline = _Timeline(starts=starts, duration=3.0, frame_interval=1 / FPS)
    assert _clip_frame_indices(timeline, 0.0, 1.0, _default_sampler(8)) == [0, 1, 2, 3, 5, 6, 7, 9]
    assert _clip_frame_indices(timeline, 1.0, 2.0, _default_sampler(8)) == [10, 11, 12, 13, 15, 16, 17, 19]
