"""HelloDataset: batches augmented then labelled by the bundle's projector, checked against a plain
reference pipeline (stored images -> augment_batch -> the unmerged peft projector); and the
projector's top-k labels in ``hello preview``."""

import os
import re
import signal
import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import save_file
from torch.utils.data import DataLoader

from hello_format.augment import AugmentConfig, apply_crops, apply_mix, augment_batch
from hello_format.base import embedded_tensors
from hello_format.bundle import Bundle, write_bundle
from hello_format.cli import cli
from hello_format.dataset import HelloDataset, LabelledBatch, LabelledImages
from hello_format.runtime import epoch_seed
from hello_format.errors import BundleError, DeviceError, HelloError
from hello_format.losses import kl_loss, mse_ce_loss
from hello_format.recipe import Recipe
from hello_format.hub.preview import projector_captions, topk_captions
from hello_format.projector import Projector
from hello_format.testing import tiny_clip, tiny_projector
from support import UNUSABLE_DEVICES, cache_file, rewritten, write_labelled_bundle

CLASSES = ["a", "b", "c"]
IPC = 4
RECIPE_AUGMENT = {"cutmix": 1.0, "patch_shuffle": 2, "scale": [0.5, 1.0]}


def write_tiny_bundle(path, family="vit", seed=0):
    return write_labelled_bundle(path, family, seed, classes=CLASSES, ipc=IPC, augment=RECIPE_AUGMENT)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bundles")
    return {family: write_tiny_bundle(folder / f"{family}.hello", family, seed=3) for family in ("vit", "rn")}


@pytest.fixture(scope="module")
def path(bundles):
    return bundles["vit"]


@pytest.fixture(scope="module")
def stored(path):
    """(images, labels, unmerged projector, merged projector) read independently of HelloDataset."""
    with Bundle.open(path) as bundle:
        return bundle.images(), bundle.labels, Projector.from_bundle(bundle, merge=False), Projector.from_bundle(bundle)


def reference_batches(images, config, seed, epoch, shards):
    """augment_batch over ``shards`` (index tensors) with the generator the dataset uses for ``epoch``."""
    generator = torch.Generator().manual_seed(epoch_seed(seed, epoch))
    return [augment_batch(images[indices], config, generator) for indices in shards]


def loader_indices(loader):
    return [indices.cpu() for _, indices, _ in loader.views()]


def assert_batches_equal(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        for name in LabelledBatch._fields:
            torch.testing.assert_close(getattr(x, name), getattr(y, name), atol=0, rtol=0)


# ------------------------------------------------------------------------------------- labels

@pytest.mark.parametrize("family", ["vit", "rn"])
def test_soft_labels_equal_the_unmerged_projector_on_the_same_augmented_batch(bundles, family):
    path = bundles[family]
    with Bundle.open(path) as bundle:
        images, unmerged = bundle.images(), Projector.from_bundle(bundle, merge=False)
    assert not unmerged.merged and any("lora_" in name for name, _ in unmerged.named_parameters())
    ds = HelloDataset(path, device="cpu", seed=7)
    loader = ds.loader(5, seed=7)
    indices = loader_indices(loader)   # the coming pass's (a pass moves the dataset's epoch on)
    batches = list(loader)
    views = reference_batches(images, AugmentConfig.from_dict(RECIPE_AUGMENT), 7, 0, indices)
    assert [len(b.images) for b in batches] == [5, 5, 2]
    for batch, view in zip(batches, views):
        torch.testing.assert_close(batch.images, view.images, atol=0, rtol=0)
        with torch.no_grad():
            expected = unmerged(view.images)
        torch.testing.assert_close(batch.soft_labels, expected, atol=1e-4, rtol=1e-4)
        assert expected.std() > 0.1  # the labels are not a constant that would match anything


def test_merged_and_unmerged_projectors_agree(stored):
    _, _, unmerged, merged = stored
    x = torch.rand(6, 3, 40, 40, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = unmerged(x)
    torch.testing.assert_close(merged.label(x), expected, atol=1e-4, rtol=1e-4)
    assert merged.merged and not unmerged.merged


def test_the_label_is_computed_after_mixing(path, stored):
    images, labels, unmerged, _ = stored
    ds = HelloDataset(path, device="cpu", seed=2, augment={"cutmix": 1.0, "mixup": 0.0})
    loader = ds.loader(6, seed=2, epochs=3)
    mixed_somewhere = False
    for batch, (_, indices, view) in zip(loader, loader.views()):
        mix = view.mix
        assert mix is not None and mix.kind == "cutmix"
        unmixed = apply_crops(images[indices], view.crops, view.flips, 32, view.patch_order)
        torch.testing.assert_close(batch.images, apply_mix(unmixed.clone(), mix), atol=0, rtol=0)
        with torch.no_grad():
            torch.testing.assert_close(batch.soft_labels, unmerged(batch.images), atol=1e-4, rtol=1e-4)
            unmixed_labels = unmerged(unmixed)
        moved = (mix.perm != torch.arange(len(indices))) & (mix.lam < 1)
        if moved.any():
            mixed_somewhere = True
            assert not torch.allclose(batch.soft_labels[moved], unmixed_labels[moved], atol=1e-3)
        y = labels[indices]
        expected_hard = mix.lam * F.one_hot(y, 3) + (1 - mix.lam) * F.one_hot(y[mix.perm], 3)
        torch.testing.assert_close(batch.hard_labels, expected_hard.float())
    assert mixed_somewhere


def test_normalize_is_the_students_alone_the_projector_labels_the_unit_view(path):
    """normalize= changes the images the student gets, never the ones the projector labels (it takes
    [0, 1] views and applies the base's own mean and std)."""
    mean, std = [0.5, 0.4, 0.3], [0.25, 0.2, 0.3]
    plain = list(HelloDataset(path, device="cpu", seed=3).loader(5))
    normalized = list(HelloDataset(path, device="cpu", seed=3, normalize=(mean, std)).loader(5))
    m, s = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    for a, b in zip(plain, normalized, strict=True):
        torch.testing.assert_close(b.images, (a.images - m) / s)
        assert torch.equal(b.soft_labels, a.soft_labels) and torch.equal(b.hard_labels, a.hard_labels)


# ------------------------------------------------------------------------------- determinism

@pytest.mark.parametrize("device, message", UNUSABLE_DEVICES)
def test_a_device_torch_cannot_use_is_a_device_error_before_the_bundle_is_read(tmp_path, device, message):
    """'cuda' on a CPU build was an AssertionError from deep inside the base; the file is not even read."""
    with pytest.raises(DeviceError, match=re.escape(message)):
        HelloDataset(tmp_path / "no-such.hello", device=device)
    with pytest.raises(ValueError, match=re.escape(message)):   # a DeviceError is a ValueError, as a bad argument is
        LabelledImages(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), torch.zeros(1, dtype=torch.long), ["a"],
                       AugmentConfig(), device=device)


@pytest.mark.parametrize("device, message", [
    pytest.param(0, "device 0: an accelerator's index, and this torch has no usable accelerator here; use cpu",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this torch has CUDA")),
    pytest.param(np.int64(1), "device 1: an accelerator's index",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this torch has CUDA")),
    (-1, "device -1 is not a torch device"),
    (True, "device True is not a torch device"),
    (2.0, "device '2.0' is not a torch device"),
])
def test_an_integer_device_is_an_accelerator_index_as_in_torch(tmp_path, device, message):
    """``device=0`` said "not a torch device" (torch's RuntimeError on a machine without an accelerator)."""
    with pytest.raises(DeviceError, match=re.escape(message)):
        HelloDataset(tmp_path / "no-such.hello", device=device)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_an_integer_device_is_that_cuda_device():
    from hello_format.runtime import resolve_device

    assert resolve_device(0) == resolve_device(np.int64(0)) == torch.device("cuda", 0)


def test_cuda_without_an_index_is_the_threads_current_gpu(monkeypatch):
    """A torchrun script sets its GPU (torch.cuda.set_device) and passes "cuda": the dataset's images
    and projector went there, but the label prefetch's thread, whose current GPU is 0, put each batch's
    indices on GPU 0 (a review of the GPU paths). The device is now named with its index, here 1."""
    from hello_format.runtime import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert resolve_device("cuda") == resolve_device(torch.device("cuda")) == torch.device("cuda", 1)
    assert resolve_device("cuda:0") == torch.device("cuda", 0)


def test_an_available_mps_is_a_device_whatever_torch_mps_says(monkeypatch):
    """Apple's MPS is known by torch.backends.mps.is_available on every torch hello supports (torch.mps's
    own came in 2.5): a Mac's mps is usable, and without MPS it is one line."""
    from hello_format.runtime import resolve_device

    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.delattr(torch.mps, "is_available", raising=False)
    assert resolve_device("mps") == torch.device("mps")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(DeviceError, match=re.escape("device 'mps': this torch has no usable mps here; use cpu")):
        resolve_device("mps")


@pytest.mark.parametrize("family", ["vit", "rn"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_batches_are_float32_and_the_same_whatever_torch_default_dtype(bundles, family, dtype, tmp_path, monkeypatch):
    """Under ``torch.set_default_dtype(torch.float64)`` the first batch was a RuntimeError: open_clip and
    peft built the projector in float64 and the images came in float32; hard labels were float64. Under
    bfloat16 the weights and the text head were rounded as they loaded, and the head cache kept the rounded
    head for every later process."""
    expected = list(HelloDataset(bundles[family], device="cpu", seed=2, head_cache=False).loader(4, epochs=1))
    monkeypatch.setenv("HELLO_CACHE", str(tmp_path))   # the text head computed under the caller's dtype
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        dataset = HelloDataset(bundles[family], device="cpu", seed=2)
        assert torch.get_default_dtype() == dtype   # the caller's, for its own model
        batches = list(dataset.loader(4, epochs=1))
    finally:
        torch.set_default_dtype(previous)
    cached = list(HelloDataset(bundles[family], device="cpu", seed=2).loader(4, epochs=1))
    assert_batches_equal(cached, expected)
    assert {batch.images.dtype for batch in batches} == {torch.float32}
    assert {batch.soft_labels.dtype for batch in batches} == {batch.hard_labels.dtype for batch in batches} == {torch.float32}
    assert_batches_equal(batches, expected)


@pytest.mark.parametrize("cache", ["cold", "warm", "off"])
def test_a_dataset_draws_nothing_from_the_callers_random_stream(bundles, cache, tmp_path, monkeypatch):
    """``torch.manual_seed(0); HelloDataset(path); student = Net()`` made another student when the head cache
    was cold: building the projector drew from torch's global generator, more when the text tower was built."""
    monkeypatch.setenv("HELLO_CACHE", str(tmp_path))
    if cache == "warm":
        HelloDataset(bundles["rn"], device="cpu")
    torch.manual_seed(0)
    HelloDataset(bundles["rn"], device="cpu", head_cache=cache != "off")
    drawn = torch.rand(4)
    torch.manual_seed(0)
    assert torch.equal(drawn, torch.rand(4))


@pytest.mark.parametrize("family", ["vit", "rn"])
def test_a_callers_default_device_leaves_the_batches_as_they_are_and_stays_the_callers(bundles, family):
    """Under the caller's default device (``torch.set_default_device("cuda")``, common for models; "meta" here,
    where every tensor made without a device fails) HelloDataset(...) and the first batch failed: the shuffle
    and the augmentation drew from CPU generators into tensors made on the default device."""
    reference = HelloDataset(bundles[family], device="cpu", seed=2)
    expected = list(reference.loader(4, epochs=2))
    reference.set_epoch(1)
    expected_rows = reference.__getitems__([5, 0, 2])
    with torch.device("meta"):
        ds = HelloDataset(bundles[family], device="cpu", seed=2)
        batches = []
        for batch in ds.loader(4, epochs=2):
            assert torch.empty(1).is_meta   # the caller's default holds in its loop body
            batches.append(batch)
        ds.set_epoch(1)
        rows = ds.__getitems__([5, 0, 2])   # a DataLoader's fetch (its own base seed cannot be drawn on meta)
        stored = ds[3]
    for got, want in zip(batches + rows, expected + expected_rows, strict=True):
        assert torch.equal(got.images, want.images) and torch.equal(got.hard_labels, want.hard_labels)
        torch.testing.assert_close(got.soft_labels, want.soft_labels)   # a device mode may take another kernel
    assert torch.equal(stored[0], reference[3][0]) and stored[1] == reference[3][1]


def test_without_soft_labels_no_projector_is_built_and_the_views_are_the_same(path, tmp_path):
    """The hard-label baseline (train_student --hard-labels) built and ran the projector, and needed its base."""
    labelled = HelloDataset(path, device="cpu", seed=4)
    hard_only = HelloDataset(path, device="cpu", seed=4, soft_labels=False)
    assert hard_only.projector is None and hard_only.label_options is None
    for with_soft, without in zip(labelled.loader(4, epochs=2), hard_only.loader(4, epochs=2), strict=True):
        assert torch.equal(with_soft.images, without.images) and torch.equal(with_soft.hard_labels, without.hard_labels)
        assert without.soft_labels.shape == (len(without.images), 0)
    # a base that cannot be built here: only the labelled dataset needs it
    local = rewritten(path, tmp_path / "local.hello", lambda manifest, tensors: (
        manifest["base"].update(source="local", checkpoint="absent.safetensors"),
        manifest["base"].pop("embedded", None),
        [tensors.pop(name) for name in [name for name in tensors if name.startswith("base.")]]))
    with pytest.raises(HelloError, match="checkpoint"):
        HelloDataset(local, device="cpu")
    batch = next(iter(HelloDataset(local, device="cpu", seed=4, soft_labels=False).loader(4, start_epoch=0)))
    assert torch.equal(batch.images, next(iter(hard_only.loader(4, start_epoch=0))).images)
    # label options were checked, then dropped unsaid (the HelloDataset walkthrough)
    with pytest.warns(UserWarning, match=r"^hello: soft_labels=False labels nothing: label_options is not used$") as caught:
        HelloDataset(path, device="cpu", soft_labels=False, label_options={"prefetch": True})
    assert [warning.filename for warning in caught] == [__file__]


def test_same_seed_same_batches_and_epochs_differ(path):
    first = list(HelloDataset(path, device="cpu", seed=5).loader(4, epochs=2))
    again = list(HelloDataset(path, device="cpu", seed=5).loader(4, epochs=2))
    assert_batches_equal(first, again)
    per_epoch = len(first) // 2
    assert not torch.equal(first[0].images, first[per_epoch].images)
    other_seed = list(HelloDataset(path, device="cpu", seed=6).loader(4, epochs=2))
    assert not torch.equal(first[0].images, other_seed[0].images)
    assert not torch.equal(first[0].soft_labels, other_seed[0].soft_labels)


def test_runs_of_nearby_seeds_never_share_an_epochs_stream():
    """Runs repeated over seeds 0, 1, 2, ... are independent samples: seed s's epoch e + 1 must not be seed
    s + 1's epoch e (views and order alike, shifted by one epoch)."""
    seeds = {epoch_seed(seed, epoch) for seed in range(10) for epoch in range(300)}
    assert len(seeds) == 10 * 300


def test_loader_seed_argument_overrides_the_dataset_seed(path):
    ds = HelloDataset(path, device="cpu", seed=5)
    assert_batches_equal(list(ds.loader(4, seed=9)), list(HelloDataset(path, device="cpu", seed=9).loader(4)))


# ---------------------------------------------------------------------------------- sharding

@pytest.mark.parametrize("world_size", [2, 5])
def test_shards_cover_the_set_each_epoch_in_step(path, world_size):
    """Ranks are disjoint and cover the set; 12 images over 5 ranks are padded to 15 (the epoch's first
    three repeated, as DistributedSampler does), so every rank has as many batches: unequal counts made a
    DDP loop over HelloDataset's loader die in a gloo collective mismatch (fourteenth audit)."""
    loaders = [HelloDataset(path, device="cpu", rank=r, world_size=world_size).loader(2, epochs=2)
               for r in range(world_size)]
    per_rank = [loader_indices(loader) for loader in loaders]
    assert len({len(loader) for loader in loaders}) == 1 and len({len(indices) for indices in per_rank}) == 1
    n, padded = len(CLASSES) * IPC, -(-len(CLASSES) * IPC // world_size) * world_size
    orders = []
    for epoch in range(2):
        seen = []
        for indices in per_rank:
            half = len(indices) // 2
            seen += torch.cat(indices[epoch * half:(epoch + 1) * half]).tolist()
        assert len(seen) == padded and set(seen) == set(range(n))   # complete, repeats only to pad
        orders.append(seen)
    assert orders[0] != orders[1]  # each epoch reshuffles


def test_a_loader_without_a_batch_is_refused(path):
    """drop_last with fewer images per rank than a batch gave every rank zero batches: each epoch trained
    on nothing, silently (fourteenth audit)."""
    with pytest.raises(HelloError, match="no batch: 12 images over 5 ranks in batches of 4 with drop_last"):
        HelloDataset(path, device="cpu", rank=0, world_size=5).loader(4, drop_last=True)
    empty = LabelledImages(torch.zeros(0, 3, 8, 8, dtype=torch.uint8), torch.zeros(0, dtype=torch.long), ["a"],
                           AugmentConfig(), None, device="cpu")
    with pytest.raises(HelloError, match="no batch: 0 images in batches of 4$"):
        empty.loader(4)


def test_drop_last_gives_every_rank_the_same_batches(path):
    counts = []
    for rank in range(5):
        loader = HelloDataset(path, device="cpu", rank=rank, world_size=5).loader(2, drop_last=True)
        indices = loader_indices(loader)   # the coming pass's
        batches = list(loader)
        assert len(batches) == len(loader) and all(len(b.images) == 2 for b in batches)
        counts.append(sum(len(i) for i in indices))
    assert counts == [2] * 5  # 12 images over 5 ranks: 10 used, 2 each


@pytest.mark.parametrize("rank, world_size, message", [
    (2, 2, r"rank 2 is not in \[0, world_size=2\)"),
    (-1, 2, "rank must be an integer of at least 0"),
    # no process group: one process; said so, with what to pass (it said only "not in [0, world_size=1)")
    (1, None, r"rank 1 is not in \[0, world_size=1\): without world_size= and an initialised process group there "
              r"is one process; pass world_size= too, or init_process_group first$"),
    (0, 0, "world_size must be an integer of at least 1, got 0"),   # was taken as 1
    (None, 2, "world_size=2 without rank and without an initialised process group"),   # was rank 0, silently
    (1.0, 2, "rank must be an integer"),
])
def test_a_shard_that_is_not_one_is_a_hello_error(path, rank, world_size, message):
    with pytest.raises(HelloError, match=message):
        HelloDataset(path, device="cpu", rank=rank, world_size=world_size).loader(2)


def test_a_launcher_without_a_process_group_is_warned_of_every_rank_serving_the_whole_set(path, monkeypatch):
    """Under torchrun without init_process_group, every rank trained on the whole set as rank 0 of 1, silently."""
    import warnings

    monkeypatch.setenv("WORLD_SIZE", "4")
    with pytest.warns(UserWarning, match=r"WORLD_SIZE=4 \(a launcher such as torchrun\) but no initialised process "
                                         r"group: this process serves the whole dataset as rank 0 of 1") as caught:
        loader = HelloDataset(path, device="cpu").loader(2)
    assert [warning.filename for warning in caught] == [__file__]   # the caller's line, not hello's
    assert (loader.rank, loader.world_size) == (0, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        HelloDataset(path, device="cpu", rank=1, world_size=4).loader(2)   # the shard given: nothing to warn of
        for value in ("1", "", "x", "9" * 30):
            monkeypatch.setenv("WORLD_SIZE", value)
            HelloDataset(path, device="cpu").loader(2)


# -------------------------------------------------------------------------------- class subsets

def test_class_subset_keeps_renumbers_and_slices_the_logits(path, stored):
    images, labels, unmerged, _ = stored
    ds = HelloDataset(path, device="cpu", classes=["b", "a"])
    assert ds.class_names == ["b", "a"] and ds.num_classes == 2
    kept = [i for i, y in enumerate(labels.tolist()) if y in (0, 1)]
    assert len(ds) == len(kept)
    for position, original in enumerate(kept):
        image, label = ds[position]
        assert torch.equal(image, images[original])
        assert label == {1: 0, 0: 1}[int(labels[original])]
    batch = next(iter(ds.loader(8)))
    assert batch.soft_labels.shape == (8, 2) and batch.hard_labels.shape == (8, 2)
    with torch.no_grad():
        full = unmerged(batch.images)
    torch.testing.assert_close(batch.soft_labels, full[:, [1, 0]], atol=1e-4, rtol=1e-4)


def test_a_leading_run_of_classes_slices_the_logits_too(path, stored):
    """classes= naming the first classes in order (columns 0..K-1) must still slice the logits to K
    columns, like any other subset: soft labels as wide as the hard ones."""
    _, _, unmerged, _ = stored
    for classes in (["a", "b"], [0, 1]):
        ds = HelloDataset(path, device="cpu", classes=classes)
        batch = next(iter(ds.loader(8)))
        assert batch.soft_labels.shape == batch.hard_labels.shape == (8, 2)
        with torch.no_grad():
            full = unmerged(batch.images)
        torch.testing.assert_close(batch.soft_labels, full[:, :2], atol=1e-4, rtol=1e-4)


def _corrupt_image(path, number: int) -> None:
    """Flip a bit in the PNG signature of stored image ``number`` (digests then fail: open with verify=False)."""
    with Bundle.open(path) as bundle:
        offsets = bundle.tensor("images.offsets").tolist()
        at = bundle._header.data_start + bundle._header.tensors["images.data"].begin + offsets[number] + 1
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def test_images_decoded_on_first_use_equal_the_eagerly_decoded_ones(path, stored):
    images = stored[0]
    ds = HelloDataset(path, device="cpu")
    assert all(torch.equal(ds[i][0], images[i]) for i in range(len(ds)))


def test_an_image_that_does_not_decode_fails_the_first_batch_that_needs_it(tmp_path):
    """A stored image that does not decode fails the first batch holding it, with one error naming the
    file and the image; batches without it are served before."""
    from hello_format.errors import ImageDecodeError

    path = write_tiny_bundle(tmp_path / "bad-image.hello")
    _corrupt_image(path, 5)
    ds = HelloDataset(path, device="cpu", verify=False)
    batch = ds.batch(torch.tensor([0, 1, 2]), torch.Generator().manual_seed(0))
    assert batch.images.shape[0] == 3
    with pytest.raises(ImageDecodeError, match=f"{path.name}: .*image 5 does not decode"):
        ds.batch(torch.tensor([4, 5]), torch.Generator().manual_seed(0))
    with pytest.raises(ImageDecodeError, match="image 5 does not decode"):   # and again: nothing was half-decoded
        ds[5]


def test_bundle_images_at_indices_decode_those_alone(tmp_path):
    """hello preview decoded every image of a bundle to show the first few of each class (the card
    had its own copy of the decoding to avoid that): Bundle.images(indices=...) decodes the picks alone."""
    from hello_format.errors import ImageDecodeError

    path = write_tiny_bundle(tmp_path / "bad-image.hello")
    with Bundle.open(path) as bundle:
        whole = bundle.images()
    _corrupt_image(path, 5)
    picked = torch.tensor([7, 0, 3])
    with Bundle.open(path) as bundle:
        assert torch.equal(bundle.images(indices=picked), whole[picked])   # image 5 is never decoded
        for where in ({}, {"indices": torch.tensor([2, 5])}):   # an error names the image by its place in the bundle
            with pytest.raises(ImageDecodeError, match="image 5 does not decode"):
                bundle.images(**where)
        mask = torch.zeros(len(whole), dtype=torch.bool)
        mask[[0, 3, 7]] = True   # a boolean mask was read as indices 1 and 0 once decoded (png), as a mask raw
        assert torch.equal(bundle.images(indices=mask), whole[mask])
        assert torch.equal(bundle.images(indices=[7, 0, 3]), whole[picked])   # a list: an AttributeError
        assert bundle.images(indices=[]).shape == (0, *whole.shape[1:])   # was an IndexError
        for wrong in ([len(whole)], [-1], [[1, 2]], [0.5], torch.zeros(3, dtype=torch.bool)):
            with pytest.raises(IndexError, match="image indices must be"):
                bundle.images(indices=wrong)


def test_a_class_subset_names_bad_images_by_their_place_in_the_bundle(tmp_path):
    """With classes=, the dataset's rows are renumbered but a decode error still names the stored image."""
    from hello_format.errors import ImageDecodeError

    path = write_tiny_bundle(tmp_path / "bad-image.hello")
    with Bundle.open(path) as bundle:
        labels = bundle.labels
    bad = int(torch.nonzero(labels == 2)[1])
    _corrupt_image(path, bad)
    ds = HelloDataset(path, device="cpu", verify=False, classes=["c"])
    with pytest.raises(ImageDecodeError, match=f"image {bad} does not decode"):
        next(iter(ds.loader(batch_size=len(ds))))


def test_lazy_images_survive_pickling_for_spawned_workers(path, stored):
    import pickle

    with Bundle.open(path) as bundle:
        lazy = bundle.lazy_images()
    lazy[[0, 1]]
    copy = pickle.loads(pickle.dumps(lazy))
    assert torch.equal(copy[torch.arange(len(copy))], stored[0])


def test_a_spawned_worker_is_sent_no_decoded_cache(path, stored):
    """Sending a dataset to a spawned worker moved its whole decoded cache, decoded or not, into shared
    memory (/dev/shm) at once: 7.5 GB for ImageNet-1K at IPC 50, where Docker gives 64 MB by default.
    A worker decodes what it serves into its own cache, as a forked one does."""
    import torch.multiprocessing  # noqa: F401  (registers torch's reductions with ForkingPickler)
    from multiprocessing.reduction import ForkingPickler

    with Bundle.open(path) as bundle:
        lazy = bundle.lazy_images()
    lazy[[0, 1]]
    copy = ForkingPickler.loads(ForkingPickler.dumps(lazy))   # as multiprocessing sends a spawned worker its dataset
    assert not lazy._pixels.is_shared() and not copy._pixels.is_shared()
    assert not copy._decoded.any()
    assert torch.equal(copy[torch.arange(len(copy))], stored[0])


def test_lazy_images_read_the_file_they_were_opened_from_after_another_is_renamed_over_it(tmp_path):
    """hello's writers rename a new file over the path: a dataset already reading the old one goes on
    reading it (its descriptor keeps the old inode), and a spawned worker, which must open the path
    again, refuses the new file rather than read another bundle's bytes at the old offsets."""
    import pickle

    path, other = write_tiny_bundle(tmp_path / "a.hello", seed=1), write_tiny_bundle(tmp_path / "b.hello", seed=2)
    with Bundle.open(path) as bundle:
        expected, lazy = bundle.images(), bundle.lazy_images()
    sent = pickle.dumps(lazy)   # as DataLoader sends it to a spawned worker
    assert torch.equal(pickle.loads(sent)[torch.arange(len(expected))], expected)   # the same file: reopened
    os.replace(other, path)
    assert torch.equal(lazy[torch.arange(len(expected))], expected)
    with pytest.raises(BundleError, match="replaced or changed after the dataset opened it"):
        pickle.loads(sent)


def test_a_deep_copy_reads_the_file_its_original_reads_after_another_is_renamed_over_it(tmp_path):
    """copy.deepcopy of a dataset pickled its open file as its path: the copy opened the path again and,
    once hello's writers had renamed another file over it, failed ("a spawned worker cannot read its
    images") where the original read on. In one process the copy shares the open file."""
    import copy

    path, other = write_tiny_bundle(tmp_path / "a.hello", seed=1), write_tiny_bundle(tmp_path / "b.hello", seed=2)
    with Bundle.open(path) as bundle:
        expected, lazy = bundle.images(), bundle.lazy_images()
    os.replace(other, path)
    copied = copy.deepcopy(lazy)
    assert torch.equal(copied[torch.arange(len(expected))], expected)


@pytest.mark.skipif(os.name != "posix", reason="a POSIX symlink")
def test_a_spawned_worker_opens_the_file_a_path_through_a_symlink_and_dotdot_named(tmp_path, monkeypatch):
    """A spawned worker opens the path again, made absolute: abspath dropped "link/.." lexically, so
    "link/../a.hello" (the kernel's: the link's target's parent) named another file or none, and the
    worker refused the bundle the dataset was reading."""
    import pickle

    (tmp_path / "deep" / "x").mkdir(parents=True)
    write_tiny_bundle(tmp_path / "deep" / "a.hello", seed=1)
    (tmp_path / "link").symlink_to(tmp_path / "deep" / "x")
    monkeypatch.chdir(tmp_path)
    with Bundle.open("link/../a.hello") as bundle:
        expected, lazy = bundle.images(), bundle.lazy_images()
    assert torch.equal(pickle.loads(pickle.dumps(lazy))[torch.arange(len(expected))], expected)


def test_reads_without_pread_give_the_same_bytes(path, stored, monkeypatch):
    """Where os.pread is missing (Windows) the file is read with a seek and a read under a lock."""
    from hello_format import file_blobs

    monkeypatch.setattr(file_blobs, "_POSITIONAL", False)
    with Bundle.open(path) as bundle:
        lazy = bundle.lazy_images()
    assert torch.equal(lazy[torch.arange(len(lazy))], stored[0])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX fork")
def test_a_fork_while_another_thread_decodes_leaves_the_child_able_to_decode(path, stored):
    """A DataLoader's forked worker inherited the decode lock as ds.loader's prefetch thread held it, and
    waited on it forever (a training-loop review: 25 of 40 trials hung)."""
    with Bundle.open(path) as bundle:
        lazy = bundle.lazy_images()
    decoding, done = threading.Event(), threading.Event()

    def decode_slowly():   # the prefetch thread, caught inside its decode
        with lazy._lock:
            decoding.set()
            done.wait(60)

    thread = threading.Thread(target=decode_slowly)
    thread.start()
    decoding.wait(60)
    try:
        child = os.fork()
        if child == 0:   # the worker: a hang is ended by the alarm (a nonzero status)
            signal.alarm(30)
            os._exit(0 if torch.equal(lazy[[0, 1]], stored[0][:2]) else 1)
        _, status = os.waitpid(child, 0)
    finally:
        done.set()
        thread.join()
    assert os.waitstatus_to_exitcode(status) == 0


def test_indexing_takes_one_integer_and_says_what_to_use_instead(path):
    """ds[0:3] and ds[[0, 1]] failed deep in torch ("only one element tensors ...") (a training-loop review)."""
    ds = HelloDataset(path, device="cpu")
    image, label = ds[np.int64(len(ds) - 1)]
    assert torch.equal(ds[-1][0], image) and ds[-1][1] == label
    for index in (slice(0, 3), [0, 1], True, 1.0):
        with pytest.raises(TypeError, match=r"ds\[i\] takes one integer index .* use ds.loader\(...\) or DataLoader"):
            ds[index]
    with pytest.raises(IndexError, match=f"index {len(ds)} is out of range for {len(ds)} images"):
        ds[len(ds)]


def test_unknown_class_names_the_class(path):
    with pytest.raises(HelloError, match="'zebra'"):
        HelloDataset(path, device="cpu", classes=["a", "zebra"])


# --------------------------------------------------------------------------------- DataLoader

def test_dataloader_batches_with_shuffle_and_a_partial_last_batch(path, stored):
    _, _, unmerged, _ = stored
    ds = HelloDataset(path, device="cpu")
    image, label = ds[5]
    assert image.dtype == torch.uint8 and image.shape == (3, 32, 32) and isinstance(label, int) and label == 1
    torch.manual_seed(0)
    batches = list(DataLoader(ds, batch_size=5, shuffle=True, num_workers=0))
    assert [len(b.images) for b in batches] == [5, 5, 2]
    for batch in batches:
        assert isinstance(batch, LabelledBatch)
        assert batch.images.dtype == torch.float32 and batch.images.shape[1:] == (3, 32, 32)
        assert batch.soft_labels.dtype == torch.float32 and batch.soft_labels.shape[1:] == (3,)
        assert batch.hard_labels.dtype == torch.float32 and batch.hard_labels.shape[1:] == (3,)
        torch.testing.assert_close(batch.hard_labels.sum(1), torch.ones(len(batch.images)))
        with torch.no_grad():
            torch.testing.assert_close(batch.soft_labels, unmerged(batch.images), atol=1e-4, rtol=1e-4)


def views_per_epoch(ds, epochs=2, **loader) -> list[LabelledBatch]:
    """Each epoch's batches through a DataLoader (batches of 4, in order), ``ds.set_epoch`` called first."""
    loader = DataLoader(ds, batch_size=4, **loader)
    batches = []
    for epoch in range(epochs):
        ds.set_epoch(epoch)
        batches.append(LabelledBatch(*map(torch.cat, zip(*loader))))
    return batches


def test_dataloader_views_follow_set_epoch_whatever_the_workers():
    """Workers reseeded from the DataLoader's worker seed: set_epoch(k) did not repeat epoch k (a resumed
    run), and 0, 1 or 2 workers, persistent or not, drew different views (a training-loop review)."""
    image = torch.randint(0, 256, (1, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    ds = LabelledImages(image.expand(8, -1, -1, -1), torch.zeros(8, dtype=torch.long), ["a"],
                        AugmentConfig(cutmix=0.0), device="cpu")
    reference = [batch.images for batch in views_per_epoch(ds)]   # the main process
    assert not torch.equal(reference[0][:4], reference[0][4:])  # two batches of the same image differ
    assert not torch.equal(reference[0], reference[1])  # and so do epochs
    for loader in ({"num_workers": 1}, {"num_workers": 2}, {"num_workers": 2, "persistent_workers": True}):
        assert all(torch.equal(a, b.images) for a, b in zip(reference, views_per_epoch(ds, **loader))), loader
    ds.set_epoch(1)   # resuming at epoch 1
    assert torch.equal(torch.cat([b.images for b in DataLoader(ds, batch_size=4, num_workers=2)]), reference[1])
    assert not torch.equal(views_per_epoch(LabelledImages(image.expand(8, -1, -1, -1), torch.zeros(8, dtype=torch.long),
                                                          ["a"], AugmentConfig(cutmix=0.0), device="cpu", seed=1))[0].images,
                           reference[0])   # the dataset's seed draws others


def test_soft_labels_are_loss_targets_with_backward(path):
    batch = next(iter(HelloDataset(path, device="cpu").loader(4)))
    assert not batch.soft_labels.is_inference() and not batch.soft_labels.requires_grad
    student = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 3))
    for loss in (mse_ce_loss(student(batch.images), batch.soft_labels, batch.hard_labels, 0.1),
                 kl_loss(student(batch.images), batch.soft_labels, 20.0)):
        student.zero_grad()
        loss.backward()
        assert torch.isfinite(loss) and student[1].weight.grad.abs().sum() > 0


def test_augment_overrides_the_recorded_recipe(path):
    recorded = HelloDataset(path, device="cpu")
    assert recorded.augment == AugmentConfig.from_dict(RECIPE_AUGMENT)
    overridden = HelloDataset(path, device="cpu", augment={"cutmix": 0})
    assert overridden.augment == AugmentConfig.from_dict({**RECIPE_AUGMENT, "cutmix": 0})
    for batch in overridden.loader(5, epochs=2):
        assert set(batch.hard_labels.unique().tolist()) == {0.0, 1.0}  # exact one-hots: nothing mixed
    whole = AugmentConfig(hflip=0.0, cutmix=0.0)
    assert HelloDataset(path, device="cpu", augment=whole).augment == whole


def test_hf_uris_are_accepted(path, hub_cache):
    cache_file(hub_cache, "org/tiny", "tiny.hello", path.read_bytes())
    remote = HelloDataset("hf://datasets/org/tiny/tiny.hello", device="cpu", seed=1)
    assert_batches_equal(list(remote.loader(5)), list(HelloDataset(path, device="cpu", seed=1).loader(5)))


# ------------------------------------------------------------------- hello preview: top-k labels

def test_topk_captions_list_the_most_probable_classes():
    logits = torch.tensor([[0.7, 0.2, 0.1], [0.05, 0.15, 0.8]]).log()
    assert topk_captions(logits, CLASSES, 2) == ["70% a\n20% b", "80% c\n15% b"]
    assert topk_captions(logits, CLASSES, 5) == ["70% a\n20% b\n10% c", "80% c\n15% b\n5% a"]


def test_projector_captions_name_the_projector_top_classes(path, stored):
    images, _, unmerged, _ = stored
    with Bundle.open(path) as bundle:
        captions = projector_captions(bundle, images, 2, batch_size=5)
    with torch.no_grad():
        top = unmerged(images.float() / 255).topk(2, dim=1).indices
    assert len(captions) == len(images)
    for caption, (first, second) in zip(captions, top.tolist()):
        lines = caption.splitlines()
        assert [line.split(" ", 1)[1] for line in lines] == [CLASSES[first], CLASSES[second]]


def preview_height(*args):
    result = CliRunner().invoke(cli, ["preview", *map(str, args), "--overwrite"])   # the tests reuse one file
    assert result.exit_code == 0, result.output
    with Image.open(args[2]) as grid:
        assert grid.format == "PNG"
        return grid.height, result.stderr


def test_preview_captions_each_image_with_top_k_labels(path, tmp_path):
    out = tmp_path / "grid.png"
    plain, _ = preview_height(path, "-o", out, "--no-labels")
    two, stderr = preview_height(path, "-o", out)
    three, _ = preview_height(path, "-o", out, "--top-k", "3")
    assert stderr == ""
    assert plain < two < three and (three - two) * 2 == two - plain  # one caption line per label, per row


def test_preview_without_a_buildable_base_warns_once_and_shows_class_names(tmp_path):
    projector = tiny_projector("vit", CLASSES, seed=1)
    checkpoint = tmp_path / "tiny-vit.safetensors"
    save_file({k.removeprefix("base."): v for k, v in embedded_tensors(tiny_clip("vit", 1)).items()}, checkpoint)
    projector.base_manifest |= {"source": "local", "checkpoint": checkpoint.name}
    manifest = {**projector.manifest_sections("float16"), "format_version": "1.0", "class_names": CLASSES, "ipc": 1,
                "recipe": Recipe(loss="kl", epochs=1, batch_size=3, student_image_size=32).to_manifest(),
                "provenance": {"source_dataset": "test", "teacher": "none",
                               "builder": {"name": "test_dataset", "version": "0", "options": {}}, "timings": {}}}
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    path = write_bundle(tmp_path / "local.hello", manifest, images, torch.arange(3), projector.bundle_tensors())
    out = tmp_path / "grid.png"
    plain, _ = preview_height(path, "-o", out, "--no-labels")
    fallback, stderr = preview_height(path, "-o", out)
    assert fallback == plain
    assert len(stderr.splitlines()) == 1 and stderr.startswith("warning: no projector labels")
    assert "tiny-vit.safetensors" in stderr
    labelled, stderr = preview_height(path, "-o", out, "--base-checkpoint", checkpoint)
    assert labelled > plain and stderr == ""


# -------------------------------------------------------------------------------------- GPU

@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_labels_agree_with_cpu_and_images_stay_on_the_device(path):
    cpu = list(HelloDataset(path, device="cpu", seed=4).loader(6, epochs=4))
    cuda = list(HelloDataset(path, device="cuda", seed=4).loader(6, epochs=4))
    assert len(cpu) == len(cuda)
    for a, b in zip(cpu, cuda):
        assert b.images.is_cuda and b.soft_labels.is_cuda and b.hard_labels.is_cuda
        torch.testing.assert_close(b.images.cpu(), a.images, atol=1e-5, rtol=0)
        torch.testing.assert_close(b.hard_labels.cpu(), a.hard_labels)
    soft_cpu = torch.cat([a.soft_labels for a in cpu])
    soft_cuda = torch.cat([b.soft_labels.cpu() for b in cuda])
    assert (soft_cpu.argmax(1) == soft_cuda.argmax(1)).float().mean() >= 0.9
    torch.testing.assert_close(soft_cuda, soft_cpu, atol=0.15, rtol=0.05)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_cuda_default_device_gives_the_batches_of_an_explicit_cuda_device(path):
    """torch.set_default_device("cuda"), as a student's script may set it: the CPU-side test above uses
    "meta"; here the real device, with labelling ahead on its side stream."""
    expected = list(HelloDataset(path, device="cuda", seed=4).loader(6, epochs=2, prefetch=False))
    previous = torch.get_default_device()
    torch.set_default_device("cuda")
    try:
        ds = HelloDataset(path, device="cuda", seed=4)
        batches = []
        for batch in ds.loader(6, epochs=2, prefetch=True):
            assert torch.empty(1).is_cuda   # the caller's default holds in its loop body
            batches.append(batch)
    finally:
        torch.set_default_device(previous)
    for got, want in zip(batches, expected, strict=True):
        assert torch.equal(got.images, want.images) and torch.equal(got.hard_labels, want.hard_labels)
        torch.testing.assert_close(got.soft_labels, want.soft_labels)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_the_decoded_images_are_held_once_on_the_gpu(path):
    """The decoded set was allocated on the GPU and again for the kept classes (2.0x its size at the peak;
    15 GB for ImageNet-1K IPC 50 at 224 px; a review of the GPU paths): it is allocated there once."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    ds = HelloDataset(path, device="cuda", soft_labels=False)
    decoded = ds._images.shape.numel()   # uint8
    assert torch.cuda.max_memory_allocated() - before < 1.5 * decoded + 4096   # + the labels, in 512-byte blocks


# ------------------------------------------------------------------ the loops users write (an integration review)

@pytest.mark.parametrize("prefetch", [False, True])
def test_epochs_go_on_from_one_pass_of_a_loader_to_the_next(path, prefetch):
    """`for epoch in range(n): for batch in ds.loader(...)`, with or without ds.set_epoch(epoch), trained
    on epoch 0's views n times: a loader without start_epoch began at epoch 0 on every pass."""
    def fresh():
        return HelloDataset(path, device="cpu", seed=4)

    whole = list(fresh().loader(4, epochs=3, prefetch=prefetch))   # one pass over three epochs
    per = len(whole) // 3
    assert not torch.equal(whole[0].images, whole[per].images)
    ds = fresh()
    assert_batches_equal([b for _ in range(3) for b in ds.loader(4, prefetch=prefetch)], whole)   # a loader a pass
    ds = fresh()
    loader = ds.loader(4, prefetch=prefetch)
    assert_batches_equal([b for _ in range(3) for b in loader], whole)   # one loader, three passes
    ds = fresh()
    ds.set_epoch(2)
    assert_batches_equal(list(ds.loader(4, prefetch=prefetch)), whole[2 * per:])
    ds = fresh()   # a pass left at an epoch's end, its next epoch maybe labelled ahead: the next pass begins there
    for number, _ in enumerate(ds.loader(4, epochs=3, prefetch=prefetch), start=1):
        if number == per:
            break
    assert_batches_equal(list(ds.loader(4, prefetch=prefetch)), whole[per:2 * per])
    ds = fresh()   # a probe batch between epochs (a pass left before its epoch's end) moves nothing
    loader = ds.loader(4, prefetch=prefetch)
    passes = []
    for _ in range(2):
        passes += list(loader)
        next(iter(ds.loader(4, prefetch=prefetch)))
    assert_batches_equal(passes, whole[:2 * per])
    ds = fresh()   # start_epoch fixes a pass and moves nothing
    assert_batches_equal(list(ds.loader(4, start_epoch=1, epochs=2)), whole[per:])
    assert_batches_equal(list(ds.loader(4, start_epoch=1, epochs=2)), whole[per:])
    assert_batches_equal(list(ds.loader(4)), whole[:per])


def test_each_rank_draws_its_own_augmentation(path):
    """Every rank drew the same crops, flips and CutMix boxes for its batch at the same step (the rank
    was not in the seed), so a global batch held world_size copies of each draw."""
    views = [list(HelloDataset(path, device="cpu", rank=rank, world_size=2).loader(3).views()) for rank in (0, 1)]
    assert all(not torch.equal(a[2].crops, b[2].crops) for a, b in zip(*views))
    alone = list(HelloDataset(path, device="cpu").loader(3).views())   # one process draws as rank 0 does
    assert torch.equal(alone[0][2].crops, views[0][0][2].crops)
    # and through a DataLoader (DistributedSampler's rows): the same rows got the same crops on every rank
    rows = [HelloDataset(path, device="cpu", rank=rank, world_size=2).__getitems__([0, 1, 2]) for rank in (0, 1)]
    assert not torch.equal(rows[0][0].images, rows[1][0].images)


def test_a_dataloader_with_spawned_workers_gets_labelled_batches(path, stored):
    """Spawn (macOS's and Windows' default) and forkserver workers died: torch.multiprocessing cannot send
    the dataset's torch.Generator."""
    ds = HelloDataset(path, device="cpu", normalize=([0.5] * 3, [0.25] * 3))
    batches = list(DataLoader(ds, batch_size=4, num_workers=1, multiprocessing_context="spawn"))
    assert [len(b.images) for b in batches] == [4, 4, 4] and all(b.soft_labels.shape == (4, 3) for b in batches)
    assert all(torch.isfinite(b.soft_labels).all() and b.soft_labels.std() > 0 for b in batches)
    # a persistent spawned worker's copy follows set_epoch (the epoch is in shared memory): the main process's views
    spawned = views_per_epoch(ds, num_workers=1, multiprocessing_context="spawn", persistent_workers=True)
    for here, there in zip(views_per_epoch(ds), spawned):
        assert torch.equal(here.images, there.images)
        torch.testing.assert_close(here.soft_labels, there.soft_labels)


@pytest.mark.parametrize("arguments, message", [
    ({"classes": "a"}, r"classes= takes a list of class names or indices, not one string: pass \['a'\]"),   # was ['a']
    ({"classes": "ab"}, r"not one string"),                         # selected classes 'a' and 'b'
    ({"classes": [1.7]}, r"classes= holds 1\.7: each entry is a class name or an integer index"),   # was class 1
    ({"classes": [True]}, r"classes= holds True"),                  # was class 1
    ({"label_options": "bf16"}, r"label_options must be a LabelOptions or a dict of its fields, got 'bf16'"),
    ({"augment": [("cutmix", 0)]}, r"augment must be an AugmentConfig or a dict of its fields"),   # failed at the first batch
    ({"normalize": ([0.5, 0.5], [0.2, 0.2])}, r"normalize must be \(mean, std\) with 1 or 3 finite values each"),
    ({"normalize": ([0.5] * 3, [0.2, 0.0, 0.2])}, r"and std > 0"),  # gave NaN images
    ({"seed": None}, r"seed must be an integer of at least 0, got None"),   # a TypeError at the first batch
    ({"seed": "0"}, r"seed must be an integer of at least 0, got '0'"),
    ({"seed": -1}, r"seed must be an integer of at least 0, got -1"),
    ({"seed": 2**63}, r"seed must be at most 9,223,372,036,854,775,807, got 9223372036854775808"),   # seed 0's views
])
def test_arguments_that_are_not_what_they_should_be_are_one_error_at_construction(path, arguments, message):
    with pytest.raises(HelloError, match=message):
        HelloDataset(path, device="cpu", **arguments)


@pytest.mark.parametrize("arguments, message", [
    ({"batch_size": 5.0}, r"batch_size must be an integer of at least 1, got 5\.0"),   # was a TypeError
    ({"batch_size": 4, "epochs": True}, r"epochs must be an integer of at least 1, got True"),
    ({"batch_size": 4, "epochs": 0}, r"epochs must be an integer of at least 1, got 0"),
    ({"batch_size": 4, "seed": 2.0}, r"seed must be an integer of at least 0, got 2\.0"),
    ({"batch_size": 4, "seed": 2**64 + 1}, r"seed must be at most 9,223,372,036,854,775,807, got 18446744073709551617"),
    # start_epoch is checked as set_epoch checks an epoch: -1 was accepted (set_epoch refuses it), True was
    # epoch 1 and 1.5 a bare "'float' object cannot be interpreted as an integer"
    ({"batch_size": 4, "start_epoch": -1}, r"^start_epoch must be an integer of at least 0, got -1"),
    ({"batch_size": 4, "start_epoch": True}, r"^start_epoch must be an integer of at least 0, got True"),
    ({"batch_size": 4, "start_epoch": 1.5}, r"^start_epoch must be an integer of at least 0, got 1\.5"),
    ({"batch_size": 4, "start_epoch": 2**63}, r"^start_epoch must be below 2\*\*63"),
])
def test_loader_counts_are_integers(path, arguments, message):
    with pytest.raises(HelloError, match=message):
        HelloDataset(path, device="cpu").loader(**arguments)


def test_a_pass_that_would_reach_epoch_2_to_the_63_is_refused_before_its_first_batch(path):
    """set_epoch(2**63 - 1) was accepted and the pass failed before its last batch, which was never handed
    over (the HelloDataset walkthrough): its end would set epoch 2**63."""
    ds = HelloDataset(path, device="cpu")
    ds.set_epoch(2**63 - 1)
    with pytest.raises(HelloError, match=r"^a pass of 1 epoch\(s\) from epoch 9,223,372,036,854,775,807 would reach "
                                         r"epoch 2\*\*63 \(epochs are below it\)"):
        next(iter(ds.loader(4)))
    assert ds.epoch == 2**63 - 1
    assert len(list(ds.loader(4, start_epoch=2**63 - 1))) == ds.loader(4).batches_per_epoch()   # pinned: moves nothing
    assert len(list(ds.loader(4, start_epoch=2**63 - 2, epochs=2).views())) == 2 * ds.loader(4).batches_per_epoch()
    with pytest.raises(HelloError, match=r"^a pass of 2 epoch\(s\) from epoch 9,223,372,036,854,775,807 would reach"):
        ds.loader(4, start_epoch=2**63 - 1, epochs=2).views()


def test_numpy_integers_are_seeds_and_epochs(path):
    """np.int64(3) as a seed was an OverflowError in the seed arithmetic (seeds from numpy configs)."""
    def first(ds, **loader):
        return next(iter(ds.loader(4, **loader))).images

    plain = HelloDataset(path, device="cpu", seed=3)
    assert torch.equal(first(HelloDataset(path, device="cpu", seed=np.int64(3))), first(plain))
    assert torch.equal(first(plain, seed=np.int32(5)), first(plain, seed=5))
    plain.set_epoch(np.int64(2))
    assert plain.epoch == 2
    with pytest.raises(HelloError, match=r"epoch must be an integer of at least 0, got -1"):
        plain.set_epoch(-1)


def test_thirteen_ranks_on_twelve_images_are_not_told_to_shrink_a_batch_of_one(path):
    with pytest.raises(HelloError, match=r"12 images over 13 ranks in batches of 1 with drop_last: pass drop_last=False$"):
        HelloDataset(path, device="cpu", rank=0, world_size=13).loader(1, drop_last=True)
