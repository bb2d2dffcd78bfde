"""The rerank stage on real tiny generative checkpoints (Qwen3-VL and Qwen2.5-VL) through from_pretrained."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vlm2vec_core import Input
from vlm2vec_core.errors import InputError
from vlm2vec_core.families.rerankers import LAMRA_RANK, QWEN3_VL_RERANKER, UNIME_V2_RERANKER, Side
from vlm2vec_core.rerank import FakeReranker, Reranker, RerankerProtocol

TOL = 1e-5


def _picture(w: int, h: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))


DOCS: list[object] = [
    "a red ball rolls across the floor",
    "quarterly revenue by region, in a table",
    _picture(300, 200, 1),
    Input(text="the chart on page two", image=_picture(200, 280, 2)),
    "",
]


def _official_qwen3_messages(instruction: str, query: str, doc_text: str | None, doc_image: bool) -> list[dict]:
    """The conversation Qwen3VLReranker.format_mm_instruction builds (one query text, one document)."""
    content = [{"type": "text", "text": "<Instruct>: " + instruction}, {"type": "text", "text": "<Query>:"}]
    content.append({"type": "text", "text": query})
    content.append({"type": "text", "text": "\n<Document>:"})
    if doc_image:
        content.append({"type": "image", "image": "x"})
    if doc_text is not None:
        content.append({"type": "text", "text": doc_text})
    if not doc_image and doc_text is None:
        content.append({"type": "text", "text": "NULL"})
    system = (
        "Judge whether the Document meets the requirements based on the Query and the Instruct provided. "
        'Note that the answer can only be "yes" or "no".'
    )
    return [{"role": "system", "content": [{"type": "text", "text": system}]}, {"role": "user", "content": content}]


@pytest.mark.parametrize(("doc_text", "doc_image"), [("a page", False), (None, True), ("caption", True), (None, False)])
def test_qwen3_prompt_is_its_chat_template(tiny_reranker: Reranker, doc_text: str | None, doc_image: bool):
    instruction = QWEN3_VL_RERANKER.default_instruction
    ours = QWEN3_VL_RERANKER.render(instruction, Side("revenue?"), Side(doc_text, int(doc_image)))
    theirs = tiny_reranker._backbone.processor.apply_chat_template(  # type: ignore[union-attr]
        _official_qwen3_messages(instruction, "revenue?", doc_text, doc_image),
        add_generation_prompt=True,
        tokenize=False,
    )
    assert ours == theirs


def test_unime_and_lamra_prompts_are_the_qwen25vl_chat_template(tiny_qwen25vl_dir: Path):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_qwen25vl_dir)
    for profile, ask in (
        (UNIME_V2_RERANKER, "respond with 'No'."),
        (LAMRA_RANK, "candidate                        meets"),
    ):
        ours = profile.render("", Side("a dog", 1), Side("<|image_pad|>\nA dog on a beach.", 0))
        content = [{"type": "text", "text": ours.split("user\n")[1].split("Query:")[0]}]
        content += [
            {"type": "text", "text": "Query:"},
            {"type": "image", "image": "q"},
            {"type": "text", "text": "a dog"},
        ]
        content += [{"type": "text", "text": "Candidate:"}, {"type": "text", "text": "A dog on a beach."}]
        theirs = processor.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
        )
        assert ours == theirs and ask in ours
        assert ours.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>")


def test_score_is_the_softmax_over_the_two_answer_tokens(tiny_reranker: Reranker):
    """Against the slow path: transformers' own processor and the full-vocabulary logits of the generative model."""
    import torch

    rr = tiny_reranker
    backbone = rr._backbone
    assert backbone is not None
    image = _picture(300, 200, 3)
    fitted = rr.family.media.fit_image(image, rr.limits)
    prompt = rr.family.render(rr.family.default_instruction, Side("revenue?"), Side("a chart", 1))
    inputs = backbone.processor(text=[prompt], images=[fitted], do_resize=False, return_tensors="pt")
    with torch.inference_mode():
        logits = backbone.model(**inputs).logits[0, -1]
    vocab = backbone.processor.tokenizer.get_vocab()
    expected = torch.softmax(torch.stack([logits[vocab["yes"]], logits[vocab["no"]]]), dim=0)[0].item()
    got = rr.score("revenue?", [Input(text="a chart", image=image)])
    assert got.shape == (1,) and abs(float(got[0]) - expected) < TOL


def test_native_positions_matter(tiny_reranker_dir: Path, tiny_reranker: Reranker):
    native = tiny_reranker.score("revenue?", DOCS[2:4])
    forced = Reranker(tiny_reranker_dir).load()
    forced._backbone.positions = "1d"  # type: ignore[union-attr]
    assert np.abs(forced.score("revenue?", DOCS[2:4]) - native).max() > 1e-3


def test_invariant_to_batch_size_and_order(tiny_reranker_dir: Path, tiny_reranker: Reranker):
    scores = tiny_reranker.score("a red ball", DOCS)
    one_by_one = Reranker(tiny_reranker_dir, batch_size=1).load().score("a red ball", DOCS)
    reversed_ = tiny_reranker.score("a red ball", DOCS[::-1])[::-1]
    assert scores.shape == (len(DOCS),) and ((scores > 0) & (scores < 1)).all()
    np.testing.assert_allclose(one_by_one, scores, atol=TOL)
    np.testing.assert_allclose(reversed_, scores, atol=TOL)


def test_rerank_orders_by_score_and_maps_back_by_index(tiny_reranker: Reranker):
    scores = tiny_reranker.score("a red ball", DOCS)
    ranked = tiny_reranker.rerank("a red ball", DOCS)
    assert [i for i, _ in ranked] == list(np.argsort(-scores, kind="stable"))
    assert all(abs(s - scores[i]) < 1e-7 for i, s in ranked)
    assert tiny_reranker.rerank("a red ball", DOCS, top_n=2) == ranked[:2]
    assert asyncio.run(tiny_reranker.arerank("a red ball", DOCS, top_n=2)) == ranked[:2]


def test_instructions_and_task_presets(tiny_reranker: Reranker):
    default = tiny_reranker.score("revenue?", DOCS[:2])
    by_task = tiny_reranker.score("revenue?", DOCS[:2], task="visdoc")
    assert QWEN3_VL_RERANKER.instruction_for("visdoc", None) == "Find a document image that matches the given query."
    assert np.abs(default - by_task).max() > 1e-4  # the embedder's query instruction, verbatim


def test_bad_documents_are_skipped_and_reported(tiny_reranker: Reranker, tmp_path: Path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    docs = ["a red ball", Input(image=broken), "quarterly revenue"]
    errors: list[InputError] = []
    ranked = tiny_reranker.rerank("a red ball", docs, errors=errors)
    assert sorted(i for i, _ in ranked) == [0, 2]
    assert len(errors) == 1 and errors[0].index == 1 and "broken.png" in str(errors[0])
    with pytest.raises(InputError, match="broken.png"):
        tiny_reranker.score("a red ball", docs)
    with pytest.raises(InputError, match="the query"):
        tiny_reranker.score(Input(image=broken), ["x"])


def test_candidates_by_reference(tiny_reranker: Reranker, tmp_path: Path):
    from mediafixtures import make_pdf

    pdf = make_pdf(tmp_path / "report.pdf", n_pages=2)
    from vlm2vec_core import pdf_pages

    page = list(pdf_pages(pdf))[1]
    by_reference = tiny_reranker.score("revenue?", [f"{pdf}#page=2"])
    by_page = tiny_reranker.score("revenue?", [page])
    np.testing.assert_allclose(by_reference, by_page, atol=TOL)


def test_unime_reranker_on_qwen25vl(tiny_qwen25vl_dir: Path):
    rr = Reranker(tiny_qwen25vl_dir, family="unime-v2-reranker").load()
    backbone = rr._backbone
    assert backbone is not None
    tokenizer = backbone.processor.tokenizer
    weight = backbone.model.lm_head.weight
    yes, no = tokenizer("Yes")["input_ids"][0], tokenizer("No")["input_ids"][0]
    assert np.allclose(rr._direction.cpu().numpy(), (weight[yes] - weight[no]).detach().float().cpu().numpy())
    scores = rr.score(_picture(300, 200, 5), DOCS[:4])
    assert scores.shape == (4,) and ((scores > 0) & (scores < 1)).all()
    errors: list[InputError] = []
    rr.score("q", [Input(video=[_picture(64, 64, i) for i in range(4)]), "x"], errors=errors)
    assert "takes no video" in str(errors[0])
    # images: squashed to 1344x1344, then 4 to 300 visual tokens
    assert rr.family.media.fit_image(_picture(640, 480, 1), rr.limits).size == (476, 476)


def test_fake_reranker_shares_the_protocol_and_validation(tmp_path: Path):
    fake = FakeReranker()
    assert isinstance(fake, RerankerProtocol) and isinstance(Reranker("x"), RerankerProtocol)
    ranked = fake.rerank("red ball", ["quarterly revenue", "a red ball", "a ball"])
    assert [i for i, _ in ranked] == [1, 2, 0]
    assert fake.rerank("red ball", ["quarterly revenue", "a red ball", "a ball"]) == ranked  # deterministic
    broken = tmp_path / "b.png"
    broken.write_bytes(b"junk")
    errors: list[InputError] = []
    assert fake.score("q", ["a", Input(image=broken)], errors=errors).shape == (1,) and errors[0].index == 1


def _ref_picture(w: int, h: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 255, w)[None, :, None]
    y = np.linspace(0, 255, h)[:, None, None]
    px = np.clip(x * 0.6 + y * 0.4 * np.array([1, 0.5, 0.2]) + rng.normal(0, 30, (h, w, 3)), 0, 255)
    return Image.fromarray(px.astype(np.uint8))


def _ref_input(side: dict, tmp: Path, name: str) -> Input:
    """A fixture side as the reference read it: PNG files for images and frames."""
    image = video = None
    if side.get("image"):
        image = tmp / f"{name}.png"
        _ref_picture(*side["image"]).save(image)
    if side.get("video_frames"):
        video = [_ref_picture(*spec) for spec in side["video_frames"]]
    if image is None and video is None and side.get("text") is None:
        return Input(text="NULL")  # an empty side: the official code writes the text NULL, as we render it
    return Input(text=side.get("text"), image=image, video=video)


def test_qwen3_reranker_matches_its_official_code(tiny_reranker: Reranker, tmp_path: Path):
    """QwenLM/Qwen3-VL-Embedding's qwen3_vl_reranker.py on transformers 4.57.3, same tiny checkpoint."""
    import json

    from vlm2vec_core.media.prepare import prepare
    from vlm2vec_core.rerank.local import _media, _side
    from vlm2vec_core.tasks import Instruction

    reference = json.loads((Path(__file__).parent / "fixtures" / "qwen3vl_reranker_official_tiny.json").read_text())
    rr = tiny_reranker
    backbone = rr._backbone
    assert backbone is not None
    for case in reference["cases"]:
        query = _ref_input(case["query"], tmp_path, f"{case['name']}-q")
        docs = [_ref_input(d, tmp_path, f"{case['name']}-{n}") for n, d in enumerate(case["documents"])]
        instruction = rr.family.instruction_for(None, case["instruction"])
        q = prepare(query, 0, Instruction(), rr.limits, rr.family.media)
        for n, doc in enumerate(docs):
            d = prepare(doc, 0, Instruction(), rr.limits, rr.family.media)
            prompt = rr.family.render(instruction, _side(q), _side(d))
            assert prompt == case["prompts"][n], (case["name"], n)
            ids = backbone.features([(prompt, [*_media(q), *_media(d)])], rr._truncate())["input_ids"][0].tolist()
            assert ids == case["input_ids"][n], (case["name"], n)
        scores = rr.score(query, docs, instruction=case["instruction"])
        np.testing.assert_allclose(scores, case["scores"], atol=TOL, err_msg=case["name"])


@pytest.mark.gpu
def test_cuda_scores_agree_with_the_cpu(tiny_reranker_dir: Path, tiny_reranker: Reranker):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    gpu = Reranker(tiny_reranker_dir, device="cuda", dtype="float32")
    np.testing.assert_allclose(gpu.score("a red ball", DOCS), tiny_reranker.score("a red ball", DOCS), atol=1e-3)
