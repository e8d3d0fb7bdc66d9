"""ProjectorTeacher under DD-Ranking's calling convention: ``tea_model(images)`` on normalised batches."""

import os

import pytest
import torch
import torch.nn.functional as F

from hello_format import Bundle, HelloError, Projector, ProjectorTeacher
from support import load_script, write_labelled_bundle

CLASSES = ("ant", "bee", "cat", "dog", "eel", "fox")   # DD-Ranking's accuracy meter needs >= 5 classes
HARNESS = ["fox", "ant", "eel", "bee", "dog", "cat"]
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
UNIT = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(4))


def _normalise(images):
    return (images - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def bundle_path(tmp_path_factory):
    return write_labelled_bundle(tmp_path_factory.mktemp("teacher") / "b.hello", "rn", classes=CLASSES, ipc=2)


@pytest.fixture(scope="module")
def projector(bundle_path):
    with Bundle.open(bundle_path) as bundle:
        return Projector.from_bundle(bundle)


def test_logits_come_in_the_harness_class_order_from_renormalised_images(bundle_path, projector):
    teacher = ProjectorTeacher.from_bundle(bundle_path, HARNESS, mean=MEAN, std=STD)
    with torch.no_grad():
        logits = teacher(_normalise(UNIT))
        expected = projector(UNIT)
    columns = [CLASSES.index(name) for name in HARNESS]
    torch.testing.assert_close(logits, expected[:, columns], atol=1e-5, rtol=1e-5)
    assert logits.dtype == torch.float32 and logits.shape == (5, 6)


def test_without_no_grad_the_logits_are_a_plain_target_and_the_teacher_gets_no_gradient(projector):
    """DD-Ranking's training loop calls tea_model(images) outside torch.no_grad()."""
    teacher = ProjectorTeacher(projector, HARNESS, mean=MEAN, std=STD)
    images = _normalise(UNIT).requires_grad_(True)
    logits = teacher(images)
    assert not logits.requires_grad and logits.grad_fn is None
    student = torch.nn.Linear(3 * 32 * 32, 6)
    loss = F.kl_div(F.log_softmax(student(images.flatten(1)), 1), F.softmax(logits, 1), reduction="batchmean")
    loss.backward()
    assert student.weight.grad is not None
    assert all(p.grad is None for p in teacher.parameters())


def test_other_sizes_are_resized_to_the_base_like_every_projector_input(projector):
    teacher = ProjectorTeacher(projector, list(CLASSES))   # ImageNet statistics by default
    large = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    imagenet = ((large - torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1))
                / torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1))
    small = F.interpolate(large, size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
    with torch.no_grad():
        torch.testing.assert_close(teacher(imagenet), projector(small), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("names, message", [
    (HARNESS[:-1], "harness has no class 'cat'"),
    (HARNESS + ["gnu"], "bundle has no class 'gnu'"),
    (HARNESS[:-1] + ["fox"], "the harness's class names repeat 'fox'"),
    # one string was iterated letter by letter: "the harness's class names repeat a name" (or, where its
    # letters were the bundle's classes, a teacher of one-letter classes)
    ("fox", r"takes a list of class names \(e\.g\. dataset\.classes\), not one string: pass \['fox'\]"),
])
def test_class_names_must_be_the_bundles_set(projector, names, message):
    with pytest.raises(HelloError, match=message) as error:
        ProjectorTeacher(projector, names)
    assert "\n" not in str(error.value)


def test_class_names_given_as_an_iterator_are_kept_in_the_harness_order(projector):
    """class_order consumed the names before the constructor listed them: a generator gave the right order and
    an empty ``class_names``."""
    teacher = ProjectorTeacher(projector, (name for name in HARNESS))
    assert teacher.class_names == HARNESS
    assert [projector.class_names[i] for i in teacher.order.tolist()] == HARNESS


def test_the_example_orders_resizes_and_normalises_the_bundles_images(bundle_path):
    example = load_script("examples/ddranking_eval.py")
    with Bundle.open(bundle_path) as bundle:
        images = example.harness_images(bundle, HARNESS, (40, 40), MEAN, STD)
        stored, labels = bundle.images().float() / 255, bundle.labels
    assert images.shape == (12, 3, 40, 40)
    first = stored[labels == CLASSES.index(HARNESS[0])]
    expected = _normalise(F.interpolate(first, size=(40, 40), mode="bilinear", antialias=True, align_corners=False))
    torch.testing.assert_close(images[:2], expected)


def test_ddrankings_own_training_loop_runs_with_the_teacher(projector):
    """Skipped where DD-Ranking is not installed (it pins numpy<2); CI runs it in its own environment
    (.ci/run), where HELLO_REQUIRE_DDRANKING makes a missing package a failure, not a skip."""
    if not os.environ.get("HELLO_REQUIRE_DDRANKING"):
        pytest.importorskip("ddranking")
    from ddranking.aug import Cutmix
    from ddranking.loss import KLDivergenceLoss
    from ddranking.utils import build_model
    from ddranking.utils.train_and_eval import train_one_epoch

    teacher = ProjectorTeacher(projector, HARNESS, mean=MEAN, std=STD)
    calls = []
    teacher.register_forward_hook(lambda module, args, output: calls.append(output.shape))
    student = build_model("ConvNet-3", num_classes=6, im_size=(32, 32), device="cpu")
    before = [p.detach().clone() for p in student.parameters()]
    data = torch.utils.data.TensorDataset(_normalise(torch.rand(12, 3, 32, 32)), torch.arange(6).repeat(2))
    loader = torch.utils.data.DataLoader(data, batch_size=6)
    train_one_epoch(epoch=0, stu_model=student, loader=loader, loss_fn=KLDivergenceLoss(temperature=4.0),
                    optimizer=torch.optim.SGD(student.parameters(), lr=0.01), soft_label_mode="M",
                    aug_func=Cutmix({"beta": 1.0}), tea_models=[teacher], device="cpu")
    assert calls == [torch.Size([6, 6])] * 2
    assert any(not torch.equal(a, b) for a, b in zip(before, student.parameters()))


def test_the_ddranking_example_trains_the_full_data_student_where_ddranking_caches_no_accuracy():
    """As its docstring ran it (CIFAR10, ConvNet-3), the example failed after DD-Ranking's learning-rate
    search: DD-Ranking caches no full-data accuracy for that pair (the examples audit)."""
    if not os.environ.get("HELLO_REQUIRE_DDRANKING"):
        pytest.importorskip("ddranking")
    example = load_script("examples/ddranking_eval.py")
    assert example.full_data_needed("CIFAR10", "ConvNet-3", asked=False)
    assert not example.full_data_needed("ImageNet1K", "ResNet-18-BN", asked=False)
    assert example.full_data_needed("ImageNet1K", "ResNet-18-BN", asked=True)


@pytest.mark.parametrize("options, message", [
    ({"mean": (0.5, 0.5)}, r"mean must be 1 or 3 per-channel values in \[0, 1\]"),        # failed at the first call
    ({"mean": (127.5,) * 3}, r"mean must be 1 or 3 per-channel values in \[0, 1\]"),      # 0-255 statistics
    ({"std": (0.2, 0.0, 0.2)}, r"std must be 1 or 3 per-channel values in \[0, 1\] .*above 0"),
    ({"mean": 0.5}, r"mean must be 1 or 3 per-channel values"),                           # was 'not iterable'
])
def test_harness_statistics_are_checked_when_the_teacher_is_made(projector, options, message):
    with pytest.raises(ValueError, match=message):
        ProjectorTeacher(projector, HARNESS, **options)
    ProjectorTeacher(projector, HARNESS, mean=[0.1307], std=[0.3081])   # one value for grey data, as MNIST's


def test_uint8_images_are_refused_not_taken_as_normalised(projector):
    teacher = ProjectorTeacher(projector, HARNESS, mean=MEAN, std=STD)
    with pytest.raises(TypeError, match="float images normalised with the harness's mean/std, got torch.uint8"):
        teacher((UNIT * 255).to(torch.uint8))
