"""Finding and loading checkpoints: full weights or a PEFT adapter (LoRA/DoRA) merged into its base model.

Needs the ``local`` extra (torch, transformers, peft).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import require_extra

log = logging.getLogger(__name__)

DEFAULT_MODEL = "VLM2Vec/VLM2Vec-V2.0"
_PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
# Published adapters and the base model each is merged into: a missing adapter's message names both downloads.
ADAPTER_BASES = {
    "VLM2Vec/VLM2Vec-V2.0": "Qwen/Qwen2-VL-2B-Instruct",
    "TIGER-Lab/VLM2Vec-Qwen2VL-2B": "Qwen/Qwen2-VL-2B-Instruct",
    "TIGER-Lab/VLM2Vec-Qwen2VL-7B": "Qwen/Qwen2-VL-7B-Instruct",
}


class ModelNotFoundError(OSError):
    """The weights of a model could not be found locally nor fetched."""


@dataclass(frozen=True)
class Checkpoint:
    """Where the pieces of a model live on disk."""

    weights: Path  # full weights (the base model when there is an adapter)
    adapter: Path | None  # PEFT adapter directory, merged into `weights` at load
    processor: Path  # tokenizer and preprocessor files


def resolve_checkpoint(
    model: str | Path, base_model: str | Path | None = None, *, hint: str = "pass --model DIR (model=DIR)"
) -> Checkpoint:
    """Find the model's files (a local directory or a Hub snapshot) and tell adapter from full weights."""
    root = _local_dir(model, hint=hint)
    adapter_config = root / "adapter_config.json"
    if adapter_config.is_file():
        base_name = base_model or json.loads(adapter_config.read_text())["base_model_name_or_path"]
        base = _local_dir(base_name, adapter_of=str(model))
        processor = root if _has_processor(root) else base
        return Checkpoint(weights=base, adapter=root, processor=processor)
    if not (root / "config.json").is_file():
        raise ModelNotFoundError(
            f"{root} holds neither model weights (config.json) nor a PEFT adapter (adapter_config.json)"
        )
    return Checkpoint(weights=root, adapter=None, processor=root)


def _has_processor(path: Path) -> bool:
    return any((path / f).is_file() for f in _PROCESSOR_FILES) and any((path / f).is_file() for f in _TOKENIZER_FILES)


def _local_dir(model: str | Path, adapter_of: str | None = None, hint: str = "pass --model DIR (model=DIR)") -> Path:
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    name = str(model)
    if path.is_absolute() or name.startswith((".", "~")) or name.count("/") != 1:
        raise ModelNotFoundError(f"model directory {name!r} does not exist")
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError
    except ImportError as exc:
        raise require_extra("local", "huggingface-hub") from exc
    try:
        return Path(snapshot_download(name))
    except (OSError, HfHubHTTPError, ValueError) as exc:  # offline, no such repo, gated, bad id
        raise ModelNotFoundError(_missing(name, adapter_of, hint, exc)) from exc


def _missing(name: str, adapter_of: str | None, hint: str, exc: BaseException) -> str:
    """What to download, and how to point at it: both the adapter and its base at once when the model is a
    published adapter (the CLI's options first, the Python keywords in brackets)."""
    why = type(exc).__name__
    if adapter_of:
        return (
            f"Could not get the weights of the base model {name!r} of adapter {adapter_of!r} ({why}): download it "
            f"where there is network (`hf download {name} --local-dir BASE`) and pass --base-model BASE "
            "(base_model=BASE)."
        )
    base = ADAPTER_BASES.get(name)
    if base is not None:
        return (
            f"Could not get the weights of the model {name!r} ({why}). It is an adapter on {base}: download both "
            f"where there is network (`hf download {name} --local-dir ADAPTER` and `hf download {base} "
            f"--local-dir BASE`), then pass --model ADAPTER --base-model BASE (model=ADAPTER, base_model=BASE)."
        )
    return (
        f"Could not get the weights of the model {name!r} ({why}): download it where there is network "
        f"(`hf download {name} --local-dir DIR`) and {hint}."
    )


# transformers < 4.52 laid Qwen2-VL out as model.layers / visual; 5.x nests both under model.
_OLD_LAYOUT = (
    (re.compile(r"^(base_model\.model\.)model\.(?!language_model\.|visual\.)"), r"\1model.language_model."),
    (re.compile(r"^(base_model\.model\.)visual\."), r"\1model.visual."),
)


def to_current_layout(key: str) -> str:
    for pattern, replacement in _OLD_LAYOUT:
        key = pattern.sub(replacement, key)
    return key


def merge_adapter(model: Any, adapter_dir: Path) -> Any:
    """Apply a LoRA/DoRA adapter to ``model`` and merge it; fail loudly if any adapter weight does not land."""
    try:
        from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
    except ImportError as exc:
        raise require_extra("local", "peft") from exc
    config = LoraConfig.from_pretrained(str(adapter_dir))
    config.inference_mode = True
    state = {to_current_layout(k): v for k, v in _read_adapter_weights(adapter_dir).items()}
    peft_model = get_peft_model(model, config)
    result = set_peft_model_state_dict(peft_model, state)
    unexpected = list(getattr(result, "unexpected_keys", []) or [])
    missing = [k for k in getattr(result, "missing_keys", []) or [] if "lora_" in k]
    if unexpected or missing:
        raise ValueError(
            f"adapter {adapter_dir} does not fit its base model: {len(unexpected)} adapter weights matched no "
            f"module (e.g. {unexpected[:2]}), {len(missing)} adapted modules got no weights (e.g. {missing[:2]})"
        )
    log.info("merging adapter %s (%s, r=%s)", adapter_dir, "DoRA" if config.use_dora else "LoRA", config.r)
    return peft_model.merge_and_unload()


def _read_adapter_weights(adapter_dir: Path) -> dict[str, Any]:
    st = adapter_dir / "adapter_model.safetensors"
    if st.is_file():
        from safetensors.torch import load_file

        return load_file(str(st))
    bin_file = adapter_dir / "adapter_model.bin"
    if bin_file.is_file():
        import torch

        return dict(torch.load(bin_file, map_location="cpu", weights_only=True))
    raise ModelNotFoundError(f"adapter {adapter_dir} has no adapter_model.safetensors or adapter_model.bin")
