"""Tiny random LLaVA-1.5 and LLaVA-NeXT checkpoints (model + processor + chat template).

Sizes: Llama language model hidden 64, 2 layers, 4 heads; CLIP ViT width 32, depth 2.
LLaVA: CLIP 84 px / patch 14 -> a 6x6 grid per image after a shortest-edge-84 resize and an 84x84
centre crop (the HF llava-1.5 processor recipe, scaled down).
LLaVA-NeXT: CLIP 56 px / patch 14 -> 4x4 per view; any-res pinpoints 56x112, 112x56, 112x112, so a
page gives a 4x4 base view plus an unpadded canvas of up to 8x8 cells with a newline token per row.
Weights are random with a fixed seed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from egr.tiny import decoder_config, register_builder, save_checkpoint
from egr.tiny.tokenizer import IM_END, PAD, build_char_tokenizer, chatml_template

IMAGE = "<image>"
LLAVA_SIZE = 84
NEXT_SIZE = 56
PATCH = 14
NEXT_PINPOINTS = [[56, 112], [112, 56], [112, 112]]


def _tokenizer() -> Any:
    return build_char_tokenizer(
        (IMAGE,),
        chat_template=chatml_template(IMAGE + "\n"),
        named_special_tokens={"image_token": IMAGE},
        eos_token=IM_END,
        pad_token=PAD,
    )


def _config(model_type: str, tok: Any) -> Any:
    from transformers import AutoConfig

    size = LLAVA_SIZE if model_type == "llava" else NEXT_SIZE
    text = decoder_config(tok, "llama")
    vision = {
        "model_type": "clip_vision_model",
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": size,
        "patch_size": PATCH,
        "projection_dim": 32,
    }
    extra: dict[str, Any] = {}
    if model_type == "llava_next":
        extra["image_grid_pinpoints"] = NEXT_PINPOINTS
    return AutoConfig.for_model(
        model_type,
        text_config=text,
        vision_config=vision,
        image_token_index=tok.convert_tokens_to_ids(IMAGE),
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        image_seq_length=(size // PATCH) ** 2,
        tie_word_embeddings=False,
        **extra,
    )


def _processor(model_type: str, tok: Any) -> Any:
    import transformers

    if model_type == "llava":
        image_proc: Any = transformers.LlavaImageProcessor(
            size={"shortest_edge": LLAVA_SIZE},
            crop_size={"height": LLAVA_SIZE, "width": LLAVA_SIZE},
            do_pad=False,
        )
        processor_cls: Any = transformers.LlavaProcessor
    else:
        image_proc = transformers.LlavaNextImageProcessor(
            size={"shortest_edge": NEXT_SIZE},
            crop_size={"height": NEXT_SIZE, "width": NEXT_SIZE},
            image_grid_pinpoints=NEXT_PINPOINTS,
        )
        processor_cls = transformers.LlavaNextProcessor
    return processor_cls(
        image_proc,
        tok,
        patch_size=PATCH,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=tok.chat_template,
    )


@register_builder("llava", "llava_next")
def build_llava(out_dir: Path, model_type: str) -> None:
    """Save a tiny ``model_type`` checkpoint (model, processor, template) to ``out_dir``."""
    tok = _tokenizer()
    config = _config(model_type, tok)
    save_checkpoint(out_dir, config, _processor(model_type, tok), tok)
