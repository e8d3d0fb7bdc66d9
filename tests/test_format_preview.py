"""preview.render_grid: one row per class, images at integer scale, optional captions."""

import pytest
import torch

from hello_format.hub.preview import render_grid

RED = (255, 0, 0)


def solid(n, color, channels=3, size=8):
    planes = torch.tensor(color[:channels], dtype=torch.uint8).view(1, channels, 1, 1)
    return planes.expand(n, channels, size, size).clone()


def count(image, color):
    return sum(1 for pixel in image.getdata() if pixel == color)


def test_every_image_is_drawn_once_at_integer_scale():
    images = torch.cat([solid(2, RED), solid(4, (0, 0, 255))])
    labels = torch.tensor([0, 0, 1, 1, 1, 1])
    grid = render_grid(images, labels, ["red", "blue"], per_class=3)
    assert count(grid, RED) == 2 * 64 * 64            # 8x8 shown at 64x64
    assert count(grid, (0, 0, 255)) == 3 * 64 * 64    # per_class caps the row


def test_captions_add_lines_and_must_match_images():
    images, labels = solid(2, RED), torch.tensor([0, 1])
    plain = render_grid(images, labels, ["a", "b"])
    captioned = render_grid(images, labels, ["a", "b"], captions=["cat 0.91\ndog 0.05", "dog 0.80\ncat 0.10"])
    assert captioned.height > plain.height and captioned.width == plain.width
    with pytest.raises(ValueError, match="captions has 1 entries for 2 images"):
        render_grid(images, labels, ["a", "b"], captions=["x"])


def test_a_caption_wider_than_its_image_widens_the_column_instead_of_being_cut():
    """64-pixel digits showed "100% ei…": the predicted class could not be read."""
    images, labels = solid(1, RED), torch.tensor([0])
    grid = render_grid(images, labels, ["a"], captions=["100% airplane"])
    caption_rows = range(64 + 4, grid.height)   # below the image (drawn from the top padding)
    ink = [x for y in caption_rows for x in range(grid.width) if sum(grid.getpixel((x, y))) < 200]
    assert max(ink) - min(ink) > 64   # whole: "100% airplane" is wider than the 64-pixel image
    assert grid.width > render_grid(images, labels, ["a"]).width


def test_grayscale_and_empty_classes():
    grid = render_grid(solid(3, (200,), channels=1), torch.tensor([0, 0, 2]), ["a", "unused", "c"])
    assert grid.mode == "RGB" and count(grid, (200, 200, 200)) == 3 * 64 * 64


def test_a_sheet_larger_than_an_image_viewer_opens_is_refused_before_it_is_drawn():
    """3,000 classes of 256-px images, one each: a 516 x 780,004 sheet (400M pixels, 1.2 GB) was drawn;
    its size is known from the labels and the image size alone."""
    from hello_format.hub.preview import MAX_SHEET_PIXELS, sheet_size

    images = torch.zeros(1, 3, 256, 256, dtype=torch.uint8).expand(3_000, -1, -1, -1)   # no memory
    labels, names = torch.arange(3_000), [f"n{c:08d}" for c in range(3_000)]
    width, height = sheet_size(images.shape, labels, names)
    assert width * height > MAX_SHEET_PIXELS
    with pytest.raises(ValueError, match=f"the sheet would be {width:,}x{height:,} pixels, more than"):
        render_grid(images, labels, names)
    small = render_grid(solid(4, RED), torch.tensor([0, 0, 1, 5]), ["a", "b", "c"], per_class=1)
    assert small.size == sheet_size((4, 3, 8, 8), torch.tensor([0, 0, 1, 5]), ["a", "b", "c"], per_class=1)
    assert count(small, RED) == 2 * 64 * 64   # one a class, class 5 (no name) left out
