"""Decoding for M-RoPE language models (the Qwen-VL family): real 3-axis positions from
``get_rope_index``, B prompts in one right-padded decoder pass, and greedy decoding of B prompts
with one KV cache, all from precomputed input embeddings (no second vision pass). Prompts that
start with the same tokens (a page's questions: the page comes first) decode from one prefill of
that prefix, its KV cache repeated for every row (:func:`shared_prefix`); gradients never take
this path (each question's map needs its own backward through the page).

Right padding keeps batching exact without an attention mask: a token never attends to the
padding after it, so each row of a batch computes what it computes alone; decode steps mask the
padding out. The adapter supplies ``decoder(model)`` and, for DeepStack (Qwen3-VL), ``embed``
fills ``prepared.extra["deepstack"]``.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch

from egr_core.adapters.base import Decoded, PreparedInputs


class MRopeDecoder:
    """Decoder calls of an adapter whose language model takes M-RoPE positions."""

    @staticmethod
    def decoder(model: Any) -> torch.nn.Module:
        """The language model: the module that receives ``inputs_embeds``."""
        return model.model.language_model

    def rope_positions(self, model: Any, prepared: PreparedInputs) -> torch.Tensor:
        """Real M-RoPE position ids (3, 1, T) from ``model.model.get_rope_index``."""
        mi = prepared.model_inputs
        position_ids, _deltas = model.model.get_rope_index(
            input_ids=mi["input_ids"],
            mm_token_type_ids=mi["mm_token_type_ids"],
            image_grid_thw=mi["image_grid_thw"],
            attention_mask=mi.get("attention_mask"),
        )
        return position_ids  # (3, 1, T)

    def _decoder_kwargs(
        self, preps: Sequence[PreparedInputs], width: int, device: torch.device
    ) -> dict[str, Any]:
        """Qwen3-VL's DeepStack inputs for right-padded rows of ``width`` tokens (else none)."""
        if preps[0].extra.get("model_type") != "qwen3_vl":
            return {}
        if any("deepstack" not in p.extra for p in preps):
            raise RuntimeError("Qwen3-VL: call embed() before the decoder (DeepStack features)")
        masks = []
        for p in preps:
            ids = p.model_inputs["input_ids"].to(device)  # (1, T_b)
            masks.append(_pad_last(ids == p.extra["image_token_id"], width, False))
        layers = len(preps[0].extra["deepstack"])
        return {
            "visual_pos_masks": torch.cat(masks, dim=0),  # (B, W): row-major, like the features
            "deepstack_visual_embeds": [
                torch.cat([p.extra["deepstack"][k] for p in preps], dim=0) for k in range(layers)
            ],
        }

    def _prefill(
        self,
        model: Any,
        preps: Sequence[PreparedInputs],
        embeds: Sequence[torch.Tensor],
        shared: int = 0,
        **kw: Any,
    ) -> tuple[Any, torch.Tensor, list[int], torch.Tensor]:
        """One decoder pass over B prompts, right-padded to the longest: a token never attends to
        the padding after it, so each row computes exactly what it computes alone (no mask).
        With ``shared`` > 0 (the prompts' common first tokens, :func:`shared_prefix`) the prefix
        runs once (:meth:`_prefix_cache`) and the pass covers each prompt's own tokens.

        Returns the decoder output, M-RoPE positions (3, B, W), the prompt lengths and the
        float32 logits (B, V) at each prompt's last token.
        """
        if len(preps) != len(embeds) or not preps:
            raise ValueError(f"{len(preps)} prompts but {len(embeds)} embeddings")
        device = embeds[0].device
        lengths = [int(e.shape[1]) for e in embeds]
        width = max(lengths)
        positions = torch.cat(
            [_pad_last(self.rope_positions(model, p).to(device), width, 0) for p in preps], dim=1
        )  # (3, B, W)
        if shared:
            kw = {**kw, **self._prefix_cache(model, embeds[0], positions, shared, len(embeds))}
        x = torch.cat([_pad_tokens(e[:, shared:], width - shared) for e in embeds], dim=0)
        out = self.decoder(model)(
            inputs_embeds=x, attention_mask=None, position_ids=positions[:, :, shared:],
            **self._decoder_kwargs(preps, width, device), **kw,
        )  # fmt: skip
        rows = torch.arange(len(lengths), device=device)
        last = out.last_hidden_state[rows, torch.tensor(lengths, device=device) - shared - 1]
        return out, positions, lengths, model.lm_head(last).float()

    def _prefix_cache(
        self, model: Any, embeds: torch.Tensor, positions: torch.Tensor, shared: int, rows: int
    ) -> dict[str, Any]:
        """The decoder's cache keyword after one pass over the first ``shared`` tokens of
        ``embeds`` (1, T, D), its KV cache repeated for ``rows`` prompts."""
        dec = self.decoder(model)
        head = dec(
            inputs_embeds=embeds[:, :shared], attention_mask=None,
            position_ids=positions[:, :1, :shared], use_cache=True,
        )  # fmt: skip
        cache = _cache_kwargs(dec, head)
        next(iter(cache.values())).batch_repeat_interleave(rows)
        return cache

    def batch_next_token_logits(
        self, model: Any, preps: Sequence[PreparedInputs], embeds: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        """:meth:`next_token_logits` of B prompts in one decoder pass: (B, V) float32; each row
        is differentiable w.r.t. its own embeddings only."""
        return self._prefill(model, preps, embeds, use_cache=False)[3]

    def next_token_logits(
        self, model: Any, prepared: PreparedInputs, inputs_embeds: torch.Tensor
    ) -> torch.Tensor:
        """Decoder forward with M-RoPE positions; logits (1, V) at the last position, float32."""
        return self.batch_next_token_logits(model, [prepared], [inputs_embeds])

    def answer_logprob(
        self, model: Any, prepared: PreparedInputs, inputs_embeds: torch.Tensor, ids: torch.Tensor
    ) -> float:
        """Log-probability of the answer tokens ``ids`` (n,) after the prompt (teacher forcing;
        their positions continue after the prompt's largest M-RoPE position, as in decoding)."""
        with torch.no_grad():
            device = inputs_embeds.device
            ids = ids.to(device)
            n = int(ids.numel())
            prompt = self.rope_positions(model, prepared).to(device)  # (3, 1, T)
            steps = prompt.amax() + 1 + torch.arange(n - 1, device=device)
            positions = torch.cat([prompt, steps.view(1, 1, -1).expand(3, 1, -1)], dim=2)
            fed = model.get_input_embeddings()(ids[:-1].view(1, -1)).to(inputs_embeds.dtype)
            x = torch.cat([inputs_embeds.detach(), fed], dim=1)  # (1, T + n - 1, D)
            width = int(x.shape[1])
            out = self.decoder(model)(
                inputs_embeds=x, attention_mask=None, position_ids=positions,
                **self._decoder_kwargs([prepared], width, device),
            )  # fmt: skip
            hidden = out.last_hidden_state[0, width - n :]  # (n, D): predicts ids[0..n-1]
            logp = model.lm_head(hidden).float().log_softmax(-1)
            return float(logp[torch.arange(n, device=device), ids].sum())

    def generate_ids(
        self, model: Any, prepared: PreparedInputs, inputs_embeds: torch.Tensor, max_new_tokens: int
    ) -> torch.Tensor:
        """Greedy decoding with a KV cache from precomputed embeddings; no second vision pass.

        Prompt positions are M-RoPE; each generated token sits at ``max(prompt positions) + 1 +
        step`` on all three axes, as in the model's own ``generate``.

        Returns:
            (n,) generated token ids, including the EOS token if one was produced.
        """
        return self._greedy(model, [prepared], [inputs_embeds], max_new_tokens)[0][0]

    def _greedy(
        self,
        model: Any,
        preps: Sequence[PreparedInputs],
        embeds: Sequence[torch.Tensor],
        max_new_tokens: int,
        scored: bool = False,
    ) -> list[tuple[torch.Tensor, torch.Tensor, float]]:
        """Greedy decoding of B right-padded prompts together: per prompt, the generated ids (n,)
        (up to and including EOS), the float32 logits (1, V) of the prefill, and (``scored``;
        else 0.0) the summed log-probability of the generated ids (what teacher forcing them
        would give)."""
        eos = model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        dec, table = self.decoder(model), model.get_input_embeddings()
        with torch.no_grad():
            detached = [e.detach() for e in embeds]
            shared = shared_prefix(preps, detached)
            out, positions, lengths, first = self._prefill(
                model, preps, detached, shared, use_cache=True
            )
            device, n = first.device, len(lengths)
            # decode steps see each prompt's real tokens and the tokens generated so far
            attn = torch.zeros((n, positions.shape[-1]), dtype=torch.long, device=device)
            for b, length in enumerate(lengths):
                attn[b, :length] = 1
            next_pos = positions.amax(dim=(0, 2)) + 1  # (B,)
            ids: list[list[int]] = [[] for _ in range(n)]
            logp = [0.0] * n
            done = [False] * n
            logits = first
            for _ in range(max_new_tokens):
                toks = logits.argmax(-1)  # (B,)
                if scored:
                    picked = logits.log_softmax(-1).gather(1, toks.view(n, 1))[:, 0]  # (B,)
                for b in range(n):
                    if not done[b]:
                        ids[b].append(int(toks[b]))
                        logp[b] += float(picked[b]) if scored else 0.0
                        done[b] = int(toks[b]) in eos_ids
                if all(done):
                    break
                attn = torch.cat([attn, attn.new_ones((n, 1))], dim=1)
                pos = next_pos.view(1, n, 1).expand(3, n, 1).to(positions.dtype)
                next_pos = next_pos + 1
                out = dec(
                    inputs_embeds=table(toks.view(n, 1)), attention_mask=attn, position_ids=pos,
                    use_cache=True, **_cache_kwargs(dec, out),
                )  # fmt: skip
                logits = model.lm_head(out.last_hidden_state[:, -1, :]).float()  # (B, V)
        return [
            (torch.tensor(ids[b], dtype=torch.long), first[b : b + 1], logp[b]) for b in range(n)
        ]

    def batch_generate_with_logits(
        self,
        model: Any,
        processor: Any,
        preps: Sequence[PreparedInputs],
        embeds: Sequence[torch.Tensor],
        max_new_tokens: int,
    ) -> list[tuple[str, torch.Tensor]]:
        """:meth:`generate_with_logits` of B prompts decoded together."""
        decode = processor.tokenizer.decode
        return [
            (decode(ids.tolist(), skip_special_tokens=True).strip(), first)
            for ids, first, _ in self._greedy(model, preps, embeds, max_new_tokens)
        ]

    def batch_generate_scored(
        self,
        model: Any,
        processor: Any,
        preps: Sequence[PreparedInputs],
        embeds: Sequence[torch.Tensor],
        max_new_tokens: int,
    ) -> list[Decoded]:
        """Greedy answers of B prompts decoded together, each with its generated ids and their
        summed log-probability (the answer step scores a view's own answer from its decoding)."""
        decode = processor.tokenizer.decode
        return [
            Decoded(decode(ids.tolist(), skip_special_tokens=True).strip(), tuple(ids.tolist()), lp)
            for ids, _, lp in self._greedy(model, preps, embeds, max_new_tokens, scored=True)
        ]

    def generate_with_logits(
        self,
        model: Any,
        processor: Any,
        prepared: PreparedInputs,
        inputs_embeds: torch.Tensor,
        max_new_tokens: int,
    ) -> tuple[str, torch.Tensor]:
        """Greedy answer text and the prefill's first-token logits (1, V) float32: one prefill
        serves both the plain-mode entropy and the answer."""
        return self.batch_generate_with_logits(
            model, processor, [prepared], [inputs_embeds], max_new_tokens
        )[0]

    def generate(
        self,
        model: Any,
        processor: Any,
        prepared: PreparedInputs,
        inputs_embeds: torch.Tensor,
        max_new_tokens: int,
    ) -> str:
        """Greedy answer text (special tokens dropped, surrounding whitespace stripped)."""
        text, _ = self.generate_with_logits(
            model, processor, prepared, inputs_embeds, max_new_tokens
        )
        return text


#: Shortest shared prefix worth its own pass (a page image is hundreds of tokens).
MIN_SHARED_TOKENS = 32


def shared_prefix(preps: Sequence[PreparedInputs], embeds: Sequence[torch.Tensor]) -> int:
    """Leading tokens that every prompt has in common (the same ids and the same embeddings),
    leaving each prompt at least one token of its own; 0 for one prompt, a prefix shorter than
    :data:`MIN_SHARED_TOKENS`, or Qwen3-VL (its DeepStack features join inside the decoder)."""
    if len(preps) < 2 or any(p.extra.get("model_type") == "qwen3_vl" for p in preps):
        return 0
    ids = [p.model_inputs["input_ids"][0] for p in preps]
    n = min(int(i.shape[0]) for i in ids) - 1
    same = torch.ones(n, dtype=torch.bool)
    for other in ids[1:]:
        same &= other[:n].cpu() == ids[0][:n].cpu()
    k = n if bool(same.all()) else int((~same).nonzero()[0])
    if k < MIN_SHARED_TOKENS:
        return 0
    head = embeds[0][0, :k]
    if not all(torch.equal(e[0, :k], head) for e in embeds[1:]):
        return 0
    return k


def _pad_tokens(x: torch.Tensor, width: int) -> torch.Tensor:
    """(1, T, D) embeddings zero-padded after the last token to (1, width, D)."""
    return torch.nn.functional.pad(x, (0, 0, 0, width - x.shape[1]))


def _pad_last(x: torch.Tensor, width: int, value: int | bool) -> torch.Tensor:
    """Positions (3, 1, T) or a mask (1, T) padded with ``value`` along the token axis."""
    pad = x.new_full((*x.shape[:-1], width - x.shape[-1]), value)
    return torch.cat([x, pad], dim=-1)


def _cache_kwargs(decoder: Any, out: Any) -> dict[str, Any]:
    """The KV cache of ``out`` as the decoder's next-step keyword: ``cache`` in transformers
    >= 5.24 (``past_key_values`` there warns a FutureWarning on every step), else the old name."""
    if "cache" in inspect.signature(decoder.forward).parameters:
        return {"cache": out.cache if "cache" in getattr(out, "__dataclass_fields__", {}) else
                out.past_key_values}  # fmt: skip
    return {"past_key_values": out.past_key_values}
