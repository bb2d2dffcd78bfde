"""Video decoding with PyAV: the frames and pixels it gives, what it decodes, and forged or damaged files.

Every layout in ``LAYOUTS`` is checked three ways: the clips' frames are byte-identical to decoding every frame
with PyAV (the reference), the frames each clip picks are those decord picked (the loader used decord before),
and decord's own decode of the whole file is byte-identical to the reference (8-bit video decodes the same).
"""

from __future__ import annotations

import json
import logging
import os
import random
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

import mediafixtures
from vlm2vec_core.errors import InputError
from vlm2vec_core.media import video
from vlm2vec_core.media.video import read_clip_frames, read_frames_at, read_video_frames, video_clips

_X264 = {"preset": "ultrafast"}
_BFRAMES = {"preset": "medium", "bf": "3", "g": "12"}

# name -> (file name, make_coded_video options): GOP layouts, B-frames, open GOPs, containers, odd timing.
LAYOUTS: dict[str, tuple[str, dict[str, Any]]] = {
    "short_gop": ("short.mp4", {"n_frames": 60, "options": {**_X264, "g": "10"}}),
    "long_gop_250": ("long.mp4", {"n_frames": 300, "fps": 25, "options": {**_X264, "g": "250"}}),
    "bframes": ("bf.mp4", {"n_frames": 60, "options": _BFRAMES, "textured": True}),
    "open_gop": ("open.mp4", {"n_frames": 60, "options": {**_BFRAMES, "x264-params": "open-gop=1"}}),
    "bframes_mkv": ("bf.mkv", {"n_frames": 60, "options": _BFRAMES}),
    "ntsc_rate": ("ntsc.mp4", {"n_frames": 45, "fps": 30, "options": {**_X264, "g": "30"}}),
    "vp9_webm": ("vp9.webm", {"n_frames": 30, "codec": "libvpx-vp9", "options": {"g": "10", "deadline": "realtime"}}),
    "bframes_avi": ("bf.avi", {"n_frames": 60, "options": _BFRAMES}),
    "mpeg4_avi": ("m4.avi", {"n_frames": 40, "codec": "mpeg4", "options": {"g": "12", "bf": "2"}}),
    "yuv444": ("444.mp4", {"n_frames": 30, "size": (162, 98), "pix_fmt": "yuv444p", "options": _X264}),
    "yuv422": ("422.mp4", {"n_frames": 20, "pix_fmt": "yuv422p", "options": _X264}),
    "bt709_full_range": (
        "709.mp4",
        {"n_frames": 20, "pix_fmt": "yuvj420p", "options": {**_X264, "x264-params": "colormatrix=bt709:fullrange=on"}},
    ),
    "mjpeg_avi": ("mjpeg.avi", {"n_frames": 20, "codec": "mjpeg", "pix_fmt": "yuvj420p"}),
}
# (clip_seconds, stride_seconds, num_frames): plain, overlapping, long, and clips shorter than a frame
CLIPS = [(1.0, None, 8), (0.7, 0.3, 3), (2.5, None, 8), (0.05, 0.25, 8)]


def _vfr_times() -> list[int]:
    rng = random.Random(3)
    times = [0]
    for _ in range(49):
        times.append(times[-1] + rng.randrange(20, 180))  # 20 to 180 ms between frames
    return times


@pytest.fixture(scope="module")
def layouts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("layouts")
    paths = {name: mediafixtures.make_coded_video(folder / file, **opts) for name, (file, opts) in LAYOUTS.items()}
    paths["vfr_mp4"] = mediafixtures.make_vfr_video(folder / "vfr.mp4", _vfr_times())
    paths["vfr_mkv"] = mediafixtures.make_vfr_video(folder / "vfr.mkv", _vfr_times())
    return paths


def _decode_all(path: Path) -> list[np.ndarray]:
    """The reference: every frame, decoded in order with PyAV, as RGB."""
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


@pytest.fixture(scope="module")
def references(layouts: dict[str, Path]) -> dict[str, list[np.ndarray]]:
    return {name: _decode_all(path) for name, path in layouts.items()}


LAYOUT_NAMES = [*LAYOUTS, "vfr_mp4", "vfr_mkv"]


@pytest.mark.parametrize("name", LAYOUT_NAMES)
def test_clip_frames_equal_decoding_every_frame(
    name: str, layouts: dict[str, Path], references: dict[str, list[np.ndarray]]
) -> None:
    path, reference = layouts[name], references[name]
    for clip_seconds, stride, num_frames in CLIPS:
        clips = list(video_clips(path, clip_seconds=clip_seconds, stride_seconds=stride, num_frames=num_frames))
        assert clips, (name, clip_seconds)
        for clip in clips:
            for index, frame in zip(clip.frame_indices, clip.frames, strict=True):
                assert np.array_equal(np.asarray(frame), reference[index]), (name, clip_seconds, clip.index, index)
    frames, indices, _ = read_frames_at(path, lambda count, _fps: [count - 1, 0, count // 2, 0])
    assert indices == [len(reference) - 1, 0, len(reference) // 2, 0]
    assert all(np.array_equal(np.asarray(f), reference[i]) for f, i in zip(frames, indices, strict=True))


def _decord_clip_indices(path: Path, clip_seconds: float, stride: float | None, num_frames: int) -> list[Any]:
    """The clips' frames as the decord-based loader chose them (its frame count and timestamps)."""
    decord = pytest.importorskip("decord")
    reader = decord.VideoReader(str(path), ctx=decord.cpu(0))
    count = len(reader)
    stamps = np.round(np.asarray(reader.get_frame_timestamp(list(range(count))), dtype=np.float64), 6)
    if video._usable(stamps, count):
        interval = float(np.median(np.diff(stamps[:, 0])))
        duration = max(float(stamps[-1, 1]), float(stamps[-1, 0]) + interval)
        timeline = video._Timeline(stamps[:, 0], duration, interval)
    else:
        fps = float(reader.get_avg_fps())
        timeline = video._Timeline(np.arange(count) / fps, count / fps, 1 / fps)
    pick = video._default_sampler(num_frames)
    spans = video._clip_spans(timeline.duration, clip_seconds, stride or clip_seconds)
    return [(round(s, 6), round(e, 6), video._clip_frame_indices(timeline, s, e, pick)) for s, e in spans]


@pytest.mark.parametrize("name", LAYOUT_NAMES)
def test_frames_chosen_are_those_decord_chose(name: str, layouts: dict[str, Path]) -> None:
    path = layouts[name]
    for clip_seconds, stride, num_frames in CLIPS:
        ours = video_clips(path, clip_seconds=clip_seconds, stride_seconds=stride, num_frames=num_frames)
        got = [(round(c.start, 6), round(c.end, 6), list(c.frame_indices)) for c in ours]
        assert got == _decord_clip_indices(path, clip_seconds, stride, num_frames), (name, clip_seconds)


@pytest.mark.parametrize("name", LAYOUT_NAMES)
def test_decord_decoded_the_same_pixels(
    name: str, layouts: dict[str, Path], references: dict[str, list[np.ndarray]]
) -> None:
    """What the loader returned before (decord, reading the file through) is byte-identical to PyAV's frames.

    (decord's random access in AVI was wrong: it returned other frames than these; the new loader does not.)"""
    decord = pytest.importorskip("decord")
    reader = decord.VideoReader(str(layouts[name]), ctx=decord.cpu(0))
    theirs = reader.get_batch(list(range(len(reader)))).asnumpy()
    assert len(theirs) == len(references[name])
    assert all(np.array_equal(a, b) for a, b in zip(theirs, references[name], strict=True))


class _DecodeCounter:
    """Counts the frames that come out of the decoder and the seeks."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.frames = 0
        self.seeks = 0
        decoded, seek = video._Reader._decoded, video._Reader._seek
        counter = self

        def counting(reader: video._Reader) -> Any:
            for item in decoded(reader):
                counter.frames += 1
                yield item

        def seeking(reader: video._Reader, key: int) -> None:
            counter.seeks += key > 0  # key 0 is the start: decoding from there is no seek
            seek(reader, key)

        monkeypatch.setattr(video._Reader, "_decoded", counting)
        monkeypatch.setattr(video._Reader, "_seek", seeking)


def test_a_late_clip_decodes_from_the_keyframe_before_it(
    layouts: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Long GOP (keyframes at frames 0 and 250 of 300): 11-12 s needs frames 275..299 only, from keyframe 250."""
    counter = _DecodeCounter(monkeypatch)
    frames, indices = read_clip_frames(layouts["long_gop_250"], 11.0, 12.0)
    assert indices == [275 + i for i in (0, 3, 6, 10, 13, 17, 20, 24)]  # linspace(0, 24, 8) of its 25 frames
    assert counter.seeks == 1
    assert counter.frames <= 300 - 250
    assert len(frames) == 8


def test_clips_skip_the_groups_of_pictures_they_do_not_need(
    layouts: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Short clips far apart in a short-GOP file: the frames between them are never decoded."""
    counter = _DecodeCounter(monkeypatch)
    clips = list(video_clips(layouts["short_gop"], clip_seconds=0.3, stride_seconds=2.0))
    assert [c.frame_indices for c in clips] == [(0, 1, 2), (20, 21, 22), (40, 41, 42)]
    assert counter.seeks == 2
    assert counter.frames == 9  # keyframes at 0, 20, 40 (g=10): three frames decoded per clip


def test_frames_no_one_references_are_not_decoded(layouts: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """With B-frames, frames that are not references and not wanted are dropped by the decoder (skip_frame)."""
    counter = _DecodeCounter(monkeypatch)
    read_video_frames(layouts["bframes"], num_frames=2)  # frames 0 and 59
    assert counter.frames < 60


def test_frames_an_edit_list_hides_are_not_frames(tmp_path: Path) -> None:
    """An mp4 whose edit list starts 5 frames in: those 5 are decoded (references) but never shown."""
    path = mediafixtures.make_coded_video(tmp_path / "edit.mp4", n_frames=30, options=_BFRAMES, first_pts=-5)
    reference = _decode_all(path)
    assert len(reference) == 25
    errors: list[InputError] = []
    clips = list(video_clips(path, clip_seconds=1.0, errors=errors))
    assert errors == []  # not "truncated": the header's 30 frames include the 5 hidden ones
    assert [(c.start, c.end) for c in clips] == [(0.0, 1.0), (1.0, 2.0), (2.0, 2.5)]
    assert clips[-1].frame_indices == (20, 21, 22, 23, 24)
    for clip in clips:
        for index, frame in zip(clip.frame_indices, clip.frames, strict=True):
            assert np.array_equal(np.asarray(frame), reference[index])


# --- forged and damaged files ----------------------------------------------------------------------------

_CHILD = textwrap.dedent(
    """
    import json, sys, time
    from vlm2vec_core.errors import InputError
    from vlm2vec_core.media.video import read_video_frames, video_clips
    for path in sys.argv[1:]:
        print(json.dumps({"path": path, "started": True}), flush=True)
        begun = time.perf_counter()
        errors = []
        clips = list(video_clips(path, clip_seconds=1.0, errors=errors))
        try:
            whole = len(read_video_frames(path))
        except InputError as err:
            whole = "InputError: " + str(err)
        print(json.dumps({
            "path": path,
            "clips": [[c.start, c.end, list(c.frame_indices)] for c in clips],
            "errors": [[e.source, e.location, e.reason] for e in errors],
            "whole": whole,
            "seconds": time.perf_counter() - begun,
        }), flush=True)
    """
)


def _run_child(paths: list[Path], timeout: float = 120) -> tuple[int, dict[str, dict[str, Any]], str | None, str]:
    """Load ``paths`` in one child process; its exit code, the outcome per path, the path it died on, stderr."""
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        check=False,
    )
    outcomes: dict[str, dict[str, Any]] = {}
    started = None
    for line in done.stdout.splitlines():
        row = json.loads(line)
        if row.get("started"):
            started = row["path"]
        else:
            outcomes[row["path"]] = row
            started = None
    return done.returncode, outcomes, started, done.stderr


def _forged(tmp_path: Path) -> dict[str, Path]:
    make = mediafixtures.make_video
    return {
        "avi_count": mediafixtures.forge_avi_frame_count(make(tmp_path / "count.avi", seconds=3.0), 2**31),
        "mp4_count": mediafixtures.forge_mp4_sample_count(
            make(tmp_path / "count.mp4", seconds=3.0, faststart=True), 2**31
        ),
        # 9 frames at 2^-31 = 4.7e-10 fps, as the fuzzing run found: 9 frames over 1.9e10 s
        "avi_rate": mediafixtures.forge_avi_rate(make(tmp_path / "rate.avi", seconds=0.9), 2**31, 1),
        "mp4_delta": mediafixtures.forge_mp4_sample_delta(
            make(tmp_path / "delta.mp4", seconds=0.9, faststart=True), 2**31 - 1
        ),
    }


@pytest.fixture(scope="module")
def forged_outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The forged files, loaded in a child process (a native abort there cannot take the tests with it)."""
    files = _forged(tmp_path_factory.mktemp("forged"))
    code, outcomes, died_on, stderr = _run_child(list(files.values()))
    assert code == 0, (died_on, stderr[-2000:])
    return {name: outcomes[str(path)] for name, path in files.items()}


@pytest.mark.parametrize("name", ["avi_count", "mp4_count"])
def test_a_header_claiming_2_31_frames_is_checked_against_the_packets(
    forged_outcomes: dict[str, dict[str, Any]], name: str
) -> None:
    """decord sized a table by the declared count (std::bad_alloc, SIGABRT); the frames really there are used."""
    outcome = forged_outcomes[name]
    assert [c[:2] for c in outcome["clips"]] == [[0.0, 1.0], [1.0, 2.0], [2.0, 3.0]]
    assert outcome["clips"][2][2] == [20, 21, 22, 23, 25, 26, 27, 29]
    ((source, location, reason),) = outcome["errors"]  # said once
    assert Path(source).name == {"avi_count": "count.avi", "mp4_count": "count.mp4"}[name]
    assert location == "3.00 s"
    assert "declares 2147483648 frames but holds 30" in reason
    assert outcome["whole"].startswith("InputError: ") and "2147483648" in outcome["whole"]


@pytest.mark.parametrize("name", ["avi_rate", "mp4_delta"])
def test_absurd_header_timing_is_reported_once_and_quickly(
    forged_outcomes: dict[str, dict[str, Any]], name: str
) -> None:
    outcome = forged_outcomes[name]
    assert outcome["clips"] == []
    ((source, _, reason),) = outcome["errors"]
    assert Path(source).suffix in (".avi", ".mp4")
    assert reason.startswith("implausible timing")
    assert outcome["seconds"] < 5


def test_non_utf8_metadata_is_read(tmp_path: Path) -> None:
    path = mediafixtures.make_tagged_video(tmp_path / "latin1.mp4", b"caf\xe9 \xff\xfe")
    with pytest.raises(UnicodeDecodeError), av.open(str(path)) as container:  # the file is what it should be
        _ = container.metadata
    errors: list[InputError] = []
    clips = list(video_clips(path, clip_seconds=1.0, errors=errors))
    assert errors == []
    assert [c.frame_indices for c in clips] == [(0, 1, 2, 3, 5, 6, 7, 9)]


@pytest.mark.parametrize("fraction", [0.5, 0.9])
def test_a_truncated_video_is_indexed_up_to_where_it_stops_and_says_so_once(tmp_path: Path, fraction: float) -> None:
    """Index first (faststart), frame data cut: the clips before the cut come out, equal to the intact file's."""
    intact = mediafixtures.make_video(tmp_path / "intact.mp4", seconds=3.0, fps=10, faststart=True)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(intact.read_bytes())
    mediafixtures.truncate(cut, fraction)
    errors: list[InputError] = []
    clips = list(video_clips(cut, clip_seconds=1.0, errors=errors))
    (error,) = errors
    assert error.source == str(cut) and "declares 30 frames but holds" in error.reason
    stop = float((error.location or "").removesuffix(" s"))
    assert 0 < stop < 3.0
    assert clips and clips[-1].end == pytest.approx(stop)
    reference = _decode_all(intact)
    for clip in clips:
        for index, frame in zip(clip.frame_indices, clip.frames, strict=True):
            assert np.array_equal(np.asarray(frame), reference[index])
    with pytest.raises(InputError, match=r"cut\.mp4, \d+\.\d\d s: truncated"):
        list(video_clips(cut, clip_seconds=1.0))  # without an errors list: the clips, then the error
    with pytest.raises(InputError, match="truncated"):
        read_video_frames(cut)  # a sample of the whole video cannot come from part of it
    frames, _ = read_clip_frames(cut, 0.0, 0.5)  # a clip inside the part present is fine
    assert len(frames) == 5


# --- fuzzing ---------------------------------------------------------------------------------------------


def _mutants(folder: Path, count: int, seed: int = 13) -> list[Path]:
    """``count`` copies of tiny videos with 1 to 4 header bytes changed (deterministic)."""
    rng = random.Random(seed)
    bases = {
        "mp4": mediafixtures.make_video(folder / "base.mp4", seconds=1.0, fps=10, size=(64, 48), faststart=True),
        "avi": mediafixtures.make_video(folder / "base.avi", seconds=1.0, fps=10, size=(64, 48)),
        "mkv": mediafixtures.make_video(folder / "base.mkv", seconds=1.0, fps=10, size=(64, 48)),
    }
    headers = {  # where the header fields lie: the moov box, the hdrl list, Matroska's header elements
        "mp4": (mediafixtures.mp4_box_offset(bases["mp4"], b"moov"), bases["mp4"].read_bytes().find(b"mdat")),
        "avi": (12, bases["avi"].read_bytes().find(b"movi")),
        "mkv": (0, 400),
    }
    interesting = [0x00, 0x01, 0x7F, 0x80, 0xFF]
    out = []
    for number in range(count):
        kind = ("mp4", "avi", "mkv")[number % 3]
        data = bytearray(bases[kind].read_bytes())
        low, high = headers[kind]
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(low, high)] = rng.choice(interesting) if rng.random() < 0.6 else rng.randrange(256)
        path = folder / f"mutant{number:02d}.{kind}"
        path.write_bytes(bytes(data))
        out.append(path)
    return out


def test_header_fuzzing_gives_clips_or_input_errors(tmp_path: Path) -> None:
    """48 header mutants, loaded in a child process (restarted past any mutant that kills it): every one must
    give clips or InputErrors, never another exception, a crash or a hang."""
    paths = _mutants(tmp_path, 48)
    began = time.perf_counter()
    outcomes: dict[str, dict[str, Any]] = {}
    deaths: list[tuple[str | None, int, str]] = []
    left = paths
    while left:
        code, got, died_on, stderr = _run_child(left, timeout=60)
        outcomes.update(got)
        if code == 0:
            break
        deaths.append((died_on, code, stderr[-500:]))
        if died_on is None:
            break
        left = left[left.index(Path(died_on)) + 1 :]
    assert deaths == []
    assert set(outcomes) == {str(p) for p in paths}
    for path, outcome in outcomes.items():
        assert outcome["clips"] or outcome["errors"], path
        assert all(source == path for source, _, _ in outcome["errors"]), outcome
        assert isinstance(outcome["whole"], int) or outcome["whole"].startswith("InputError: "), outcome
    assert time.perf_counter() - began < 60


class _MisSeeking:
    """A container whose seeks land elsewhere than asked: at the start (no keyframe index), or a GOP late."""

    def __init__(self, container: Any, shift: Callable[[int], int]) -> None:
        self._container, self._shift = container, shift

    def __getattr__(self, name: str) -> Any:
        return getattr(self._container, name)

    def __enter__(self) -> _MisSeeking:
        return self

    def __exit__(self, *exc: object) -> None:
        self._container.close()

    def seek(self, offset: int, **kwargs: Any) -> None:
        self._container.seek(self._shift(offset), **kwargs)


@pytest.mark.parametrize(
    ("landing", "shift"),
    [("lands early", lambda offset: 0), ("overshot", lambda offset: offset + 10 * 1024)],  # g=10, 1024 a frame
)
def test_seeks_that_land_elsewhere_still_give_the_right_frames(
    layouts: dict[str, Path],
    references: dict[str, list[np.ndarray]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    landing: str,
    shift: Callable[[int], int],
) -> None:
    caplog.set_level(logging.DEBUG, logger="vlm2vec_core.media.video")
    opened = video._av_open
    monkeypatch.setattr(video, "_av_open", lambda source: _MisSeeking(opened(source), shift))
    counter = _DecodeCounter(monkeypatch)
    clips = list(video_clips(layouts["short_gop"], clip_seconds=0.3, stride_seconds=2.0))
    assert [c.frame_indices for c in clips] == [(0, 1, 2), (20, 21, 22), (40, 41, 42)], landing
    for clip in clips:
        for index, frame in zip(clip.frame_indices, clip.frames, strict=True):
            assert np.array_equal(np.asarray(frame), references["short_gop"][index]), (landing, index)
    assert counter.seeks == 1  # the first seek shows that seeking does not work here; no second one is tried
    assert landing in caplog.text
