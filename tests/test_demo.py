"""hello-build --demo's pieces that run in a second (the whole demo takes minutes): its digits, the image
folders it writes, the build options it passes."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from hello_build.demo import BASE, DIGIT_NAMES, IPC, SIZE, demo_options, digits_split, write_image_folder
from hello_build.options import BuildOptions


def test_the_digits_are_split_three_ways_without_overlap_and_keep_their_labels():
    from sklearn.datasets import load_digits

    parts = digits_split(0)
    assert {name: len(labels) for name, (_, labels) in parts.items()} == {"foundation": 700, "original": 700, "test": 397}
    for images, labels in parts.values():
        assert images.dtype == torch.uint8 and images.shape[1:] == (3, SIZE, SIZE)
        assert torch.equal(images[:, 0], images[:, 1]) and torch.equal(images[:, 0], images[:, 2])   # grey
        assert labels.min() >= 0 and labels.max() < len(DIGIT_NAMES)
    every = torch.cat([images.flatten(1) for images, _ in parts.values()])
    assert len(torch.unique(every, dim=0)) == len(torch.unique(every[:700], dim=0)) + len(torch.unique(every[700:1400], dim=0)) \
        + len(torch.unique(every[1400:], dim=0))   # no digit in two parts
    # the 0..16 ink scale spans 0..255 (upscaling keeps the mean)
    assert abs(every.float().mean().item() - load_digits().images.mean() / 16 * 255) < 0.5
    assert every.max() == 255
    # each image keeps its own label: class means of the original part classify the test part
    (train, train_labels), (test, test_labels) = parts["original"], parts["test"]
    centroids = torch.stack([train[train_labels == c].float().mean(0) for c in range(len(DIGIT_NAMES))])
    predicted = torch.cdist(test.float().flatten(1), centroids.flatten(1)).argmin(1)
    assert (predicted == test_labels).float().mean() > 0.8


def test_the_digits_split_follows_the_seed():
    zero, again, other = digits_split(0), digits_split(0), digits_split(1)
    assert all(torch.equal(zero[name][0], again[name][0]) and torch.equal(zero[name][1], again[name][1]) for name in zero)
    assert not torch.equal(zero["test"][0], other["test"][0])


def test_write_image_folder_writes_each_image_as_is_under_its_digits_name(tmp_path):
    images = torch.arange(3 * 3 * 4 * 6, dtype=torch.uint8).reshape(3, 3, 4, 6)   # not square: a transposition shows
    root = write_image_folder(tmp_path / "digits", images, torch.tensor([7, 0, 7]))
    assert root == tmp_path / "digits"
    assert sorted(p.name for p in root.iterdir()) == ["seven", "zero"]
    assert sorted(p.name for p in (root / "seven").iterdir()) == ["00000.png", "00002.png"]
    for folder, i in (("seven", 0), ("zero", 1), ("seven", 2)):
        read = np.asarray(Image.open(root / folder / f"{i:05d}.png"))
        assert np.array_equal(read, images[i].permute(1, 2, 0).numpy()), (folder, i)


def test_demo_options_are_the_builders_defaults_but_for_the_demos_own(tmp_path):
    teachers = [tmp_path / "t1.safetensors", tmp_path / "t2.safetensors"]
    options = demo_options(tmp_path / "train", tmp_path / "demo.hello", teachers, tmp_path / "base.safetensors",
                           tmp_path / "work", seed=7, student_epochs=60)
    assert (options.data, options.output, options.workdir) == (str(tmp_path / "train"), str(tmp_path / "demo.hello"),
                                                                str(tmp_path / "work"))
    assert options.teacher == [str(t) for t in teachers] and options.seed == 7 and options.epochs == 60
    # the stand-in base nobody can download travels in the bundle
    assert (options.base, options.base_checkpoint, options.embed_base) == (BASE, str(tmp_path / "base.safetensors"), True)
    assert options.fresh   # a demo with another seed splits the digits otherwise: no stage of an earlier one is reused
    assert options.ipc == IPC and options.hflip == 0.0   # a mirrored digit is another digit or none
    assert options.prior_weight == 0.0   # a format 1.1 bundle: never measured on digits
    assert options.precision == BuildOptions.precision
    options.check_values()
    assert demo_options(tmp_path / "train", tmp_path / "demo.hello", teachers, tmp_path / "base.safetensors",
                        tmp_path / "work", seed=7, student_epochs=60, precision="bf16", ipc=2).precision == "bf16"
