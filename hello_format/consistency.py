"""Checks that a schema-valid manifest matches the tensors of its bundle (spec section 7).

Used by the writer before writing and by the reader on open; every failure is a ManifestError
naming the field and the tensor. Only the small tensors (labels, image offsets) are read.
"""

from typing import Callable

import torch

from hello_format.errors import ManifestError
from hello_format.generator import EncoderLoraConfig, HeadConfig
from hello_format.manifest import parse_version
from hello_format.peft_keys import adapted_module, check_match_work, compile_pattern, is_target, pattern_value, peft_module
from hello_format.quantize import SCALES_SUFFIX, SINCE_VERSION, check_stored, is_quantised
from hello_format.targets import TargetPattern
from hello_format.text import listed, quoted_name, shortened

IMAGES_DATA = "images.data"
IMAGES_OFFSETS = "images.offsets"
LABELS = "labels"
ENCODER_PREFIX = "encoder_lora."
HEAD_A, HEAD_B = "head.lora_A", "head.lora_B"
HEAD_WEIGHT = "head.weight"
STORED_HEAD_SINCE = (1, 1)   # the format version that added base.embedded (and with "visual", head.weight)
BASE_PREFIX = "base."
VISUAL_BASE_PREFIX = "base.visual."
DTYPE_NAMES = {"float16": "F16", "bfloat16": "BF16", "float32": "F32"}   # int8/int4: spec 3.3

Shapes = dict[str, tuple[str, tuple[int, ...]]]   # tensor name -> (safetensors dtype, shape)


def check_consistency(where: str, manifest: dict, shapes: Shapes, read: Callable[[str], torch.Tensor]) -> None:
    """Raise ManifestError unless the manifest describes exactly these tensors.

    ``read(name)`` returns a tensor's data (the reader hash-checks it first); it is called only for
    ``labels`` and ``images.offsets`` after their dtype and shape were checked.
    """
    named = set(manifest["integrity"]["tensors"])
    if named != set(shapes):
        missing, extra = sorted(named - set(shapes)), sorted(set(shapes) - named)
        raise ManifestError(f"{where}: field 'integrity.tensors' does not list the file's tensors "
                            f"(listed but absent: {listed(missing) or 'none'}, present but unlisted: "
                            f"{listed(extra) or 'none'})")
    num_classes = len(manifest["class_names"])
    _check_labels(where, manifest, shapes, read, num_classes)
    _check_images(where, manifest["images"], shapes, read)
    lora, head = EncoderLoraConfig.from_manifest(manifest["lora"]), HeadConfig.from_manifest(manifest["head"])
    for field, config in (("lora", lora), ("head.lora", head.lora)):
        if config is not None and is_quantised(config.dtype):
            _check_since(where, manifest, SINCE_VERSION, f"field '{field}.dtype' is {config.dtype}")
    _check_encoder_lora(where, lora, shapes)
    _check_head(where, head, shapes, num_classes)
    _check_base(where, manifest["base"], shapes)
    _check_stored_head(where, manifest, shapes, num_classes)


def _expect(where: str, shapes: Shapes, name: str, dtype: str, shape: tuple | None, why: str) -> None:
    if name not in shapes:
        raise ManifestError(f"{where}: tensor {quoted_name(name)} is missing ({why})")
    got_dtype, got_shape = shapes[name]
    if got_dtype != dtype or (shape is not None and tuple(got_shape) != tuple(shape)):
        want = f"{dtype} {list(shape)}" if shape is not None else dtype
        raise ManifestError(f"{where}: tensor {quoted_name(name)} is {got_dtype} {list(got_shape)}, "
                            f"expected {want} ({why})")


def _check_labels(where, manifest, shapes, read, num_classes) -> None:
    count = manifest["images"]["count"]
    _expect(where, shapes, LABELS, "I64", (count,), f"one label per image, images.count = {count}")
    labels = read(LABELS)
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        bad = int(labels.min()) if int(labels.min()) < 0 else int(labels.max())
        raise ManifestError(f"{where}: tensor 'labels' holds class {bad}, outside [0, {num_classes}) "
                            f"for {num_classes} class_names (if the file is corrupted, hello verify names the tensor)")
    ipc = manifest["ipc"]
    if ipc is not None:
        counts = torch.bincount(labels, minlength=num_classes)
        wrong = (counts != ipc).nonzero().flatten()
        if wrong.numel():
            c = int(wrong[0])
            raise ManifestError(
                f"{where}: field 'ipc' is {ipc} but class {c} ({shortened(manifest['class_names'][c], 40)}) has "
                f"{int(counts[c])} images ({count} images for {num_classes} classes); set ipc to null "
                f"for unequal classes")


def _check_images(where, images, shapes, read) -> None:
    count, geometry = images["count"], (images["channels"], images["height"], images["width"])
    if images["codec"] == "raw":
        _expect(where, shapes, IMAGES_DATA, "U8", (count, *geometry), "codec raw stores [N, C, H, W]")
        if IMAGES_OFFSETS in shapes:
            raise ManifestError(f"{where}: tensor '{IMAGES_OFFSETS}' must not exist with codec raw")
        return
    codec = images["codec"]
    if IMAGES_DATA not in shapes or shapes[IMAGES_DATA][0] != "U8" or len(shapes[IMAGES_DATA][1]) != 1:
        raise ManifestError(f"{where}: tensor '{IMAGES_DATA}' must be U8 [total_bytes] for codec {codec}")
    _expect(where, shapes, IMAGES_OFFSETS, "I64", (count + 1,), f"codec {codec} needs N + 1 offsets")
    offsets = read(IMAGES_OFFSETS)
    total = shapes[IMAGES_DATA][1][0]
    # strictly: an empty blob decodes to nothing, and two million of them cost 28x the file before one was read
    if int(offsets[0]) != 0 or int(offsets[-1]) != total or bool((offsets[1:] <= offsets[:-1]).any()):
        raise ManifestError(f"{where}: tensor '{IMAGES_OFFSETS}' must rise strictly from 0 to {total} "
                            f"(the length of '{IMAGES_DATA}'; every image at least one byte)")


def _check_since(where, manifest: dict, since: tuple[int, int], what: str) -> None:
    """ManifestError when the file's version is below ``since``, the version that added ``what``."""
    version = manifest["format_version"]
    if parse_version(version) < since:
        raise ManifestError(f"{where}: {what}, which needs format_version {'%d.%d' % since} or later "
                            f"(the file says {version})")


def _logical_shapes(where, field: str, config, names: list[str], prefix: str, shapes: Shapes) -> Shapes:
    """Tensor name -> (dtype, shape) as the projector sees the deltas: the stored ones for float
    deltas; for int8/int4 deltas (spec 3.3) the section's ``shapes``, after checking that the value
    and scale tensors match them and that no other tensor is there."""
    if not is_quantised(config.dtype):
        return {name: shapes[name] for name in names}
    values = [name for name in names if not name.endswith(SCALES_SUFFIX)]
    listed = {prefix + key for key in config.shapes}
    unexpected = sorted((set(values) - listed) | {n for n in names if n.endswith(SCALES_SUFFIX)
                                                  and n.removesuffix(SCALES_SUFFIX) not in listed})
    if unexpected:
        raise ManifestError(f"{where}: tensor {quoted_name(unexpected[0])} is not listed in field '{field}.shapes'")
    for key, shape in sorted(config.shapes.items()):
        check_stored(where, prefix + key, shapes, shape, config.dtype, config.group_size)
    return {prefix + key: (config.dtype, tuple(shape)) for key, shape in config.shapes.items()}


def _check_encoder_lora(where, lora: EncoderLoraConfig | None, shapes) -> None:
    names = sorted(n for n in shapes if n.startswith(ENCODER_PREFIX))
    if lora is None:
        if names:
            raise ManifestError(f"{where}: tensor {quoted_name(names[0])} exists but field 'lora' is null")
        return
    if not names:
        raise ManifestError(f"{where}: field 'lora' is set but there are no encoder_lora.* tensors")
    shapes = _logical_shapes(where, "lora", lora, names, ENCODER_PREFIX, shapes)
    names = sorted(shapes)
    dtype, pairs, parsed = DTYPE_NAMES.get(lora.dtype, lora.dtype), {}, {}
    for name in names:
        parsed[name] = peft_module(name[len(ENCODER_PREFIX):])
        if parsed[name] is None:
            raise ManifestError(f"{where}: tensor {quoted_name(name)} is not a peft adapter key "
                                f"(encoder_lora.base_model.model.<module>.lora_A.weight or .lora_B.weight)")
    targets = lora.target_modules
    check_match_work(where, targets, {module for module, _ in parsed.values()})
    targets = TargetPattern(targets) if isinstance(targets, str) else targets
    for name in names:
        module, which = parsed[name]
        if not is_target(module, targets):
            raise ManifestError(f"{where}: tensor {quoted_name(name)}: module {quoted_name(module)} is not matched by "
                                f"field 'lora.target_modules'")
        _expect(where, shapes, name, dtype, None, f"lora.dtype = {lora.dtype}")
        pairs.setdefault(module, {})[which] = name
    adapted = {module: adapted_module(module) for module in pairs}
    for key in ("rank_pattern", "alpha_pattern"):   # matched when the projector is built: refused on open
        check_match_work(f"{where}: field 'lora.{key}'", list(getattr(lora, key)), set(adapted.values()),
                         patterns=True, dot_suffixes=True)
    rank_pattern = [(compile_pattern(key, "lora.rank_pattern"), rank) for key, rank in lora.rank_pattern.items()]
    for module, pair in pairs.items():
        if set(pair) != {"A", "B"}:
            have = next(iter(pair.values()))
            raise ManifestError(f"{where}: tensor {quoted_name(have)} has no lora_{'B' if 'A' in pair else 'A'} partner")
        shape_a, shape_b = shapes[pair["A"]][1], shapes[pair["B"]][1]
        if len(shape_a) not in (2, 4) or len(shape_b) != len(shape_a) or tuple(shape_b[2:]) not in ((), (1, 1)):
            raise ManifestError(f"{where}: module {quoted_name(module)}: lora_A {list(shape_a)} / lora_B {list(shape_b)} are "
                                f"neither Linear ([r, in] / [out, r]) nor Conv2d ([r, in, k, k] / [out, r, 1, 1])")
        rank_a, rank_b = shape_a[0], shape_b[1]
        rank = pattern_value(rank_pattern, adapted[module], lora.r)   # what peft will allocate for it
        if rank_a != rank or rank_b != rank:
            raise ManifestError(f"{where}: module {quoted_name(module)}: lora_A rank {rank_a} and lora_B rank "
                                f"{rank_b} must both be {rank}, the rank lora.r / lora.rank_pattern give it")


def _check_head(where, head: HeadConfig, shapes, num_classes) -> None:
    lora = head.lora
    present = [n for n in (HEAD_A, HEAD_B) if n in shapes]
    scales = [n + SCALES_SUFFIX for n in (HEAD_A, HEAD_B) if n + SCALES_SUFFIX in shapes]
    if lora is None:
        if present or scales:
            raise ManifestError(f"{where}: tensor {quoted_name((present + scales)[0])} exists but field 'head.lora' is null")
        return
    if scales and not is_quantised(lora.dtype):
        raise ManifestError(f"{where}: tensor {quoted_name(scales[0])} exists but field 'head.lora.dtype' is "
                            f"{lora.dtype} (scales go only with int8 / int4 deltas)")
    shapes = _logical_shapes(where, "head.lora", lora, present + scales, "head.", shapes)
    dtype, r = DTYPE_NAMES.get(lora.dtype, lora.dtype), lora.r
    _expect(where, shapes, HEAD_B, dtype, (num_classes, r),
            f"{num_classes} class_names, head.lora.r = {r}, head.lora.dtype = {lora.dtype}")
    _expect(where, shapes, HEAD_A, dtype, None, f"head.lora.dtype = {lora.dtype}")
    shape_a = shapes[HEAD_A][1]
    if len(shape_a) != 2 or shape_a[0] != r:
        raise ManifestError(f"{where}: tensor '{HEAD_A}' is {list(shape_a)}, expected [{r}, d] "
                            f"(head.lora.r = {r})")


def _check_base(where, base, shapes) -> None:
    has_base = any(n.startswith(BASE_PREFIX) for n in shapes)
    if (base["source"] == "embedded") != has_base:
        raise ManifestError(
            f"{where}: field 'base.source' is {base['source']!r} but the file "
            f"{'has' if has_base else 'has no'} base.* tensors (embedded bases store them, others must not)")


def _check_stored_head(where, manifest, shapes, num_classes) -> None:
    """``base.embedded == "visual"``: the base.* tensors are the image tower's, and ``head.weight``
    (F32 [C, d], d as the head LoRA's) replaces the text tower; otherwise no ``head.weight``."""
    base = manifest["base"]
    part = base.get("embedded")
    if part is not None:
        if base["source"] != "embedded":
            raise ManifestError(f"{where}: field 'base.embedded' is {part!r} but base.source is {base['source']!r} "
                                "(only embedded bases say which part they store)")
        _check_since(where, manifest, STORED_HEAD_SINCE, f"field 'base.embedded' is {part!r}")
    visual = part == "visual"
    if not visual:
        if HEAD_WEIGHT in shapes:
            raise ManifestError(f"{where}: tensor '{HEAD_WEIGHT}' exists but field 'base.embedded' is not 'visual' "
                                "(only a bundle that embeds its image tower alone stores its head)")
        return
    outside = next((n for n in sorted(shapes) if n.startswith(BASE_PREFIX) and not n.startswith(VISUAL_BASE_PREFIX)), None)
    if outside is not None:
        raise ManifestError(f"{where}: tensor {quoted_name(outside)} is not part of the image tower, but field 'base.embedded' "
                            f"is 'visual' (only {VISUAL_BASE_PREFIX}* tensors)")
    _expect(where, shapes, HEAD_WEIGHT, "F32", None, "base.embedded = 'visual' stores the text head [C, d]")
    shape = shapes[HEAD_WEIGHT][1]
    lora = HeadConfig.from_manifest(manifest["head"]).lora
    lora_a = (lora.shapes or {}).get("lora_A") if lora is not None and is_quantised(lora.dtype) else \
        shapes[HEAD_A][1] if lora is not None and HEAD_A in shapes else None   # quantised: stored flat
    width = lora_a[-1] if lora_a else None
    if len(shape) != 2 or shape[0] != num_classes or shape[1] < 1 or (width is not None and shape[1] != width):
        want = f"[{num_classes}, {width if width is not None else 'd'}]"
        raise ManifestError(f"{where}: tensor '{HEAD_WEIGHT}' is {list(shape)}, expected {want} "
                            f"({num_classes} class_names{', d as head.lora_A' if width is not None else ''})")
