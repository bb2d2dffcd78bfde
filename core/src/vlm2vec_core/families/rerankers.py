"""Reranker families: generative VLMs judged at the first answer token ("logit pair"), one profile each.

Facts from each reranker's own code (QwenLM/Qwen3-VL-Embedding ``src/models/qwen3_vl_reranker.py``, GaryGuTC/UniME-v2
``Embedding/src/model_utils.py``, Code-kunkun/LamRA ``dataset/*``): the prompt, the two answer tokens and how their
ids are found, the media rules (borrowed from an embedding profile), the length limit. The engine
(``vlm2vec_core.rerank``) scores ``sigmoid(h @ (W[positive] - W[negative]))`` at the last prompt token for all.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from . import qwen3_vl
from .base import Profile
from .vlm2vec import UNIME_V2

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Side:
    """One side of a pair as the prompt sees it: its text and how many images and videos it holds."""

    text: str | None
    images: int = 0
    videos: int = 0


@dataclass(frozen=True)
class RerankProfile:
    name: str
    title: str
    backbone: Literal["qwen2-vl", "qwen2.5-vl", "qwen3-vl"]
    hub_ids: tuple[str, ...]
    licence: str
    render: Callable[[str, Side, Side], str]  # (instruction, query, document) -> prompt
    default_instruction: str  # "" when the family takes no instruction
    positive: str
    negative: str
    token_rule: Literal["vocab", "first-id"]  # the bare word's vocabulary id, or the first id of tokenizing it
    media: Profile  # how images and videos are fitted (an embedding family's rules)
    max_length: int
    truncation: Literal["text-keep-tail", "tail"]
    task_instructions: Mapping[str, str] = field(default_factory=dict)  # what its evaluation passes per task
    published: str = ""

    @property
    def open_licence(self) -> bool:
        return self.licence.split()[0] in ("Apache-2.0", "MIT", "BSD-3-Clause")

    def instruction_for(self, task: str | None, instruction: str | None) -> str:
        if instruction is not None:
            return instruction
        if task is not None and task in self.task_instructions:
            return self.task_instructions[task]
        return self.default_instruction


# -- Qwen3-VL-Reranker ----------------------------------------------------------------------------------------

_QWEN3_SYSTEM = (
    "Judge whether the Document meets the requirements based on the Query and the Instruct provided. "
    'Note that the answer can only be "yes" or "no".'
)
_VIDEO = "<|vision_start|><|video_pad|><|vision_end|>"
_IMAGE = "<|vision_start|><|image_pad|><|vision_end|>"


def _qwen3_side(side: Side) -> str:
    if side.text is None and not side.images and not side.videos:
        return "NULL"
    return _VIDEO * side.videos + _IMAGE * side.images + (side.text or "")


def render_qwen3(instruction: str, query: Side, document: Side) -> str:
    user = f"<Instruct>: {instruction}<Query>:{_qwen3_side(query)}\n<Document>:{_qwen3_side(document)}"
    return f"<|im_start|>system\n{_QWEN3_SYSTEM}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"


QWEN3_VL_RERANKER = RerankProfile(
    name="qwen3-vl-reranker",
    title="Qwen3-VL-Reranker",
    backbone="qwen3-vl",
    hub_ids=("Qwen/Qwen3-VL-Reranker-2B", "Qwen/Qwen3-VL-Reranker-8B"),
    licence="Apache-2.0",
    render=render_qwen3,
    default_instruction="Given a search query, retrieve relevant candidates that answer the query.",
    positive="yes",
    negative="no",
    token_rule="vocab",
    media=qwen3_vl.PROFILE,
    max_length=10240,
    truncation="text-keep-tail",
    # Its evaluation passes the embedder's query instruction (verbatim: no stripping, no full stop added).
    task_instructions={name: preset.query.text for name, preset in qwen3_vl.PROFILE.presets.items()},
    published="MMEB-V2 visual documents 79.2 -> 83.2 (2B), 85.8 (8B) over Qwen3-VL-Embedding-2B",
)

# -- UniME-V2-Reranker and LamRA-Rank -------------------------------------------------------------------------

_UNIME_ASK = (
    "I will provide you with a query and a candidate. Please evaluate whether the candidate meets the requirements "
    "of the query. If it does, respond with 'Yes'; if it doesn't, respond with 'No'."
)
# LamRA's string as its source has it: a backslash-continued literal keeps the next line's indent, and "responed".
_LAMRA_ASK = (
    "I will provide you with a query and a candidate. Please evaluate whether the candidate"
    + " " * 24
    + "meets the requirements of the query. If it does, respond with 'Yes'; if it doesn't, responed with 'No'."
)


def _strip_pads(text: str | None) -> str:
    return (text or "").replace("<|image_pad|>\n", "").replace("<|image_pad|>", "")


def _pointwise(ask: str) -> Callable[[str, Side, Side], str]:
    """One user turn under Qwen2(.5)-VL's default system prompt: ask, Query:, [image], text, Candidate:, ..."""

    def render(instruction: str, query: Side, document: Side) -> str:
        parts = [ask, "Query:", _IMAGE * query.images, _strip_pads(query.text)]
        parts += ["Candidate:", _IMAGE * document.images, _strip_pads(document.text)]
        return (
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
            + "".join(parts)
            + "<|im_end|>\n<|im_start|>assistant\n"
        )

    return render


# 4 to 300 visual tokens after the 1344x1344 squash its evaluation applies first; no video.
_UNIME_MEDIA = replace(
    UNIME_V2, name="unime-v2-reranker-media", min_pixels=3136, max_pixels=235_200, caps_from_checkpoint=False
)

UNIME_V2_RERANKER = RerankProfile(
    name="unime-v2-reranker",
    title="UniME-V2-Reranker (Qwen2.5-VL)",
    backbone="qwen2.5-vl",
    hub_ids=("TianchengGu/UniME-V2-reranker-Qwen25VL-7B",),
    licence="Apache-2.0",
    render=_pointwise(_UNIME_ASK),
    default_instruction="",
    positive="Yes",
    negative="No",
    token_rule="first-id",
    media=_UNIME_MEDIA,
    max_length=4096,
    truncation="tail",
    published="MMEB-V1 P@1 with reranking: UniME-V2-2B 63.6 -> 67.6, 7B 68.0 -> 69.6",
)

LAMRA_RANK = replace(
    UNIME_V2_RERANKER,
    name="lamra-rank",
    title="LamRA-Rank (Qwen2-VL)",
    backbone="qwen2-vl",
    hub_ids=("code-kunkun/LamRA-Rank",),
    render=_pointwise(_LAMRA_ASK),
    published="LamRA (CVPR 2025): M-BEIR reranking over LamRA-Ret",
)

RERANKERS: dict[str, RerankProfile] = {p.name: p for p in (QWEN3_VL_RERANKER, UNIME_V2_RERANKER, LAMRA_RANK)}
DEFAULT_RERANKER = QWEN3_VL_RERANKER.hub_ids[0]
_BY_HUB_ID = {hub_id: p for p in RERANKERS.values() for hub_id in p.hub_ids}
_BY_MODEL_TYPE = {"qwen3_vl": QWEN3_VL_RERANKER, "qwen2_5_vl": UNIME_V2_RERANKER, "qwen2_vl": LAMRA_RANK}
_warned: set[str] = set()


def get_reranker_family(family: str | RerankProfile | None) -> RerankProfile:
    if isinstance(family, RerankProfile):
        return family
    name = family or QWEN3_VL_RERANKER.name
    try:
        return RERANKERS[name]
    except KeyError:
        from . import UnknownFamilyError

        raise UnknownFamilyError(f"unknown reranker family {name!r}; choose one of: {', '.join(RERANKERS)}") from None


def detect_reranker_family(weights: Path | None, model_name: str) -> RerankProfile:
    """A reranker's family: its hub id, else the backbone in its config (which it says once)."""
    if model_name in _BY_HUB_ID:
        return _BY_HUB_ID[model_name]
    config = weights / "config.json" if weights is not None else None
    model_type = json.loads(config.read_text()).get("model_type") if config is not None and config.is_file() else None
    profile = _BY_MODEL_TYPE.get(str(model_type))
    if profile is None:
        from . import UnknownFamilyError

        raise UnknownFamilyError(
            f"{model_name}: cannot tell its reranker family (config model_type {model_type!r}); the families are "
            f"{', '.join(RERANKERS)} (pass --rerank-family NAME, or family=NAME in Python)"
        )
    if model_name not in _warned and profile is not QWEN3_VL_RERANKER:
        _warned.add(model_name)
        log.warning(
            "%s: a %s checkpoint; assuming %s (if wrong, pass --rerank-family; family=... in Python)",
            model_name,
            model_type,
            profile.title,
        )
    return profile
