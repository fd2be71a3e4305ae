"""Regularisation towards the starting model: a strong encoder (e5) drifts under a short contrastive run and loses
quality outside its training domain, so its in-batch anchor similarities are distilled into the student, and the
export can be moved part of the way back to the start's weights."""

from __future__ import annotations

import copy

import torch
from torch import nn

from kosimcse.evaluation.similarity import cosine_matrix
from kosimcse.modeling.losses import gather_keep_local_grad, global_loss


class FrozenCopy(nn.Module):
    """A copy of an encoder (and head), without gradients, always in eval mode (no dropout)."""

    def __init__(self, encoder: nn.Module, head: nn.Module | None = None):
        super().__init__()
        self.encoder, self.head = copy.deepcopy(encoder), copy.deepcopy(head)
        self.requires_grad_(False).eval()

    def train(self, mode: bool = True):
        return super().train(False)


def similarity_distillation(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) between the row softmaxes of each side's anchor x anchor cosines over the global batch,
    the diagonal left out: sentence geometry, what STS measures, is kept while the positives are free to move."""
    student, teacher = gather_keep_local_grad(student), gather_keep_local_grad(teacher.detach())
    n = student.size(0)
    off = ~torch.eye(n, dtype=torch.bool, device=student.device)
    rows = lambda v: (cosine_matrix(v, v)[off].view(n, n - 1) / temperature).log_softmax(-1)  # noqa: E731
    loss = nn.functional.kl_div(rows(student), rows(teacher), log_target=True, reduction="batchmean")
    return global_loss(loss)


@torch.no_grad()
def merge_with_start(model: nn.Module, start_state: dict[str, torch.Tensor], start_weight: float) -> nn.Module:
    """Move every weight the share ``start_weight`` of the way back to the start's (WiSE-FT, Wortsman et al. 2022):
    fine-tuned and starting weights lie in one basin, so the mix keeps most of the domain gain and of the general
    quality. Parameters the start lacks (a new head) stay as trained; tied weights are moved once."""
    if not 0.0 <= start_weight <= 1.0:
        raise ValueError(f"start_weight must be in [0, 1], got {start_weight}")
    for name, param in model.named_parameters():  # named_parameters lists a tied weight once
        start = start_state.get(name)
        if start is not None and start.shape == param.shape:
            param.lerp_(start.to(param.device, param.dtype), start_weight)
    return model
