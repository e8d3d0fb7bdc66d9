"""hello_format.augment against per-image references built from plain torch slicing and F.interpolate."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from hello_format.augment import (
    AugmentConfig,
    AugmentError,
    apply_crops,
    augment_batch,
    draw_augment,
    mix_targets,
    sample_crops,
    sample_mix,
)
from hello_format.limits import MAX_IMAGE_SIDE, MAX_MIX_ALPHA, MAX_PATCH_SHUFFLE

IDENTITY = AugmentConfig(scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=0.0, cutmix=0.0)


def random_images(batch=6, channels=3, height=32, width=32, seed=0):
    return torch.randint(0, 256, (batch, channels, height, width), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def generator(seed=0):
    return torch.Generator().manual_seed(seed)


def strip_shuffle(image, order, dim, factor):
    """RDED's ShufflePatches along one axis: strips of length // factor, the last one takes the rest."""
    length = image.shape[dim]
    strip = length // factor
    strips = [image.narrow(dim, k * strip, strip if k < factor - 1 else length - (factor - 1) * strip) for k in range(factor)]
    return torch.cat([strips[k] for k in order], dim)


def reference_view(image, crop, flip, size, order=None, factor=0):
    """One image as torchvision would make it: shuffle strips, crop, antialiased bilinear resize, flip."""
    x = image.float() / 255
    if order is not None:
        x = strip_shuffle(strip_shuffle(x, order[0].tolist(), 1, factor), order[1].tolist(), 2, factor)
    top, left, h, w = crop.tolist()
    x = F.interpolate(x[None, :, top : top + h, left : left + w], size=size, mode="bilinear", align_corners=False, antialias=True)[0]
    return x.flip(-1) if flip else x


def test_identity_crop_returns_the_images_as_floats():
    images = random_images()
    batch = augment_batch(images, IDENTITY, generator())
    assert batch.images.dtype == torch.float32 and batch.images.shape == images.shape
    assert torch.equal(batch.crops, torch.tensor([[0, 0, 32, 32]] * 6))
    assert not batch.flips.any() and batch.mix is None and batch.patch_order is None
    torch.testing.assert_close(batch.images, images.float() / 255, atol=1e-6, rtol=0)


@pytest.mark.parametrize("size", [(32, 32), (13, 20), (64, 48)])
def test_apply_crops_matches_per_image_interpolate(size):
    images = random_images(batch=5, height=32, width=40)
    crops = torch.tensor([[0, 0, 32, 40], [3, 5, 10, 7], [10, 2, 22, 31], [31, 39, 1, 1], [4, 0, 17, 40]])
    flips = torch.tensor([False, True, False, True, True])
    out = apply_crops(images, crops, flips, size)
    assert out.shape == (5, 3, *size)
    for i in range(5):
        torch.testing.assert_close(out[i], reference_view(images[i], crops[i], flips[i], size), atol=1e-5, rtol=0)


def test_sampled_views_match_the_reference_including_patch_shuffle():
    images = random_images(batch=8, height=30, width=36)
    config = AugmentConfig(output_size=24, patch_shuffle=3, cutmix=0.0)
    batch = augment_batch(images, config, generator(3))
    assert batch.patch_order.shape == (8, 2, 3)
    for i in range(8):
        expected = reference_view(images[i], batch.crops[i], batch.flips[i], (24, 24), batch.patch_order[i], 3)
        torch.testing.assert_close(batch.images[i], expected, atol=1e-5, rtol=0)


def test_sampled_crops_lie_inside_the_image_within_scale_and_ratio():
    height, width, scale, ratio = 224, 160, (0.3, 0.7), (0.5, 1.5)
    crops = sample_crops(4000, height, width, scale, ratio, generator(1))
    top, left, h, w = crops.T
    assert (top >= 0).all() and (left >= 0).all() and (h >= 1).all() and (w >= 1).all()
    assert (top + h <= height).all() and (left + w <= width).all()
    area = (h * w).double() / (height * width)
    aspect = w.double() / h.double()
    # integer rounding of h and w moves area and aspect by at most about one pixel's worth
    assert area.min() >= scale[0] - 0.01 and area.max() <= scale[1] + 0.01
    assert aspect.min() >= ratio[0] - 0.02 and aspect.max() <= ratio[1] + 0.02
    assert area.max() - area.min() > 0.3  # the range is actually explored
    assert top.float().std() > 5 and left.float().std() > 5


def torchvision_crop_boxes(batch, height, width, scale, ratio, seed):
    """RandomResizedCrop.get_params written out per image, as torchvision does it, on the uniform draws that
    sample_crops takes from the generator (in its order: 10 areas, 10 aspects per image, then a position)."""
    g = generator(seed)
    areas = torch.rand(batch, 10, generator=g, dtype=torch.float64).tolist()
    aspects = torch.rand(batch, 10, generator=g, dtype=torch.float64).tolist()
    positions = torch.rand(batch, 2, generator=g, dtype=torch.float64).tolist()
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    boxes = []
    for i in range(batch):
        for attempt in range(10):
            target_area = height * width * (scale[0] + (scale[1] - scale[0]) * areas[i][attempt])
            aspect = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * aspects[i][attempt])
            w = int(round(math.sqrt(target_area * aspect)))
            h = int(round(math.sqrt(target_area / aspect)))
            if 0 < w <= width and 0 < h <= height:   # the first attempt that fits; torch.randint(0, side - crop + 1)
                top = math.floor(positions[i][0] * (height - h + 1))
                left = math.floor(positions[i][1] * (width - w + 1))
                boxes.append([top, left, h, w])
                break
        else:   # torchvision's central fallback
            in_ratio = width / height
            if in_ratio < min(ratio):
                h, w = int(round(width / min(ratio))), width
            elif in_ratio > max(ratio):
                h, w = height, int(round(height * max(ratio)))
            else:
                h, w = height, width
            boxes.append([(height - h) // 2, (width - w) // 2, h, w])
    return torch.tensor(boxes)


@pytest.mark.parametrize("height, width, scale, ratio, placed", [
    (32, 32, (0.08, 1.0), (3 / 4, 4 / 3), True),     # the default recipe
    (30, 45, (0.25, 1.0), (0.5, 2.0), True),       # wide images, a wide aspect range
    (24, 40, (0.3, 1.0), (0.9, 1.1), True),        # many first attempts fail: later ones are taken
    (12, 40, (0.6, 1.0), (0.9, 1.1), False),       # none fits: the central fallback of images wider than the ratios
])
def test_sampled_crops_are_torchvisions_get_params_draw_for_draw(height, width, scale, ratio, placed):
    """The vectorised crops are torchvision's algorithm image by image: the first fitting of 10 attempts, a
    log-uniform aspect, sides rounded half to even, a position anywhere in [0, side - crop] (a range test
    alone let a crop never touch the bottom edge, or top and left share one draw)."""
    crops = sample_crops(300, height, width, scale, ratio, generator(11))
    expected = torchvision_crop_boxes(300, height, width, scale, ratio, 11)
    assert torch.equal(crops, expected)
    top, left, h, w = crops.T
    if placed:
        assert ((top + h) == height).any() and ((left + w) == width).any()   # both far edges are reached


def test_impossible_crops_fall_back_to_torchvisions_central_crop():
    # a 2:1 (wide) crop of full area cannot fit a square image: central crop of width W, height W / 2
    crops = sample_crops(3, 40, 40, (1.0, 1.0), (2.0, 2.0), generator())
    assert torch.equal(crops, torch.tensor([[10, 0, 20, 40]] * 3))


def test_flip_equals_torch_flip():
    images = random_images()
    batch = augment_batch(images, IDENTITY.replace(hflip=1.0), generator())
    assert batch.flips.all()
    torch.testing.assert_close(batch.images, torch.flip(images, dims=[-1]).float() / 255, atol=1e-6, rtol=0)


def test_cutmix_pastes_the_partners_box_and_lam_is_the_kept_area():
    images = random_images(batch=8, height=32, width=24)
    seen_boxes = set()
    for seed in range(5):
        whole_image = IDENTITY.replace(ratio=(0.75, 0.75), cutmix=1.0)  # 24 / 32: the full image
        batch = augment_batch(images, whole_image, generator(seed))
        mix = batch.mix
        assert mix.kind == "cutmix" and sorted(mix.perm.tolist()) == list(range(8))
        y0, x0, y1, x1 = mix.box
        assert 0 <= y0 <= y1 <= 32 and 0 <= x0 <= x1 <= 24
        seen_boxes.add(mix.box)
        plain = images.float() / 255
        expected = plain.clone()
        expected[:, :, y0:y1, x0:x1] = plain[mix.perm][:, :, y0:y1, x0:x1]
        torch.testing.assert_close(batch.images, expected, atol=1e-6, rtol=0)
        assert mix.lam == pytest.approx(1 - (y1 - y0) * (x1 - x0) / (32 * 24))
    assert len(seen_boxes) > 1


def test_mixup_blends_with_the_partner():
    images = random_images()
    batch = augment_batch(images, IDENTITY.replace(mixup=1.0, mixup_alpha=0.8), generator(2))
    mix = batch.mix
    assert mix.kind == "mixup" and mix.box is None and 0 < mix.lam < 1
    plain = images.float() / 255
    torch.testing.assert_close(batch.images, mix.lam * plain + (1 - mix.lam) * plain[mix.perm], atol=1e-6, rtol=0)


def test_mixup_and_cutmix_draw_lam_with_their_own_alpha():
    # Beta(a, a) with a tiny a puts lam at 0 or 1; with a huge a, at 1/2: each kind must use its own alpha
    def lams(config):
        return [sample_mix(4, (8, 8), config, generator(seed)).lam for seed in range(6)]

    for lam in lams(AugmentConfig(cutmix=0.0, mixup=1.0, mixup_alpha=1e-3, cutmix_alpha=1000.0)):
        assert min(lam, 1 - lam) < 1e-3
    for lam in lams(AugmentConfig(cutmix=0.0, mixup=1.0, mixup_alpha=1000.0, cutmix_alpha=1e-3)):
        assert lam == pytest.approx(0.5, abs=0.1)
    # CutMix's lam is its box's share, clipped at the 8 px edges: a tiny alpha gives empty boxes (1.0) or
    # large ones, a huge alpha a box of about half the side's square, never empty
    tiny = lams(AugmentConfig(cutmix=1.0, mixup=0.0, cutmix_alpha=1e-3, mixup_alpha=1000.0))
    assert 1.0 in tiny and all(lam == 1.0 or lam < 0.7 for lam in tiny)
    assert all(0.7 < lam < 1.0 for lam in lams(AugmentConfig(cutmix=1.0, mixup=0.0, cutmix_alpha=1000.0, mixup_alpha=1e-3)))


def test_mixing_probabilities_follow_the_config():
    def kinds(config, draws=1500):
        g = generator(5)
        counts = {"cutmix": 0, "mixup": 0, None: 0}
        for _ in range(draws):
            mix = sample_mix(4, (8, 8), config, g)
            counts[mix.kind if mix else None] += 1
        return {k: v / draws for k, v in counts.items()}

    low = kinds(AugmentConfig(cutmix=0.3, mixup=0.2))
    assert low["cutmix"] == pytest.approx(0.3, abs=0.05) and low["mixup"] == pytest.approx(0.2, abs=0.05)
    both = kinds(AugmentConfig(cutmix=1.0, mixup=1.0))
    assert both[None] == 0 and both["cutmix"] == pytest.approx(0.5, abs=0.05)
    assert kinds(AugmentConfig(cutmix=0.0, mixup=0.0), draws=10)[None] == 1


def test_mix_targets():
    labels = torch.tensor([3, 1, 4, 1, 5])
    a, b, lam = mix_targets(labels, None)
    assert torch.equal(a, labels) and torch.equal(b, labels) and lam == 1.0
    batch = augment_batch(random_images(batch=5), IDENTITY.replace(cutmix=1.0), generator())
    a, b, lam = mix_targets(labels, batch.mix)
    assert torch.equal(a, labels) and torch.equal(b, labels[batch.mix.perm]) and lam == batch.mix.lam


def test_patch_shuffle_permutes_the_patches():
    images = random_images(batch=6, height=32, width=32)
    batch = augment_batch(images, IDENTITY.replace(patch_shuffle=2), generator(4))

    def patches(x):  # [B, C, 32, 32] -> [B, 4, C*16*16]
        return x.unfold(2, 16, 16).unfold(3, 16, 16).permute(0, 2, 3, 1, 4, 5).reshape(x.shape[0], 4, -1)

    got, original = patches((batch.images * 255).round().to(torch.uint8)), patches(images)
    for i in range(6):
        assert sorted(map(tuple, got[i].tolist())) == sorted(map(tuple, original[i].tolist()))
    assert not torch.equal(got, original)  # something moved


def test_cutmix_boxes_are_rand_bbox_of_side_sqrt_1_minus_lam_centred_anywhere():
    """CutMix's rand_bbox: sides int(side * sqrt(1 - lam)), the centre uniform over the whole view, the box
    clipped at its edges. Beta(1e6, 1e6) draws lam = 1/2 (to about 4e-4), so every unclipped box is
    2 * (int(side / sqrt(2)) // 2) on a side; on a non-square view the centre must reach every row."""
    height, width = 40, 24
    half_h, half_w = int(height * math.sqrt(0.5)) // 2, int(width * math.sqrt(0.5)) // 2
    config = AugmentConfig(cutmix=1.0, cutmix_alpha=1e6)
    boxes = [sample_mix(4, (height, width), config, generator(seed)).box for seed in range(300)]
    for y0, x0, y1, x1 in boxes:
        assert y1 - y0 <= 2 * half_h and x1 - x0 <= 2 * half_w
        if 0 < y0 and y1 < height:
            assert y1 - y0 == 2 * half_h
        if 0 < x0 and x1 < width:
            assert x1 - x0 == 2 * half_w
    for edge, value in enumerate((0, 0, height, width)):
        assert any(box[edge] == value for box in boxes), edge   # clipped at each of the four edges
    assert any(0 < y0 and y1 < height for y0, _, y1, _ in boxes)   # and unclipped boxes were checked


def test_patch_shuffle_of_uneven_sides_keeps_the_extra_pixels_in_the_last_strip():
    """RDED's ShufflePatches on sides the factor does not divide (31 x 35 in 3 strips: 10, 10, 11 rows and
    11, 11, 13 columns), with the row and column orders drawn independently."""
    images = random_images(batch=8, height=31, width=35)
    batch = augment_batch(images, IDENTITY.replace(patch_shuffle=3), generator(6))
    for i in range(8):
        expected = reference_view(images[i], batch.crops[i], batch.flips[i], (31, 35), batch.patch_order[i], 3)
        torch.testing.assert_close(batch.images[i], expected, atol=1e-6, rtol=0)
    rows, columns = batch.patch_order[:, 0], batch.patch_order[:, 1]
    assert not torch.equal(rows, columns)   # two shuffles, not one applied to both axes


def test_same_seed_same_batch_different_seed_different_batch():
    images = random_images(batch=16)
    config = AugmentConfig(patch_shuffle=2, mixup=0.5, cutmix=0.5)
    first, again, other = (augment_batch(images, config, generator(s)) for s in (7, 7, 8))
    assert torch.equal(first.images, again.images) and torch.equal(first.crops, again.crops)
    assert torch.equal(first.flips, again.flips) and torch.equal(first.patch_order, again.patch_order)
    assert first.mix.kind == again.mix.kind and first.mix.lam == again.mix.lam and first.mix.box == again.mix.box
    assert torch.equal(first.mix.perm, again.mix.perm)
    assert not torch.equal(first.crops, other.crops)


def test_output_size_none_keeps_a_non_square_size():
    batch = augment_batch(random_images(height=20, width=30), AugmentConfig(), generator())
    assert batch.images.shape == (6, 3, 20, 30)
    assert batch.images.min() >= 0 and batch.images.max() <= 1 + 1e-6


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_batch_equals_cpu_batch():
    images = random_images(batch=32, height=48, width=48)
    config = AugmentConfig(output_size=40, patch_shuffle=2, cutmix=0.5, mixup=0.5)
    for seed in range(4):
        on_cpu = augment_batch(images, config, generator(seed))
        on_gpu = augment_batch(images.cuda(), config, generator(seed))
        assert on_gpu.images.device.type == "cuda"
        assert torch.equal(on_cpu.crops, on_gpu.crops) and torch.equal(on_cpu.flips, on_gpu.flips)
        torch.testing.assert_close(on_gpu.images.cpu(), on_cpu.images, atol=1e-5, rtol=0)


def test_config_round_trips_through_json():
    config = AugmentConfig(output_size=64, scale=(0.5, 1.0), patch_shuffle=2, mixup=0.2)
    data = json.loads(json.dumps(config.to_dict()))
    assert data["scale"] == [0.5, 1.0] and data["ratio"] == [3 / 4, 4 / 3]
    assert AugmentConfig.from_dict(data) == config
    assert AugmentConfig.from_dict({}) == AugmentConfig()
    assert AugmentConfig.from_dict({"hflip": 0}).hflip == 0.0
    assert config.replace(hflip=0.0) == AugmentConfig(output_size=64, scale=(0.5, 1.0), patch_shuffle=2, mixup=0.2, hflip=0.0)


@pytest.mark.parametrize(
    "bad, field",
    [
        ({"crop_scale": [0.1, 1]}, "crop_scale"),
        ({"scale": [0.9, 0.2]}, "scale"),
        ({"scale": [0.0, 1.0]}, "scale"),
        ({"scale": 0.5}, "scale"),
        ({"ratio": [1, "wide"]}, "ratio"),
        ({"hflip": 1.5}, "hflip"),
        ({"hflip": True}, "hflip"),
        ({"patch_shuffle": 2.5}, "patch_shuffle"),
        ({"output_size": 0}, "output_size"),
        ({"cutmix_alpha": 0}, "cutmix_alpha"),
        ({"mixup": -0.1}, "mixup"),
    ],
)
def test_bad_settings_are_named(bad, field):
    with pytest.raises(AugmentError, match=field):
        AugmentConfig.from_dict(bad)


@pytest.mark.parametrize("field, limit", [("output_size", MAX_IMAGE_SIDE), ("patch_shuffle", MAX_PATCH_SHUFFLE)])
def test_integer_settings_stop_at_their_limit(field, limit):
    assert getattr(AugmentConfig(**{field: limit}), field) == limit
    message = rf"^augment\.{field} must be an integer in \[[01], {limit}\], got {limit + 1}$"
    with pytest.raises(AugmentError, match=message):
        AugmentConfig(**{field: limit + 1})


@pytest.mark.parametrize("field", ["cutmix_alpha", "mixup_alpha"])
def test_mix_alphas_stop_where_beta_still_draws_a_half(field):
    """numpy's Beta(1e308, 1e308) draws 0, not about 0.5: a file's huge alpha made every CutMix box the
    whole image (found by fuzzing)."""
    assert getattr(AugmentConfig(**{field: MAX_MIX_ALPHA}), field) == MAX_MIX_ALPHA
    with pytest.raises(AugmentError, match=rf"^augment\.{field} must be a number in \(0, 1e\+06\], got 1e\+308$"):
        AugmentConfig(**{field: 1e308})


@pytest.mark.parametrize("ratio, got", [((0, 1), "0"), ((1.0, math.inf), "inf"), ((-1.0, 1.0), "-1.0")])
def test_a_ratio_out_of_range_is_said_to_need_a_finite_number_above_0(ratio, got):
    """The unbounded range read "must be a number in > 0, got inf", which inf is."""
    with pytest.raises(AugmentError, match=rf"^augment\.ratio must be a finite number > 0, got {got}$"):
        AugmentConfig(ratio=ratio)


def test_bad_inputs_are_refused_clearly():
    with pytest.raises(AugmentError, match="uint8"):
        augment_batch(torch.rand(2, 3, 8, 8), AugmentConfig(), generator())
    with pytest.raises(AugmentError, match="patch_shuffle"):
        augment_batch(random_images(height=4, width=4), AugmentConfig(patch_shuffle=5), generator())
    with pytest.raises(AugmentError, match="output_size"):
        AugmentConfig().replace(output_size=-3)
    empty = torch.zeros(0, 3, 8, 8, dtype=torch.uint8)
    with pytest.raises(AugmentError, match="^augmentation needs a non-empty batch$"):
        augment_batch(empty, AugmentConfig(), generator())
    with pytest.raises(AugmentError, match="^augmentation needs a non-empty batch$"):
        apply_crops(empty, torch.zeros(0, 4, dtype=torch.long), torch.zeros(0, dtype=torch.bool), 8)


@pytest.mark.parametrize("mixing", [{"cutmix": 0.0}, {"cutmix": 1.0}, {"cutmix": 0.0, "mixup": 1.0}])
def test_a_share_of_a_batch_is_made_from_its_rows_and_their_partners_only(mixing):
    """What a torchrun rank does: draw the batch's parameters, decode only the rows it needs, and get
    exactly the rows ``augment_batch`` makes of the whole batch."""
    images = torch.randint(0, 256, (12, 3, 20, 24), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    config = AugmentConfig(output_size=16, patch_shuffle=2, **mixing)
    whole = augment_batch(images, config, torch.Generator().manual_seed(7)).images
    for rows in (slice(0, 4), slice(4, 8), slice(8, 12)):
        draw = draw_augment(len(images), 20, 24, config, torch.Generator().manual_seed(7))
        needed = draw.needed(rows)
        own = set(range(12)[rows])
        partners = set(draw.mix.perm[list(own)].tolist()) if draw.mix else set()
        assert set(needed.tolist()) == own | partners
        assert torch.equal(draw.apply(images[needed], needed, rows), whole[rows])


def test_the_specs_augment_table_states_the_readers_defaults_and_bounds():
    """spec/format.md section 4's recipe.augment table is a normative copy of AugmentConfig's defaults
    and the limits' bounds; nothing kept it in step (an audit of where defaults live)."""
    import pathlib
    import re

    spec = (pathlib.Path(__file__).resolve().parent.parent / "spec" / "format.md").read_text()
    table = spec[spec.index("| key | type, range | default |"):]
    table = table[:table.index("\n\n")].splitlines()[2:]
    defaults, ranges = {}, {}
    for row in table:
        keys, kind, default = (cell.strip() for cell in row.strip("|").split("|"))
        names = re.findall(r"`(\w+)`", keys)
        values = json.loads(default if default.startswith("[") else f"[{default}]")   # a pair is one value
        values = [values] if default.startswith("[") else values
        defaults.update(zip(names, values, strict=True))
        ranges.update(dict.fromkeys(names, kind))
    config = AugmentConfig()
    assert defaults == {name: list(value) if isinstance(value, tuple) else value
                        for name, value in vars(config).items()}
    assert f"[1, {MAX_IMAGE_SIDE}]" in ranges["output_size"] and f"[0, {MAX_PATCH_SHUFFLE}]" in ranges["patch_shuffle"]
    assert f"(0, 10^{round(math.log10(MAX_MIX_ALPHA))}]" in ranges["cutmix_alpha"] and MAX_MIX_ALPHA == 10 ** 6
