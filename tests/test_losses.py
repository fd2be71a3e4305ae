import math

import pytest
import torch

from kosimcse.modeling.losses import InfoNCELoss


def reference_infonce(a, p, n=None, temperature=0.05, hn_weight=0.0):
    """Per-anchor softmax written out with loops, independent of the vectorised implementation."""
    total = 0.0
    cands = list(p) + (list(n) if n is not None else [])
    for i, anchor in enumerate(a):
        logits = []
        for j, c in enumerate(cands):
            cos = float(torch.nn.functional.cosine_similarity(anchor, c, dim=0))
            bonus = hn_weight if (n is not None and j == len(p) + i) else 0.0
            logits.append(cos / temperature + bonus)
        m = max(logits)
        log_z = m + math.log(sum(math.exp(x - m) for x in logits))
        total += log_z - logits[i]
    return total / len(a)


@pytest.mark.parametrize("with_negatives,hn_weight", [(False, 0.0), (True, 0.0), (True, 1.5)])
def test_infonce_matches_reference(with_negatives, hn_weight):
    g = torch.Generator().manual_seed(0)
    a, p, n = (torch.randn(6, 8, generator=g) for _ in range(3))
    loss = InfoNCELoss(0.05, hn_weight)(a, p, n if with_negatives else None)
    expected = reference_infonce(a, p, n if with_negatives else None, 0.05, hn_weight)
    assert float(loss) == pytest.approx(expected, rel=1e-4)


def test_identical_views_give_lower_loss_than_random():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(16, 32, generator=g)
    loss_same = InfoNCELoss()(a, a + 0.01 * torch.randn(16, 32, generator=g))
    loss_random = InfoNCELoss()(a, torch.randn(16, 32, generator=g))
    assert loss_same < 0.1 < loss_random


def test_hard_negative_weight_raises_loss_when_negative_is_close():
    g = torch.Generator().manual_seed(2)
    a = torch.randn(4, 8, generator=g)
    p = a + 0.5 * torch.randn(4, 8, generator=g)
    n = a + 0.5 * torch.randn(4, 8, generator=g)
    assert InfoNCELoss(0.05, 2.0)(a, p, n) > InfoNCELoss(0.05, 0.0)(a, p, n)


def test_temperature_must_be_positive():
    with pytest.raises(ValueError):
        InfoNCELoss(0.0)
