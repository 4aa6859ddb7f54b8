"""Entropy targets: uniform = log V, one-hot = 0, masked vocabulary entries give no NaN."""

from __future__ import annotations

import math

import pytest
import torch

from egr_core.errors import NonFiniteEntropyError
from egr_core.targets import check_finite, next_token_entropy


@pytest.mark.parametrize("vocab", [2, 7, 32000])
def test_entropy_of_uniform_logits_is_log_v(vocab: int) -> None:
    h = next_token_entropy(torch.full((3, vocab), 1.25))
    assert h.shape == (3,)
    assert h.dtype == torch.float32
    torch.testing.assert_close(h, torch.full((3,), math.log(vocab)))


def test_entropy_of_peaked_logits_is_near_zero_and_half_precision_is_upcast() -> None:
    logits = torch.zeros(1, 10, dtype=torch.float16)
    logits[0, 3] = 60.0
    assert float(next_token_entropy(logits)[0]) == pytest.approx(0.0, abs=1e-12)


def test_masked_entries_give_finite_entropy_and_gradient() -> None:
    logits = torch.tensor([[0.0, 0.0, float("-inf"), float("-inf")]], requires_grad=True)
    h = next_token_entropy(logits)[0]
    assert float(h.detach()) == pytest.approx(math.log(2))
    (g,) = torch.autograd.grad(h, logits)
    assert torch.isfinite(g).all()


def test_check_finite_raises_with_context() -> None:
    assert check_finite(torch.tensor(0.5), "q") == 0.5
    with pytest.raises(NonFiniteEntropyError, match=r"nan.*question 'q1'"):
        check_finite(torch.tensor(float("nan")), "question 'q1'")
    nan_logits = torch.tensor([[float("nan"), 0.0]])
    with pytest.raises(NonFiniteEntropyError):
        check_finite(next_token_entropy(nan_logits)[0], "x")
