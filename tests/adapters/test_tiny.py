"""The shared character tokenizer, the tiny builder registry and ``egr tiny-model``."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from egr.tiny import build_tiny, tiny_model_types
from egr.tiny.tokenizer import ALPHABET, BASE_SPECIAL_TOKENS, build_char_tokenizer, chatml_template


def test_char_tokenizer_round_trips_and_keeps_specials_whole(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    tok = build_char_tokenizer(
        ["<image>"],
        chat_template=chatml_template("<image>\n"),
        named_special_tokens={"image_token": "<image>"},
    )
    assert len(tok) == len(BASE_SPECIAL_TOKENS) + 1 + len(ALPHABET)
    text = "Total: 12.50 EUR\n<image>x"
    ids = tok(text)["input_ids"]
    assert len(ids) == len(text) - len("<image>") + 1
    assert tok.decode(ids) == text
    assert tok.image_token == "<image>" and tok.image_token_id == ids[-2]
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Q?"}]}]
    prompt = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert prompt == "<|im_start|>user\n<image>\nQ?<|im_end|>\n<|im_start|>assistant\n"
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again(text)["input_ids"] == ids and again.image_token_id == tok.image_token_id
    assert tok("é")["input_ids"] == [tok.unk_token_id]


def test_char_tokenizer_rejects_unknown_named_tokens() -> None:
    with pytest.raises(ValueError, match="not among the special tokens"):
        build_char_tokenizer([], named_special_tokens={"image_token": "<image>"})


def test_unknown_model_type_lists_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="qwen2_5_vl"):
        build_tiny("no_such_vlm", tmp_path)
    assert {"qwen2_vl", "qwen2_5_vl", "qwen3_vl"} <= set(tiny_model_types())


def test_tiny_model_command_writes_a_loadable_checkpoint(tmp_path: Path) -> None:
    from transformers import AutoConfig

    from egr.commands.tiny_model import command

    app = typer.Typer()
    app.command()(command)
    app.command("other")(lambda: None)  # two commands: typer keeps the sub-command name
    out = tmp_path / "ckpt"
    result = CliRunner().invoke(app, ["command", str(out), "--type", "qwen2_vl"])
    assert result.exit_code == 0, result.output
    assert AutoConfig.from_pretrained(out).model_type == "qwen2_vl"
    assert (out / "model.safetensors").is_file() and (out / "processor_config.json").is_file()
    bad = CliRunner().invoke(app, ["command", str(tmp_path / "x"), "--type", "nope"])
    assert bad.exit_code == 2
