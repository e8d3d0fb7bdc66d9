"""Deltas stored in a chosen dtype: ``store_deltas`` (the builder's and ``hello requantize``'s one way
to write them) and ``requantize``, which rewrites a bundle with its deltas in another dtype without
rebuilding.

Everything but the deltas is copied as stored (images, labels, base, unknown tensors and fields);
the ``lora`` and ``head.lora`` sections change only in ``dtype``, ``group_size`` and ``shapes``, and
``provenance.fidelity.quantisation`` says how quantised deltas were chosen (rounded, or calibrated:
``hello_format.calibration``, which needs the base, so only then is the projector built), and
``provenance.requantized`` lists each conversion (the build's recorded options stay the build's).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import pathlib
from dataclasses import dataclass

import torch

from hello_format import __version__
from hello_format.bundle import Bundle, write_stored
from hello_format.calibration import CalibrationConfig, calibrate, check_cost
from hello_format.consistency import ENCODER_PREFIX, HEAD_A, HEAD_B
from hello_format.errors import BundleError, HelloError
from hello_format.files import (atomic_target, cannot_write_in, missing_folder, names_a_folder, replace_refusal,
                                same_file)
from hello_format.generator import DELTA_GROUP_SIZE, EncoderLoraConfig, HeadConfig, rewrite_section
from hello_format.hub.resolver import open_bundle
from hello_format.manifest import FORMAT_VERSION, parse_version
from hello_format.quantize import BITS, SCALES_SUFFIX, SINCE_VERSION, is_quantised, quantise
from hello_format.recipe import Recipe


@dataclass(frozen=True)
class Requantized:
    """What ``requantize`` wrote: the path, the deltas' dtypes before and after, the generator's bytes,
    and the calibration's report (None when the values were rounded or are float)."""
    path: pathlib.Path
    before: tuple[str, ...]            # the dtypes of the sections that have deltas (encoder, head)
    after: str
    generator_bytes_before: int
    generator_bytes_after: int
    calibration: dict | None = None


def requantize(source, target, dtype: str, group_size: int = DELTA_GROUP_SIZE, *, overwrite: bool = False,
               allow_upcast: bool = False, calibration: CalibrationConfig | None = None, checkpoint: str | None = None,
               allow_remote_base: bool = False, progress: bool = False) -> Requantized:
    """Write ``source`` (a path or ``hf://`` URI, verified first: its hashes are recomputed, so corruption
    must not pass) to ``target`` with every delta stored as ``dtype`` (a float dtype name, ``int8`` or ``int4``).

    ``target`` must not exist unless ``overwrite`` (also when it is ``source``); it is replaced,
    atomically, only by a file that reopens (``_write_reopened``). Storing int8/int4 deltas in a wider
    dtype keeps their dequantised values, not the precision they were made from: refused unless
    ``allow_upcast``. ``calibration`` (int8/int4 only; None or 0 steps: round to nearest): calibrate the
    stored values on the bundle's images (``hello_format.calibration``), with the projector rebuilt as
    ``Projector.from_bundle`` does (``checkpoint``, ``allow_remote_base``).
    """
    if dtype not in BITS:
        raise BundleError(f"cannot store deltas as {dtype!r}: one of {', '.join(BITS)}")
    calibrating = calibration is not None and calibration.steps > 0
    if calibrating and not is_quantised(dtype):
        raise BundleError(f"calibration chooses int8/int4 values; {dtype} deltas are stored as they are")
    if not os.fspath(target):   # pathlib's current folder: " is a folder"
        raise BundleError("the output path is empty: name the bundle file to write")
    if names_a_folder(target):
        raise BundleError(f"{os.fspath(target)} is a folder: name the bundle file to write "
                          f"(e.g. {os.path.join(target, 'NAME.hello')})")
    target = pathlib.Path(os.fspath(target))
    refusal = replace_refusal(target, overwrite, " (it is the input bundle)" if same_file(source, target) else "")
    if refusal:
        raise BundleError(refusal)
    _check_writable(target)   # before the calibration's minutes, not after
    with open_bundle(source, verify=True) as bundle:
        manifest = bundle.manifest
        before = _stored_dtypes(manifest)
        upcast = [d for d in before if is_quantised(d) and BITS[dtype] > BITS[d]]
        if upcast and not allow_upcast:
            raise BundleError(f"{bundle.path} stores {upcast[0]} deltas: as {dtype} they would be the dequantised "
                              f"{upcast[0]} values (no precision comes back, the file grows); pass --allow-upcast to write them")
        deltas = {**{ENCODER_PREFIX + key: t for key, t in bundle.lora_state_dict().items()},
                  **{f"head.{key}": t for key, t in bundle.head_state_dict().items()}}
        if not deltas:   # a file written anyway would only say it holds what it does not (and need format 1.1)
            raise BundleError(f"{bundle.path} stores no LoRA deltas (the zero-shot projector): there is nothing to "
                              f"{'calibrate' if calibrating else 'requantize'}")
        calibrated = None
        if calibrating:
            deltas, calibrated = _calibrated(bundle, dtype, group_size, calibration, checkpoint=checkpoint,
                                             allow_remote_base=allow_remote_base, progress=progress)
        manifest, stored = store_deltas(manifest, deltas, dtype, group_size)
        manifest = record_quantisation(manifest, dtype, group_size, calibrated)
        manifest = _record_conversion(manifest, before, dtype, group_size)
        if is_quantised(dtype) and parse_version(manifest["format_version"]) < SINCE_VERSION:
            manifest["format_version"] = FORMAT_VERSION
        kept = {name: bundle.tensor(name) for name in bundle.tensor_names if not _is_delta(name)}
        before_bytes = bundle.storage().label_generator_bytes
        after_bytes = _write_reopened(target, manifest, {**kept, **stored})
    return Requantized(target, before, dtype, before_bytes, after_bytes, calibrated)


def _check_writable(target: pathlib.Path) -> None:
    """BundleError unless a file can be made in ``target``'s folder (the temp file the write will make)."""
    missing = missing_folder(target)
    if missing:
        raise BundleError(f"{target}: {missing}")
    reason = cannot_write_in(target.parent)
    if reason:
        raise BundleError(f"{target}: cannot write there ({reason})")


def _write_reopened(target: pathlib.Path, manifest: dict, tensors: dict[str, torch.Tensor]) -> int:
    """Write the bundle to a temp file beside ``target`` (files.atomic_target), reopen it as a reader
    will, and only then rename it over ``target``: a file the reader refuses is never left at
    ``target`` (nor replaces the input when ``target`` is it). Returns its label generator's bytes;
    an error names ``target``, not the temp file."""
    try:
        with atomic_target(target) as temp:
            try:
                write_stored(temp, manifest, tensors)
                with Bundle.open(temp) as written:
                    return written.storage().label_generator_bytes
            except HelloError as exc:
                raise type(exc)(str(exc).replace(str(temp), str(target))) from None
    except OSError as exc:
        raise BundleError(f"{target}: write failed: {exc.strerror or exc}") from None


def _calibrated(bundle: Bundle, dtype: str, group_size: int, config: CalibrationConfig, *, progress: bool,
                **base) -> tuple[dict, dict]:
    """The calibrated float deltas of ``bundle`` (keys as ``store_deltas`` takes them) and the report;
    ``base``: ``Projector.from_bundle``'s base arguments."""
    from hello_format.base import image_hw
    from hello_format.projector import Projector   # builds the base: only when calibrating

    augment = Recipe.from_manifest(bundle.manifest["recipe"]).augment
    check_cost(config, bundle.image_shape, augment, image_hw(bundle.manifest["base"]["image_size"]), bundle.file_size,
               str(bundle.path))
    projector = Projector.from_bundle(bundle, merge=False, progress=progress, **base)   # its text-head bar too
    # decoded as drawn (ImageNet-1K at IPC 50: the defaults draw about 55%), never read through the mapping
    try:
        report = calibrate(projector, bundle.lazy_images(), augment, dtype, group_size, config, progress=progress)
    except BundleError as exc:   # a lazy image's error names the file already
        message = str(exc)
        raise type(exc)(message if message.startswith(f"{bundle.path}: ") else f"{bundle.path}: {message}") from None
    tensors = projector.bundle_tensors("float32")
    return {name: tensor for name, tensor in tensors.items() if _is_delta(name)}, report


def record_quantisation(manifest: dict, dtype: str, group_size: int | None, calibrated: dict | None) -> dict:
    """``manifest`` with ``provenance.fidelity.quantisation`` saying how deltas stored as ``dtype``
    were chosen: ``calibrate``'s report, or rounded to nearest (``steps`` 0); none for float deltas."""
    provenance = dict(manifest["provenance"])
    fidelity = {key: value for key, value in (provenance.get("fidelity") or {}).items() if key != "quantisation"}
    if is_quantised(dtype):
        fidelity["quantisation"] = calibrated or {"dtype": dtype, "group_size": group_size, "steps": 0}
    if fidelity or "fidelity" in provenance:
        provenance["fidelity"] = fidelity
    return {**manifest, "provenance": provenance}


def _record_conversion(manifest: dict, before: tuple[str, ...], dtype: str, group_size: int) -> dict:
    """``manifest`` with this conversion appended to ``provenance.requantized``: the build's recorded
    options (``provenance.builder.options``) stay the build's, so this says what changed since."""
    provenance = dict(manifest["provenance"])
    record = {"from": list(before), "to": dtype, "group_size": group_size if is_quantised(dtype) else None,
              "version": __version__}
    provenance["requantized"] = [*provenance.get("requantized", []), record]
    return {**manifest, "provenance": provenance}


def _stored_dtypes(manifest: dict) -> tuple[str, ...]:
    lora, head = EncoderLoraConfig.from_manifest(manifest["lora"]), HeadConfig.from_manifest(manifest["head"]).lora
    return tuple(config.dtype for config in (lora, head) if config is not None)


def _is_delta(name: str) -> bool:
    return name.startswith(ENCODER_PREFIX) or name.removesuffix(SCALES_SUFFIX) in (HEAD_A, HEAD_B)


def store_deltas(manifest: dict, deltas: dict[str, torch.Tensor], dtype: str,
                 group_size: int | None = None) -> tuple[dict, dict[str, torch.Tensor]]:
    """``manifest`` and the stored tensors for ``deltas`` (float ``encoder_lora.<peft key>`` and
    ``head.lora_A`` / ``head.lora_B`` tensors) kept as ``dtype`` (a float dtype name, ``int8`` or
    ``int4``): the ``lora`` and ``head.lora`` sections say so; their other fields, known or not, are kept.
    Tensors in ``deltas`` that are not deltas (the stored text head ``head.weight``) are returned as given."""
    if is_quantised(dtype) and not (isinstance(group_size, int) and group_size >= 1):
        raise BundleError(f"storing deltas as {dtype} needs a group size of at least 1, got {group_size!r}")
    manifest = copy.deepcopy(manifest)
    stored = {name: tensor for name, tensor in deltas.items() if not _is_delta(name)}
    lora = EncoderLoraConfig.from_manifest(manifest["lora"])
    if lora is not None:
        encoder = {name.removeprefix(ENCODER_PREFIX): t for name, t in deltas.items() if name.startswith(ENCODER_PREFIX)}
        config, tensors = _store(lora, encoder, dtype, group_size)
        manifest["lora"] = rewrite_section(manifest["lora"], config)
        stored.update({ENCODER_PREFIX + key: t for key, t in tensors.items()})
    head = HeadConfig.from_manifest(manifest["head"])
    if head.lora is not None:
        weights = {name.split(".", 1)[1]: deltas[name] for name in (HEAD_A, HEAD_B)}   # shapes keys: lora_A, lora_B
        config, tensors = _store(head.lora, weights, dtype, group_size)
        manifest["head"] = {**manifest["head"], "lora": rewrite_section(manifest["head"]["lora"], config)}
        stored.update({f"head.{key}": t for key, t in tensors.items()})
    return manifest, stored


def _store(config, deltas: dict[str, torch.Tensor], dtype: str, group_size: int | None):
    """(config, tensors) of one section's deltas stored as ``dtype``."""
    if not is_quantised(dtype):
        torch_dtype = getattr(torch, dtype)
        tensors = {key: t.detach().to("cpu", torch_dtype).contiguous() for key, t in deltas.items()}
        for key, tensor in tensors.items():   # finite values beyond the dtype's range would be stored as inf
            if not bool(torch.isfinite(tensor).all()) and bool(torch.isfinite(deltas[key]).all()):
                raise BundleError(f"a delta holds values beyond {torch.finfo(torch_dtype).max:g}, the largest {dtype}: "
                                  f"it cannot be stored as {dtype}")
        return dataclasses.replace(config, dtype=dtype, group_size=None, shapes=None), tensors
    tensors = {}
    for key, tensor in deltas.items():
        tensors[key], tensors[key + SCALES_SUFFIX] = quantise(tensor, dtype, group_size)
    shapes = {key: list(tensor.shape) for key, tensor in deltas.items()}
    return dataclasses.replace(config, dtype=dtype, group_size=group_size, shapes=shapes), tensors
