"""How relevance is computed: entropy gradient at the decoder input, reduced per image token.

Method.md section 1, steps 2-5: the decoder's input embeddings E (after image features were
scattered in) become a detached leaf with ``requires_grad``; one forward gives the first answer
token's logits, H = entropy(logits) is differentiated w.r.t. the leaf only (``torch.autograd.grad``:
nothing accumulates in ``.grad`` of any tensor), and each image token's score is the L2 norm of
dH/dE_i over the hidden channels. Scores are raw (not normalised).

:func:`frozen` freezes the weights (and eval mode) for one call and restores every flag after.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from egr_core.errors import EmptyRelevanceError, NonFiniteEntropyError
from egr_core.targets import check_finite, next_token_entropy


def grad_norm(grad: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """L2 norm over hidden channels of the gradient at the image positions.

    Args:
        grad: (T, D) gradient of the target w.r.t. the decoder input embeddings (batch removed).
        positions: (N,) sequence indices of the image tokens.

    Returns:
        (N,) float32 raw scores, >= 0.
    """
    if grad.dim() != 2:
        raise ValueError(f"grad must be (T, D), got shape {tuple(grad.shape)}")
    return grad[positions.to(grad.device)].float().norm(dim=-1)  # (N, D) -> (N,)


@dataclass(frozen=True, slots=True)
class EntropyGradient:
    """One forward + backward: the first-token entropy and raw per-image-token scores."""

    entropy: float
    scores: np.ndarray  # (N,) float32


def entropy_gradient(
    forward: Callable[[torch.Tensor], torch.Tensor],
    embeds: torch.Tensor,
    positions: torch.Tensor,
    what: str,
) -> EntropyGradient:
    """Differentiate the first-token entropy w.r.t. the decoder input embeddings.

    Args:
        forward: maps inputs_embeds (1, T, D) to next-token logits (1, V).
        embeds: (1, T, D) decoder input embeddings (features already scattered in).
        positions: (N,) indices of the image tokens in the sequence.
        what: context for error messages.

    Raises:
        NonFiniteEntropyError: the entropy or its gradient is NaN/Inf.
        EmptyRelevanceError: the entropy does not depend on the embeddings at all.
    """
    (out,) = entropy_gradients(lambda leaves: forward(leaves[0]), [embeds], [positions], [what])
    return out


def entropy_gradients(
    forward: Callable[[list[torch.Tensor]], torch.Tensor],
    embeds: Sequence[torch.Tensor],
    positions: Sequence[torch.Tensor],
    whats: Sequence[str],
) -> list[EntropyGradient]:
    """:func:`entropy_gradient` for B prompts in one forward and one backward.

    ``forward`` maps B leaves (1, T_b, D) to next-token logits (B, V), one row per prompt. The
    entropies are summed before the backward; since row b's entropy depends only on leaf b (the
    rows of a batch do not interact), each leaf's gradient is exactly its own entropy's.
    """
    leaves = [e.detach().requires_grad_(True) for e in embeds]  # B x (1, T_b, D)
    with torch.enable_grad():
        logits = forward(leaves)  # (B, V)
        if logits.shape[0] != len(leaves):
            raise ValueError(f"forward gave {logits.shape[0]} logit rows for {len(leaves)} prompts")
        h = next_token_entropy(logits)  # (B,)
        values = [check_finite(h[b], whats[b]) for b in range(len(leaves))]
        if not h.requires_grad:
            raise EmptyRelevanceError(
                f"the first-token entropy does not depend on the input embeddings ({whats[0]}); "
                "the adapter's forward must use the inputs_embeds it is given"
            )
        grads = torch.autograd.grad(h.sum(), leaves, allow_unused=True)  # B x (1, T_b, D)
    out = []
    for b, grad in enumerate(grads):
        if grad is None:
            raise EmptyRelevanceError(f"prompt {b}'s entropy does not reach its embeddings")
        scores = grad_norm(grad[0].detach(), positions[b])  # (N_b,)
        if not bool(torch.isfinite(scores).all()):
            bad = int((~torch.isfinite(scores)).sum())
            raise NonFiniteEntropyError(
                f"entropy gradient has {bad} non-finite scores of {scores.numel()} ({whats[b]})"
            )
        out.append(EntropyGradient(values[b], scores.cpu().numpy().astype(np.float32)))
    return out


@contextlib.contextmanager
def frozen(model: Any) -> Iterator[None]:
    """Eval mode and ``requires_grad=False`` for the call; every flag restored in ``finally``."""
    modules = list(model.modules()) if isinstance(model, torch.nn.Module) else []
    training = [m.training for m in modules]
    params = list(model.parameters()) if modules else []
    flags = [p.requires_grad for p in params]
    try:
        for m in modules:
            m.training = False
        for p in params:
            p.requires_grad_(False)
        yield
    finally:
        for m, t in zip(modules, training, strict=True):
            m.training = t
        for p, f in zip(params, flags, strict=True):
            p.requires_grad_(f)
