"""Similarity logits are float32 under bf16 autocast and equal a float32 computation, and so do the gradients.

Autocast runs a matmul in bf16 whatever its inputs' dtype; divided by a temperature of 0.05 the rounding of
cosines near 1 becomes a logit error of a few hundredths (and a gradient error of percents).
"""

import pytest
import torch

from kosimcse.evaluation.similarity import cosine_matrix
from kosimcse.modeling.losses import AnglELoss, CoSENTLoss, InfoNCELoss, QueueInfoNCELoss


def _views(seed=0, n=16, dim=64):
    """Rows that share a common direction, so every cosine is high and the loss is far from 0 (a hard batch)."""
    g = torch.Generator().manual_seed(seed)
    anchor = torch.randn(dim, generator=g) + 0.7 * torch.randn(n, dim, generator=g)
    positive = anchor + 0.4 * torch.randn(n, dim, generator=g)
    negative = anchor + 0.5 * torch.randn(n, dim, generator=g)
    return anchor, positive, negative


def _bf16_autocast():
    return torch.autocast("cpu", dtype=torch.bfloat16)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cosine_matrix_is_float32_under_autocast(dtype):
    a, b, _ = _views()
    a, b = a.to(dtype), b.to(dtype)
    with _bf16_autocast():
        got = cosine_matrix(a, b)
    want = cosine_matrix(a.float(), b.float())
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)


def _queue_loss():
    loss = QueueInfoNCELoss(0.05, queue_size=8, dim=64)
    loss.enqueue(_views(seed=1, n=8)[0])
    return loss


LOSSES = {
    "infonce": (lambda: InfoNCELoss(0.05), False),
    "infonce_hard_negatives": (lambda: InfoNCELoss(0.05, hard_negative_weight=1.0), True),
    "esimcse_queue": (_queue_loss, False),
    "cosent": (lambda: CoSENTLoss(20.0), "scores"),
    "angle": (lambda: AnglELoss(20.0), "scores"),
}


@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_and_gradients_under_bf16_autocast_equal_float32(name):
    make, extra = LOSSES[name]
    anchor, positive, negative = _views()
    scores = torch.linspace(0, 5, anchor.size(0))

    def run(autocast: bool):
        a, p = anchor.clone().requires_grad_(True), positive.clone().requires_grad_(True)
        args = [a, p] + ([negative] if extra is True else []) + ([scores] if extra == "scores" else [])
        with _bf16_autocast() if autocast else torch.autocast("cpu", enabled=False):
            loss = make()(*args)
        loss.backward()
        return loss, a.grad, p.grad

    loss, ga, gp = run(autocast=True)
    ref_loss, ref_ga, ref_gp = run(autocast=False)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, ref_loss, atol=1e-5, rtol=1e-6)
    scale = ref_ga.abs().max()
    torch.testing.assert_close(ga, ref_ga, atol=1e-5 * scale, rtol=1e-4)
    torch.testing.assert_close(gp, ref_gp, atol=1e-5 * gp.abs().max(), rtol=1e-4)
