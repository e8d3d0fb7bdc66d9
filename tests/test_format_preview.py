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
