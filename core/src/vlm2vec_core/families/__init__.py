"""Model families: one profile each (data), a registry, and detection from a checkpoint.

``get_family("gme")`` returns a profile; ``detect_family(checkpoint_dir, model_name)`` tells which family a
checkpoint belongs to from its files (config ``model_type``, an adapter's base and kind, a table of known hub
ids) and says when it had to assume one.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from . import gme, qwen3_vl
from .base import Kind, Profile, Published, VideoPrep
from .vlm2vec import UNIME_V2, VLM2VEC_V1, VLM2VEC_V2

log = logging.getLogger(__name__)

FAMILIES: dict[str, Profile] = {p.name: p for p in (VLM2VEC_V2, VLM2VEC_V1, UNIME_V2, gme.PROFILE, qwen3_vl.PROFILE)}
DEFAULT_FAMILY = VLM2VEC_V2.name
KNOWN_HUB_IDS: dict[str, str] = {hub_id: p.name for p in FAMILIES.values() for hub_id in p.hub_ids}
# Full Qwen2-VL weights say nothing about how they were trained: this is what we assume for them.
_ASSUMED_FOR_QWEN2VL = VLM2VEC_V2.name
_MODEL_TYPES = {"qwen2_vl": "qwen2-vl", "qwen3_vl": "qwen3-vl"}
_warned: set[str] = set()


class UnknownFamilyError(ValueError):
    """A checkpoint (or a family name) that no profile covers."""


def get_family(family: str | Profile | None) -> Profile:
    """A profile by name (None: VLM2Vec-V2); a profile passes through."""
    if isinstance(family, Profile):
        return family
    name = DEFAULT_FAMILY if family is None else family
    try:
        return FAMILIES[name]
    except KeyError:
        raise UnknownFamilyError(f"unknown model family {name!r}; choose one of: {', '.join(FAMILIES)}") from None


def family_for_hub_id(model: str) -> Profile | None:
    name = KNOWN_HUB_IDS.get(str(model))
    return FAMILIES[name] if name else None


def detect_family(weights: Path, model_name: str, *, adapter: Path | None = None) -> Profile:
    """The family of a checkpoint: known hub id first, then its files; says once when it had to assume."""
    known = family_for_hub_id(model_name)
    if known is not None:
        return known
    if adapter is not None:
        config = json.loads((adapter / "adapter_config.json").read_text())
        base = str(config.get("base_model_name_or_path", ""))
        if base in KNOWN_HUB_IDS:  # an adapter over another family's weights
            return FAMILIES[KNOWN_HUB_IDS[base]]
        # VLM2Vec-V2 is a DoRA adapter, VLM2Vec-V1 a LoRA one, both over Qwen2-VL.
        return VLM2VEC_V2 if config.get("use_dora") else VLM2VEC_V1
    config_path = weights / "config.json"
    model_type = json.loads(config_path.read_text()).get("model_type") if config_path.is_file() else None
    backbone = _MODEL_TYPES.get(str(model_type))
    if backbone is None:
        raise UnknownFamilyError(
            f"{model_name}: cannot tell its model family (config model_type {model_type!r}); the families are "
            f"{', '.join(FAMILIES)} (pass --family NAME, or family=NAME in Python)"
        )
    if backbone == "qwen3-vl":
        return qwen3_vl.PROFILE
    if (weights / "gme_inference.py").is_file():  # GME's repositories ship their inference script
        return gme.PROFILE
    if model_name not in _warned:
        _warned.add(model_name)
        log.warning(
            "%s: full Qwen2-VL weights do not say which family they belong to; assuming %s (if that is wrong, "
            "pass --family gme, unime-v2 or vlm2vec-v1; family=... in Python)",
            model_name,
            FAMILIES[_ASSUMED_FOR_QWEN2VL].title,
        )
    return FAMILIES[_ASSUMED_FOR_QWEN2VL]


def check_backbone(profile: Profile, weights: Path, model_name: str) -> None:
    """Refuse a family whose backbone is not the checkpoint's (family='qwen3-vl-embedding' on Qwen2-VL weights)."""
    config_path = weights / "config.json"
    if not config_path.is_file():
        return
    backbone = _MODEL_TYPES.get(str(json.loads(config_path.read_text()).get("model_type")))
    if backbone is not None and backbone != profile.backbone:
        raise UnknownFamilyError(
            f"{model_name} is a {backbone} checkpoint but the family {profile.name!r} runs on {profile.backbone}"
        )


def vector_signature(encoder: Any) -> dict[str, Any]:
    """What a store records about the vectors an encoder makes, and checks before mixing in more:
    ``{"family", "model", "dim", "truncate_dim"}`` (truncate_dim 0 when the vectors are not truncated)."""
    profile = get_family(getattr(encoder, "family", None))
    return {
        "family": profile.name,
        "model": str(getattr(encoder, "model_name", None) or getattr(encoder, "model", None) or ""),
        "dim": int(encoder.dim),
        "truncate_dim": int(getattr(encoder, "truncate_dim", None) or 0),
    }


__all__ = [
    "DEFAULT_FAMILY",
    "FAMILIES",
    "KNOWN_HUB_IDS",
    "Kind",
    "Profile",
    "Published",
    "UnknownFamilyError",
    "VideoPrep",
    "check_backbone",
    "detect_family",
    "family_for_hub_id",
    "get_family",
    "vector_signature",
]
