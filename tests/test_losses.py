"""hello_format.losses on hand-computed values."""

import math

import pytest
import torch
import torch.nn.functional as F

from hello_format.losses import kl_loss, mse_ce_loss


def logits(batch=4, classes=5, seed=0):
    return torch.randn(batch, classes, generator=torch.Generator().manual_seed(seed)) * 3


def test_kl_is_zero_for_identical_logits():
    x = logits()
    assert kl_loss(x, x.clone(), temperature=20.0).item() == pytest.approx(0.0, abs=1e-7)


def test_kl_known_value_and_batch_mean():
    # row 0: teacher (0.75, 0.25) vs student (0.5, 0.5); row 1 identical -> KL 0
    teacher = torch.tensor([[math.log(3.0), 0.0], [1.0, 2.0]])
    student = torch.tensor([[0.0, 0.0], [1.0, 2.0]])
    expected = (0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)) / 2
    assert kl_loss(student, teacher, temperature=1.0).item() == pytest.approx(expected, rel=1e-6)


def test_kl_temperature_divides_both_logits_and_is_not_rescaled():
    student, teacher = logits(seed=1), logits(seed=2)
    assert kl_loss(student, teacher, 4.0).item() == pytest.approx(kl_loss(student / 4, teacher / 4, 1.0).item(), rel=1e-5)
    p = F.softmax(teacher / 4, dim=1)
    by_hand = (p * (p.log() - F.log_softmax(student / 4, dim=1))).sum() / len(p)
    assert kl_loss(student, teacher, 4.0).item() == pytest.approx(by_hand.item(), rel=1e-5)


def test_kl_a_class_the_teacher_rules_out_adds_nothing():
    # a teacher masking a class (logit -inf) is the same distribution as one without that class
    teacher, student = logits(seed=5), logits(seed=6).requires_grad_()
    masked = teacher.clone()
    masked[:, 2] = -torch.inf
    loss = kl_loss(student, masked, temperature=2.0)
    p = F.softmax(masked / 2, dim=1)[:, [0, 1, 3, 4]]
    by_hand = (p * (p.log() - F.log_softmax(student / 2, dim=1)[:, [0, 1, 3, 4]])).sum() / len(p)
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-5)
    loss.backward()
    assert torch.isfinite(student.grad).all()
    for broken in (torch.nan, torch.inf):   # a diverged teacher is not a masked class: its row stays NaN
        bad = teacher.clone()
        bad[0, 1] = broken
        assert kl_loss(student.detach(), bad, temperature=2.0).isnan()


def test_kl_equals_torch_kl_div_bitwise():
    student, teacher = logits(64, 10, seed=7), logits(64, 10, seed=8)
    expected = F.kl_div(F.log_softmax(student / 4, dim=1), F.log_softmax(teacher / 4, dim=1),
                        reduction="batchmean", log_target=True)
    assert torch.equal(kl_loss(student, teacher, 4.0), expected)


def test_mse_term():
    student, teacher = torch.zeros(3, 4), torch.full((3, 4), 2.0)
    student[0, 0] = 2.0  # 11 of 12 logits differ by 2
    assert mse_ce_loss(student, teacher, torch.zeros(3, dtype=torch.long), beta=0.0).item() == pytest.approx(4 * 11 / 12)


def test_ce_term_by_hand():
    student = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    labels = torch.tensor([0, 2])
    ce = (-math.log(math.exp(2) / (math.exp(2) + 2)) - math.log(1 / 3)) / 2
    assert mse_ce_loss(student, student.clone(), labels, beta=0.5).item() == pytest.approx(0.5 * ce, rel=1e-6)


def test_mixed_targets_weight_the_two_cross_entropies():
    student, teacher = logits(seed=3), logits(seed=4)
    labels_a, labels_b, lam = torch.tensor([0, 1, 2, 3]), torch.tensor([4, 1, 0, 2]), 0.3
    log_p = F.log_softmax(student, dim=1)
    ce_a = -log_p[torch.arange(4), labels_a].mean()
    ce_b = -log_p[torch.arange(4), labels_b].mean()
    expected = ((student - teacher) ** 2).mean() + 0.1 * (lam * ce_a + (1 - lam) * ce_b)
    mixed = mse_ce_loss(student, teacher, (labels_a, labels_b, lam), beta=0.1)
    assert mixed.item() == pytest.approx(expected.item(), rel=1e-6)
    soft = lam * F.one_hot(labels_a, 5).float() + (1 - lam) * F.one_hot(labels_b, 5).float()
    assert mse_ce_loss(student, teacher, soft, beta=0.1).item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("loss", [lambda s, t: kl_loss(s, t, 20.0), lambda s, t: mse_ce_loss(s, t, torch.tensor([0, 1, 2, 3]), 0.1)])
def test_gradient_reaches_the_student_only(loss):
    student = logits(seed=5).requires_grad_()
    teacher = logits(seed=6).requires_grad_()
    value = loss(student, teacher)
    value.backward()
    assert value.dim() == 0 and teacher.grad is None
    assert student.grad is not None and student.grad.abs().sum() > 0


def test_low_precision_logits_are_computed_in_float32():
    student, teacher = logits(seed=7), logits(seed=8)
    for dtype in (torch.float16, torch.bfloat16):
        s, t = student.to(dtype), teacher.to(dtype)
        assert kl_loss(s, t, 20.0).dtype == torch.float32
        assert kl_loss(s, t, 20.0).item() == pytest.approx(kl_loss(s.float(), t.float(), 20.0).item(), rel=1e-6)
        assert mse_ce_loss(s, t, torch.tensor([1, 2, 3, 4]), 0.1).dtype == torch.float32


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="batch, classes"):
        kl_loss(torch.zeros(4, 5), torch.zeros(4, 6), 1.0)
    with pytest.raises(ValueError, match="temperature"):
        kl_loss(torch.zeros(4, 5), torch.zeros(4, 5), 0.0)
    with pytest.raises(ValueError, match="beta"):
        mse_ce_loss(torch.zeros(4, 5), torch.zeros(4, 5), torch.zeros(4, dtype=torch.long), -1.0)


def test_an_empty_batch_costs_nothing_and_moves_nothing():
    """A rank's empty share of loader(split_batches=True) gave NaN (a mean over no row): logged as NaN and,
    behind an `isfinite` guard, skipped on that rank only, so the DDP ranks fell out of step."""
    head = torch.nn.Linear(3, 5)
    for loss_of in (lambda x: mse_ce_loss(x, torch.zeros(0, 5), torch.zeros(0, 5), 1.0),
                    lambda x: kl_loss(x, torch.zeros(0, 5), 4.0)):
        loss = loss_of(head(torch.zeros(0, 3)))
        assert loss.item() == 0.0
        grads = torch.autograd.grad(loss, list(head.parameters()))
        assert all(torch.equal(g, torch.zeros_like(g)) for g in grads)   # zeros, not NaN


def test_hard_label_probabilities_of_another_width_are_refused_like_soft_labels():
    with pytest.raises(ValueError, match=r"hard-label probabilities must be \[batch, classes\] like the logits; "
                                         r"got \(3, 4\) and \(3, 5\)"):
        mse_ce_loss(torch.zeros(3, 5), torch.zeros(3, 5), torch.zeros(3, 4), 1.0)


@pytest.mark.parametrize("loss_of", [lambda s, t: mse_ce_loss(s, t, torch.zeros(4, 5), 1.0),
                                     lambda s, t: kl_loss(s, t, 4.0)])
def test_the_empty_soft_labels_of_a_dataset_without_them_say_what_to_train_on(loss_of):
    """HelloDataset(soft_labels=False) batches carry soft_labels [B, 0]: the README's loop then failed with
    'must both be [batch, classes]; got (4, 5) and (4, 0)', which says nothing of why or what to do."""
    with pytest.raises(ValueError, match=r"^the soft labels are empty \(\[4, 0\]: HelloDataset\(soft_labels=False\) "
                                         r"labels nothing\): train on the hard labels, "
                                         r"hello_format\.losses\.cross_entropy\(logits, hard_labels\)$"):
        loss_of(torch.zeros(4, 5), torch.zeros(4, 0))
