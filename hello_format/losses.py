"""The student's losses against the projector's logits for the same augmented batch.

Both take logits [B, C] in any float dtype, compute in float32, return a scalar, and never send
gradient into the teacher side (its logits are detached). An empty batch (B = 0, a rank's empty share
of ``loader(split_batches=True)``) gives 0 with zero gradients, not the NaN of a mean over nothing, so
that every rank of a DDP job steps alike.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

Targets = torch.Tensor | tuple[torch.Tensor, torch.Tensor, float]


def kl_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(softmax(teacher / T) || softmax(student / T)), averaged over the batch (SRe2L / RDED).

    Not multiplied by T**2: SRe2L's and RDED's training code (``nn.KLDivLoss(reduction="batchmean")``
    on ``log_softmax(student / T)`` and ``softmax(teacher / T)``) leaves it out and their learning
    rates (with T = 20) are tuned that way. Hinton-style KD, which scales by T**2 to keep gradient
    magnitudes independent of T, is ``kl_loss(...) * T**2``.
    """
    student, teacher = _pair(student_logits, teacher_logits)
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    if not len(student):
        return student.sum()
    log_q = F.log_softmax(student / temperature, dim=1)
    log_p = F.log_softmax(teacher / temperature, dim=1)   # in logs: no log(0) for vanishing probabilities
    # a class the teacher rules out (logit -inf, e.g. a masked subset) adds 0, as p log p does at p = 0;
    # a NaN or +inf teacher logit still makes the loss NaN (a diverged teacher must not pass unseen)
    pointwise = torch.where(torch.isneginf(log_p), 0.0, log_p.exp() * (log_p - log_q))
    return pointwise.sum() / len(student)   # "batchmean", bitwise F.kl_div(log_q, log_p, log_target=True)


def mse_ce_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: Targets, beta: float) -> torch.Tensor:
    """MSE(student logits, teacher logits) + beta * CE(student, hard targets) (the HeLlO paper's loss).

    The MSE is the mean over all B x C logits. ``targets`` is one of: class indices (int [B]); class
    probabilities (float [B, C], e.g. HelloDataset's mixed one-hot labels); or ``(labels_a, labels_b,
    lam)`` from ``augment.mix_targets``, giving ``lam * CE(labels_a) + (1 - lam) * CE(labels_b)``.
    """
    student, teacher = _pair(student_logits, teacher_logits)
    if not beta >= 0:
        raise ValueError(f"beta must be >= 0, got {beta!r}")
    if not len(student):
        return student.sum()
    ce = cross_entropy(student, targets)   # first: autograd sums the two gradients in creation order
    return F.mse_loss(student, teacher) + beta * ce


def cross_entropy(student_logits: torch.Tensor, targets: Targets) -> torch.Tensor:
    """CE of the student against ``targets`` as :func:`mse_ce_loss` takes them (indices, probabilities or
    ``(labels_a, labels_b, lam)``), in float32."""
    student = student_logits.float()
    if isinstance(targets, torch.Tensor) and targets.is_floating_point() and targets.shape != student.shape:
        raise ValueError(f"hard-label probabilities must be [batch, classes] like the logits; got "
                         f"{tuple(targets.shape)} and {tuple(student.shape)}")
    if isinstance(targets, (tuple, list)):
        labels_a, labels_b, lam = targets
        lam = float(lam)
        return lam * F.cross_entropy(student, labels_a) + (1.0 - lam) * F.cross_entropy(student, labels_b)
    return F.cross_entropy(student, targets.float() if targets.is_floating_point() else targets)


def _pair(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if teacher_logits.dim() == 2 and teacher_logits.shape[1] == 0 and student_logits.shape[-1:] != (0,):
        raise ValueError(f"the soft labels are empty ([{teacher_logits.shape[0]}, 0]: "
                         "HelloDataset(soft_labels=False) labels nothing): train on the hard labels, "
                         "hello_format.losses.cross_entropy(logits, hard_labels)")
    if student_logits.dim() != 2 or student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student and teacher logits must both be [batch, classes]; got {tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}"
        )
    return student_logits.float(), teacher_logits.detach().to(student_logits.device, torch.float32)
