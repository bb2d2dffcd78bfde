"""Model families: each profile's prompts, caps, video sampling, positions and pooling, on real tiny checkpoints.

The Qwen3-VL-Embedding vectors are checked against the official code's own output (transformers 4.57.3) on the
same tiny checkpoint, kept in fixtures/qwen3vl_official_tiny.json.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vlm2vec_core import FakeEncoder, Input, VLM2VecEncoder
from vlm2vec_core.families import FAMILIES, UnknownFamilyError, detect_family, get_family, qwen3_vl
from vlm2vec_core.families.gme import PROFILE as GME
from vlm2vec_core.families.vlm2vec import UNIME_V2, VLM2VEC_V1, VLM2VEC_V2
from vlm2vec_core.media.prepare import MediaLimits, prepare
from vlm2vec_core.media.video import two_stage_frame_indices
from vlm2vec_core.tasks import Instruction

FIXTURES = Path(__file__).parent / "fixtures"
TOL = 1e-5
QWEN3 = qwen3_vl.PROFILE


def _picture(w: int, h: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 255, w)[None, :, None]
    y = np.linspace(0, 255, h)[:, None, None]
    px = np.clip(x * 0.6 + y * 0.4 * np.array([1, 0.5, 0.2]) + rng.normal(0, 30, (h, w, 3)), 0, 255)
    return Image.fromarray(px.astype(np.uint8))


def _official_samples(tmp: Path) -> list[tuple[Input, str | None]]:
    """The inputs the reference was run on (PNG files, as it read them)."""
    _picture(300, 200, 1).save(tmp / "a.png")
    _picture(20, 14, 2).save(tmp / "b.png")
    frames = [_picture(320, 240, 10 + i) for i in range(8)]
    return [
        (Input(text="A woman playing with her dog on a beach at sunset."), None),
        (Input(image=tmp / "a.png"), None),
        (Input(image=tmp / "b.png"), None),
        (Input(video=frames), None),
        (
            Input(text="what is the total?", image=tmp / "a.png"),
            "Represent the given image with the following question",
        ),
    ]


# -- Qwen3-VL-Embedding against its official code --------------------------------------------------------------


def test_qwen3vl_matches_the_official_embedder(tiny_qwen3vl_encoder: VLM2VecEncoder, tmp_path: Path):
    reference = json.loads((FIXTURES / "qwen3vl_official_tiny.json").read_text())
    enc = tiny_qwen3vl_encoder
    assert enc.family is QWEN3
    for n, (item, instruction) in enumerate(_official_samples(tmp_path)):
        prepared = prepare(item, 0, Instruction(instruction or ""), enc.limits, enc.family)
        ids = enc._features([prepared])["input_ids"][0].tolist()
        assert ids == reference["input_ids"][n], f"sample {n}: token ids differ from the official code"
        vector = enc.encode([item], instruction=instruction)[0]
        np.testing.assert_allclose(vector, reference["vectors"][n], atol=TOL, err_msg=f"sample {n}")


def test_qwen3vl_video_layout_is_transformers_457s(tiny_qwen3vl_encoder: VLM2VecEncoder):
    """Per temporal patch ``<t seconds><|vision_start|>pads<|vision_end|>``, times at 2 fps, no outer pair."""
    enc = tiny_qwen3vl_encoder
    frames = [_picture(320, 240, i) for i in range(8)]
    prepared = prepare(Input(video=frames), 0, Instruction(), enc.limits, enc.family)
    assert prepared.frame_size == (352, 416)  # 320x240 -> 320x256 (PIL, x64) -> 416x352 (torchvision, x32)
    assert [f.size for f in prepared.frames or []] == [(320, 256)] * 8
    text = enc._processor.tokenizer.decode(enc._features([prepared])["input_ids"][0])
    blocks = text.split("<|im_start|>user\n")[1].split("<|im_end|>")[0]
    assert not blocks.startswith("<|vision_start|><|vision_start|>")
    times = [part.split(">")[0] for part in blocks.split("<")[1:] if part.endswith("seconds>") or " seconds>" in part]
    assert [t for t in times if t.endswith("seconds")] == ["0.2 seconds", "1.2 seconds", "2.2 seconds", "3.2 seconds"]
    assert blocks.count("<|vision_start|>") == 4 and blocks.count("<|vision_end|>") == 4


def test_qwen3vl_needs_its_native_mrope(tiny_qwen3vl_encoder: VLM2VecEncoder):
    image = _picture(300, 200, 3)
    native = tiny_qwen3vl_encoder.encode([image])[0]
    forced = VLM2VecEncoder(tiny_qwen3vl_encoder.model_name, family=replace(QWEN3, positions="1d")).load()
    assert float(native @ forced.encode([image])[0]) < 0.99


def test_qwen3vl_pools_the_newline_after_the_generation_prompt(tiny_qwen3vl_encoder: VLM2VecEncoder):
    enc = tiny_qwen3vl_encoder
    batch = [prepare(Input(text=t), i, Instruction(), enc.limits, enc.family) for i, t in enumerate(["a", "longer x"])]
    features = enc._features(batch)
    mask = features["attention_mask"]
    assert mask[:, 0].all() and not mask[:, -1].all()  # right padding
    last = mask.sum(-1) - 1
    tokenizer = enc._processor.tokenizer
    for row, end in zip(features["input_ids"], last, strict=True):
        assert tokenizer.decode(row[: end + 1]).endswith("<|im_start|>assistant\n")


def test_qwen3vl_image_grids_match_the_measured_ones():
    limits = MediaLimits.for_family(QWEN3)
    for (w, h), expected in {(20, 14): (96, 64), (300, 200): (288, 192), (3000, 4000): (1152, 1536)}.items():
        assert QWEN3.fit_image(Image.new("RGB", (w, h)), limits).size == expected
    with pytest.raises(ValueError, match="aspect ratio"):
        QWEN3.fit_image(Image.new("RGB", (30, 7000)), limits)


def test_qwen3vl_matryoshka_truncation(tiny_qwen3vl_dir: Path, tiny_qwen3vl_encoder: VLM2VecEncoder):
    family = replace(QWEN3, matryoshka=(16, 32))  # the tiny model is 64-d; the real sizes are 64 to 3,072
    short = VLM2VecEncoder(tiny_qwen3vl_dir, family=family, truncate_dim=32).load()
    texts = ["a red ball", "quarterly revenue"]
    full = tiny_qwen3vl_encoder.encode(texts)
    got = short.encode(texts)
    assert short.dim == 32 and got.shape == (2, 32)
    head = full[:, :32] / np.linalg.norm(full[:, :32], axis=1, keepdims=True)
    np.testing.assert_allclose(got, head, atol=TOL)
    with pytest.raises(ValueError, match="Matryoshka sizes: 16, 32, 64"):
        VLM2VecEncoder(tiny_qwen3vl_dir, family=family, truncate_dim=24).dim  # noqa: B018
    with pytest.raises(ValueError, match="no Matryoshka"):
        VLM2VecEncoder(tiny_qwen3vl_dir, family="vlm2vec-v2", truncate_dim=32).dim  # noqa: B018


@pytest.mark.parametrize("fixture", ["tiny_qwen3vl_encoder", "gme_encoder"])
def test_invariant_to_batch_size_and_order(fixture: str, request: pytest.FixtureRequest):
    enc: VLM2VecEncoder = request.getfixturevalue(fixture)
    items: list[object] = [
        "short",
        "a much longer text about charts, tables and the quarterly revenue of every region",
        _picture(300, 200, 4),
        _picture(90, 60, 5),
        Input(text="what does the slide say?", image=_picture(200, 280, 6)),
    ]
    one_by_one = np.stack([enc.encode([x])[0] for x in items])
    batched = enc.encode(items, batch_size=8)
    reversed_ = enc.encode(items[::-1], batch_size=3)[::-1]
    np.testing.assert_allclose(batched, one_by_one, atol=TOL)
    np.testing.assert_allclose(reversed_, one_by_one, atol=TOL)


# -- GME ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gme_encoder(tiny_model_dir: Path) -> VLM2VecEncoder:
    return VLM2VecEncoder(tiny_model_dir, family="gme").load()


def test_gme_matches_its_reference_code(gme_encoder: VLM2VecEncoder):
    """GME's card code (gme_inference.py) on transformers 4.57.3 with the PIL image processor it was written for."""
    reference = json.loads((FIXTURES / "gme_reference_tiny.json").read_text())
    enc = gme_encoder
    for sample in reference["samples"]:
        image = _picture(*sample["image"]) if sample["image"] else None
        item = Input(text=sample["text"], image=image)
        instruction = sample["instruction"] if sample["is_query"] else None
        prepared = prepare(item, 0, Instruction(instruction or ""), enc.limits, enc.family)
        assert prepared.prompt == sample["prompt"]
        assert enc._features([prepared])["input_ids"][0].tolist() == sample["input_ids"], sample["name"]
        vector = enc.encode([item], instruction=instruction)[0]
        np.testing.assert_allclose(vector, sample["vector"], atol=TOL, err_msg=sample["name"])


def test_gme_prompts():
    fake = FakeEncoder(family="gme")
    fake.encode_queries(["total revenue"], task="visdoc")
    fake.encode_documents([_picture(300, 200, 1)], task="visdoc")
    assert fake.prompts == [
        "<|im_start|>system\nFind an image that matches the given text.<|im_end|>\n<|im_start|>user\ntotal revenue"
        "<|im_end|>\n<|im_start|>assistant\n<|endoftext|>",
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "<|vision_start|><|image_pad|><|vision_end|><|im_end|>\n<|im_start|>assistant\n<|endoftext|>",
    ]
    with pytest.raises(ValueError, match="GME was trained for retrieval"):
        fake.encode_queries(["q"], task="vqa")


def test_gme_pools_the_appended_endoftext_with_1d_positions(gme_encoder: VLM2VecEncoder):
    enc = gme_encoder
    prepared = prepare(Input(text="hello"), 0, Instruction(), enc.limits, enc.family)
    features = enc._features([prepared, prepare(Input(text="a longer one"), 1, Instruction(), enc.limits, enc.family)])
    tokenizer = enc._processor.tokenizer
    assert features["attention_mask"][:, -1].all()  # left padding: the last column is every row's last token
    assert (features["input_ids"][:, -1] == tokenizer.convert_tokens_to_ids("<|endoftext|>")).all()
    # The same weights as VLM2Vec-V2 but GME's prompt: another vector.
    v2 = VLM2VecEncoder(enc.model_name).load()
    assert float(v2.encode(["hello"])[0] @ enc.encode(["hello"])[0]) < 0.99


def test_gme_caps_and_pre_shrink():
    limits = MediaLimits.for_family(GME)
    small = GME.fit_image(Image.new("RGB", (100, 80)), limits)
    assert small.width * small.height >= 256 * 784  # enlarged to at least 256 tokens
    huge = GME.fit_image(Image.new("RGB", (8000, 6000)), limits)
    assert huge.width * huge.height <= 1280 * 784 and huge.width % 28 == huge.height % 28 == 0


def test_gme_takes_a_clip_as_its_middle_frame(gme_encoder: VLM2VecEncoder):
    frames = [_picture(320, 240, 20 + i) for i in range(8)]
    as_video = gme_encoder.encode([Input(video=frames)])[0]
    as_image = gme_encoder.encode([frames[4]])[0]  # the middle of the 8 frames VLM2Vec's sampling picks
    np.testing.assert_allclose(as_video, as_image, atol=TOL)


# -- VLM2Vec-V1 and UniME-V2 ---------------------------------------------------------------------------------------


def test_v1_and_unime_squash_to_1344_then_cap():
    image = Image.new("RGB", (640, 480))
    assert VLM2VEC_V1.fit_image(image, MediaLimits.for_family(VLM2VEC_V1)).size == (980, 980)  # 1,225 tokens
    assert UNIME_V2.fit_image(image, MediaLimits.for_family(UNIME_V2)).size == (1344, 1344)  # processor's limits
    assert VLM2VEC_V2.fit_image(image, MediaLimits.for_family(VLM2VEC_V2)).size == (644, 476)


def test_unime_refuses_video_and_the_tasks_it_never_saw():
    fake = FakeEncoder(family="unime-v2")
    with pytest.raises(ValueError, match="MMEB-V1's image tasks only"):
        fake.encode_queries(["q"], task="visdoc")
    errors: list = []
    out = fake.encode([Input(video=[_picture(64, 64, 1)] * 4), "text"], errors=errors)
    assert out.shape == (1, 64) and "takes no video" in str(errors[0])


def test_unime_reads_the_checkpoints_processor_caps(tiny_model_dir: Path):
    enc = VLM2VecEncoder(tiny_model_dir, family="unime-v2")
    assert (enc.limits.min_pixels, enc.limits.max_pixels) == (3136, 12845056)  # what the tiny processor says
    assert VLM2VecEncoder(tiny_model_dir, family="unime-v2", max_pixels=1003520).limits.max_pixels == 1003520


# -- VLM2Vec-V2's video sampling -------------------------------------------------------------------------------------


def test_v2_picks_frames_in_two_stages_like_upstream():
    assert two_stage_frame_indices(270) == [0, 37, 75, 113, 151, 189, 227, 265]
    assert two_stage_frame_indices(40) == np.linspace(0, 39, 8).astype(int).tolist()  # under 64: one stage
    assert two_stage_frame_indices(5) == [0, 1, 2, 3, 4]


# -- detection -----------------------------------------------------------------------------------------------------


def test_detection_from_the_checkpoint(
    tiny_model_dir: Path, tiny_qwen3vl_dir: Path, tiny_adapter_dir: Path, tmp_path: Path, caplog
):
    assert detect_family(tiny_qwen3vl_dir, str(tiny_qwen3vl_dir)) is QWEN3
    with caplog.at_level(logging.WARNING, logger="vlm2vec_core.families"):
        assert detect_family(tiny_model_dir, "some/local-qwen2vl") is VLM2VEC_V2
        detect_family(tiny_model_dir, "some/local-qwen2vl")
    assert sum("assuming VLM2Vec-V2" in r.message for r in caplog.records) == 1  # said once
    assert detect_family(tiny_model_dir, str(tiny_adapter_dir), adapter=tiny_adapter_dir) is VLM2VEC_V2  # DoRA
    lora = tmp_path / "lora"
    shutil.copytree(tiny_adapter_dir, lora)
    config = json.loads((lora / "adapter_config.json").read_text())
    (lora / "adapter_config.json").write_text(json.dumps({**config, "use_dora": False}))
    assert detect_family(tiny_model_dir, str(lora), adapter=lora) is VLM2VEC_V1  # LoRA
    gme = tmp_path / "gme"
    shutil.copytree(tiny_model_dir, gme)
    (gme / "gme_inference.py").write_text("# GME's repositories ship this\n")
    assert detect_family(gme, str(gme)) is GME
    for hub_id in (
        "Qwen/Qwen3-VL-Embedding-8B",
        "Alibaba-NLP/gme-Qwen2-VL-2B-Instruct",
        "TianchengGu/UniME-V2-Qwen2VL-7B",
    ):
        assert VLM2VecEncoder(hub_id).family.hub_ids.count(hub_id) == 1  # no download needed


def test_unknown_checkpoints_and_families_are_refused(tiny_model_dir: Path, tmp_path: Path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "llava"}))
    with pytest.raises(UnknownFamilyError, match="vlm2vec-v2, vlm2vec-v1, unime-v2, gme, qwen3-vl-embedding"):
        VLM2VecEncoder(other).family  # noqa: B018
    with pytest.raises(UnknownFamilyError, match="choose one of"):
        get_family("colpali")
    with pytest.raises(UnknownFamilyError, match="qwen2-vl checkpoint"):
        VLM2VecEncoder(tiny_model_dir, family="qwen3-vl-embedding").load()


def test_every_family_has_the_profile_fields_filled():
    for profile in FAMILIES.values():
        assert profile.hub_ids and profile.licence and profile.dims and profile.good_at
        assert set(profile.presets).isdisjoint(profile.refused)
        assert all(task in profile.presets for task in profile.task_for_kind.values())


def test_whole_videos_and_clips_are_sampled_in_two_stages(tmp_path: Path):
    from mediafixtures import make_video
    from vlm2vec_core.media.video import read_frames_at, video_clips

    video = make_video(tmp_path / "v.mp4", seconds=27, fps=10, size=(64, 48))  # 270 frames
    _, indices, _ = read_frames_at(video, lambda n, _fps: two_stage_frame_indices(n, 8))
    assert indices == [0, 37, 75, 113, 151, 189, 227, 265]  # not linspace's 0, 38, 76, ...
    (clip,) = list(video_clips(video, clip_seconds=27.0))
    assert list(clip.frame_indices) == [0, 37, 75, 113, 151, 189, 227, 265]
    qwen3 = next(iter(video_clips(video, clip_seconds=27.0, sampler=QWEN3.sampler(64))))
    assert list(qwen3.frame_indices) == [i * 270 // 64 for i in range(64)]  # the official benchmark's extraction


def test_qwen3vl_samples_a_whole_file_at_one_frame_per_second_with_its_real_times(tmp_path: Path):
    from mediafixtures import make_video

    video = make_video(tmp_path / "v.mp4", seconds=9, fps=10, size=(64, 48))  # 90 frames, 9 s
    prepared = prepare(Input(video=str(video)), 0, Instruction(), MediaLimits.for_family(QWEN3), QWEN3)
    assert len(prepared.frames or []) == 8  # 9 s at 1 fps, floored to an even count
    indices = [round(i) for i in np.linspace(0, 89, 8)]
    seconds = [i / 10 for i in indices]
    assert prepared.timestamps == pytest.approx([(a + b) / 2 for a, b in zip(seconds[::2], seconds[1::2], strict=True)])


_Q3 = "<|im_start|>system\n{}<|im_end|>\n<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
_GME = "<|im_start|>system\n{}<|im_end|>\n<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n<|endoftext|>"
_IMG3 = "<|vision_start|><|image_pad|><|vision_end|>"
_VID3 = "<|vision_start|><|video_pad|><|vision_end|>"


@pytest.mark.parametrize(
    ("family", "task", "role", "item", "expected"),
    [
        ("vlm2vec-v2", "visdoc", "query", "q", "Find a document image that matches the given query: q"),
        (
            "vlm2vec-v2",
            "visdoc",
            "document",
            "page",
            "<|image_pad|> Understand the content of the provided document image.",
        ),
        (
            "vlm2vec-v2",
            "moment",
            "document",
            "clip",
            "<|video_pad|> Understand the content of the provided video clip.",
        ),
        ("vlm2vec-v2", "image", "document", "page", "<|image_pad|>\nRepresent the given image.\n"),
        ("vlm2vec-v1", "moment", "query", "q", "Find the clip that corresponds to the given text: q"),
        ("unime-v2", "image", "query", "a dog", "Find me an everyday image that matches the given caption: a dog\n"),
        ("unime-v2", "image_to_text", "document", "a dog", "a dog"),
        ("gme", "visdoc", "query", "q", _GME.format("Find an image that matches the given text.", "q")),
        ("gme", "moment", "document", "clip", _GME.format("You are a helpful assistant.", _IMG3)),  # middle frame
        (
            "qwen3-vl-embedding",
            "visdoc",
            "query",
            "q",
            _Q3.format("Find a document image that matches the given query.", "q"),
        ),
        ("qwen3-vl-embedding", "visdoc", "document", "page", _Q3.format("Represent the user's input.", _IMG3)),
        ("qwen3-vl-embedding", "moment", "document", "clip", _Q3.format("Represent the user's input.", _VID3)),
        (
            "qwen3-vl-embedding",
            "image_classification",
            "query",
            "page",
            _Q3.format("Represent the given image for classification.", _IMG3),
        ),
        (
            "qwen3-vl-embedding",
            "image",
            "query",
            "a dog",
            _Q3.format("Find me an everyday image that matches the given caption:", "a dog"),
        ),
        (
            "qwen3-vl-embedding",
            "moment",
            "document",
            "",
            _Q3.format("Represent the user's input.", ""),
        ),  # an empty user turn
    ],
)
def test_exact_prompts(family: str, task: str, role: str, item: str, expected: str):
    fake = FakeEncoder(family=family)
    inputs = {"page": _picture(300, 200, 1), "clip": Input(video=[_picture(64, 64, i) for i in range(4)])}
    method = fake.encode_queries if role == "query" else fake.encode_documents
    method([inputs.get(item, Input(text=item))], task=task)
    assert fake.prompts == [expected]


def test_qwen3vl_nothing_at_all_is_null_and_instructions_get_a_full_stop():
    assert QWEN3.render(Instruction(), None, False, False) == _Q3.format("Represent the user's input.", "NULL")
    assert QWEN3.render(Instruction("  Retrieve the slide "), "x", False, False) == _Q3.format(
        "Retrieve the slide.", "x"
    )
    assert QWEN3.render(Instruction("Which one?"), "x", False, False) == _Q3.format("Which one?", "x")


@pytest.mark.parametrize("family", list(FAMILIES))
def test_fitting_twice_changes_nothing(family: str):
    """A server fits again what a RemoteEncoder fitted: the pixels must come through unchanged."""
    profile = get_family(family)
    limits = MediaLimits.for_family(profile)
    for size in ((640, 480), (2000, 1500), (30, 200)):
        once = profile.fit_image(_picture(*size, 7), limits)
        twice = profile.fit_image(once, limits)
        assert twice.size == once.size and twice.tobytes() == once.tobytes(), (family, size)


@pytest.mark.gpu
def test_qwen3vl_and_gme_on_cuda_agree_with_the_cpu(tiny_qwen3vl_encoder: VLM2VecEncoder, gme_encoder: VLM2VecEncoder):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    items: list[object] = ["a red ball", _picture(300, 200, 1), Input(video=[_picture(320, 240, i) for i in range(8)])]
    for cpu in (tiny_qwen3vl_encoder, gme_encoder):
        gpu = VLM2VecEncoder(cpu.model_name, family=cpu.family, device="cuda", dtype="float32")
        np.testing.assert_allclose(gpu.encode(items), cpu.encode(items), atol=1e-3)
