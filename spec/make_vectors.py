"""Generate the conformance vectors in spec/vectors/ (deterministic: same bytes on every run).

    python spec/make_vectors.py [OUTDIR]      # default: spec/vectors next to this script

Each vector is a tiny .hello file; expected.json maps it to "valid" or to the error class and a
substring of the message (spec section 13). The base section is fake but schema-valid, except in the
label vectors (labels_*.hello), which embed a real image tower; labels.json gives their logits.
"""

import io
import json
import pathlib
import struct
import sys
import zlib

import torch
from PIL import Image

import hello_format  # noqa: F401  (sets up imports before anything else)
import open_clip
from hello_format.base import fingerprint_state
from hello_format.bundle import MANIFEST_KEY, MANIFEST_SHA_KEY, Bundle, _image_tensors, write_bundle
from hello_format.digests import buffer_sha256
from hello_format.container import tensor_bytes, write_container
from hello_format.generator import EncoderLoraConfig, HeadConfig, HeadLoraConfig
from hello_format.manifest import canonical_json, manifest_sha256
from hello_format.recipe import Recipe
from hello_format.requantize import store_deltas

CLASS_NAMES = ["cat", "dog", "café"]
IPC = 2
ROOT = "encoder_lora.base_model.model."


def _pattern(shape, seed: int, dtype=torch.float16) -> torch.Tensor:
    """Deterministic, platform-independent pseudo-random values in [-0.5, 0.5)."""
    n = torch.arange(1, 1 + int(torch.tensor(shape).prod()), dtype=torch.int64)
    return (((n * (7919 + seed)) % 101).to(torch.float32) / 101 - 0.5).reshape(shape).to(dtype)


def sample_images(channels: int = 3, size: int = 8) -> torch.Tensor:
    """IPC x C smooth uint8 images [N, channels, size, size]."""
    n = IPC * len(CLASS_NAMES)
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    images = torch.stack([torch.stack([(x * 16 + y * 8 + i * 20 + c * 50) % 256 for c in range(channels)])
                          for i in range(n)])
    return images.to(torch.uint8)


def sample_labels() -> torch.Tensor:
    return torch.arange(IPC * len(CLASS_NAMES)) % len(CLASS_NAMES)


def sample_tensors(num_classes: int = len(CLASS_NAMES), width: int = 8, r: int = 2, r_head: int = 4) -> dict:
    """peft-style LoRA of a fake 1-block ViT (attn = MultiheadAttention, mlp.c_fc) plus a head LoRA."""
    block = "transformer.resblocks.0."
    shapes = {
        f"{ROOT}{block}attn.lora_A.weight": (r, width),
        f"{ROOT}{block}attn.lora_B.weight": (3 * width, r),
        f"{ROOT}{block}attn.base_layer.out_proj.lora_A.weight": (r, width),
        f"{ROOT}{block}attn.base_layer.out_proj.lora_B.weight": (width, r),
        f"{ROOT}{block}mlp.c_fc.lora_A.weight": (r, width),
        f"{ROOT}{block}mlp.c_fc.lora_B.weight": (2 * width, r),
        "head.lora_A": (r_head, width),
        "head.lora_B": (num_classes, r_head),
    }
    return {name: _pattern(shape, seed) for seed, (name, shape) in enumerate(sorted(shapes.items()))}


def sample_manifest(**overrides) -> dict:
    """A complete, schema-valid manifest (minus images / integrity, which the writer fills)."""
    manifest = {
        "format_version": "1.0",
        "class_names": list(CLASS_NAMES),
        "ipc": IPC,
        "base": {"source": "local", "architecture": "hello-tiny-vit", "pretrained": None,
                 "checkpoint": "hello-tiny-vit.safetensors", "config": None,
                 "fingerprint": "sha256:" + "0" * 64, "image_size": 32,
                 "mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711]},
        "lora": EncoderLoraConfig(target_modules=r"transformer\.resblocks\.\d+\.(attn|mlp\.c_fc|mlp\.c_proj)",
                                  r=2, lora_alpha=4).to_manifest(),
        "head": HeadConfig(templates=("a photo of a {}.", "a blurry photo of a {}."), logit_scale=100.0,
                           lora=HeadLoraConfig(r=4, lora_alpha=4)).to_manifest(),
        # the default recipe with a partial augment object: a reader fills in the absent settings
        "recipe": {**Recipe().to_manifest(), "augment": {"scale": [0.08, 1.0], "hflip": 0.5}},
        "provenance": {"source_dataset": "conformance vectors", "teacher": "none",
                       "builder": {"name": "spec/make_vectors.py", "version": "1", "options": {}},
                       "timings": {}},
    }
    manifest.update(overrides)
    return manifest


def write_unchecked(path: pathlib.Path, manifest: dict, tensors: dict) -> None:
    """Write a container with a correctly hashed manifest but no validation (for invalid vectors)."""
    manifest = dict(manifest, integrity={"algorithm": "sha256", "tensors": {
        name: buffer_sha256(tensor_bytes(t)) for name, t in sorted(tensors.items())}})
    text = canonical_json(manifest)
    with open(path, "wb") as file:
        write_container(file, {"format": "hello", MANIFEST_KEY: text, MANIFEST_SHA_KEY: manifest_sha256(text)},
                        tensors)


def split_header(data: bytes) -> tuple[dict, bytes]:
    """(header JSON, tensor data) of a safetensors file's bytes."""
    (length,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + length]), data[8 + length:]


def join_header(header: dict, body: bytes) -> bytes:
    """Re-encode an edited header with the canonical layout (keeps the given offsets)."""
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + body


def _edit_header(data: bytes, edit) -> bytes:
    header, body = split_header(data)
    edit(header)
    return join_header(header, body)


def _flip_in_manifest(data: bytes) -> bytes:
    position = data.index(b'\\"ipc\\":2') + len(b'\\"ipc\\":')   # the manifest string is escaped JSON
    return data[:position] + b"3" + data[position + 1:]


def _flip_in_tensor(data: bytes, name: str) -> bytes:
    header, _ = split_header(data)
    start = 8 + struct.unpack("<Q", data[:8])[0] + header[name]["data_offsets"][0]
    return data[:start] + bytes([data[start] ^ 0xFF]) + data[start + 1:]


def _set_offsets(name: str, begin: int, end: int):
    def edit(header):
        header[name]["data_offsets"] = [begin, end]
    return edit


def _with_prior(head: dict, weight: float = 0.25) -> dict:
    return dict(head, prior_weight=weight)


def _feature_vectors(out: pathlib.Path, manifest: dict, tensors: dict) -> dict:
    """Must-understand features (format 2.0, section 5): each file a reader must refuse."""
    mixed = dict(manifest, head=_with_prior(manifest["head"]))
    cases = {
        "unknown_required_feature.hello": (dict(mixed, format_version="2.0", requires=["prior_mix", "future_feature"]),
                                           "UnsupportedVersionError", "'future_feature'"),
        "requires_missing_in_2_0.hello": (dict(mixed, format_version="2.0"), "ManifestError", "'requires' is missing"),
        "prior_weight_in_1_1.hello": (dict(mixed, format_version="1.1"), "ManifestError", "needs format_version 2.0"),
        "prior_weight_not_required.hello": (dict(mixed, format_version="2.0", requires=[]), "ManifestError",
                                            "needs format_version 2.0"),
    }
    expected = {}
    for name, (bad, error, match) in cases.items():
        write_unchecked(out / name, bad, tensors)
        expected[name] = {"error": error, "match": match}
    return expected


def generate(out: pathlib.Path) -> dict:
    """Write every vector into ``out``; return the expected outcomes."""
    out.mkdir(parents=True, exist_ok=True)
    images, labels, tensors = sample_images(), sample_labels(), sample_tensors()
    expected = {}

    def valid(name, **kwargs):
        write_bundle(out / name, kwargs.pop("manifest", sample_manifest()), kwargs.pop("images", images),
                     labels, {**kwargs.pop("tensors", tensors), **kwargs.pop("extra", {})}, **kwargs)
        expected[name] = "valid"

    def invalid(name, data: bytes, error: str, match: str):
        (out / name).write_bytes(data)
        expected[name] = {"error": error, "match": match}

    valid("valid_png.hello")
    valid("valid_raw.hello", codec="raw")
    valid("valid_gray_png.hello", images=sample_images(channels=1))
    valid("valid_minor_version.hello", manifest=sample_manifest(
        format_version="1.7", future_section={"added_in": "1.7"}))
    # format 1.1: int4 deltas in groups of 5 (so the last group of each 16-value delta is short)
    int4_manifest, int4_tensors = store_deltas(sample_manifest(format_version="1.1"), tensors, "int4", 5)
    valid("valid_int4.hello", manifest=int4_manifest, tensors=int4_tensors)
    # format 2.0: labels mixed with the zero-shot projector, a feature listed in requires
    valid("valid_prior_mix.hello", manifest=sample_manifest(format_version="2.0", requires=["prior_mix"],
                                                            head=_with_prior(sample_manifest()["head"])))
    raw = (out / "valid_raw.hello").read_bytes()
    png = (out / "valid_png.hello").read_bytes()

    invalid("not_safetensors.hello", b"GIF89a, or any file that is not a bundle at all\n",
            "HeaderError", "not a .hello/safetensors file")
    invalid("truncated.hello", raw[:-40], "HeaderError", "file truncated?")
    invalid("header_length_too_large.hello", struct.pack("<Q", len(raw) * 2) + raw[8:],
            "HeaderError", "header length")
    invalid("header_not_json.hello", raw[:8] + b"[" + raw[9:], "HeaderError", "not valid JSON")
    labels_at = split_header(raw)[0]["labels"]["data_offsets"]
    invalid("overlapping_offsets.hello", _edit_header(raw, _set_offsets(
        "labels", labels_at[0] - 8, labels_at[1] - 8)), "HeaderError", "overlaps")
    invalid("out_of_range_offsets.hello", _edit_header(raw, _set_offsets(
        "labels", labels_at[0] + 8, labels_at[1] + 8)), "HeaderError", "exceed")
    invalid("shape_vs_bytes.hello", _edit_header(raw, lambda h: h["labels"].update(shape=[5])),
            "HeaderError", "needs 40 bytes")
    invalid("manifest_byte_flipped.hello", _flip_in_manifest(raw), "IntegrityError", "manifest")
    invalid("tensor_byte_flipped.hello", _flip_in_tensor(raw, "head.lora_B"), "IntegrityError",
            "tensor 'head.lora_B'")
    invalid("image_byte_flipped.hello", _flip_in_tensor(png, "images.data"), "IntegrityError",
            "tensor 'images.data'")

    png_tensors = _image_tensors(images, "png", None)
    base_tensors = {**tensors, "labels": labels, **png_tensors}
    png_manifest = sample_manifest(images={"count": 6, "channels": 3, "height": 8, "width": 8,
                                           "codec": "png", "quality": None})
    write_unchecked(out / "unknown_major_version.hello", dict(png_manifest, format_version="3.0"), base_tensors)
    expected["unknown_major_version.hello"] = {"error": "UnsupportedVersionError", "match": "major 3"}
    expected.update(_feature_vectors(out, png_manifest, base_tensors))
    no_recipe = dict(png_manifest)
    del no_recipe["recipe"]
    write_unchecked(out / "missing_required_field.hello", no_recipe, base_tensors)
    expected["missing_required_field.hello"] = {"error": "ManifestError", "match": "'recipe' is a required"}
    write_unchecked(out / "labels_count_mismatch.hello", png_manifest, {**base_tensors, "labels": labels[:5]})
    expected["labels_count_mismatch.hello"] = {"error": "ManifestError", "match": "tensor 'labels'"}
    write_unchecked(out / "head_classes_mismatch.hello", png_manifest,
                    {**base_tensors, "head.lora_B": sample_tensors(num_classes=4)["head.lora_B"]})
    expected["head_classes_mismatch.hello"] = {"error": "ManifestError", "match": "tensor 'head.lora_B'"}
    data = png_tensors["images.data"].clone()
    second = int(png_tensors["images.offsets"][1])
    data[second:second + 16] = 0
    write_unchecked(out / "image_does_not_decode.hello", png_manifest, {**base_tensors, "images.data": data})
    expected["image_does_not_decode.hello"] = {"error": "ImageDecodeError", "match": "image 1 does not decode"}
    int4_png = {**base_tensors, **int4_tensors}
    int4_png_manifest = dict(int4_manifest, images=png_manifest["images"])
    write_unchecked(out / "quantised_in_1_0.hello", dict(int4_png_manifest, format_version="1.0"), int4_png)
    expected["quantised_in_1_0.hello"] = {"error": "ManifestError", "match": "needs format_version 1.1"}
    scales = "head.lora_B.scales"
    write_unchecked(out / "hostile_nan_scale.hello", int4_png_manifest,
                    {**int4_png, scales: torch.full_like(int4_tensors[scales], float("nan"))})
    expected["hostile_nan_scale.hello"] = {"error": "BundleError", "match": f"tensor '{scales}' holds"}
    write_unchecked(out / "hostile_packed_length.hello", int4_png_manifest,
                    {**int4_png, "head.lora_B": int4_tensors["head.lora_B"][:-1].clone()})
    expected["hostile_packed_length.hello"] = {"error": "ManifestError", "match": "tensor 'head.lora_B' is U8 [5]"}
    with open(out / "plain_safetensors.hello", "wb") as file:
        write_container(file, {}, {"weight": _pattern((2, 2), 0)})
    expected["plain_safetensors.hello"] = {"error": "ManifestError", "match": "not a .hello bundle"}
    expected.update(_stored_head_vectors(out, valid, png_manifest, base_tensors))
    expected.update(_hostile_vectors(out, png_manifest, base_tensors, images))

    labels = label_vectors(out)
    expected.update({name: "valid" for name in labels})
    (out / "expected.json").write_text(json.dumps(expected, indent=2, sort_keys=True) + "\n")
    (out / "labels.json").write_text(json.dumps(labels, indent=2, sort_keys=True) + "\n")
    return expected


def _stored_head_vectors(out: pathlib.Path, valid, manifest: dict, tensors: dict) -> dict:
    """Format 1.1: an embedded base as its image tower (``base.visual.*``) plus ``head.weight`` F32 [C, d]."""
    base = dict(manifest["base"], source="embedded", checkpoint=None, embedded="visual")
    stored = {"base.visual.proj": _pattern((8, 8), 40, torch.float32),
              "head.weight": _pattern((len(CLASS_NAMES), 8), 41, torch.float32)}
    fingerprint = fingerprint_state({"visual.proj": stored["base.visual.proj"]})
    manifest_11 = dict(manifest, format_version="1.1", base=dict(base, fingerprint=fingerprint))
    valid("valid_stored_head.hello", manifest=sample_manifest(format_version="1.1", base=manifest_11["base"]),
          extra=stored)
    write_unchecked(out / "stored_head_classes_mismatch.hello", manifest_11,
                    {**tensors, **stored, "head.weight": _pattern((len(CLASS_NAMES) + 1, 8), 41, torch.float32)})
    write_unchecked(out / "stored_head_with_text_tower.hello", manifest_11,
                    {**tensors, **stored, "base.token_embedding.weight": _pattern((4, 8), 42, torch.float32)})
    write_unchecked(out / "stored_head_in_1_0.hello", dict(manifest_11, format_version="1.0"), {**tensors, **stored})
    write_unchecked(out / "embedded_part_of_a_local_base.hello",
                    dict(manifest, format_version="1.1", base=dict(manifest["base"], embedded="full")), tensors)
    return {"stored_head_classes_mismatch.hello": {"error": "ManifestError", "match": "tensor 'head.weight'"},
            "stored_head_with_text_tower.hello": {"error": "ManifestError", "match": "not part of the image tower"},
            "stored_head_in_1_0.hello": {"error": "ManifestError",
                                         "match": "'base.embedded' is 'visual', which needs format_version 1.1"},
            "embedded_part_of_a_local_base.hello": {"error": "ManifestError",
                                                    "match": "'base.embedded' is 'full' but base.source is 'local'"}}


def _png_of_size(width: int, height: int) -> bytes:
    """A black 1-bit PNG: a few hundred bytes whatever its declared size (a decompression bomb)."""
    row = b"\0" + bytes((width + 7) // 8)
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def _blobs(blobs: list[bytes]) -> dict:
    offsets = torch.tensor([0] + [sum(len(b) for b in blobs[:i + 1]) for i in range(len(blobs))], dtype=torch.int64)
    return {"images.data": torch.frombuffer(bytearray(b"".join(blobs)), dtype=torch.uint8), "images.offsets": offsets}


def _hostile_vectors(out: pathlib.Path, manifest: dict, tensors: dict, images: torch.Tensor) -> dict:
    """Files an attacker would write (spec "Limits and hostile input"): each is a clean error."""
    expected = {}
    good_blobs = [bytes(b) for b in _image_tensors(images, "png", None)["images.data"].split(
        torch.diff(_image_tensors(images, "png", None)["images.offsets"]).tolist())]

    def vector(name, error, match, man=None, extra=None, **fields):
        changed = {**(man or manifest), **fields}
        write_unchecked(out / name, changed, {**tensors, **(extra or {})})
        expected[name] = {"error": error, "match": match}

    lora, head, base, recipe = manifest["lora"], manifest["head"], manifest["base"], manifest["recipe"]
    module = "a" * 40 + "b"
    regex_tensors = {f"{ROOT}{module}.lora_{x}.weight": _pattern(shape, 0) for x, shape in (("A", (2, 8)), ("B", (8, 2)))}
    vector("hostile_regex_target.hello", "ManifestError", f"module '{module}' is not matched",
           lora=dict(lora, target_modules="((a+)+)+"), extra=regex_tensors)
    vector("hostile_unsupported_pattern.hello", "ManifestError", "not a supported target pattern",
           lora=dict(lora, target_modules=r"(a)\1"))
    vector("hostile_class_names_not_strings.hello", "ManifestError", "field 'class_names.0'",
           class_names=[[i] for i in range(500)])
    vector("hostile_class_name_control.hello", "ManifestError", "control character U+000A",
           class_names=["cat", "dog\n## fake", "bird"])
    vector("hostile_class_names_print_alike.hello", "ManifestError", "prints as class_names.0 does",
           class_names=["caf\u00e9", "cafe\u0301", "bird"])
    vector("hostile_png_bomb.hello", "ImageDecodeError", "image 0 is 4000x4000",
           extra=_blobs([_png_of_size(4000, 4000)] + good_blobs[1:]))
    bmp = io.BytesIO()
    Image.new("RGB", (8, 8)).save(bmp, format="BMP")
    vector("hostile_foreign_codec.hello", "ImageDecodeError", "image 0 does not decode as png",
           extra=_blobs([bmp.getvalue()] + good_blobs[1:]))
    vector("hostile_geometry.hello", "ManifestError", "decoded bytes",
           images=dict(manifest["images"], height=8000, width=8000))
    nan_head = tensors["head.lora_B"].clone()
    nan_head[0, 0] = float("nan")
    vector("hostile_nan_head.hello", "BundleError", "tensor 'head.lora_B' holds NaN", extra={"head.lora_B": nan_head})
    vector("hostile_logit_scale.hello", "ManifestError", "field 'head.logit_scale'", head=dict(head, logit_scale=1e308))
    vector("hostile_std.hello", "ManifestError", "field 'base.std.0'", base=dict(base, std=[1e-300, 0.5, 0.5]))
    vector("hostile_template.hello", "ManifestError", "field 'head.templates.0'",
           head=dict(head, templates=["{0.__class__.__init__.__globals__}"]))
    vector("hostile_augment_size.hello", "ManifestError", "field 'recipe.augment'",
           recipe=dict(recipe, augment={"output_size": 30000}))
    vector("hostile_nesting.hello", "ManifestError", "nested deeper than",
           provenance=dict(manifest["provenance"], fidelity=json.loads("[" * 40 + "]" * 40)))
    write_unchecked(out / "hostile_huge_int.hello", manifest, tensors)
    data = (out / "hostile_huge_int.hello").read_bytes()
    header, body = split_header(data)
    header["zero"] = {"dtype": "F32", "shape": [4, 0, 2 ** 70, 2 ** 70], "data_offsets": [len(body), len(body)]}
    (out / "hostile_huge_int.hello").write_bytes(join_header(header, body))
    expected["hostile_huge_int.hello"] = {"error": "HeaderError", "match": "more than 20 digits"}
    header["zero"]["shape"] = [4, 0, 2 ** 40, 2 ** 40]
    (out / "hostile_huge_shape.hello").write_bytes(join_header(header, body))
    expected["hostile_huge_shape.hello"] = {"error": "HeaderError", "match": "the product of its dimensions"}
    manifest_text = canonical_json(dict(manifest, integrity={"algorithm": "sha256", "tensors": {
        name: buffer_sha256(tensor_bytes(t)) for name, t in sorted(tensors.items())}})).replace('"epochs":300', '"epochs":1e400')
    with open(out / "hostile_float_overflow.hello", "wb") as file:
        write_container(file, {"format": "hello", MANIFEST_KEY: manifest_text,
                               MANIFEST_SHA_KEY: manifest_sha256(manifest_text)}, tensors)
    expected["hostile_float_overflow.hello"] = {"error": "ManifestError", "match": "overflows a 64-bit float"}
    return expected


# CLIPs small enough for a vector (the text towers are never stored): a one-block ViT whose image tower
# holds 1,360 values, and a ModifiedResNet (the paper's RN50 family) of width 2, 22,217 values
LABEL_TEXT = {"context_length": 77, "vocab_size": 49408, "width": 8, "heads": 2, "layers": 1}
LABEL_VIT = ("hello-vectors-vit", {"embed_dim": 8, "text_cfg": LABEL_TEXT, "vision_cfg": {
    "image_size": 8, "layers": 1, "width": 8, "patch_size": 4, "head_width": 4}})
LABEL_RESNET = ("hello-vectors-rn", {"embed_dim": 8, "text_cfg": LABEL_TEXT, "vision_cfg": {
    "image_size": 32, "layers": [1, 1, 1, 1], "width": 2, "head_width": 64}})
LABEL_TARGETS = r"transformer\.resblocks\.\d+\.(attn|mlp\.c_fc)"
LABEL_RESNET_TARGETS = r"conv1|layer1\.0\.conv2|layer4\.0\.downsample\.0"   # a stem, a 3x3 and a 1x1 conv
LABEL_DIGITS = 6   # decimals of the expected logits in labels.json
# how far a conforming reader's logits may be from them: float32 sums in another order (the ResNet's convolutions
# on 1 thread instead of 2 move its logits by 1.2e-5, float64 by 9.6e-6; the ViT's float64 by 2.6e-6)
LABEL_TOLERANCE = {"vit": 1e-5, "resnet": 1e-4}


def _label_deltas(mlp_rank: int = 2) -> dict:
    """The ViT label vectors' fp16 deltas: attention (in_proj and out_proj) and the MLP's c_fc at rank 2
    (the MLP's at ``mlp_rank``), and the head LoRA at rank 4."""
    block = f"{ROOT}transformer.resblocks.0."
    shapes = {f"{block}attn.lora_A.weight": (2, 8), f"{block}attn.lora_B.weight": (24, 2),
              f"{block}attn.base_layer.out_proj.lora_A.weight": (2, 8),
              f"{block}attn.base_layer.out_proj.lora_B.weight": (8, 2),
              f"{block}mlp.c_fc.lora_A.weight": (mlp_rank, 8), f"{block}mlp.c_fc.lora_B.weight": (32, mlp_rank),
              "head.lora_A": (4, 8), "head.lora_B": (len(CLASS_NAMES), 4)}
    return {name: _pattern(shape, 50 + seed) for seed, (name, shape) in enumerate(sorted(shapes.items()))}


def _embedded_tower(architecture: str, config: dict) -> tuple[torch.nn.Module, dict, dict]:
    """A CLIP under ``config`` with its image tower set to fixed patterns, its manifest ``base`` section,
    and the ``base.*`` tensors and the text head (``head.weight``) a file stores. A batch norm's weight
    and running variance are in [0.5, 1.5), its running mean 0, its bias in [0.05, 0.15) and its counter
    0: a ResNet of plain patterns gives every image the same features."""
    from hello_format.base import _register_config, base_state_dict, describe_base, embedded_part

    _register_config(architecture, config)
    model = open_clip.create_model(architecture)
    norms = {f"visual.{name}." for name, module in model.visual.named_modules()
             if isinstance(module, torch.nn.BatchNorm2d)}
    base = {}
    for seed, (key, value) in enumerate(sorted(embedded_part(base_state_dict(model), "visual").items())):
        pattern, norm = _pattern(value.shape, seed, torch.float32), key[:key.rindex(".") + 1] in norms
        base[f"base.{key}"] = (torch.zeros_like(value) if not value.is_floating_point() or key.endswith("running_mean")
                               else pattern * 0.1 + 0.1 if norm and key.endswith("bias")
                               else pattern + 1 if norm else pattern)
    model.load_state_dict({k.removeprefix("base."): v for k, v in base.items()}, strict=False)
    section = describe_base(model, architecture=architecture, source="embedded", config=config, embedded="visual")
    head = {"head.weight": _pattern((len(CLASS_NAMES), config["embed_dim"]), 60, torch.float32)}
    return model, section, {**base, **head}


def _resnet_deltas(model: torch.nn.Module) -> dict:
    """fp16 LoRA at rank 2 of the ResNet vector's target convolutions (A [r, in, k, k], B [out, r, 1, 1])
    and the head LoRA at rank 4."""
    shapes = {"head.lora_A": (4, 8), "head.lora_B": (len(CLASS_NAMES), 4)}
    for path in ("conv1", "layer1.0.conv2", "layer4.0.downsample.0"):
        conv = model.visual.get_submodule(path)
        shapes[f"{ROOT}{path}.lora_A.weight"] = (2, conv.in_channels, *conv.kernel_size)
        shapes[f"{ROOT}{path}.lora_B.weight"] = (conv.out_channels, 2, 1, 1)
    return {name: _pattern(shape, 70 + seed) for seed, (name, shape) in enumerate(sorted(shapes.items()))}


def label_vectors(out: pathlib.Path) -> dict:
    """Files whose labels a reader must reproduce (spec section 13), each with an embedded image tower, a
    stored head with its LoRA, and images at twice the base's size: a ViT with LoRA on attention (whose
    out_proj counts twice) and on an MLP layer; the same with the prior mix; the same with int4 deltas
    whose ranks and alphas patterns set; and a ResNet with LoRA on three convolutions. Returns
    labels.json's content: each file's logits for its own stored images taken as the views."""
    from hello_format.projector import Projector

    head = HeadConfig(templates=("a photo of a {}.",), logit_scale=20.0, lora=HeadLoraConfig(r=4, lora_alpha=8))
    _, section, stored = _embedded_tower(*LABEL_VIT)
    manifest = sample_manifest(format_version="1.1", base=section, head=head.to_manifest(),
                               lora=EncoderLoraConfig(target_modules=LABEL_TARGETS, r=2, lora_alpha=4).to_manifest())
    # int4 deltas in groups of 5, and a rank and an alpha that patterns give (the MLP's rank 1, attention's alpha 6)
    patterned = EncoderLoraConfig(target_modules=LABEL_TARGETS, r=2, lora_alpha=4, rank_pattern={"mlp.c_fc": 1},
                                  alpha_pattern={"attn": 6})
    int4_manifest, int4_deltas = store_deltas(dict(manifest, lora=patterned.to_manifest()),
                                              _label_deltas(mlp_rank=1), "int4", 5)
    resnet, resnet_section, resnet_stored = _embedded_tower(*LABEL_RESNET)
    resnet_manifest = sample_manifest(format_version="1.1", base=resnet_section, head=head.to_manifest(),
                                      lora=EncoderLoraConfig(target_modules=LABEL_RESNET_TARGETS, r=2,
                                                             lora_alpha=4).to_manifest())
    vit_side, resnet_side = LABEL_VIT[1]["vision_cfg"]["image_size"], LABEL_RESNET[1]["vision_cfg"]["image_size"]
    vit = (stored, vit_side, LABEL_TOLERANCE["vit"])
    files = {"labels_lora.hello": (manifest, _label_deltas(), *vit),
             "labels_prior_mix.hello": (dict(manifest, format_version="2.0", requires=["prior_mix"],
                                             head=_with_prior(manifest["head"])), _label_deltas(), *vit),
             "labels_int4.hello": (int4_manifest, int4_deltas, *vit),
             "labels_resnet.hello": (resnet_manifest, _resnet_deltas(resnet), resnet_stored, resnet_side,
                                     LABEL_TOLERANCE["resnet"])}
    expected = {}
    for name, (file_manifest, deltas, base, side, tolerance) in files.items():
        write_bundle(out / name, file_manifest, sample_images(size=2 * side), sample_labels(), {**deltas, **base})
        with Bundle.open(out / name) as bundle:
            views = bundle.images().float() / 255
            logits = Projector.from_bundle(bundle, use_head_cache=False).label(views)
        expected[name] = {"views": "the file's images, unaugmented, / 255", "tolerance": tolerance,
                          "logits": [[round(value, LABEL_DIGITS) for value in row] for row in logits.tolist()]}
    return expected


if __name__ == "__main__":
    target = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else pathlib.Path(__file__).parent / "vectors"
    for name, outcome in generate(target).items():
        print(f"{name}: {outcome}")
