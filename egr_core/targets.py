"""What is explained: scalars computed from next-token logits (method.md section 1.4)."""

from __future__ import annotations

import math

import torch

from egr_core.errors import NonFiniteEntropyError


def next_token_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) of softmax(logits) at temperature 1, computed in float32.

    Uses ``log_softmax`` and treats p = 0 terms as 0, so masked (-inf) vocabulary entries give
    neither NaN values nor NaN gradients.

    Args:
        logits: (B, V) next-token logits, any float dtype.

    Returns:
        (B,) float32 entropies; differentiable w.r.t. ``logits``.
    """
    if logits.dim() != 2:
        raise ValueError(f"logits must be (B, V), got shape {tuple(logits.shape)}")
    logp = torch.log_softmax(logits.float(), dim=-1)  # (B, V)
    p = logp.exp()  # (B, V)
    plogp = p * torch.where(p > 0, logp, torch.zeros_like(logp))  # (B, V), 0 where p == 0
    return -plogp.sum(dim=-1)  # (B,)


def check_finite(value: float | torch.Tensor, what: str) -> float:
    """Return ``value`` as a float, or raise NonFiniteEntropyError naming ``what``.

    Args:
        value: an entropy (0-d tensor or float).
        what: context for the message (question, round, inputs).
    """
    v = float(value.detach().float().item()) if isinstance(value, torch.Tensor) else float(value)
    if not math.isfinite(v):
        raise NonFiniteEntropyError(
            f"first-token entropy is {v} ({what}); the logits contain NaN/Inf "
            "(try float32 instead of float16, or check the checkpoint)"
        )
    return v
