"""Tiny random InternVL checkpoint (HF-native ``model_type`` "internvl").

Sizes: Qwen2 language model hidden 64, 2 layers; InternViT width 32, depth 2. Tiles are 112 px
with patch 14 (8x8 patches), pixel shuffle 0.5 -> 4x4 = 16 tokens per tile; up to 4 tiles plus a
thumbnail per image (the GotOcr2 tiling the HF InternVL processor uses). Random, seeded weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from egr.tiny import decoder_config, register_builder, save_checkpoint
from egr.tiny.tokenizer import IM_END, PAD, build_char_tokenizer, chatml_template

IMG_START, IMG_END, IMG_CONTEXT, VIDEO = "<img>", "</img>", "<IMG_CONTEXT>", "<video>"
TILE = 112
PATCH = 14
DOWNSAMPLE = 0.5
MAX_TILES = 4
SEQ_PER_TILE = int((TILE // PATCH) ** 2 * DOWNSAMPLE**2)  # 16


def _tokenizer() -> Any:
    return build_char_tokenizer(
        (IMG_START, IMG_END, IMG_CONTEXT, VIDEO),
        chat_template=chatml_template(IMG_CONTEXT + "\n", VIDEO + "\n"),
        named_special_tokens={
            "start_image_token": IMG_START,
            "end_image_token": IMG_END,
            "context_image_token": IMG_CONTEXT,
            "video_token": VIDEO,
        },
        eos_token=IM_END,
        pad_token=PAD,
    )


def _config(tok: Any) -> Any:
    from transformers import AutoConfig

    text = decoder_config(tok, "qwen2")
    vision = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": [TILE, TILE],
        "patch_size": [PATCH, PATCH],
    }
    return AutoConfig.for_model(
        "internvl",
        text_config=text,
        vision_config=vision,
        image_token_id=tok.convert_tokens_to_ids(IMG_CONTEXT),
        image_seq_length=SEQ_PER_TILE,
        downsample_ratio=DOWNSAMPLE,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        tie_word_embeddings=False,
    )


def _processor(tok: Any) -> Any:
    from transformers import GotOcr2ImageProcessor, InternVLProcessor, InternVLVideoProcessor

    image_proc = GotOcr2ImageProcessor(
        size={"height": TILE, "width": TILE},
        crop_to_patches=True,
        min_patches=1,
        max_patches=MAX_TILES,
        image_mean=[0.5] * 3,
        image_std=[0.5] * 3,
    )
    video_proc = InternVLVideoProcessor(size={"height": TILE, "width": TILE})
    return InternVLProcessor(
        image_proc, tok, video_proc, image_seq_length=SEQ_PER_TILE, chat_template=tok.chat_template
    )


@register_builder("internvl")
def build_internvl(out_dir: Path) -> None:
    """Save a tiny InternVL checkpoint (model, processor, tokenizer, template) to ``out_dir``."""
    tok = _tokenizer()
    save_checkpoint(out_dir, _config(tok), _processor(tok), tok)
