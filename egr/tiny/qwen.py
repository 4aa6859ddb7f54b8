"""Tiny random Qwen2-VL / Qwen2.5-VL / Qwen3-VL checkpoints (model + processor + chat template).

Sizes: language model hidden 64, 2 layers, 4 heads (head_dim 16); ViT width 32, depth 2, 2 heads.
The image processor's pixel budget is small (at most 64 merged tokens per image), so a 300x400 px
page becomes a 6x9 token grid. Weights are random with a fixed seed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from egr.tiny import HIDDEN, decoder_config, register_builder, save_checkpoint
from egr.tiny.tokenizer import IM_END, PAD, build_char_tokenizer, chatml_template

VISION_START, VISION_END = "<|vision_start|>", "<|vision_end|>"
IMAGE_PAD, VIDEO_PAD = "<|image_pad|>", "<|video_pad|>"
QWEN_SPECIALS = (VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD)

MAX_TOKENS_PER_IMAGE = 64  # merged tokens, i.e. pixel budget = 64 * (patch * merge) ** 2


def _tokenizer() -> Any:
    return build_char_tokenizer(
        QWEN_SPECIALS,
        chat_template=chatml_template(
            VISION_START + IMAGE_PAD + VISION_END, VISION_START + VIDEO_PAD + VISION_END
        ),
        named_special_tokens={
            "image_token": IMAGE_PAD,
            "video_token": VIDEO_PAD,
            "vision_start_token": VISION_START,
            "vision_end_token": VISION_END,
        },
        eos_token=IM_END,
        pad_token=PAD,
    )


def _text_config(tok: Any, *, qwen3: bool) -> dict[str, Any]:
    cfg: dict[str, Any] = decoder_config(tok)
    # mrope_section must sum to head_dim / 2 = 8 (t | h | w frequency bands).
    if qwen3:
        cfg["head_dim"] = HIDDEN // 4
        cfg["rope_parameters"] = {
            "rope_type": "default",
            "rope_theta": 10000.0,
            "mrope_section": [4, 2, 2],
            "mrope_interleaved": True,
        }
    else:
        cfg["rope_parameters"] = {
            "rope_type": "default",
            "rope_theta": 10000.0,
            "mrope_section": [2, 3, 3],
        }
    return cfg


def _vision_config(model_type: str) -> dict[str, Any]:
    if model_type == "qwen2_vl":
        # hidden_size is the merger output (= LM hidden); embed_dim is the ViT width.
        return {"depth": 2, "embed_dim": 32, "hidden_size": HIDDEN, "num_heads": 2, "mlp_ratio": 2}
    if model_type == "qwen2_5_vl":
        return {
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": HIDDEN,
            "window_size": 112,  # 4x4 merged tokens per window: exercises the window reorder
            "fullatt_block_indexes": [1],
        }
    return {  # qwen3_vl
        "depth": 2,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_heads": 2,
        "out_hidden_size": HIDDEN,
        "patch_size": 16,
        "num_position_embeddings": 64,
        "deepstack_visual_indexes": [0],
    }


def _processor(model_type: str, tok: Any) -> Any:
    from transformers import Qwen2VLImageProcessor

    patch = 16 if model_type == "qwen3_vl" else 14
    factor = patch * 2
    budget = {
        "shortest_edge": 4 * factor * factor,
        "longest_edge": MAX_TOKENS_PER_IMAGE * factor * factor,
    }
    common = {"patch_size": patch, "merge_size": 2, "temporal_patch_size": 2}
    image_proc = Qwen2VLImageProcessor(
        size=budget, image_mean=[0.5] * 3, image_std=[0.5] * 3, **common
    )
    template = tok.chat_template
    if model_type == "qwen3_vl":
        from transformers import Qwen3VLProcessor, Qwen3VLVideoProcessor

        video_proc = Qwen3VLVideoProcessor(size=budget, **common)
        return Qwen3VLProcessor(image_proc, tok, video_proc, chat_template=template)
    from transformers import Qwen2VLVideoProcessor

    video_proc = Qwen2VLVideoProcessor(size=budget, **common)
    if model_type == "qwen2_5_vl":
        from transformers import Qwen2_5_VLProcessor

        return Qwen2_5_VLProcessor(image_proc, tok, video_proc, chat_template=template)
    from transformers import Qwen2VLProcessor

    return Qwen2VLProcessor(image_proc, tok, video_proc, chat_template=template)


def _config(model_type: str, tok: Any) -> Any:
    from transformers import AutoConfig

    ids = {
        "image_token_id": tok.convert_tokens_to_ids(IMAGE_PAD),
        "video_token_id": tok.convert_tokens_to_ids(VIDEO_PAD),
        "vision_start_token_id": tok.convert_tokens_to_ids(VISION_START),
        "vision_end_token_id": tok.convert_tokens_to_ids(VISION_END),
    }
    return AutoConfig.for_model(
        model_type,
        text_config=_text_config(tok, qwen3=model_type == "qwen3_vl"),
        vision_config=_vision_config(model_type),
        tie_word_embeddings=False,
        **ids,
    )


@register_builder("qwen2_vl", "qwen2_5_vl", "qwen3_vl")
def build_qwen(out_dir: Path, model_type: str) -> None:
    """Save a tiny ``model_type`` checkpoint (model, processor, tokenizer) to ``out_dir``."""
    tok = _tokenizer()
    config = _config(model_type, tok)
    save_checkpoint(out_dir, config, _processor(model_type, tok), tok)
