"""Tiny random Idefics3 and SmolVLM checkpoints (model + processor + chat template).

Sizes: Llama language model hidden 64, 2 layers; SigLIP-style ViT width 32, depth 2. Tiles are
112 px with patch 14 (8x8 patches), pixel shuffle 2 -> 4x4 = 16 ``<image>`` tokens per tile. The
image is first resized so its long side is 224 px, then stretched to whole tiles: up to 2x2 tiles
plus the global view. Random, seeded weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from egr.tiny import decoder_config, register_builder, save_checkpoint
from egr.tiny.tokenizer import IM_END, PAD, build_char_tokenizer, chatml_template

FAKE, IMAGE, EOU, GLOBAL, VIDEO = (
    "<fake_token_around_image>",
    "<image>",
    "<end_of_utterance>",
    "<global-img>",
    "<video>",
)
ROW_COL = tuple(f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7))
TILE = 112
PATCH = 14
SCALE = 2
LONG_SIDE = 2 * TILE
SEQ_PER_TILE = (TILE // PATCH) ** 2 // SCALE**2  # 16


def _tokenizer() -> Any:
    return build_char_tokenizer(
        (FAKE, IMAGE, EOU, GLOBAL, VIDEO, *ROW_COL),
        chat_template=chatml_template(IMAGE),
        named_special_tokens={
            "fake_image_token": FAKE,
            "image_token": IMAGE,
            "end_of_utterance_token": EOU,
            "global_image_token": GLOBAL,
            "video_token": VIDEO,
        },
        eos_token=IM_END,
        pad_token=PAD,
    )


def _config(model_type: str, tok: Any) -> Any:
    from transformers import AutoConfig

    text = decoder_config(tok, "llama", max_positions=4096)
    vision = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": TILE,
        "patch_size": PATCH,
    }
    return AutoConfig.for_model(
        model_type,
        text_config=text,
        vision_config=vision,
        image_token_id=tok.convert_tokens_to_ids(IMAGE),
        scale_factor=SCALE,
        tie_word_embeddings=False,
        pad_token_id=tok.pad_token_id,
    )


def _processor(model_type: str, tok: Any) -> Any:
    kw: dict[str, Any] = {
        "size": {"longest_edge": LONG_SIDE},
        "max_image_size": {"longest_edge": TILE},
        "do_image_splitting": True,
        "image_mean": [0.5] * 3,
        "image_std": [0.5] * 3,
    }
    if model_type == "idefics3":
        from transformers import Idefics3ImageProcessor, Idefics3Processor

        return Idefics3Processor(
            Idefics3ImageProcessor(**kw), tok, image_seq_len=SEQ_PER_TILE,
            chat_template=tok.chat_template,
        )  # fmt: skip
    from transformers import SmolVLMImageProcessor, SmolVLMProcessor, SmolVLMVideoProcessor

    video = SmolVLMVideoProcessor(
        size={"longest_edge": LONG_SIDE}, max_image_size={"longest_edge": TILE}
    )
    return SmolVLMProcessor(
        SmolVLMImageProcessor(**kw), tok, video, image_seq_len=SEQ_PER_TILE,
        chat_template=tok.chat_template,
    )  # fmt: skip


@register_builder("idefics3", "smolvlm")
def build_idefics3(out_dir: Path, model_type: str) -> None:
    """Save a tiny ``model_type`` checkpoint (model, processor, template) to ``out_dir``."""
    tok = _tokenizer()
    save_checkpoint(out_dir, _config(model_type, tok), _processor(model_type, tok), tok)
