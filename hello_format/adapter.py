"""A bundle's label generator as a peft adapter folder (``hello export-adapter``, spec section 15).

The folder holds peft's ``adapter_config.json`` + ``adapter_model.safetensors`` (the encoder LoRA,
loadable with ``PeftModel.from_pretrained(clip_model.visual, folder)``) and, beside them,
``hello_head.safetensors``: the head LoRA with what it takes to rebuild the head (class names,
templates, logit scale, base; ``W0`` itself where the bundle stores it, for a base embedded as its image
tower, which ``hello_format.load_base`` gives). The export goes through ``Projector.from_bundle``: it writes only
values that passed the reader's checks, and only after they loaded onto the real base.
"""

from __future__ import annotations

from pathlib import Path

from hello_format import lora
from hello_format.bundle import Bundle
from hello_format.consistency import ENCODER_PREFIX, HEAD_A, HEAD_B, HEAD_WEIGHT
from hello_format.container import write_container
from hello_format.errors import BundleError
from hello_format.files import atomic_folder, check_folder_target, missing_folder, unnamed_folder
from hello_format.manifest import canonical_json
from hello_format.projector import Projector
from hello_format.quantize import is_quantised

HEAD_FILE = "hello_head.safetensors"
HEAD_FORMAT = "hello-head"


def export_adapter(bundle: Bundle, folder: str | Path, *, overwrite: bool = False, checkpoint: str | None = None,
                   allow_remote_base: bool = False) -> list[Path]:
    """Write the adapter folder of ``bundle`` at ``folder`` (new or empty; ``overwrite`` replaces a
    non-empty one) atomically; returns the files written. ``checkpoint`` / ``allow_remote_base``
    as in ``Projector.from_bundle``."""
    if bundle.manifest["lora"] is None:
        raise BundleError(f"{bundle.path}: the bundle has no encoder LoRA (lora: null): there is no peft "
                          "adapter to export")
    folder = Path(folder)
    check_target(folder, overwrite)   # before the projector is built
    inputs = {"the bundle being exported": bundle.path, "the base checkpoint": checkpoint}
    for what, path in inputs.items():
        if overwrite and path is not None and folder.is_dir() and Path(path).resolve().is_relative_to(folder.resolve()):
            raise BundleError(f"{folder} holds {what}, which replacing the folder would delete: choose another folder")
    projector = Projector.from_bundle(bundle, merge=False, checkpoint=checkpoint,
                                      allow_remote_base=allow_remote_base)
    quantised = any(is_quantised(c.dtype) for c in (projector.encoder_lora, projector.head_config.lora) if c)
    dtype = "float32" if quantised else None   # int8/int4 deltas: their dequantised values (exact in float32)
    sections = projector.manifest_sections(dtype)   # else the bundle's own dtypes; checked values only
    tensors = projector.bundle_tensors(dtype)
    head = {name: tensors[name] for name in (HEAD_WEIGHT, HEAD_A, HEAD_B) if name in tensors}   # W0 when stored
    encoder_dtype = next(t.dtype for name, t in tensors.items() if name.startswith(ENCODER_PREFIX))
    metadata = {"format": HEAD_FORMAT, "hello.class_names": canonical_json(projector.class_names),
                "hello.head": canonical_json(sections["head"]), "hello.base": canonical_json(sections["base"])}
    try:
        with atomic_folder(folder, replace=overwrite) as temp:
            lora.write_peft_adapter(temp, projector.visual, encoder_dtype)
            with open(temp / HEAD_FILE, "wb") as file:
                write_container(file, metadata, head)
    except FileExistsError as exc:   # made in the meantime
        raise _occupied(exc, Path(folder)) from None
    except OSError as exc:
        raise BundleError(f"{folder}: write failed: {exc.strerror or exc}") from None
    return [folder / lora.ADAPTER_CONFIG_FILE, folder / lora.ADAPTER_WEIGHTS_FILE, folder / HEAD_FILE]


def check_target(folder: str | Path, overwrite: bool) -> None:
    """BundleError unless an adapter folder can be written at ``folder`` (a named, new or empty folder, or any
    with ``overwrite``, in a folder that exists): checked before the bundle is read and its projector built;
    ``atomic_folder`` checks again as it writes."""
    folder = Path(folder)
    refusal = unnamed_folder(folder) or missing_folder(folder)
    if refusal:
        raise BundleError(f"{folder}: {refusal}")
    try:
        check_folder_target(folder, overwrite)
    except FileExistsError as exc:
        raise _occupied(exc, Path(folder)) from None


def _occupied(exc: FileExistsError, folder: Path) -> BundleError:
    """``check_folder_target``'s refusal with its remedy (a link's is in it): --overwrite replaces a folder only."""
    if folder.is_symlink():
        return BundleError(str(exc))
    return BundleError(f"{exc}: choose a new or empty folder{', or replace it with --overwrite' * folder.is_dir()}")
