"""One test case per rule of the spec's container checks (section 1.2), version rules (5), bounds (14.1
step 4) and manifest/tensor consistency (7): a file that breaks exactly that rule must raise that rule's
own error class and message, and where the rule is a bound N, a file at N must pass it (open, where that
is cheap). The reader enforced these, but no test pinned them (test_format_errors.py's hypothesis tests
accept any HelloError), so a moved bound or a dropped check went unnoticed.

Every file is the conformance vectors' sample bundle (spec/make_vectors.py) written with its hashes
recomputed and no writer checks (``write_unchecked``), changed by one edit of its manifest, tensors or
header.
"""

import json
import pathlib
import re

import pytest
import torch

from hello_format import limits
from hello_format.bundle import MANIFEST_KEY, MANIFEST_SHA_KEY, Bundle, _image_tensors
from hello_format.container import read_header
from hello_format.errors import HeaderError, ManifestError
from hello_format.manifest import canonical_json, manifest_sha256
from support import load_script

samples = load_script("spec/make_vectors.py")

BLOCK = samples.ROOT + "transformer.resblocks.0."
FC_A, FC_B = BLOCK + "mlp.c_fc.lora_A.weight", BLOCK + "mlp.c_fc.lora_B.weight"
EMPTY = torch.zeros(0, dtype=torch.uint8)


def sample_bundle(path, edit=None, codec="png") -> pathlib.Path:
    """The sample bundle (3 classes x 2 images of 8 x 8, encoder and head LoRA) after ``edit(manifest,
    tensors)``, written unchecked with its integrity hashes and manifest hash recomputed."""
    images = samples.sample_images()
    manifest = samples.sample_manifest(images={"count": len(images), "channels": 3, "height": 8, "width": 8,
                                               "codec": codec, "quality": None})
    tensors = {**samples.sample_tensors(), "labels": samples.sample_labels(), **_image_tensors(images, codec, None)}
    if edit is not None:
        edit(manifest, tensors)
    samples.write_unchecked(path, manifest, tensors)
    return path


def rewrite_header(path, edit) -> pathlib.Path:
    """``path`` with its header JSON and data section replaced by ``edit(header, body)``."""
    header, body = samples.split_header(path.read_bytes())
    path.write_bytes(samples.join_header(*edit(header, body)))
    return path


def setting(field: str):
    """An edit setter: the dotted manifest ``field`` set to the value."""
    *parents, last = field.split(".")

    def put(manifest, tensors, value):
        for key in parents:
            manifest = manifest[key]
        manifest[last] = value
    return put


def edit_of(setter, value):
    return lambda manifest, tensors: setter(manifest, tensors, value)


def test_the_sample_bundles_open(tmp_path):
    for codec in ("png", "raw"):
        Bundle.open(sample_bundle(tmp_path / f"{codec}.hello", codec=codec), verify=True).close()


# ------------------------------------------------------------------ container (section 1.2)

def _zero_size_tensors(count: int, name: str = "pad.{:06d}"):
    """``count`` zero-size U8 header entries at the end of the data section."""
    def edit(header, body):
        entry = {"dtype": "U8", "shape": [0], "data_offsets": [len(body), len(body)]}
        header.update(dict.fromkeys((name.format(i) for i in range(count)), entry))
        return header, body
    return edit


def _entry(name: str, change):
    """Tensor ``name``'s header entry replaced by ``change(entry)``."""
    def edit(header, body):
        header[name] = change(header[name])
        return header, body
    return edit


def _offsets(*offsets):
    return _entry("labels", lambda entry: {**entry, "data_offsets": list(offsets)})


def _gap_before_last_tensor(gap: int):
    """``gap`` zero bytes inserted before the last tensor's data (its offsets moved, its bytes intact)."""
    def edit(header, body):
        last = max((n for n in header if n != "__metadata__"), key=lambda n: header[n]["data_offsets"][1])
        begin, end = header[last]["data_offsets"]
        header[last]["data_offsets"] = [begin + gap, end + gap]
        return header, body[:begin] + bytes(gap) + body[begin:]
    return edit


def _span_past_the_shape_of_last_tensor(extra: int):
    """The last tensor's data_offsets end ``extra`` bytes later than its shape needs, the bytes appended."""
    def edit(header, body):
        last = max((n for n in header if n != "__metadata__"), key=lambda n: header[n]["data_offsets"][1])
        header[last]["data_offsets"][1] += extra
        return header, body + bytes(extra)
    return edit


def _metadata(value):
    def edit(header, body):
        header["__metadata__"] = value(header["__metadata__"])
        return header, body
    return edit


_N_SAMPLE_TENSORS = 11   # the sample bundle's: 8 LoRA, labels, images.data, images.offsets

CONTAINER = [
    pytest.param(_zero_size_tensors(1, "x" * 1025), HeaderError,
                 "a tensor name of 1025 characters (at most 1024)", id="tensor-name-over-1024-chars"),
    pytest.param(_entry("labels", lambda entry: {**entry, "extra": 0}), HeaderError,
                 "tensor 'labels': entry must have exactly dtype, shape, data_offsets", id="entry-extra-key"),
    pytest.param(_entry("labels", lambda entry: {k: v for k, v in entry.items() if k != "dtype"}), HeaderError,
                 "tensor 'labels': entry must have exactly dtype, shape, data_offsets", id="entry-without-dtype"),
    pytest.param(_entry("labels", lambda entry: list(entry.values())), HeaderError,
                 "tensor 'labels': entry must have exactly dtype, shape, data_offsets", id="entry-not-an-object"),
    *[pytest.param(_offsets(*offsets), HeaderError,
                   "tensor 'labels': data_offsets must be [begin, end] with 0 <= begin <= end", id=f"data-offsets-{name}")
      for name, offsets in [("one-number", (0,)), ("reversed", (48, 0)), ("negative", (-8, 40)), ("strings", ("0", "48")),
                            ("floats", (0.5, 48.5))]],
    pytest.param(_entry("labels", lambda entry: {**entry, "shape": [float("nan")]}), HeaderError,
                 "header is not valid JSON (ValueError: NaN is not valid JSON)", id="nan-in-header"),
    pytest.param(_entry("labels", lambda entry: {**entry, "shape": [float("-inf")]}), HeaderError,
                 "header is not valid JSON (ValueError: -Infinity is not valid JSON)", id="minus-infinity-in-header"),
    pytest.param(lambda header, body: ({**header, "rank9": {"dtype": "U8", "shape": [0] * 9,
                                                            "data_offsets": [len(body), len(body)]}}, body),
                 HeaderError, "tensor 'rank9': shape must be a list of at most 8 integers in [0, 2^59], got [0, 0,",
                 id="shape-rank-at-most-8"),
    pytest.param(_span_past_the_shape_of_last_tensor(8), HeaderError,
                 "tensor 'labels': I64 [6] needs 48 bytes but data_offsets [", id="data-offsets-span-the-shape"),
    pytest.param(_gap_before_last_tensor(8), HeaderError, "gap of 8 bytes before tensor 'labels'", id="gap-between-tensors"),
    pytest.param(lambda header, body: (header, body + bytes(8)), HeaderError,
                 "8 trailing bytes after the last tensor", id="trailing-bytes"),
    pytest.param(_metadata(lambda metadata: {**metadata, "note": 1}), HeaderError,
                 "__metadata__ must be an object of strings", id="metadata-value-not-a-string"),
    pytest.param(_metadata(lambda metadata: [metadata[MANIFEST_KEY]]), HeaderError,
                 "__metadata__ must be an object of strings", id="metadata-not-an-object"),
    pytest.param(lambda header, body: ([header["__metadata__"]], body), HeaderError,
                 "header must be a JSON object, got list", id="header-not-an-object"),
    pytest.param(_metadata(lambda metadata: {k: v for k, v in metadata.items() if k != MANIFEST_KEY}), ManifestError,
                 "__metadata__ has no 'hello.manifest'", id="metadata-without-manifest"),
]


@pytest.mark.parametrize("edit, error, message", CONTAINER)
def test_a_container_rule_broken_is_refused_with_its_message(tmp_path, edit, error, message):
    path = rewrite_header(sample_bundle(tmp_path / "bad.hello"), edit)
    with pytest.raises(error, match=re.escape(message)):
        Bundle.open(path)


def test_a_byte_tensor_longer_than_2_to_the_31_is_read(tmp_path):
    """The encoded images are one U8 [total_bytes] tensor: 4 GB of PNGs for ImageNet-1K at IPC 50 (224 px),
    which a bound of 2^31 - 1 on every dimension refused on open, after the writer had written it. A sparse
    file of that size, header only; a dimension beyond the product's bound is still refused."""
    length = 2**32 + 8
    for shape, error in (([length], None), ([2**59 + 1], "shape must be a list of at most 8 integers in [0, 2^59]")):
        text = json.dumps({"images.data": {"dtype": "U8", "shape": shape, "data_offsets": [0, length]}}).encode()
        text += b" " * (-len(text) % 8)
        path = tmp_path / "big.safetensors"
        with open(path, "wb") as file:
            file.write(len(text).to_bytes(8, "little") + text)
            file.truncate(8 + len(text) + length)   # sparse: no disk used
        if error is None:
            assert read_header(path).tensors["images.data"].shape == (length,)
        else:
            with pytest.raises(HeaderError, match=re.escape(error)):
                read_header(path)


def test_a_tensor_name_of_1024_characters_opens(tmp_path):
    name = "x" * limits.MAX_TENSOR_NAME_CHARS
    with Bundle.open(sample_bundle(tmp_path / "ok.hello", lambda manifest, tensors: tensors.update({name: EMPTY}))) as bundle:
        assert name in bundle.tensor_names


def test_a_header_holds_at_most_100000_tensors(tmp_path):
    """At the bound the header is read (opening it would need a manifest listing the 100,000 tensors: 10 s
    to write and open here); one more tensor and it is refused."""
    path = sample_bundle(tmp_path / "count.hello")
    header, body = _zero_size_tensors(limits.MAX_TENSORS - _N_SAMPLE_TENSORS)(*samples.split_header(path.read_bytes()))
    path.write_bytes(samples.join_header(header, body))
    assert len(read_header(path).tensors) == limits.MAX_TENSORS
    path.write_bytes(samples.join_header(*_zero_size_tensors(1, "pad.extra")(header, body)))
    with pytest.raises(HeaderError, match=re.escape("100001 tensors (at most 100000)")):
        Bundle.open(path)


def _integrity_entries(count: int, digest: str):
    """The manifest's integrity.tensors grown to ``count`` entries, the new ones of ``digest``."""
    def edit(header, body):
        manifest = json.loads(header["__metadata__"][MANIFEST_KEY])
        listed = manifest["integrity"]["tensors"]
        listed.update({f"pad.{i:06d}": digest for i in range(count - len(listed))})
        text = canonical_json(manifest)
        header["__metadata__"].update({MANIFEST_KEY: text, MANIFEST_SHA_KEY: manifest_sha256(text)})
        return header, body
    return edit


def test_integrity_tensors_holds_at_most_100000_entries(tmp_path):
    path = sample_bundle(tmp_path / "count.hello")
    with pytest.raises(ManifestError, match=re.escape("field 'integrity.tensors': 100001 entries (at most 100000)")):
        Bundle.open(rewrite_header(path, _integrity_entries(limits.MAX_TENSORS + 1, "0" * 64)))
    # 100,000 entries pass the bound; the JSON Schema after it refuses their empty hashes (it stops at
    # the first few: valid ones would take it seconds to check)
    path = sample_bundle(tmp_path / "count.hello")
    with pytest.raises(ManifestError, match=r"field 'integrity\.tensors\.pad\.\d{6}': '' does not match"):
        Bundle.open(rewrite_header(path, _integrity_entries(limits.MAX_TENSORS, "")))


# ------------------------------------------------------------------------ version (section 5)

@pytest.mark.parametrize("version, message", [
    pytest.param(None, "missing or non-string field 'format_version'", id="version-missing"),
    pytest.param(1.0, "missing or non-string field 'format_version'", id="version-a-number"),
    pytest.param(["1", "0"], "missing or non-string field 'format_version'", id="version-a-list"),
    *[pytest.param(v, f"format_version {v!r} is not 'MAJOR.MINOR'", id=f"version-{name}-not-major-minor")
      for name, v in [("one-part", "1"), ("three-parts", "1.0.0"), ("empty-minor", "1."), ("letter", "1.x"),
                      ("prefix", "v1.0"), ("space", " 1.0"), ("sign", "1.-1"), ("non-ascii-digits", "\u0661.\u0660")]],
])
def test_a_malformed_format_version_is_refused(tmp_path, version, message):
    def edit(manifest, tensors):
        if version is None:
            del manifest["format_version"]
        else:
            manifest["format_version"] = version

    with pytest.raises(ManifestError, match=re.escape(message)):
        Bundle.open(sample_bundle(tmp_path / "bad.hello", edit))


@pytest.mark.parametrize("version", ["1.0", "1.1", "1.99"])
def test_a_major_minor_format_version_opens(tmp_path, version):
    path = sample_bundle(tmp_path / "ok.hello", edit_of(setting("format_version"), version))
    Bundle.open(path).close()


# ------------------------------------------------------------------------- bounds (section 14.1)

def _classes(manifest, tensors, count):
    """``count`` class names (the 6 images in the first three classes, ipc null) and a head to match."""
    manifest["class_names"], manifest["ipc"] = [f"c{i}" for i in range(count)], None
    tensors["head.lora_B"] = torch.zeros(count, 4, dtype=torch.float16)


def _class_name(manifest, tensors, name):
    manifest["class_names"][0] = name


def _one_class(manifest, tensors, ipc):
    """One class holding all 6 images, and ``ipc``."""
    manifest["class_names"], manifest["ipc"] = ["cat"], ipc
    tensors["labels"] = torch.zeros(6, dtype=torch.int64)
    tensors["head.lora_B"] = torch.zeros(1, 4, dtype=torch.float16)


def _encoder_rank(manifest, tensors, r):
    """``lora.r``, with every stored module given its rank 2 by ``rank_pattern``."""
    manifest["lora"].update(r=r, rank_pattern={r"attn|mlp\.c_fc": 2})


def _head_rank(manifest, tensors, r):
    manifest["head"]["lora"]["r"] = r
    tensors["head.lora_A"], tensors["head.lora_B"] = torch.zeros(r, 8, dtype=torch.float16), torch.zeros(3, r, dtype=torch.float16)


def _provenance_key(manifest, tensors, key):
    manifest["provenance"][key] = "value"


def _targets(count: int, extra: str = "") -> list[str]:
    """A target_modules list of ``count`` names: the two the sample's modules need, fillers, ``extra``."""
    names = ["attn", "mlp.c_fc"] + ([extra] if extra else [])
    return names + [f"m{i}" for i in range(count - len(names))]


def _patterns(count: int, value) -> dict:
    return {f"none{i}": value for i in range(count)}


def _templates(count: int) -> list[str]:
    return [f"t{i} {{}}" for i in range(count)]


S, K = limits.MAX_STRING_CHARS, limits.MAX_CLASS_NAME_CHARS

# (setter, a value breaking the rule, the value at the rule's bound or None, the rule's message)
BOUNDS = [
    pytest.param(setting("provenance.note"), "x" * (S + 1), "x" * S,
                 "field 'provenance.note': a string of 65537 characters (at most 65536)", id="string-at-most-65536-chars"),
    pytest.param(_provenance_key, "k" * (S + 1), "k" * S,
                 "field 'provenance': a key of 65537 characters (at most 65536)", id="key-at-most-65536-chars"),
    pytest.param(_classes, limits.MAX_CLASSES + 1, limits.MAX_CLASSES,
                 "field 'class_names': 100001 entries (at most 100000)", id="class-names-at-most-100000"),
    pytest.param(_class_name, "x" * (K + 1), "x" * K,
                 "field 'class_names.0': 513 characters (1 to 512)", id="class-name-at-most-512-chars"),
    pytest.param(_class_name, "", "x", "field 'class_names.0': 0 characters (1 to 512)", id="class-name-at-least-1-char"),
    pytest.param(setting("base.image_size"), [32], [32, 32],
                 "field 'base.image_size': a list of 1 items, not [height, width]", id="image-size-a-pair-not-1"),
    pytest.param(setting("base.image_size"), [32] * 3, None,
                 "field 'base.image_size': a list of 3 items, not [height, width]", id="image-size-a-pair-not-3"),
    pytest.param(setting("base.image_size"), 8193, 8192, "field 'base.image_size': 8193 is outside [1, 8192]",
                 id="image-size-at-most-8192"),
    pytest.param(setting("base.image_size"), [32, 8193], [8192, 32],
                 "field 'base.image_size': 8193 is outside [1, 8192]", id="image-size-pair-at-most-8192"),
    pytest.param(setting("base.mean"), [0.5] * 2, [0.5] * 3, "field 'base.mean': a list of 2 items, not 3",
                 id="mean-of-3-not-2"),
    pytest.param(setting("base.mean"), [0.5] * 4, None, "field 'base.mean': a list of 4 items, not 3", id="mean-of-3-not-4"),
    pytest.param(setting("base.std"), [0.25] * 2, [0.25] * 3, "field 'base.std': a list of 2 items, not 3",
                 id="std-of-3-not-2"),
    pytest.param(setting("base.std"), [0.25] * 4, None, "field 'base.std': a list of 4 items, not 3", id="std-of-3-not-4"),
    pytest.param(setting("lora.target_modules"), _targets(1001), _targets(1000),
                 "field 'lora.target_modules': 1001 names (at most 1000)", id="target-list-at-most-1000-names"),
    pytest.param(setting("lora.target_modules"), _targets(3, "x" * 513), _targets(3, "x" * 512),
                 "field 'lora.target_modules.2': not a module name of at most 512 characters",
                 id="target-name-at-most-512-chars"),
    pytest.param(setting("lora.rank_pattern"), _patterns(1001, 2), _patterns(1000, 2),
                 "field 'lora.rank_pattern': 1001 entries (at most 1000)", id="rank-pattern-at-most-1000-entries"),
    pytest.param(setting("lora.alpha_pattern"), _patterns(1001, 2.0), _patterns(1000, 2.0),
                 "field 'lora.alpha_pattern': 1001 entries (at most 1000)", id="alpha-pattern-at-most-1000-entries"),
    pytest.param(setting("lora.rank_pattern"), {"attn": "2"}, {"attn": 2},
                 "field 'lora.rank_pattern.attn': a str, not a number", id="rank-pattern-value-a-number"),
    pytest.param(setting("lora.alpha_pattern"), {"attn": "4"}, {"attn": 4},
                 "field 'lora.alpha_pattern.attn': a str, not a number", id="alpha-pattern-value-a-number"),
    pytest.param(_encoder_rank, 4097, 4096, "field 'lora.r': 4097 is outside [1, 4096]", id="lora-r-at-most-4096"),
    pytest.param(setting("lora.rank_pattern"), {"(?=attn)": 2}, None,
                 "field 'lora.rank_pattern': not a supported target pattern", id="rank-pattern-key-a-target-pattern"),
    pytest.param(setting("lora.alpha_pattern"), {"(?=attn)": 2.0}, None,
                 "field 'lora.alpha_pattern': not a supported target pattern", id="alpha-pattern-key-a-target-pattern"),
    pytest.param(setting("lora.shapes"), {f"k{i}": [1] for i in range(100_001)}, None,
                 "field 'lora.shapes': 100001 entries (at most 100000)", id="quantised-shapes-at-most-100000-entries"),
    pytest.param(setting("lora.rank_pattern"), {"none": 4097}, {"none": 4096},
                 "field 'lora.rank_pattern.none': 4097 is outside [0, 4096]", id="rank-pattern-value-at-most-4096"),
    pytest.param(_head_rank, 4097, 4096, "field 'head.lora.r': 4097 is outside [1, 4096]",
                 id="head-lora-r-at-most-4096"),
    pytest.param(setting("lora.lora_alpha"), 1_000_001, 1_000_000,
                 "field 'lora.lora_alpha': 1000001 is outside [0, 1e+06]", id="lora-alpha-at-most-1e6"),
    pytest.param(setting("lora.alpha_pattern"), {"attn": 1_000_001}, {"attn": 1_000_000},
                 "field 'lora.alpha_pattern.attn': 1000001 is outside [0, 1e+06]", id="alpha-pattern-value-at-most-1e6"),
    pytest.param(setting("head.lora.lora_alpha"), 1_000_001, 1_000_000,
                 "field 'head.lora.lora_alpha': 1000001 is outside [0, 1e+06]", id="head-lora-alpha-at-most-1e6"),
    pytest.param(setting("head.templates"), _templates(1001), _templates(1000),
                 "field 'head.templates': 1001 templates (at most 1000)", id="templates-at-most-1000"),
    pytest.param(setting("head.templates"), ["x" * 510 + "{}x"], ["x" * 510 + "{}"],
                 "field 'head.templates.0': 513 characters (at most 512)", id="template-at-most-512-chars"),
    pytest.param(setting("head.templates"), ["a {} of {0}."], None,   # str.format would raise at the head's first use
                 "field 'head.templates.0': must hold '{}' exactly once and no other brace", id="template-no-other-brace"),
    pytest.param(_one_class, 7, 6, "field 'ipc': 7 is outside [1, 6]", id="ipc-at-most-images-count"),
    pytest.param(setting("recipe.student_image_size"), 8193, 8192,
                 "field 'recipe.student_image_size': 8193 is outside [1, 8192]", id="student-image-size-at-most-8192"),
    pytest.param(setting("recipe.epochs"), 1_000_001, 1_000_000,
                 "field 'recipe.epochs': 1000001 is outside [1, 1000000]", id="epochs-at-most-1e6"),
    pytest.param(setting("recipe.batch_size"), 1_000_001, 1_000_000,
                 "field 'recipe.batch_size': 1000001 is outside [1, 1000000]", id="batch-size-at-most-1e6"),
    # the manifest object is level 1 and provenance level 2, so n nested lists in provenance.deep reach level n + 2
    pytest.param(setting("provenance.deep"), json.loads("[" * 31 + "]" * 31), json.loads("[" * 30 + "]" * 30),
                 "nested deeper than 32 levels", id="json-nesting-at-most-32-levels"),
]


@pytest.mark.parametrize("setter, bad, good, message", BOUNDS)
def test_a_bound_broken_is_refused_naming_the_field(tmp_path, setter, bad, good, message):
    with pytest.raises(ManifestError, match=re.escape(message)):
        Bundle.open(sample_bundle(tmp_path / "bad.hello", edit_of(setter, bad)))


@pytest.mark.parametrize("setter, bad, good, message", [case for case in BOUNDS if case.values[2] is not None])
def test_a_value_at_its_bound_opens(tmp_path, setter, bad, good, message):
    Bundle.open(sample_bundle(tmp_path / "ok.hello", edit_of(setter, good))).close()


def test_images_count_is_bounded_by_the_file_size_over_8(tmp_path):
    """Each image has an 8-byte label: ``images.count`` <= file size / 8. No file can have that many
    images, so at the bound the count fails only later, against the labels."""
    path = tmp_path / "count.hello"
    count = 6
    for _ in range(5):   # the file's size depends (a little) on the count's digits
        sample_bundle(path, edit_of(setting("images.count"), count))
        most = path.stat().st_size // 8
        if count == most + 1:
            break
        count = most + 1
    else:
        pytest.fail("images.count did not settle at the file size / 8 + 1")
    with pytest.raises(ManifestError, match=re.escape(f"field 'images.count': {most + 1} is outside [1, {most}]")):
        Bundle.open(path)
    sample_bundle(path, edit_of(setting("images.count"), most))
    assert path.stat().st_size // 8 == most
    with pytest.raises(ManifestError, match=re.escape(f"tensor 'labels' is I64 [6], expected I64 [{most}]")):
        Bundle.open(path)


# ---------------------------------------------------------------- consistency (section 7)

def _pop(*names):
    return lambda manifest, tensors: [tensors.pop(name) for name in names]


def _pair(shape_a, shape_b):
    def edit(manifest, tensors):
        tensors[FC_A], tensors[FC_B] = torch.zeros(shape_a, dtype=torch.float16), torch.zeros(shape_b, dtype=torch.float16)
    return edit


def _images_data(change):
    def edit(manifest, tensors):
        tensors["images.data"] = change(tensors["images.data"])
    return edit


def _no_encoder_lora(manifest, tensors):
    for name in [n for n in tensors if n.startswith("encoder_lora.")]:
        del tensors[name]


def _base(source, tensor: bool):
    def edit(manifest, tensors):
        manifest["base"].update(source=source, checkpoint=None if source == "embedded" else "tiny.safetensors")
        if tensor:
            tensors["base.visual.proj"] = torch.zeros(8, 8)
    return edit


def _both(*edits):
    def edit(manifest, tensors):
        for one in edits:
            one(manifest, tensors)
    return edit


MODULE = "'transformer.resblocks.0.mlp.c_fc'"

CONSISTENCY = [
    pytest.param("raw", lambda m, t: t.update({"images.offsets": torch.arange(7, dtype=torch.int64)}),
                 "tensor 'images.offsets' must not exist with codec raw", id="raw-with-images-offsets"),
    pytest.param("png", _images_data(lambda data: data.view(torch.int8)),
                 "tensor 'images.data' must be U8 [total_bytes] for codec png", id="png-images-data-not-u8"),
    pytest.param("png", _images_data(lambda data: data.reshape(1, -1)),
                 "tensor 'images.data' must be U8 [total_bytes] for codec png", id="png-images-data-not-1d"),
    pytest.param("png", _pair((2, 8, 1), (16, 2, 1)),
                 f"module {MODULE}: lora_A [2, 8, 1] / lora_B [16, 2, 1] are neither Linear", id="lora-pair-3d"),
    pytest.param("png", _pair((2, 8), (16, 2, 1, 1)),
                 f"module {MODULE}: lora_A [2, 8] / lora_B [16, 2, 1, 1] are neither Linear", id="lora-pair-2d-and-4d"),
    pytest.param("png", _pair((2, 8, 3, 3), (16, 2, 3, 3)),
                 f"module {MODULE}: lora_A [2, 8, 3, 3] / lora_B [16, 2, 3, 3] are neither Linear",
                 id="lora-pair-conv-b-not-1x1"),
    pytest.param("png", _pop(FC_B), "mlp.c_fc.lora_A.weight' has no lora_B partner", id="lora-a-without-b"),
    pytest.param("png", _pop(FC_A), "mlp.c_fc.lora_B.weight' has no lora_A partner", id="lora-b-without-a"),
    pytest.param("png", edit_of(setting("lora"), None), "exists but field 'lora' is null",
                 id="lora-null-with-encoder-tensors"),
    pytest.param("png", _no_encoder_lora, "field 'lora' is set but there are no encoder_lora.* tensors",
                 id="lora-set-without-encoder-tensors"),
    pytest.param("png", edit_of(setting("head.lora"), None), "tensor 'head.lora_A' exists but field 'head.lora' is null",
                 id="head-lora-null-with-head-tensors"),
    pytest.param("png", _base("embedded", tensor=False),
                 "field 'base.source' is 'embedded' but the file has no base.* tensors", id="embedded-without-base-tensors"),
    pytest.param("png", _base("local", tensor=True),
                 "field 'base.source' is 'local' but the file has base.* tensors", id="base-tensors-without-embedded"),
]

CONSISTENT = [
    pytest.param(_pair((2, 8, 3, 3), (16, 2, 1, 1)), id="lora-pair-conv2d"),
    pytest.param(_both(edit_of(setting("lora"), None), _no_encoder_lora), id="lora-null-without-encoder-tensors"),
    pytest.param(_both(edit_of(setting("head.lora"), None), _pop("head.lora_A", "head.lora_B")),
                 id="head-lora-null-without-head-tensors"),
    pytest.param(_base("embedded", tensor=True), id="embedded-with-base-tensors"),
]


@pytest.mark.parametrize("codec, edit, message", CONSISTENCY)
def test_a_manifest_that_does_not_match_its_tensors_is_refused(tmp_path, codec, edit, message):
    with pytest.raises(ManifestError, match=re.escape(message)):
        Bundle.open(sample_bundle(tmp_path / "bad.hello", edit, codec))


@pytest.mark.parametrize("edit", CONSISTENT)
def test_the_consistent_counterpart_opens(tmp_path, edit):
    Bundle.open(sample_bundle(tmp_path / "ok.hello", edit), verify=True).close()
