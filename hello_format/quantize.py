"""Quantised label-generator deltas (spec section 3.3): int8 and int4 values with one fp16 scale per
group of ``group_size`` consecutive values of the flattened (C-order) tensor; symmetric, no offset.

The one home of quantising and dequantising: writers quantise through ``quantise`` (by way of
``hello_format.requantize.store_deltas``, used by the builder and ``hello requantize``; the
calibration of ``hello_format.calibration`` trains through ``round_trip``, the same values); the
reader dequantises through ``dequantise`` (once, when the projector's LoRA state is read), after
``check_stored`` checked the stored sizes against the manifest's shapes.
"""

from __future__ import annotations

import math

import torch

from hello_format.errors import BundleError, ManifestError
from hello_format.limits import MAX_DELTA_SCALE
from hello_format.text import quoted_name

QMAX = {"int8": 127, "int4": 7}                  # writers store values in [-QMAX, QMAX]
STORED_DTYPE = {"int8": "I8", "int4": "U8"}      # safetensors dtype of the value tensor
SCALES_SUFFIX = ".scales"                        # F16 [groups], beside each value tensor
DELTA_DTYPES = {"fp16": "float16", "int8": "int8", "int4": "int4"}   # --delta-dtype -> manifest dtype
BITS = {"float32": 32, "float16": 16, "bfloat16": 16, "int8": 8, "int4": 4}
SINCE_VERSION = (1, 1)                           # the format version that added quantised deltas


def is_quantised(dtype: str | None) -> bool:
    return dtype in QMAX


def storage_text(config) -> str:
    """How a ``lora`` / ``head.lora`` section's deltas are stored, for people: ``float16``, ``int4 (group size 64)``."""
    return f"{config.dtype} (group size {config.group_size})" if is_quantised(config.dtype) else config.dtype


def stored_length(count: int, dtype: str) -> int:
    """Elements of the value tensor for ``count`` values: one int8 each, two int4 per byte."""
    return count if dtype == "int8" else (count + 1) // 2


def group_count(count: int, group_size: int) -> int:
    return -(-count // group_size)


def quantise(tensor: torch.Tensor, dtype: str, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(values, scales)``: I8 ``[n]`` (int8) or U8 ``[ceil(n / 2)]`` (int4, first value in the low
    nibble, stored as q + 8), and F16 ``[ceil(n / group_size)]``: scale = fp16(max|x| / QMAX),
    q = round-half-even(x / scale) clamped to [-QMAX, QMAX] (0 where the scale is 0)."""
    q, scales = _levels(tensor.detach().to("cpu", torch.float32).reshape(-1), dtype, group_size)
    if not bool(torch.isfinite(scales).all()) or (len(scales) and float(scales.max()) > MAX_DELTA_SCALE):
        raise BundleError(f"a delta holds values that are not finite or beyond {MAX_DELTA_SCALE * QMAX[dtype]:g}: "
                          f"it cannot be stored as {dtype}")
    if dtype == "int8":
        return q.contiguous(), scales
    nibbles = (q + 8).to(torch.uint8)
    if len(q) % 2:
        nibbles = torch.cat([nibbles, torch.zeros(1, dtype=torch.uint8)])   # the unused high nibble is 0
    return (nibbles[0::2] | (nibbles[1::2] << 4)).contiguous(), scales


def round_trip(tensor: torch.Tensor, dtype: str, group_size: int) -> torch.Tensor:
    """What a reader dequantises from ``tensor`` stored as ``dtype``, computed on its device without
    packing: float32, equal to ``dequantise(*quantise(tensor, ...))`` (the calibration's forward)."""
    q, scales = _levels(tensor.detach().float().reshape(-1), dtype, group_size)
    return (q.float() * scales.float().repeat_interleave(group_size)[: len(q)]).reshape(tensor.shape)


def grouped(flat: torch.Tensor, group_size: int) -> torch.Tensor:
    """Float32 values ``flat`` ``[n]`` as ``[groups, group_size]``, the last group padded with zeros."""
    count, groups = flat.numel(), group_count(flat.numel(), group_size)
    padded = torch.zeros(groups * group_size, device=flat.device)
    padded[:count] = flat
    return padded.reshape(groups, group_size)


def _levels(flat: torch.Tensor, dtype: str, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """int8 levels ``[n]`` and fp16 scales ``[groups]`` of float32 values ``flat`` (section 3.3)."""
    qmax, count = QMAX[dtype], flat.numel()
    grouped_values = grouped(flat, group_size)
    scales = (grouped_values.abs().amax(dim=1) / qmax).to(torch.float16)
    divisor = scales.float()[:, None]
    q = torch.where(divisor > 0, torch.round(grouped_values / divisor.masked_fill(divisor == 0, 1.0)), 0.0)
    return q.clamp(-qmax, qmax).to(torch.int8).reshape(-1)[:count], scales


def check_scales(where: str, name: str, scales: torch.Tensor) -> None:
    """BundleError unless every scale is finite and in [0, MAX_DELTA_SCALE]."""
    values = scales.float()
    if not bool(((values >= 0) & (values <= MAX_DELTA_SCALE)).all()):   # NaN fails both comparisons
        raise BundleError(f"{where}: tensor {quoted_name(name)} holds a scale that is negative, above {MAX_DELTA_SCALE:g} "
                          "or not finite; rebuild or re-download the bundle")


def dequantise(where: str, name: str, values: torch.Tensor, scales: torch.Tensor, shape, dtype: str,
               group_size: int) -> torch.Tensor:
    """The float32 tensor of logical ``shape`` that ``values`` and ``scales`` store: q * scale (exact)."""
    count = math.prod(shape)
    if values.dim() != 1 or values.numel() != stored_length(count, dtype) or \
            scales.dim() != 1 or scales.numel() != group_count(count, group_size):
        raise ManifestError(f"{where}: tensor {quoted_name(name)} does not hold {count} {dtype} values in groups of {group_size}")
    check_scales(where, name + SCALES_SUFFIX, scales)
    if dtype == "int8":
        q = values.view(torch.int8).float()
    else:
        packed = values.view(torch.uint8)
        q = torch.stack([packed & 0xF, packed >> 4], dim=1).reshape(-1)[:count].float() - 8
    per_value = scales.float().repeat_interleave(group_size)[:count]
    return (q * per_value).reshape(tuple(shape))


def check_stored(where: str, name: str, shapes: dict, logical_shape, dtype: str, group_size: int) -> None:
    """ManifestError unless ``name`` and ``name.scales`` are the right dtype and size for a quantised
    tensor of ``logical_shape`` (``shapes``: tensor name -> (safetensors dtype, shape), from the header)."""
    count = math.prod(logical_shape)
    wanted = {name: (STORED_DTYPE[dtype], (stored_length(count, dtype),)),
              name + SCALES_SUFFIX: ("F16", (group_count(count, group_size),))}
    for tensor, (stored_dtype, shape) in wanted.items():
        if tensor not in shapes:
            raise ManifestError(f"{where}: tensor {quoted_name(tensor)} is missing ({dtype} delta of shape {list(logical_shape)})")
        if shapes[tensor] != (stored_dtype, shape):
            got_dtype, got_shape = shapes[tensor]
            raise ManifestError(f"{where}: tensor {quoted_name(tensor)} is {got_dtype} {list(got_shape)}, expected {stored_dtype} "
                                f"{list(shape)} ({dtype} delta of shape {list(logical_shape)}, group size {group_size})")
