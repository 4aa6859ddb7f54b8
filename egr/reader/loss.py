"""The reader's training loss: answer cross-entropy plus the training-only terms (focus: attention
of the answer onto its crop; copy: each answer character read from its token; lens: every slot's
character read from the vision features), with their weights.
"""

from __future__ import annotations

from typing import Any

import torch

#: Weight of the focus loss and the decoder layers whose attention it shapes (the last two).
FOCUS_WEIGHT = 0.3
COPY_WEIGHT = 0.3
LENS_WEIGHT = 0.5
FOCUS_LAYERS = (-2, -1)


def loss_of(
    model: Any, enc: dict[str, Any], char_head: torch.nn.Module | None = None
) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy on the answer span, plus the training-only losses the batch has labels for.

    All of them leave the checkpoint a stock model (see ``docs/reader.md``):

    - ``chars``: a linear head on the merged visual features names the character in each of a
      token's two slots (its patch columns; ``char_labels``);
    - ``lens``: the model's own output at each image token names the character it shows
      (``lens_labels``), so copying is moving a vector ``lm_head`` already reads;
    - ``copy``: some head of the last decoder layers, at the position writing character k, looks
      at the token holding character k's centre;
    - ``focus``: ``-log(attention mass on the focus tokens)`` of the query predicting the first
      answer token, averaged over the heads of the last decoder layers: the reader looks where the
      answer is drawn, which is where EGG's entropy gradient should point.

    Returns:
        The loss to minimise and its parts (each 0.0 when absent from the batch).
    """
    labels = enc.pop("labels")
    targets = enc.pop("att_targets", None)
    chars = enc.pop("char_labels", None)
    lens_labels = enc.pop("lens_labels", None)
    captured: list[torch.Tensor] = []
    merged: list[torch.Tensor] = []
    handles = []
    if chars is not None and char_head is not None:
        handles.append(
            model.model.visual.merger.register_forward_hook(lambda m, a, o: merged.append(o))
        )
    if targets is not None:
        from transformers.models.qwen2_vl.modeling_qwen2_vl import apply_rotary_pos_emb

        layers = model.model.language_model.layers
        rows, query, keys, copy = targets

        def hook(module: Any, args: Any, kwargs: Any) -> None:
            h = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]  # (B, T, D)
            cos, sin = kwargs["position_embeddings"]
            b, t, _ = h.shape
            hd = module.head_dim
            q = module.q_proj(h).view(b, t, -1, hd).transpose(1, 2)  # (B, H, T, hd)
            k = module.k_proj(h).view(b, t, -1, hd).transpose(1, 2)
            q, k = apply_rotary_pos_emb(q, k, cos, sin)
            rep = q.shape[1] // k.shape[1]
            k = k.repeat_interleave(rep, dim=1)
            qq = q[rows, :, query]  # (P, H, hd)
            scores = torch.einsum("phd,phtd->pht", qq, k[rows]) * module.scaling  # (P, H, T)
            keep = enc["attention_mask"][rows].bool() & (
                torch.arange(t)[None, :] <= query[:, None]
            )  # (P, T) causal + padding
            scores = scores.masked_fill(~keep[:, None, :], float("-inf"))
            p = scores.float().softmax(-1)
            captured.append((p * keys[:, None, :]).sum(-1))  # (P, H) mass on the target keys

        for li in FOCUS_LAYERS:
            handles.append(layers[li].self_attn.register_forward_pre_hook(hook, with_kwargs=True))
    try:
        out = model(**enc)
    finally:
        for hd in handles:
            hd.remove()
    logits = out.logits[:, :-1].float()  # (B, T-1, V)
    tgt = labels[:, 1:]  # (B, T-1)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1))
    parts = {"answer": loss.item(), "chars": 0.0, "lens": 0.0, "focus": 0.0, "copy": 0.0}
    if lens_labels is not None and (lens_labels >= 0).any():
        # the language model's own output at each image token names the character it shows,
        # so that copying a character is moving a vector the output head already reads
        image = enc["input_ids"] == model.config.image_token_id  # (B, T)
        lens = torch.nn.functional.cross_entropy(out.logits[image].float(), lens_labels)
        parts["lens"] = lens.item()
        loss = loss + LENS_WEIGHT * lens
    if merged:  # per-token character loss on the merged visual features (training only)
        slot_logits = char_head(merged[0]).float().view(chars.shape[0] * 2, -1)  # (2N, V)
        char_loss = torch.nn.functional.cross_entropy(slot_logits, chars.view(-1))
        parts["chars"] = char_loss.item()
        loss = loss + char_loss
    if not captured:
        return loss, parts
    mass = torch.stack(captured)  # (L, P, H)
    if (~copy).any():  # focus: every head of the last layers looks at the answer's tokens
        focus = -(mass[:, ~copy].mean(0).mean(-1) + 1e-4).log().mean()
        parts["focus"] = focus.item()
        loss = loss + FOCUS_WEIGHT * focus
    if copy.any():  # copy: some head of the last layers looks at the character being written
        best = mass[:, copy].amax(dim=(0, 2))  # (P',)
        copy_loss = -(best + 1e-4).log().mean()
        parts["copy"] = copy_loss.item()
        loss = loss + COPY_WEIGHT * copy_loss
    return loss, parts
