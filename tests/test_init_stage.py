"""RDED-style initialisation: shapes, patch layout and provenance, selection rule, determinism,
sharding independence, source crops, errors, and loading an existing distilled set."""

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from hello_build.data import scan_image_folder
from hello_build.options import BuildOptions
from hello_build.stages.init import InitResult, initialise_synthetic, load_init_images, patch_layout, source_crops
from hello_build.teachers import Teacher
from hello_build.errors import BuildError

CLASS_CHANNEL = {"a_red": 0, "b_green": 1, "c_blue": 2}


class ChannelTeacher(nn.Module):
    """Logits = 10 x mean of each channel: a pure class colour is confident, mixed colours are not."""

    def forward(self, x):
        return 10.0 * x.mean(dim=(2, 3))


def synthesise(index, teacher, *, batch_size=64, classes=None, progress=False, **options):
    """The init stage on build options ``options`` (the rest at options.py's defaults)."""
    return initialise_synthetic(index, teacher, BuildOptions(**options), size=16, batch_size=batch_size, classes=classes,
                                device="cpu", progress=progress)


def colour_teacher():
    return Teacher(ChannelTeacher(), input_size=8, mean=(0, 0, 0), std=(1, 1, 1), description="colour")


def solid(channel, impurity):
    colour = [impurity] * 3
    colour[channel] = 255
    return tuple(colour)


@pytest.fixture
def solid_tree(tmp_path):
    """Each class a solid colour; image i is less pure (less confident) as i grows."""
    root = tmp_path / "solid"
    for name, channel in CLASS_CHANNEL.items():
        (root / name).mkdir(parents=True)
        for i in range(8):
            Image.new("RGB", (24 + i, 20), solid(channel, 12 * i)).save(root / name / f"img{i}.png")
    return scan_image_folder(root)


def test_shapes_dtypes_labels_and_layout(solid_tree):
    result = synthesise(solid_tree, colour_teacher(), ipc=2, factor=2, candidates_per_class=8)
    assert result.images.shape == (6, 3, 16, 16) and result.images.dtype == torch.uint8
    assert result.labels.tolist() == [0, 0, 1, 1, 2, 2] and result.labels.dtype == torch.int64
    assert result.sources.shape == (6, 4, 5) and result.losses.shape == (6, 4)
    assert (result.size, result.factor, result.source_size) == (16, 2, 16)
    assert patch_layout(33, 2) == [(0, 0, 17, 17), (0, 17, 17, 16), (17, 0, 16, 17), (17, 17, 16, 16)]
    assert patch_layout(16, 1) == [(0, 0, 16, 16)]


def test_each_patch_comes_from_a_real_image_of_its_class(solid_tree):
    result = synthesise(solid_tree, colour_teacher(), ipc=2, factor=2, candidates_per_class=8)
    layout = patch_layout(16, 2)
    for image, label, sources in zip(result.images, result.labels, result.sources):
        samples = sources[:, 0].tolist()
        assert len(set(samples)) == 4  # four distinct real images per synthetic image
        for (top, left, height, width), sample in zip(layout, samples):
            path, source_label = solid_tree.samples[sample]
            assert source_label == int(label)
            expected = torch.tensor(Image.open(path).getpixel((0, 0)), dtype=torch.int16)
            region = image[:, top:top + height, left:left + width].to(torch.int16)
            assert (region - expected[:, None, None]).abs().max() <= 1


def test_keeps_the_lowest_cross_entropy_images_in_rded_order(solid_tree):
    result = synthesise(solid_tree, colour_teacher(), ipc=2, factor=2, candidates_per_class=8)
    for c in range(3):
        rows = result.sources[result.labels == c][:, :, 0]
        names = [[solid_tree.samples[s][0].rsplit("/", 1)[1] for s in row] for row in rows.tolist()]
        # rank r = patch * ipc + image: image 0 holds ranks 0, 2, 4, 6 (purest images 0, 2, 4, 6)
        assert names == [["img0.png", "img2.png", "img4.png", "img6.png"],
                         ["img1.png", "img3.png", "img5.png", "img7.png"]]
    losses = result.losses[result.labels == 0]
    assert losses[0, 0] < losses[1, 0] < losses[0, 1] < losses[1, 1] < losses[0, 3]


@pytest.fixture
def half_tree(tmp_path):
    """Left half the class colour, right half grey: crops on the left are confident."""
    root = tmp_path / "half"
    for name, channel in CLASS_CHANNEL.items():
        (root / name).mkdir(parents=True)
        for i in range(6):
            pixels = np.full((32, 32, 3), 128, dtype=np.uint8)
            pixels[:, :16] = solid(channel, 2 * i)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return scan_image_folder(root)


def test_best_crop_of_each_image_is_kept_and_recomputable(half_tree):
    teacher = colour_teacher()
    config = dict(ipc=1, factor=2, candidates_per_class=6, crop_scale=(0.1, 0.3), seed=3)
    result = synthesise(half_tree, teacher, crops_per_image=16, **config)
    crops = source_crops(half_tree, result.sources, 16, result.source_size)
    assert crops.shape == (3, 4, 3, 16, 16) and crops.dtype == torch.uint8
    for label in range(3):
        flat = crops[label].float() / 255
        recomputed = F.cross_entropy(teacher(flat), torch.full((4,), label), reduction="none")
        assert torch.allclose(recomputed, result.losses[label], atol=2e-2)
        grey = (crops[label] == 128).all(dim=1).float().mean(dim=(1, 2))
        assert (grey < 0.5).all()  # the best of 16 crops lies mostly in the confident half
    single = synthesise(half_tree, teacher, crops_per_image=1, **config)
    assert result.losses.mean() < single.losses.mean()


def test_deterministic_by_seed_and_independent_of_batching_and_sharding(solid_tree):
    teacher = colour_teacher()
    config = dict(ipc=1, factor=2, candidates_per_class=6, seed=7)
    first = synthesise(solid_tree, teacher, batch_size=5, **config)
    again = synthesise(solid_tree, teacher, batch_size=2, **config)
    assert torch.equal(first.images, again.images) and torch.equal(first.sources, again.sources)
    shards = [synthesise(solid_tree, teacher, classes=part, **config) for part in ([1], [0, 2])]
    joined = InitResult.concatenate(shards)
    assert torch.equal(joined.images, first.images) and torch.equal(joined.labels, first.labels)
    other = synthesise(solid_tree, teacher, ipc=1, factor=2, candidates_per_class=6, seed=8)
    assert not torch.equal(other.sources[:, :, 1:], first.sources[:, :, 1:])  # other crop boxes


def test_not_enough_real_images_is_a_clear_error(solid_tree):
    with pytest.raises(BuildError, match=r"class 'a_red' has 8 usable real images but ipc 3 with 2x2 patches needs 12"):
        synthesise(solid_tree, colour_teacher(), ipc=3, factor=2)
    with pytest.raises(BuildError, match="crop scale"):
        synthesise(solid_tree, colour_teacher(), ipc=1, crop_scale=(0.5, 1.5))


def _truncated_jpeg(path):
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(buffer, "JPEG")
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) * 6 // 10])   # its header is sound
    return path


def test_an_undecodable_image_stops_the_stage_or_is_left_out_by_the_scan(solid_tree, tmp_path):
    """The stage drew exactly the candidates it needed, one undecodable under skip_bad, and said the class "has
    only 3 decodable images of the 4" though it had 8 (a review): the scan leaves such a file out now."""
    broken = _truncated_jpeg(solid_tree.root / "b_green" / "broken.jpg")
    config = dict(ipc=1, factor=2, candidates_per_class=9)
    with pytest.raises(BuildError, match="cannot decode image .*broken.jpg"):
        synthesise(scan_image_folder(solid_tree.root), colour_teacher(), **config)
    index = scan_image_folder(solid_tree.root, skip_bad=True)
    assert index.bad == [str(broken)]
    result = synthesise(index, colour_teacher(), **{**config, "candidates_per_class": 4})
    assert result.images.shape == (3, 3, 16, 16)
    assert all(index.samples[sample][0] != str(broken) for sample in result.sources[..., 0].flatten().tolist())


def test_load_init_images_relabels_and_checks_classes(tmp_path, solid_tree):
    root = tmp_path / "distilled"
    for name, channel in CLASS_CHANNEL.items():
        (root / name).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (20, 30), solid(channel, 0)).save(root / name / f"{i}.png")
    logs = []
    images, labels = load_init_images(root, solid_tree.classes, 16, skip_bad=False, follow_external_links=False, log=logs.append)
    assert images.shape == (6, 3, 16, 16) and images.dtype == torch.uint8
    assert labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert all(images[i, labels[i]].min() == 255 for i in range(6))
    # labels follow the order of the classes given, whatever the folders' own order
    reordered, relabelled = load_init_images(root, solid_tree.classes[::-1], 16, skip_bad=False,
                                             follow_external_links=False, log=logs.append)
    assert relabelled.tolist() == [0, 0, 1, 1, 2, 2] and torch.equal(reordered, images[[4, 5, 2, 3, 0, 1]])
    with pytest.raises(BuildError, match=r"do not match the data's class folders \(missing d_other; unknown b_green\)"):
        load_init_images(root, ["a_red", "c_blue", "d_other"], 16, skip_bad=False, follow_external_links=False, log=logs.append)
    (root / "a_red").rename(tmp_path / "kept-elsewhere")   # --init-images follows no link out unless asked
    (root / "a_red").symlink_to(tmp_path / "kept-elsewhere", target_is_directory=True)
    with pytest.raises(BuildError, match="a_red links outside the image folder"):
        load_init_images(root, solid_tree.classes, 16, skip_bad=False, follow_external_links=False, log=logs.append)
    linked, _ = load_init_images(root, solid_tree.classes, 16, skip_bad=False, follow_external_links=True, log=logs.append)
    assert torch.equal(linked, images) and logs == []


def test_an_init_image_the_scan_leaves_out_is_said_in_a_log_line(tmp_path, solid_tree):
    """--init-images was scanned with --skip-bad and a file it left out was dropped without a word (a review)."""
    root = tmp_path / "distilled"
    for name, channel in CLASS_CHANNEL.items():
        (root / name).mkdir(parents=True)
        Image.new("RGB", (20, 30), solid(channel, 0)).save(root / name / "0.png")
    broken = _truncated_jpeg(root / "b_green" / "1.jpg")
    with pytest.raises(BuildError, match=r"cannot decode image .*1\.jpg"):
        load_init_images(root, solid_tree.classes, 16, skip_bad=False, follow_external_links=False, log=print)
    logs = []
    images, labels = load_init_images(root, solid_tree.classes, 16, skip_bad=True, follow_external_links=False,
                                      log=logs.append)
    assert images.shape == (3, 3, 16, 16) and labels.tolist() == [0, 1, 2]
    assert logs == [f"--init-images: skipped 1 unreadable image(s), e.g. {broken} (image file is truncated (62 bytes not processed))"]


def test_teacher_set_ranks_with_its_mean_and_progress_is_reported(solid_tree):
    from hello_build.teachers import TeacherSet

    inverted = Teacher(nn.Sequential(ChannelTeacher(), nn.Identity()), input_size=8, mean=(0, 0, 0), std=(1, 1, 1))
    inverted.net[1] = _Negate()  # ranks impure images first; with weight 0.25 of the mean it cannot win
    teachers = TeacherSet([colour_teacher(), colour_teacher(), colour_teacher(), inverted], combine="random")
    seen = []
    result = synthesise(solid_tree, teachers, ipc=1, factor=2, candidates_per_class=8, batch_size=5,
                        progress=lambda done, total: seen.append((done, total)))
    names = [solid_tree.samples[s][0].rsplit("/", 1)[1] for s in result.sources[0, :, 0].tolist()]
    assert names == ["img0.png", "img1.png", "img2.png", "img3.png"]
    assert seen == [(5, 24), (10, 24), (15, 24), (20, 24), (24, 24)]


def test_init_teacher_last_ranks_by_the_final_teacher_alone(solid_tree):
    """--init-teacher last: the final teacher is the one judge (RDED's observer); here it prefers the
    impure images, which the mean of the set ranks last."""
    from hello_build.teachers import TeacherSet

    inverted = Teacher(nn.Sequential(ChannelTeacher(), _Negate()), input_size=8, mean=(0, 0, 0), std=(1, 1, 1))
    teachers = TeacherSet([colour_teacher(), colour_teacher(), colour_teacher(), inverted], combine="random")
    names = {}
    for choice in ("mean", "last"):
        result = synthesise(solid_tree, teachers, ipc=1, factor=2, candidates_per_class=8, init_teacher=choice)
        names[choice] = [solid_tree.samples[s][0].rsplit("/", 1)[1] for s in result.sources[0, :, 0].tolist()]
    assert names == {"mean": ["img0.png", "img1.png", "img2.png", "img3.png"],
                     "last": ["img7.png", "img6.png", "img5.png", "img4.png"]}


class _Negate(nn.Module):
    def forward(self, x):
        return -0.5 * x


def test_teacher_scores_in_eval_mode_and_keeps_its_mode(solid_tree):
    norm = nn.BatchNorm2d(3)
    teacher = Teacher(nn.Sequential(norm, ChannelTeacher()), input_size=8, num_classes=3, mean=(0, 0, 0), std=(1, 1, 1))
    teacher.train()
    synthesise(solid_tree, teacher, ipc=1, factor=1, candidates_per_class=2)
    assert teacher.training and norm.training
    assert torch.equal(norm.running_mean, torch.zeros(3)) and int(norm.num_batches_tracked) == 0
