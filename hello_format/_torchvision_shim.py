"""Make ``import torchvision`` (and so ``import open_clip``) work with a CPU-only torch.

The torchvision wheel that matches torch 2.13.0 on PyPI is a CUDA build; next to the CPU build of
torch its C++ ops fail to load and the import dies with ``operator torchvision::nms does not
exist``. Defining the two op schemas it looks up at import time lets the Python side load. We never
call these ops. Where torchvision's ops library loads (a matching torch), it is loaded here, as
torchvision itself would load it, and nothing is defined: a schema defined first would make that
library's own registration abort the process.
"""

import importlib.machinery
import importlib.util

import torch

_OPS = ("nms", "qnms")
_library = None  # kept alive: a torch.library.Library unregisters its ops when collected


def ensure_torchvision_importable() -> None:
    """Define the torchvision op schemas that a CPU torch lacks; a no-op where torchvision's ops load."""
    global _library
    if _library is not None or _ops_exist() or _load_torchvision_ops():
        return
    _library = torch.library.Library("torchvision", "DEF")
    for op in _OPS:
        _library.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")


def _ops_exist() -> bool:
    try:
        torch.ops.torchvision.nms
        return True
    except (AttributeError, RuntimeError):
        return False


def _load_torchvision_ops() -> bool:
    """Load torchvision's ``_C`` extension the way ``torchvision.extension`` does; whether its ops now exist
    (False where torchvision is absent or its library cannot load next to this torch)."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return False
    loader = (importlib.machinery.ExtensionFileLoader, importlib.machinery.EXTENSION_SUFFIXES)
    extension = importlib.machinery.FileFinder(spec.submodule_search_locations[0], loader).find_spec("_C")
    if extension is None:
        return False
    try:
        torch.ops.load_library(extension.origin)
    except OSError:
        return False
    return _ops_exist()
