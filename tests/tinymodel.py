"""Builds test checkpoints offline: a tiny random Qwen2-VL (own tokenizer, few layers) and a DoRA adapter.

They are saved with ``save_pretrained`` and loaded back through the same ``from_pretrained`` path as the
published checkpoints. Weights are drawn with a large std (0.5) so that the pooled vector really depends on
positions, pixels and prompt: with the default 0.02 a tiny model barely mixes tokens and fidelity tests would
pass whatever the code did.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

SENTENCES = [
    "Find a document image that matches the given query: quarterly revenue by region",
    "Understand the content of the provided document image.",
    "Find a video that contains the following visual content: a red ball rolls across the floor",
    "Understand the content of the provided video.",
    "Find the clip that corresponds to the given text: the speaker shows the chart",
    "Understand the content of the provided video clip.",
    "Find me an everyday image that matches the given caption: a dog on a beach",
    "Represent the given image.",
    "Find an image caption describing the given everyday image.",
    "Represent the given image with the following question: what is the total?",
    "Represent the given image for classification",
    "Recognize the category of the video content.",
    "The quick brown fox jumps over the lazy dog. Invoices, tables, charts and slides.",
    "0123456789 page figure table section results conclusion abstract introduction",
]

TINY_TEXT = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 32768,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 3, 3]},
}
TINY_VISION = {
    "depth": 2,
    "embed_dim": 32,
    "hidden_size": 64,
    "num_heads": 2,
    "mlp_ratio": 2,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
}
# Qwen2-VL-2B-Instruct's architecture (for timing with random weights; no download needed).
QWEN2VL_2B_TEXT = {
    "hidden_size": 1536,
    "intermediate_size": 8960,
    "num_hidden_layers": 28,
    "num_attention_heads": 12,
    "num_key_value_heads": 2,
    "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-6,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
    "vocab_size": 151936,
}
QWEN2VL_2B_VISION = {
    "depth": 32,
    "embed_dim": 1280,
    "hidden_size": 1536,
    "num_heads": 16,
    "mlp_ratio": 4,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
}


def build_tokenizer(vocab_size: int = 512, extra_sentences: tuple[str, ...] = ()) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([*SENTENCES, *extra_sentences], trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        padding_side="left",
        model_max_length=32768,
    )


def build_processor(tokenizer: Any) -> Any:
    from transformers import Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor

    # The base model's own config says 12,845,056 max pixels; the encoder fits images itself either way.
    image_processor = Qwen2VLImageProcessor(min_pixels=3136, max_pixels=12845056)
    video_processor = Qwen2VLVideoProcessor(min_pixels=3136, max_pixels=12845056)
    return Qwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor)


def vision_token_ids(tokenizer: Any) -> dict[str, int]:
    """The config's ids of the vision tokens, from the tokenizer."""
    return {
        "image_token_id": tokenizer.convert_tokens_to_ids("<|image_pad|>"),
        "video_token_id": tokenizer.convert_tokens_to_ids("<|video_pad|>"),
        "vision_start_token_id": tokenizer.convert_tokens_to_ids("<|vision_start|>"),
        "vision_end_token_id": tokenizer.convert_tokens_to_ids("<|vision_end|>"),
    }


def chat_text_config(tokenizer: Any, text: dict[str, Any]) -> dict[str, Any]:
    """A chat model's text config (eos <|im_end|>, pad <|endoftext|>, tied embeddings), as Qwen2.5/3-VL ship."""
    return {
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        "eos_token_id": tokenizer.convert_tokens_to_ids("<|im_end|>"),
        "pad_token_id": tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        "tie_word_embeddings": True,
        **text,
    }


def build_config(tokenizer: Any, text: dict[str, Any], vision: dict[str, Any]) -> Any:
    from transformers import Qwen2VLConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    eos = ids["<|endoftext|>"]
    text = {
        "vocab_size": len(tokenizer),
        "bos_token_id": eos,
        "eos_token_id": eos,
        "pad_token_id": eos,
        **text,
    }
    return Qwen2VLConfig(
        text_config=text,
        vision_config=vision,
        **vision_token_ids(tokenizer),
        tie_word_embeddings=True,
    )


def randomize(model: Any, std: float, seed: int) -> None:
    """Weight matrices ~ N(0, std); norms stay at 1, biases at 0."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.ndim >= 2:
                param.copy_(torch.randn(param.shape, generator=gen) * std)
            elif "norm" not in name and "ln" not in name:
                param.zero_()


def build_tiny_checkpoint(out: Path, *, std: float = 0.5, seed: int = 0) -> Path:
    """A random Qwen2-VL with a few layers, its own tokenizer and processor, saved with save_pretrained."""
    from transformers import Qwen2VLForConditionalGeneration

    tokenizer = build_tokenizer()
    config = build_config(tokenizer, TINY_TEXT, TINY_VISION)
    model = Qwen2VLForConditionalGeneration(config)
    randomize(model, std, seed)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    build_processor(tokenizer).save_pretrained(out)
    return out


def build_full_size_checkpoint(out: Path, *, seed: int = 0) -> Path:
    """Qwen2-VL-2B's exact architecture with random weights (std 0.02): timing only."""
    import torch
    from transformers import Qwen2VLForConditionalGeneration

    tokenizer = build_tokenizer()
    config = build_config(tokenizer, QWEN2VL_2B_TEXT, QWEN2VL_2B_VISION)
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config).to(torch.bfloat16)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    build_processor(tokenizer).save_pretrained(out)
    return out


def build_dora_adapter(base: Path, out: Path, *, seed: int = 1, old_layout: bool = False) -> Path:
    """A DoRA adapter on the language model's projections (as VLM2Vec-V2's), with non-zero weights.

    ``old_layout`` rewrites the saved keys as transformers 4.x named the modules (``model.layers``), which is
    how the published VLM2Vec adapters are keyed.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file, save_file
    from transformers import Qwen2VLForConditionalGeneration

    model = Qwen2VLForConditionalGeneration.from_pretrained(str(base))
    config = LoraConfig(
        r=4,
        lora_alpha=8,
        use_dora=True,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        init_lora_weights="gaussian",
    )
    torch.manual_seed(seed)  # lora_A's gaussian init uses the global generator
    peft_model = get_peft_model(model, config)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:  # zero by default, which would make the adapter a no-op
                param.copy_(torch.randn(param.shape, generator=gen) * 0.3)
    peft_model.save_pretrained(str(out))
    cfg_path = out / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["base_model_name_or_path"] = str(base)
    cfg_path.write_text(json.dumps(cfg, indent=2))
    if old_layout:
        weights = out / "adapter_model.safetensors"
        state = load_file(str(weights))
        renamed = {k.replace(".model.language_model.", ".model."): v for k, v in state.items()}
        assert renamed.keys() != state.keys()
        save_file(renamed, str(weights))
    return out


# --- Qwen3-VL (Qwen3-VL-2B-Instruct / Qwen3-VL-Embedding-2B) ------------------------------------------------

# The tokens Qwen3-VL's tokenizer_config lists as additional special tokens (<|endoftext|> is eos/pad there).
# They count in ``all_special_ids``, which the official embedder's truncation keeps.
QWEN3VL_ADDITIONAL_SPECIAL_TOKENS = SPECIAL_TOKENS[1:]

# Behaves as Qwen3-VL-*-Instruct's chat_template for everything but tools: a first system message renders its
# text (a string, or the text of its parts); user turns render strings verbatim and parts in order (image ->
# vision_start image_pad vision_end, video -> vision_start video_pad vision_end, text verbatim, with the
# optional "Picture N: " / "Video N: " prefixes under add_vision_id); assistant turns render their text; tool
# turns are wrapped in <tool_response> inside a user turn; no default system prompt.
QWEN3VL_CHAT_TEMPLATE = (
    "{%- macro render_parts(content) -%}"
    "{%- for part in content -%}"
    "{%- if part.type == 'image' or 'image' in part or 'image_url' in part -%}"
    "{%- set image_count.value = image_count.value + 1 -%}"
    "{%- if add_vision_id %}Picture {{ image_count.value }}: {% endif -%}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{%- elif part.type == 'video' or 'video' in part -%}"
    "{%- set video_count.value = video_count.value + 1 -%}"
    "{%- if add_vision_id %}Video {{ video_count.value }}: {% endif -%}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{%- elif 'text' in part -%}{{ part.text }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- endmacro -%}"
    "{%- macro render_text(content) -%}"
    "{%- if content is string -%}{{ content }}"
    "{%- else -%}{%- for part in content -%}{%- if 'text' in part -%}{{ part.text }}{%- endif -%}{%- endfor -%}"
    "{%- endif -%}"
    "{%- endmacro -%}"
    "{%- set image_count = namespace(value=0) -%}"
    "{%- set video_count = namespace(value=0) -%}"
    "{%- if messages[0].role == 'system' -%}"
    "{{- '<|im_start|>system\\n' + render_text(messages[0].content) + '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- for message in messages -%}"
    "{%- if message.role == 'user' -%}"
    "{{- '<|im_start|>user\\n' -}}"
    "{%- if message.content is string -%}{{- message.content -}}"
    "{%- else -%}{{- render_parts(message.content) -}}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- elif message.role == 'assistant' -%}"
    "{{- '<|im_start|>assistant\\n' + render_text(message.content) + '<|im_end|>\\n' -}}"
    "{%- elif message.role == 'tool' -%}"
    "{%- if loop.first or messages[loop.index0 - 1].role != 'tool' -%}{{- '<|im_start|>user' -}}{%- endif -%}"
    "{{- '\\n<tool_response>\\n' -}}"
    "{%- if message.content is string -%}{{- message.content -}}"
    "{%- else -%}{{- render_parts(message.content) -}}{%- endif -%}"
    "{{- '\\n</tool_response>' -}}"
    "{%- if loop.last or messages[loop.index0 + 1].role != 'tool' -%}{{- '<|im_end|>\\n' -}}{%- endif -%}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

TINY_QWEN3VL_TEXT = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "max_position_embeddings": 262144,
    "rms_norm_eps": 1e-6,
    # mrope_section sums to head_dim / 2 in the real model's proportions (24:20:20 of 64), interleaved T,H,W as
    # Qwen3-VL. rope_theta is 100, not the real 5e6: with only 8 frequencies, 5e6 leaves all but the first two
    # nearly still, and the last token's state then hardly depends on positions (cosine 0.97 between M-RoPE and
    # 1-D positions on a 64x96 image; 0.88 with 100, and swapping the H and W axes shows too).
    "rope_parameters": {
        "rope_type": "default",
        "rope_theta": 100.0,
        "mrope_section": [4, 2, 2],
        "mrope_interleaved": True,
    },
}
TINY_QWEN3VL_VISION = {
    "depth": 2,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_heads": 2,
    "in_channels": 3,
    "patch_size": 16,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "out_hidden_size": 64,
    "num_position_embeddings": 2304,  # a 48x48 grid, interpolated to each image's grid as in the real model
    "deepstack_visual_indexes": [0, 1],
    "hidden_act": "gelu_pytorch_tanh",
}
# Qwen3-VL-2B-Instruct's architecture (Qwen3-VL-Embedding-2B has the same): timing with random weights only.
QWEN3VL_2B_TEXT = {
    "hidden_size": 2048,
    "intermediate_size": 6144,
    "num_hidden_layers": 28,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "max_position_embeddings": 262144,
    "rms_norm_eps": 1e-6,
    "rope_parameters": {
        "rope_type": "default",
        "rope_theta": 5000000.0,
        "mrope_section": [24, 20, 20],
        "mrope_interleaved": True,
    },
    "vocab_size": 151936,
}
QWEN3VL_2B_VISION = {
    "depth": 24,
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_heads": 16,
    "in_channels": 3,
    "patch_size": 16,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "out_hidden_size": 2048,
    "num_position_embeddings": 2304,
    "deepstack_visual_indexes": [5, 11, 17],
    "hidden_act": "gelu_pytorch_tanh",
}


def build_qwen3vl_tokenizer(vocab_size: int = 512, extra_sentences: tuple[str, ...] = ()) -> Any:
    """build_tokenizer's BPE with Qwen3-VL's special-token roles (eos <|im_end|>, pad <|endoftext|>) and template."""
    tokenizer = build_tokenizer(vocab_size, extra_sentences)
    tokenizer.add_special_tokens(
        {"eos_token": "<|im_end|>", "additional_special_tokens": QWEN3VL_ADDITIONAL_SPECIAL_TOKENS}
    )
    assert len(tokenizer) == vocab_size  # all of them already are in the vocabulary
    tokenizer.chat_template = QWEN3VL_CHAT_TEMPLATE
    return tokenizer


def build_qwen3vl_processor(tokenizer: Any) -> Any:
    """Qwen3VLProcessor with Qwen3-VL-2B's preprocessor settings (patch 16, merge 2, mean/std 0.5)."""
    from transformers import Qwen2VLImageProcessor, Qwen3VLProcessor, Qwen3VLVideoProcessor

    common = {
        "patch_size": 16,
        "temporal_patch_size": 2,
        "merge_size": 2,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
    }
    image_processor = Qwen2VLImageProcessor(size={"shortest_edge": 65536, "longest_edge": 16777216}, **common)
    video_processor = Qwen3VLVideoProcessor(size={"shortest_edge": 4096, "longest_edge": 25165824}, **common)
    return Qwen3VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=QWEN3VL_CHAT_TEMPLATE,
    )


def build_qwen3vl_config(tokenizer: Any, text: dict[str, Any], vision: dict[str, Any]) -> Any:
    from transformers import Qwen3VLConfig

    text = chat_text_config(tokenizer, text)
    return Qwen3VLConfig(
        text_config=text,
        vision_config=vision,
        **vision_token_ids(tokenizer),
        tie_word_embeddings=True,
    )


def build_tiny_qwen3vl_checkpoint(
    out: Path, *, std: float = 0.5, seed: int = 0, extra_sentences: tuple[str, ...] = ()
) -> Path:
    """A random Qwen3-VL with 2 text and 2 vision layers, its own tokenizer and processor, via save_pretrained."""
    from transformers import Qwen3VLForConditionalGeneration

    tokenizer = build_qwen3vl_tokenizer(extra_sentences=extra_sentences)
    config = build_qwen3vl_config(tokenizer, TINY_QWEN3VL_TEXT, TINY_QWEN3VL_VISION)
    model = Qwen3VLForConditionalGeneration(config)
    randomize(model, std, seed)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    build_qwen3vl_processor(tokenizer).save_pretrained(out)
    return out


def build_full_size_qwen3vl_checkpoint(out: Path, *, seed: int = 0, extra_sentences: tuple[str, ...] = ()) -> Path:
    """Qwen3-VL-2B's exact architecture with random weights (default init, std 0.02) in bf16: timing only
    (``extra_sentences=RERANK_SENTENCES`` for Qwen3-VL-Reranker-2B's, whose vocabulary needs yes and no)."""
    import torch
    from transformers import Qwen3VLForConditionalGeneration

    tokenizer = build_qwen3vl_tokenizer(extra_sentences=extra_sentences)
    config = build_qwen3vl_config(tokenizer, QWEN3VL_2B_TEXT, QWEN3VL_2B_VISION)
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(config).to(torch.bfloat16)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    build_qwen3vl_processor(tokenizer).save_pretrained(out)
    return out


# -- rerankers: generative checkpoints whose vocabularies hold the answer words ------------------------------------

# Trained in, so that "yes", "no", "Yes" and "No" are whole tokens as in the real Qwen vocabularies.
RERANK_SENTENCES = ("yes", "no", "Yes", "No") * 50 + (
    "Judge whether the Document meets the requirements based on the Query and the Instruct provided.",
    "I will provide you with a query and a candidate. Please evaluate whether the candidate meets the requirements",
)

QWEN25VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TINY_QWEN25VL_VISION = {
    "depth": 2,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_heads": 2,
    "out_hidden_size": 64,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "window_size": 112,
    "fullatt_block_indexes": [1],
    "tokens_per_second": 2,
}


def build_tiny_qwen3vl_reranker_checkpoint(out: Path, *, std: float = 0.5, seed: int = 0) -> Path:
    """A random Qwen3-VL as Qwen3-VL-Reranker ships (a generative model, lm_head tied) with yes/no in its vocabulary."""
    return build_tiny_qwen3vl_checkpoint(out, std=std, seed=seed, extra_sentences=RERANK_SENTENCES)


def build_tiny_qwen25vl_checkpoint(out: Path, *, std: float = 0.5, seed: int = 0) -> Path:
    """A random Qwen2.5-VL (UniME-V2-Reranker's backbone) with its chat template and Yes/No in its vocabulary."""
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    tokenizer = build_tokenizer(extra_sentences=RERANK_SENTENCES)
    tokenizer.add_special_tokens({"eos_token": "<|im_end|>", "additional_special_tokens": SPECIAL_TOKENS[1:]})
    tokenizer.chat_template = QWEN25VL_CHAT_TEMPLATE
    text = chat_text_config(tokenizer, TINY_TEXT)
    config = Qwen2_5_VLConfig(
        text_config=text,
        vision_config=TINY_QWEN25VL_VISION,
        **vision_token_ids(tokenizer),
        tie_word_embeddings=True,
    )
    model = Qwen2_5_VLForConditionalGeneration(config)
    randomize(model, std, seed)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=3136, max_pixels=12845056),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(min_pixels=3136, max_pixels=12845056),
        chat_template=QWEN25VL_CHAT_TEMPLATE,
    )
    processor.save_pretrained(out)
    return out
