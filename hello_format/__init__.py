"""hello_format: read, write and use ``.hello`` label-light distilled dataset bundles."""

from hello_format._torchvision_shim import ensure_torchvision_importable

ensure_torchvision_importable()

__version__ = "0.1.0"
