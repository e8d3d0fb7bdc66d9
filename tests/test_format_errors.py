"""Bad input: every corruption gives the right HelloError naming what is wrong, never anything else."""

import importlib.util
import json
import pathlib
import struct

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hello_format.bundle import MANIFEST_KEY, MANIFEST_SHA_KEY, Bundle
from hello_format.errors import (HeaderError, HelloError, ImageDecodeError, IntegrityError, ManifestError,
                                 UnsupportedVersionError)
from hello_format.manifest import canonical_json, manifest_sha256

SPEC = pathlib.Path(__file__).resolve().parent.parent / "spec"
_spec = importlib.util.spec_from_file_location("make_vectors", SPEC / "make_vectors.py")
samples = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(samples)
ORIGINALS = {name: (SPEC / "vectors" / name).read_bytes() for name in ("valid_png.hello", "valid_raw.hello")}


split, join = samples.split_header, samples.join_header


def with_manifest(data: bytes, edit) -> bytes:
    """Edit the manifest and re-hash it, so the check that fires is the one after the hash."""
    header, body = split(data)
    manifest = json.loads(header["__metadata__"][MANIFEST_KEY])
    edit(manifest)
    text = canonical_json(manifest)
    header["__metadata__"].update({MANIFEST_KEY: text, MANIFEST_SHA_KEY: manifest_sha256(text)})
    return join(header, body)


def open_all(path):
    """Open with verification and touch every piece of data."""
    with Bundle.open(path, verify=True) as bundle:
        return (bundle.manifest, bundle.labels.clone(), bundle.images().clone(),
                {k: v.clone() for k, v in bundle.lora_state_dict().items()},
                {k: v.clone() for k, v in bundle.head_state_dict().items()})


def corrupt(tmp_path, data: bytes) -> pathlib.Path:
    path = tmp_path / "bad.hello"
    path.write_bytes(data)
    return path


RAW = ORIGINALS["valid_raw.hello"]
PNG = ORIGINALS["valid_png.hello"]


def _flip_tensor(data, name, offset=0):
    header, _ = split(data)
    at = 8 + struct.unpack("<Q", data[:8])[0] + header[name]["data_offsets"][0] + offset
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:]


def _offsets(name, delta):
    header, body = split(RAW)
    header[name]["data_offsets"] = [o + delta for o in header[name]["data_offsets"]]
    return join(header, body)


CASES = {
    "truncated": (RAW[:-3], HeaderError, "file truncated?"),
    "header length larger than file": (struct.pack("<Q", 10**6) + RAW[8:], HeaderError, "exceeds the file size"),
    "header length one byte past the file": (struct.pack("<Q", len(RAW) - 7) + RAW[8:], HeaderError,
                                             "exceeds the file size"),
    "not safetensors at all": (b"\x89PNG\r\n\x1a\n" + bytes(200), HeaderError, "not a .hello/safetensors file"),
    "empty file": (b"", HeaderError, "too short"),
    "overlapping offsets": (_offsets("labels", -8), HeaderError, "overlaps"),
    "out-of-range offsets": (_offsets("labels", 8), HeaderError, "exceed the"),
    "flipped manifest byte": (RAW.replace(b'\\"epochs\\":300', b'\\"epochs\\":301'), IntegrityError,
                              "does not match 'hello.manifest.sha256'"),
    "unknown major": (with_manifest(RAW, lambda m: m.update(format_version="3.1")), UnsupportedVersionError,
                      "major 3"),
    "unknown required feature": (with_manifest(RAW, lambda m: m.update(format_version="2.1", requires=["later"])),
                                 UnsupportedVersionError, "the feature 'later'"),
    "2.0 without requires": (with_manifest(RAW, lambda m: m.update(format_version="2.0")), ManifestError,
                             "'requires' is missing"),
    "requires in 1.x": (with_manifest(RAW, lambda m: m.update(requires=[])), ManifestError,
                        "'requires' needs format_version 2.0"),
    "requires unbounded": (with_manifest(RAW, lambda m: m.update(format_version="2.0", requires=["x" * 5000])),
                           ManifestError, "at most 16 feature names of 1 to 40 characters"),
    "requires of 17 names": (with_manifest(RAW, lambda m: m.update(format_version="2.0",
                                                                   requires=[f"f{i}" for i in range(17)])),
                             ManifestError, "field 'requires' must be a list of at most 16 feature names"),
    "a feature listed twice": (with_manifest(RAW, lambda m: m.update(format_version="2.0", requires=["prior_mix"] * 2)),
                               ManifestError, "more than once"),
    "a listed feature unused": (with_manifest(RAW, lambda m: m.update(format_version="2.0", requires=["prior_mix"])),
                                ManifestError, "no field 'head.prior_weight'"),
    "prior weight out of range": (with_manifest(RAW, lambda m: m.update(format_version="2.0", requires=["prior_mix"],
                                                                      head={**m["head"], "prior_weight": 1.0})),
                                  ManifestError, "head.prior_weight"),
    "missing required field": (with_manifest(RAW, lambda m: m["base"].pop("fingerprint")), ManifestError,
                               "'fingerprint' is a required property"),
    "wrong field type": (with_manifest(RAW, lambda m: m["head"].update(logit_scale="big")), ManifestError,
                         "field 'head.logit_scale'"),
    "a lora bias (no bias deltas are stored)": (with_manifest(RAW, lambda m: m["lora"].update(bias="lora_only")),
                                                ManifestError, "field 'lora.bias'"),
    "a lora root other than the image tower": (with_manifest(RAW, lambda m: m["lora"].update(module_root="transformer")),
                                               ManifestError, "field 'lora.module_root'"),
    "image count vs labels": (with_manifest(RAW, lambda m: m["images"].update(count=5)), ManifestError,
                              "tensor 'labels'"),
    "class count vs head": (with_manifest(RAW, lambda m: m.update(class_names=["a", "b", "c", "d"], ipc=None)),
                            ManifestError, "tensor 'head.lora_B'"),
    "ipc vs a class's count, its long name cut": (with_manifest(RAW, lambda m: m.update(
        ipc=3, class_names=["x" * 512, *m["class_names"][1:]])), ManifestError,
        "field 'ipc' is 3 but class 0 ('" + "x" * 36 + "...) has 2 images"),
    "class folders vs class names": (with_manifest(RAW, lambda m: m["provenance"].update(class_folders=["a"])),
                                     ManifestError, "field 'provenance.class_folders': 1 folders for"),
    "duplicate class folder": (with_manifest(RAW, lambda m: m["provenance"].update(
        class_folders=["x"] * len(m["class_names"]))), ManifestError, "'x' appears more than once"),
    "duplicate long class name, cut": (with_manifest(RAW, lambda m: m.update(class_names=["y" * 512] * 2 + m["class_names"][2:])),
                                       ManifestError, "field 'class_names.1': '" + "y" * 36 + "... appears more than once"),
    "class folder with a control character": (with_manifest(RAW, lambda m: m["provenance"].update(
        class_folders=[f"c{i}\x1b" for i in range(len(m["class_names"]))])), ManifestError,
        "field 'provenance.class_folders.0': contains the control character U+001B"),
    "class folders not a list": (with_manifest(RAW, lambda m: m["provenance"].update(class_folders="abc")),
                                 ManifestError, "provenance.class_folders"),
    "requantized not a list": (with_manifest(RAW, lambda m: m["provenance"].update(requantized="int4")),
                               ManifestError, "provenance.requantized"),
    "requantized record without its target": (with_manifest(RAW, lambda m: m["provenance"].update(
        requantized=[{"from": ["float16"], "version": "0.1.0"}])), ManifestError, "provenance.requantized.0"),
    "integrity algorithm other than sha256": (with_manifest(RAW, lambda m: m["integrity"].update(algorithm="md5")),
                                              ManifestError, "field 'integrity.algorithm'"),
    "tensor not in integrity": (with_manifest(RAW, lambda m: m["integrity"]["tensors"].pop("labels")),
                                ManifestError, "integrity.tensors"),
    # JSON Schema's '$' (ECMA-262) is the end of the string; Python's also matched before a final newline
    "fingerprint with a final newline": (with_manifest(RAW, lambda m: m["base"].update(
        fingerprint=m["base"]["fingerprint"] + "\n")), ManifestError, "field 'base.fingerprint'"),
    "tensor hash with a final newline": (with_manifest(RAW, lambda m: m["integrity"]["tensors"].update(
        labels=m["integrity"]["tensors"]["labels"] + "\n")), ManifestError, "field 'integrity.tensors.labels'"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_file_gives_a_precise_error(tmp_path, case):
    data, error, match = CASES[case]
    path = corrupt(tmp_path, data)
    with pytest.raises(error) as info:
        open_all(path)
    assert match in str(info.value) and str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_a_header_longer_than_the_bound_is_refused_even_when_the_file_holds_it(tmp_path, monkeypatch):
    import hello_format.container

    length = struct.unpack("<Q", RAW[:8])[0]
    monkeypatch.setattr(hello_format.container, "MAX_HEADER_BYTES", length - 8)
    path = corrupt(tmp_path, RAW)
    with pytest.raises(HeaderError, match=rf"header length {length} exceeds the file size \({len(RAW)} bytes\) or "
                                          rf"{length - 8:,} bytes$"):
        open_all(path)


@pytest.mark.parametrize("text, constant", [("NaN", "NaN"), ("Infinity", "Infinity"), ("-Infinity", "-Infinity"),
                                            ('{"a": [1, NaN]}', "NaN")])
def test_strict_json_refuses_the_non_standard_constants(text, constant):
    from hello_format.container import strict_json_loads

    with pytest.raises(ValueError, match=f"^{constant} is not valid JSON$"):
        strict_json_loads(text)


@pytest.mark.parametrize("digits", ["18446744073709551615", "-18446744073709551615"])
def test_strict_json_reads_integers_of_20_digits(digits):
    from hello_format.container import strict_json_loads

    assert strict_json_loads(f"[{digits}]") == [int(digits)]


@pytest.mark.parametrize("digits", ["100000000000000000000", "-100000000000000000000"])
def test_strict_json_refuses_an_integer_of_21_digits(digits):
    """Spec 1.2: integers of more than 20 digits are refused (a 64-bit reader cannot hold them)."""
    from hello_format.container import strict_json_loads

    with pytest.raises(ValueError, match="has more than 20 digits$"):
        strict_json_loads(f'{{"a": {digits}}}')


@pytest.mark.parametrize("name", ["images.data", "head.lora_B"])
def test_flipped_tensor_byte_is_found_by_verify_naming_the_tensor(tmp_path, name):
    path = corrupt(tmp_path, _flip_tensor(PNG, name))
    bundle = Bundle.open(path)                      # the manifest and the header are intact
    with pytest.raises(IntegrityError, match=f"tensor '{name}' is corrupted"):
        bundle.verify()
    with pytest.raises(IntegrityError, match=f"tensor '{name}'"):
        Bundle.open(path, verify=True)


@pytest.mark.parametrize("name", ["labels", "images.offsets"])
def test_small_tensors_read_on_open_are_hash_checked(tmp_path, name):
    path = corrupt(tmp_path, _flip_tensor(PNG, name, offset=1))
    with pytest.raises(IntegrityError, match=f"tensor '{name}' is corrupted"):
        Bundle.open(path)


def test_image_blob_that_does_not_decode(tmp_path):
    data = _flip_tensor(PNG, "images.data", offset=1)  # inside the first PNG signature
    path = corrupt(tmp_path, data)
    with pytest.raises(ImageDecodeError, match="image 0 does not decode as png: UnidentifiedImageError: "
                                               "cannot identify image file$"):   # no "<_io.BytesIO object at 0x...>"
        Bundle.open(path).images()


# --- property: mutated headers and manifests never escape as anything but a HelloError

def _flip_header_bytes(data, draw):
    header_end = 8 + struct.unpack("<Q", data[:8])[0]
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 3))):
        out[draw(st.integers(0, header_end - 1))] = draw(st.integers(0, 255))
    return bytes(out), True


def _truncate(data, draw):
    return data[:draw(st.integers(0, len(data) - 1))], True


_JSON = st.recursive(st.none() | st.booleans() | st.integers(-3, 10**9) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=5),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                     max_leaves=5)


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, prefix + (index,))


def _mutate_json(document, draw):
    paths = [p for p in _paths(document) if p]
    path = draw(st.sampled_from(paths))
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    if draw(st.booleans()):
        parent[path[-1]] = draw(_JSON)
    elif isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent.pop(path[-1])


def _mutate_manifest(data, draw):
    """A re-hashed manifest with one field replaced or removed: exercises schema and consistency."""
    return with_manifest(data, lambda m: _mutate_json(m, draw)), False


def _mutate_header_json(data, draw):
    """One tensor entry field replaced or removed (the manifest stays as written)."""
    header, body = split(data)
    entries = {k: v for k, v in header.items() if k != "__metadata__"}
    _mutate_json(entries, draw)
    return join({"__metadata__": header["__metadata__"], **entries}, body), True


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_bundles_open_equal_or_raise_hello_error(tmp_path, data):
    name = data.draw(st.sampled_from(sorted(ORIGINALS)))
    mutate = data.draw(st.sampled_from([_flip_header_bytes, _truncate, _mutate_manifest, _mutate_header_json]))
    mutated, same_manifest = mutate(ORIGINALS[name], data.draw)
    path = tmp_path / "mutated.hello"
    path.write_bytes(mutated)
    try:
        result = open_all(path)
    except HelloError as exc:
        assert "\n" not in str(exc)
        return
    original = open_all(SPEC / "vectors" / name)
    if same_manifest:
        assert result[0] == original[0]
    for got, want in zip(result[1:3], original[1:3]):
        assert got.dtype == want.dtype and torch.equal(got, want)
    for got, want in zip(result[3:], original[3:]):
        assert got.keys() == want.keys()
        assert all(got[k].dtype == want[k].dtype and torch.equal(got[k], want[k]) for k in got)


# --- property: extreme manifest values cost little work and memory, then fail cleanly or pass

_SIZES = st.sampled_from([0, 1, 7, 1_000, 5_000, 20_000])
_SENSITIVE = [("class_names",), ("images", "count"), ("images", "height"), ("images", "width"), ("ipc",),
              ("lora", "target_modules"), ("lora", "rank_pattern"), ("lora", "r"), ("head", "templates"),
              ("head", "logit_scale"), ("base", "mean"), ("base", "std"), ("base", "image_size"), ("base", "config"),
              ("recipe", "epochs"), ("recipe", "augment"), ("integrity", "tensors"), ("provenance", "fidelity")]
_EXTREME = st.one_of(
    st.integers(-(10**30), 10**30),
    st.sampled_from([2**63, -(2**63), 2**64 + 1, 10**19, 0, -1]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e308, -1e308, 5e-324, 1e-320, 0.0]),
    st.tuples(st.sampled_from(["a", "\n", "{", "{}", "`", "<", "\u202e", "é", "\x00", "(a+)+"]),
              st.sampled_from([0, 1, 100, 100_000])).map(lambda t: t[0] * t[1]),
    st.sampled_from([1, 31, 33, 200]).map(lambda depth: json.loads("[" * depth + "]" * depth)),
    _SIZES.map(lambda n: list(range(n))),
    _SIZES.map(lambda n: [{"k": i} for i in range(n)]),
    _SIZES.map(lambda n: [f"c{i % 500}" for i in range(n)]),
    _SIZES.map(lambda n: {f"k{i}": i for i in range(n)}),
)


def _run_reader(path):
    """What open / verify / info do with a file: a HelloError is a clean outcome."""
    from click.testing import CliRunner
    from hello_format.cli import cli
    try:
        open_all(path)
    except HelloError as exc:
        assert "\n" not in str(exc)
    result = CliRunner().invoke(cli, ["info", str(path)])
    assert result.exit_code in (0, 2) and (result.exception is None or isinstance(result.exception, SystemExit)), \
        result.output


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_extreme_manifest_values_are_cheap(tmp_path, data):
    """Cost is counted, not timed (speed goals live in the benchmarks; a wall clock fails under load):
    the function calls cProfile sees, builtins included, and the memory tracemalloc sees, each bounded
    by the file's size. Reading a valid vector makes about 60,000 calls and each byte an extreme value
    adds at most about 8, so a step making calls per pair of a manifest list's items is far over (a loop
    without calls, or one slow C call, is not counted: the benchmarks time those)."""
    import cProfile
    import pstats
    import tracemalloc

    name = data.draw(st.sampled_from(sorted(ORIGINALS)))

    def put_extreme(manifest):
        paths = [p for p in _paths(manifest) if p]
        path = data.draw(st.sampled_from(_SENSITIVE) | st.sampled_from(paths))
        parent = manifest
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = data.draw(_EXTREME)

    path = corrupt(tmp_path, with_manifest(ORIGINALS[name], put_extreme))
    size = path.stat().st_size
    _run_reader(SPEC / "vectors" / name)  # warm caches (schema, imports) outside the budget
    profile = cProfile.Profile()
    profile.enable()
    try:
        _run_reader(path)
    finally:
        profile.disable()
    calls = pstats.Stats(profile).total_calls
    assert calls < 20 * size + 200_000, (calls, size)
    tracemalloc.start()
    try:
        _run_reader(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 40 * size + 8_000_000, (peak, size)
