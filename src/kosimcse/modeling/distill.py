"""Regularisation towards the starting model: distil its in-batch similarity matrix into the student.

A strong encoder (e5) drifts under a short contrastive run and loses quality outside the training domain. A frozen
copy of the starting encoder (and head) embeds each batch's anchor sentences; the student's row softmaxes over the
same anchor x anchor cosines (temperature as the contrastive loss, self-similarity left out) are pulled towards the
teacher's by KL. Sentence-to-sentence geometry, what STS measures, is kept; the positives (a passage, under ICT) are
free to move. The anchors are gathered from every rank like ``InfoNCELoss``'s, so under DDP it is the global
batch's loss and each rank's gradient share is scaled back the same way.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from kosimcse.evaluation.similarity import cosine_matrix
from kosimcse.modeling.losses import gather_keep_local_grad, global_loss


class FrozenStart(nn.Module):
    """A copy of the starting encoder and head, without gradients, always in eval mode (no dropout)."""

    def __init__(self, encoder: nn.Module, head: nn.Module | None):
        super().__init__()
        self.encoder, self.head = copy.deepcopy(encoder), copy.deepcopy(head)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):
        return super().train(False)


def similarity_distillation(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) between the row softmaxes of each side's ``[n, n]`` cosine matrix over the global batch,
    the diagonal (always 1) left out; 0 when the two sides' cosines agree."""
    student, teacher = gather_keep_local_grad(student), gather_keep_local_grad(teacher.detach())
    n = student.size(0)
    off = ~torch.eye(n, dtype=torch.bool, device=student.device)
    rows = lambda v: (cosine_matrix(v, v)[off].view(n, n - 1) / temperature).log_softmax(-1)  # noqa: E731
    loss = nn.functional.kl_div(rows(student), rows(teacher), log_target=True, reduction="batchmean")
    return global_loss(loss)
