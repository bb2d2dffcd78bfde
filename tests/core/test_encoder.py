"""The local encoder on the tiny random checkpoint: fidelity to the spec, invariances, adapters, bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

torch = pytest.importorskip("torch")

from vlm2vec_core import Encoder, FakeEncoder, Input, InputError, VLM2VecEncoder  # noqa: E402
from vlm2vec_core.encoders.loading import ModelNotFoundError  # noqa: E402
from vlm2vec_core.media.prepare import prepare_all  # noqa: E402
from vlm2vec_core.tasks import get_preset  # noqa: E402

TOL = 1e-5


def picture(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", size, tuple(int(c) for c in rng.integers(0, 255, 3)))
    draw = ImageDraw.Draw(img)
    for _ in range(6):
        x0, y0 = int(rng.integers(0, size[0] - 20)), int(rng.integers(0, size[1] - 20))
        draw.rectangle([x0, y0, x0 + 40, y0 + 30], fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    return img


def frames(seed: int, n: int = 8, size: tuple[int, int] = (160, 120)) -> list[Image.Image]:
    return [picture(seed * 100 + i, size) for i in range(n)]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="module")
def mixed_inputs() -> list[object]:
    return [
        "a short query",
        picture(1),
        Input(video=frames(2)),
        Input(text="what does the chart show?", image=picture(3, (500, 300))),
        "a much longer text input that will need padding when batched with the short ones above",
        picture(4, (90, 400)),
        Input(video=frames(5, n=5, size=(200, 100))),
    ]


def test_output_contract(tiny_encoder: VLM2VecEncoder, mixed_inputs: list[object]):
    out = tiny_encoder.encode(mixed_inputs)
    assert out.dtype == np.float32 and out.shape == (len(mixed_inputs), tiny_encoder.dim)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert np.isfinite(out).all()
    assert isinstance(tiny_encoder, Encoder)
    empty = tiny_encoder.encode([])
    assert empty.shape == (0, tiny_encoder.dim)
    with pytest.raises(TypeError, match="list of inputs"):
        tiny_encoder.encode("not a list")  # type: ignore[arg-type]


def test_invariant_to_batch_size_order_and_modality_mix(tiny_encoder: VLM2VecEncoder, mixed_inputs: list[object]):
    reference = np.stack([tiny_encoder.encode([x])[0] for x in mixed_inputs])  # each alone: no padding
    for batch_size in (1, 2, 3, 8):
        np.testing.assert_allclose(tiny_encoder.encode(mixed_inputs, batch_size=batch_size), reference, atol=TOL)
    perm = np.random.default_rng(0).permutation(len(mixed_inputs))
    shuffled = tiny_encoder.encode([mixed_inputs[i] for i in perm], batch_size=4)
    np.testing.assert_allclose(shuffled[np.argsort(perm)], reference, atol=TOL)
    # The same inputs can give clearly different vectors (the test can fail).
    assert np.abs(reference[0] - reference[4]).max() > 0.05


def test_invariant_to_padding_side(tiny_encoder: VLM2VecEncoder, mixed_inputs: list[object]):
    tokenizer = tiny_encoder._processor.tokenizer
    left = tiny_encoder.encode(mixed_inputs, batch_size=8)
    tokenizer.padding_side = "right"
    try:
        right = tiny_encoder.encode(mixed_inputs, batch_size=8)
    finally:
        tokenizer.padding_side = "left"
    np.testing.assert_allclose(left, right, atol=TOL)


def test_prompt_reaches_the_model_raw(tiny_encoder: VLM2VecEncoder):
    instr = get_preset("visdoc").document
    prepared = list(prepare_all([picture(7)], instr, tiny_encoder.limits))
    features = tiny_encoder._features(prepared)
    tokenizer = tiny_encoder._processor.tokenizer
    text = tokenizer.decode(features["input_ids"][0])
    n_pad = int(features["image_grid_thw"][0].prod()) // 4
    assert text == "<|image_pad|>" * n_pad + " Understand the content of the provided document image."
    assert n_pad == (prepared[0].image.width // 28) * (prepared[0].image.height // 28)


def test_features_match_transformers_processor(tiny_encoder: VLM2VecEncoder):
    """Our patching (uint8 to the device, float work there) equals Qwen2-VL's processor on fitted media."""
    batches = [
        [picture(20, (500, 300)), picture(21, (90, 400)), picture(22, (1400, 1100))],
        [Input(video=frames(23)), Input(video=frames(24, n=5, size=(300, 170)))],  # odd count: last frame repeated
        [Input(text="compare", image=picture(25), video=frames(26, n=3))],
        ["only text", "and more text"],
    ]
    processor = tiny_encoder._processor
    for items in batches:
        prepared = list(prepare_all(items, get_preset("visdoc").document, tiny_encoder.limits))
        ours = tiny_encoder._features(prepared)
        images = [p.image for p in prepared if p.image is not None]
        videos = [p.frames for p in prepared if p.frames is not None]
        theirs = processor(
            text=[p.prompt for p in prepared],
            images=images or None,
            videos=videos or None,
            padding=True,
            return_tensors="pt",
            images_kwargs={"do_resize": False},
            videos_kwargs={"do_resize": False, "do_sample_frames": False, "cap_pixels_per_frame": False},
        )
        assert set(ours) == set(theirs) - {"mm_token_type_ids"}
        for key in ("input_ids", "attention_mask", "image_grid_thw", "video_grid_thw"):
            if key in theirs:
                assert torch.equal(ours[key].cpu(), theirs[key]), key
        for key in ("pixel_values", "pixel_values_videos"):
            if key in theirs:
                np.testing.assert_allclose(ours[key].float().cpu().numpy(), theirs[key].numpy(), atol=1e-5)


def _hidden_last(encoder: VLM2VecEncoder, features, position_ids=None) -> np.ndarray:  # type: ignore[no-untyped-def]
    with torch.inference_mode():
        inputs = {k: v for k, v in features.items() if k != "attention_mask"}
        if position_ids is None:  # transformers builds 3-D M-RoPE positions from the token types
            ids = features["input_ids"]
            config = encoder._model.config
            inputs["mm_token_type_ids"] = (ids == config.image_token_id).long() + 2 * (
                ids == config.video_token_id
            ).long()
        hidden = encoder._model.model(
            **inputs, attention_mask=features["attention_mask"], position_ids=position_ids, use_cache=False
        ).last_hidden_state[0, -1]
        return torch.nn.functional.normalize(hidden.float(), dim=-1).numpy()


@pytest.mark.parametrize("kind", ["image", "video"])
def test_positions_are_plain_1d_not_mrope(tiny_encoder: VLM2VecEncoder, kind: str):
    item = picture(8, (400, 280)) if kind == "image" else Input(video=frames(9))
    prepared = list(prepare_all([item], get_preset("visdoc").document, tiny_encoder.limits))
    features = tiny_encoder._features(prepared)
    ours = tiny_encoder.encode([item], instruction=get_preset("visdoc").document)[0]
    seq = features["input_ids"].shape[1]
    plain = _hidden_last(tiny_encoder, features, torch.arange(seq)[None])
    mrope = _hidden_last(tiny_encoder, features)  # transformers' default: 3-D M-RoPE from the grids
    np.testing.assert_allclose(ours, plain, atol=TOL)
    assert cosine(ours, mrope) < 0.9, "3-D M-RoPE positions should give a clearly different vector"


def test_pixel_limits_are_applied_to_images(tiny_model_dir: Path, tiny_encoder: VLM2VecEncoder):
    big = picture(10, (1400, 1100))  # 1.54 M px: over the 1,003,520 cap
    prepared = list(prepare_all([big], None, tiny_encoder.limits))
    grid = tiny_encoder._features(prepared)["image_grid_thw"][0]
    assert int(grid.prod()) // 4 <= 1280
    capped = tiny_encoder.encode([big])[0]
    uncapped = VLM2VecEncoder(tiny_model_dir, max_pixels=12_845_056).encode([big])[0]
    assert cosine(capped, uncapped) < 0.98
    small = VLM2VecEncoder(tiny_model_dir, max_pixels=28 * 28 * 16)
    grid_small = small.load()._features(list(prepare_all([big], None, small.limits)))["image_grid_thw"][0]
    assert int(grid_small.prod()) // 4 <= 16


def test_video_is_one_input_of_uniform_frames_at_frame_zeros_size(tiny_encoder: VLM2VecEncoder):
    many = frames(11, n=20)
    picked = [many[i] for i in np.linspace(0, 19, 8).astype(int)]
    np.testing.assert_allclose(
        tiny_encoder.encode([Input(video=many)]), tiny_encoder.encode([Input(video=picked)]), atol=TOL
    )
    first_eight = tiny_encoder.encode([Input(video=many[:8])])
    assert np.abs(first_eight - tiny_encoder.encode([Input(video=picked)])).max() > 1e-3
    mixed_sizes = [picture(12, (640, 360))] + [picture(13 + i, (300, 500)) for i in range(7)]
    prepared = list(prepare_all([Input(video=mixed_sizes)], None, tiny_encoder.limits))
    features = tiny_encoder._features(prepared)
    t, h, w = (int(x) for x in features["video_grid_thw"][0])
    assert t == 4 and (h * 14, w * 14) == (prepared[0].frames[0].height, prepared[0].frames[0].width)
    assert len(features["video_grid_thw"]) == 1 and "pixel_values" not in features
    arrays = [np.asarray(f) for f in picked]  # HxWx3 uint8 frames work too
    np.testing.assert_allclose(
        tiny_encoder.encode([Input(video=arrays)]), tiny_encoder.encode([Input(video=picked)]), atol=TOL
    )


def test_presets_change_the_vector(tiny_encoder: VLM2VecEncoder):
    q = tiny_encoder.encode_queries(["revenue by region"])[0]
    d = tiny_encoder.encode_documents(["revenue by region"])[0]
    raw = tiny_encoder.encode(["revenue by region"])[0]
    assert cosine(q, d) < 0.99 and cosine(q, raw) < 0.99
    override = tiny_encoder.encode_queries(
        ["revenue by region"], instruction="Find a document image that matches the given query:"
    )[0]
    np.testing.assert_allclose(override, q, atol=TOL)


def test_image_sources_path_bytes_and_pil_agree(tiny_encoder: VLM2VecEncoder, tmp_path: Path):
    img = picture(14)
    path = tmp_path / "p.png"
    img.save(path)
    out = tiny_encoder.encode(
        [Input(image=img), Input(image=path), Input(image=path.read_bytes()), Input(image=str(path))]
    )
    np.testing.assert_allclose(out, np.repeat(out[:1], 4, axis=0), atol=TOL)


def test_odd_image_modes_are_embedded(tiny_encoder: VLM2VecEncoder):
    base = picture(15)
    modes = [base.convert(m) for m in ("CMYK", "P", "RGBA", "LA", "I;16")]
    out = tiny_encoder.encode(modes)
    assert out.shape == (5, tiny_encoder.dim) and np.isfinite(out).all()


def test_bad_inputs_raise_or_are_collected(tiny_encoder: VLM2VecEncoder, tmp_path: Path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 definitely not a full jpeg")
    good = [picture(16), "text"]
    with pytest.raises(InputError, match=r"broken\.jpg") as info:
        tiny_encoder.encode([good[0], Input(image=broken), good[1]])
    assert info.value.index == 1
    errors: list[InputError] = []
    out = tiny_encoder.encode(
        [good[0], Input(image=broken), Input(image=Image.new("RGB", (0, 5))), good[1]], errors=errors
    )
    assert [e.index for e in errors] == [1, 2]
    assert "zero side" in str(errors[1]) and "input 2" in str(errors[1])
    np.testing.assert_allclose(out, tiny_encoder.encode(good), atol=TOL)
    with pytest.raises(TypeError, match="cannot embed a int"):
        tiny_encoder.encode([3])


def test_dora_adapter_is_merged_at_load(
    tiny_model_dir: Path, tiny_adapter_dir: Path, tiny_encoder: VLM2VecEncoder, mixed_inputs: list[object]
):
    from peft import PeftModel
    from transformers import Qwen2VLForConditionalGeneration

    adapted = VLM2VecEncoder(tiny_adapter_dir)
    assert adapted.checkpoint.adapter == tiny_adapter_dir and adapted.checkpoint.weights == tiny_model_dir
    ours = adapted.encode(mixed_inputs)
    base = tiny_encoder.encode(mixed_inputs)
    assert np.abs(ours - base).max() > 0.05, "the adapter must change the vectors"
    reference = VLM2VecEncoder(tiny_model_dir).load()
    model = Qwen2VLForConditionalGeneration.from_pretrained(str(tiny_model_dir))
    reference._model = PeftModel.from_pretrained(model, str(tiny_adapter_dir)).merge_and_unload().eval()
    np.testing.assert_allclose(ours, reference.encode(mixed_inputs), atol=TOL)


def test_adapter_keyed_in_the_old_layout_loads_the_same(
    tiny_adapter_dir: Path, tmp_path: Path, mixed_inputs: list[object]
):
    from safetensors.torch import load_file, save_file

    # Published VLM2Vec adapters name modules as transformers 4.x did: model.layers.N, not model.language_model.
    old = tmp_path / "old"
    shutil.copytree(tiny_adapter_dir, old)
    weights = load_file(str(old / "adapter_model.safetensors"))
    renamed = {k.replace(".model.language_model.", ".model."): v for k, v in weights.items()}
    assert renamed.keys() != weights.keys()
    save_file(renamed, str(old / "adapter_model.safetensors"))
    np.testing.assert_allclose(
        VLM2VecEncoder(old).encode(mixed_inputs[:3]),
        VLM2VecEncoder(tiny_adapter_dir).encode(mixed_inputs[:3]),
        atol=TOL,
    )


def test_adapter_that_does_not_fit_is_an_error(tiny_adapter_dir: Path, tmp_path: Path):
    from safetensors.torch import load_file, save_file

    bad = tmp_path / "bad"
    shutil.copytree(tiny_adapter_dir, bad)
    weights = load_file(str(bad / "adapter_model.safetensors"))
    save_file(
        {k.replace("layers.", "blocks."): v for k, v in weights.items()},
        str(bad / "adapter_model.safetensors"),
    )
    with pytest.raises(ValueError, match="does not fit its base model"):
        VLM2VecEncoder(bad).load()


def test_adapter_base_can_be_overridden(tiny_model_dir: Path, tiny_adapter_dir: Path, tmp_path: Path):
    moved = tmp_path / "adapter"
    shutil.copytree(tiny_adapter_dir, moved)
    cfg = json.loads((moved / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = "Qwen/Qwen2-VL-2B-Instruct"
    (moved / "adapter_config.json").write_text(json.dumps(cfg))
    expected = r"base model 'Qwen/Qwen2-VL-2B-Instruct'.*--base-model BASE \(base_model=BASE\)"
    with pytest.raises(ModelNotFoundError, match=expected):
        VLM2VecEncoder(moved).load()
    assert VLM2VecEncoder(moved, base_model=tiny_model_dir).checkpoint.weights == tiny_model_dir


def test_missing_weights_say_how_to_point_at_a_local_copy(tmp_path: Path):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        VLM2VecEncoder(tmp_path / "nowhere").load()
    with pytest.raises(ModelNotFoundError, match=r"Could not get the weights.*--model DIR"):
        _ = VLM2VecEncoder("someone/not-an-adapter").dim
    # a published adapter: both downloads at once, and both options
    with pytest.raises(ModelNotFoundError) as caught:
        _ = VLM2VecEncoder("VLM2Vec/VLM2Vec-V2.0").dim
    message = str(caught.value)
    assert "hf download VLM2Vec/VLM2Vec-V2.0 --local-dir ADAPTER" in message
    assert "hf download Qwen/Qwen2-VL-2B-Instruct --local-dir BASE" in message
    assert "--model ADAPTER --base-model BASE" in message
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="neither model weights"):
        VLM2VecEncoder(tmp_path / "empty").load()


def test_dim_reads_the_config_without_loading(tiny_model_dir: Path):
    enc = VLM2VecEncoder(tiny_model_dir)
    assert enc.dim == 64 and enc._model is None
    assert "not loaded" in repr(enc)


def test_fake_encoder_matches_the_protocol_and_validates_like_the_real_one():
    fake = FakeEncoder(dim=16)
    assert isinstance(fake, Encoder)
    a = fake.encode(["x", picture(1), "x"])
    assert a.shape == (3, 16) and a.dtype == np.float32
    np.testing.assert_allclose(a[0], a[2])
    assert np.abs(a[0] - a[1]).max() > 0.01
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1, atol=1e-6)
    errors: list[InputError] = []
    assert fake.encode(["ok", Input(image=b"junk")], errors=errors).shape == (1, 16)
    assert errors[0].index == 1


def test_import_is_light_and_framework_free():
    code = (
        "import sys, vlm2vec_core; "
        "heavy = [m for m in ('torch', 'transformers', 'peft', 'llama_index', 'langchain', 'langchain_core', "
        "'decord', 'pypdfium2') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_public_name_resolves_and_none_but_the_local_encoder_brings_torch():
    code = (
        "import sys, vlm2vec_core\n"
        "local = ('VLM2VecEncoder', 'LocalEncoder', 'ModelNotFoundError')\n"
        "names = [n for n in vlm2vec_core.__all__ if n not in local]\n"
        "missing = [n for n in names if getattr(vlm2vec_core, n, None) is None]\n"
        "heavy = [m for m in ('torch', 'transformers', 'llama_index', 'langchain_core', 'ray') if m in sys.modules]\n"
        "print(missing, heavy, vlm2vec_core.VLM2VecEncoder.__module__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[] [] vlm2vec_core.encoders.local", out.stdout


def test_one_model_call_per_batch_grouped_by_modality(tiny_model_dir: Path, mixed_inputs: list[object]):
    enc = VLM2VecEncoder(tiny_model_dir, dtype="float32").load()
    calls: list[int] = []
    original = enc._forward

    def counting(features):  # type: ignore[no-untyped-def]
        calls.append(int(features["input_ids"].shape[0]))
        return original(features)

    enc._forward = counting  # type: ignore[method-assign]
    items = mixed_inputs * 3  # 6 text, 9 image, 6 video inputs
    enc.encode(items, batch_size=4)
    assert sorted(calls) == sorted([4, 2, 4, 4, 1, 4, 2]), calls  # text 4+2, image 4+4+1, video 4+2
    with pytest.raises(ValueError, match="unsupported dtype"):
        VLM2VecEncoder(tiny_model_dir, dtype="int8").load()


def test_without_the_local_extra_core_still_works_and_says_what_to_install(tmp_path: Path):
    code = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'transformers', 'peft'):
            raise ImportError('blocked: ' + name)
sys.meta_path.insert(0, Block())
import vlm2vec_core
from vlm2vec_core import FakeEncoder, VLM2VecEncoder, MissingDependencyError
print(FakeEncoder(dim=4).encode(['hi']).shape)
try:
    VLM2VecEncoder(sys.argv[1]).load()
except MissingDependencyError as exc:
    print(exc)
"""
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
    lines = out.stdout.strip().splitlines()
    assert lines[0] == "(1, 4)"
    assert 'pip install "vlm2vec-core[local]"' in lines[1]


def test_loaders_feed_the_encoder(tiny_encoder: VLM2VecEncoder, tmp_path: Path):
    import mediafixtures
    from vlm2vec_core import pdf_pages, read_video_frames, video_clips

    pdf = mediafixtures.make_pdf(tmp_path / "doc.pdf", n_pages=3)
    video = mediafixtures.make_video(tmp_path / "clip.mp4", seconds=3.0, fps=10)
    pages = list(pdf_pages(pdf, dpi=72))
    clips = list(video_clips(video, clip_seconds=1.0))
    page_vecs = tiny_encoder.encode_documents(pages)
    clip_vecs = tiny_encoder.encode_documents(clips, task="moment")
    assert page_vecs.shape == (3, 64) and clip_vecs.shape == (3, 64)
    np.testing.assert_allclose(
        page_vecs, tiny_encoder.encode_documents([Input(image=p.image) for p in pages]), atol=TOL
    )
    # a page as query finds itself first; so does a clip's frames
    assert list((page_vecs @ page_vecs.T).argmax(axis=1)) == [0, 1, 2]
    assert list((clip_vecs @ clip_vecs.T).argmax(axis=1)) == [0, 1, 2]
    whole = tiny_encoder.encode([Input(video=video)])
    np.testing.assert_allclose(whole, tiny_encoder.encode([Input(video=read_video_frames(video))]), atol=TOL)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    errors: list[InputError] = []
    out = tiny_encoder.encode([Input(video=video), Input(video=bad), "text"], errors=errors)
    assert out.shape == (2, 64)
    assert errors[0].index == 1 and "bad.mp4" in str(errors[0])


@pytest.mark.gpu
def test_cuda_agrees_with_cpu(tiny_model_dir: Path, tiny_encoder: VLM2VecEncoder, mixed_inputs: list[object]):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    ref = tiny_encoder.encode(mixed_inputs)
    fp32 = VLM2VecEncoder(tiny_model_dir, device="cuda", dtype="float32").encode(mixed_inputs)
    np.testing.assert_allclose(fp32, ref, atol=1e-3)
    bf16 = VLM2VecEncoder(tiny_model_dir, device="cuda").encode(mixed_inputs)  # the default on CUDA
    assert bf16.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(bf16, axis=1), 1.0, atol=1e-5)
    assert (bf16 * ref).sum(axis=1).min() > 0.9
