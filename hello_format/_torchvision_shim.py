"""Make ``import torchvision`` (and so ``import open_clip``) work with a CPU-only torch.

The torchvision wheel that matches torch 2.13.0 on PyPI is a CUDA build; next to the CPU build of
torch its C++ ops fail to register and the import dies with ``operator torchvision::nms does not
exist``. Defining the two op schemas it looks up at import time lets the Python side load. We never
call these ops. Where torchvision works, ``torch.ops.torchvision.nms`` exists and this does nothing.
"""

import torch

_OPS = ("nms", "qnms")
_library = None  # kept alive: a torch.library.Library unregisters its ops when collected


def ensure_torchvision_importable() -> None:
    """Define the torchvision op schemas that a CPU torch lacks; a no-op where they exist."""
    global _library
    if _library is not None:
        return
    try:
        torch.ops.torchvision.nms
        return
    except (AttributeError, RuntimeError):
        pass
    _library = torch.library.Library("torchvision", "DEF")
    for op in _OPS:
        _library.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
