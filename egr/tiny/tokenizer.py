"""A character-level fast tokenizer, built offline, shared by every tiny checkpoint builder.

Every printable ASCII character (plus newline and tab) is one token; each family passes in the
special tokens its processor looks for (``<|image_pad|>``, ``<image>``, ...) and they are matched
whole before the character split. Unknown characters map to ``<unk>``. The result is a stock
``PreTrainedTokenizerFast``, so ``save_pretrained`` / ``AutoTokenizer.from_pretrained`` work.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence

from tokenizers import AddedToken, Tokenizer, decoders, models
from transformers import PreTrainedTokenizerFast

UNK = "<unk>"
PAD = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
#: Special tokens every tiny tokenizer has, in id order (ids 0..3).
BASE_SPECIAL_TOKENS: tuple[str, ...] = (UNK, PAD, IM_START, IM_END)
#: The character alphabet (ids follow the special tokens).
ALPHABET: str = string.printable[:-2]  # letters, digits, punctuation, " ", "\t", "\n"


def chatml_template(image_placeholder: str, video_placeholder: str | None = None) -> str:
    """A ChatML-style Jinja chat template.

    Messages render as ``<|im_start|>{role}\\n{content}<|im_end|>\\n``; a content item of type
    ``image`` renders as ``image_placeholder`` (the processor expands it), ``video`` as
    ``video_placeholder``, ``text`` verbatim. ``add_generation_prompt`` appends
    ``<|im_start|>assistant\\n``.

    Args:
        image_placeholder: text emitted for each image item, e.g.
            ``"<|vision_start|><|image_pad|><|vision_end|>"`` (Qwen) or ``"<image>\\n"`` (LLaVA).
        video_placeholder: text emitted for each video item (default: same as image).
    """
    video = video_placeholder if video_placeholder is not None else image_placeholder
    img = image_placeholder.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
    vid = video.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
    return (
        "{%- for message in messages -%}"
        "{{ '" + IM_START + "' + message['role'] + '\\n' }}"
        "{%- if message['content'] is string -%}{{ message['content'] }}"
        "{%- else -%}{%- for item in message['content'] -%}"
        "{%- if item['type'] == 'image' -%}{{ '" + img + "' }}"
        "{%- elif item['type'] == 'video' -%}{{ '" + vid + "' }}"
        "{%- elif item['type'] == 'text' -%}{{ item['text'] }}"
        "{%- endif -%}{%- endfor -%}{%- endif -%}"
        "{{ '" + IM_END + "\\n' }}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{ '" + IM_START + "assistant\\n' }}{%- endif -%}"
    )


def build_char_tokenizer(
    special_tokens: Sequence[str] = (),
    *,
    chat_template: str | None = None,
    named_special_tokens: Mapping[str, str] | None = None,
    bos_token: str | None = None,
    eos_token: str = IM_END,
    pad_token: str = PAD,
    padding_side: str = "left",
) -> PreTrainedTokenizerFast:
    """Build the shared character-level tokenizer.

    Args:
        special_tokens: family tokens matched whole (e.g. ``"<|image_pad|>"``); ids follow
            :data:`BASE_SPECIAL_TOKENS` in the given order, then the alphabet.
        chat_template: Jinja chat template stored on the tokenizer (see :func:`chatml_template`).
        named_special_tokens: attribute name -> token, exposed on the tokenizer as
            ``tokenizer.<name>`` / ``tokenizer.<name>_id`` (e.g. ``{"image_token": "<image>"}``);
            every value must be in ``special_tokens`` or the base tokens.
        bos_token: optional BOS token (must be one of the special tokens); not auto-prepended.
        eos_token: EOS token (default ``<|im_end|>``, which ends every chat turn).
        pad_token: padding token.
        padding_side: "left" (what batched generation wants) or "right".

    Returns:
        A ``PreTrainedTokenizerFast`` whose vocabulary is specials + :data:`ALPHABET`.

    Raises:
        ValueError: a special token is duplicated or a named/bos/eos/pad token is unknown.
    """
    specials = list(BASE_SPECIAL_TOKENS) + [t for t in special_tokens]
    if len(set(specials)) != len(specials):
        raise ValueError(f"duplicate special tokens: {specials}")
    named = dict(named_special_tokens or {})
    for name, tok in [*named.items(), ("bos", bos_token), ("eos", eos_token), ("pad", pad_token)]:
        if tok is not None and tok not in specials:
            raise ValueError(f"{name} token {tok!r} is not among the special tokens {specials}")

    vocab = {tok: i for i, tok in enumerate(specials)}
    for ch in ALPHABET:
        vocab.setdefault(ch, len(vocab))
    # BPE without merges = one token per character; specials are matched first as added tokens.
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK))
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    backend.decoder = decoders.Fuse()

    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token=UNK,
        pad_token=pad_token,
        eos_token=eos_token,
        bos_token=bos_token,
        extra_special_tokens=named or None,
        padding_side=padding_side,
        model_max_length=4096,
    )
    if chat_template is not None:
        tok.chat_template = chat_template
    return tok
