"""Quantised deltas (format 1.1, spec section 3.3): the round trip's error bound, the stored layout
against an independent reader written from the spec's text, hostile files, ``hello requantize``, and
projectors built from int8/int4 bundles next to the fp16 one."""

import pathlib
import re
import warnings

import numpy as np
import pytest
import torch

import hello_format
from click.testing import CliRunner

from hello_format import limits
from hello_format.augment import augment_batch
from hello_format.bundle import Bundle
from hello_format.cli import cli
from hello_format.errors import BundleError, ManifestError
from hello_format.projector import Projector
from hello_format.calibration import ABOVE_LOW, BOUNDS, OBJECTIVES, CalibrationConfig
from hello_format.quantize import QMAX, dequantise, quantise, round_trip
from hello_format.recipe import Recipe
from hello_format.requantize import requantize, store_deltas
from hello_format.runtime import SELECTION_SEED
from spec_reader import dequantised_deltas
from support import load_script, rewritten, write_labelled_bundle

VECTORS = pathlib.Path(__file__).resolve().parent.parent / "spec" / "vectors"
samples = load_script("spec/make_vectors.py")
ENCODER_KEY = f"{samples.ROOT}transformer.resblocks.0.mlp.c_fc.lora_A.weight"


# --- quantise / dequantise --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["int8", "int4"])
@pytest.mark.parametrize("shape, group_size", [((8, 27), 64), ((5, 3, 3, 1), 7), ((1,), 64), ((2, 65), 1)])
def test_round_trip_error_is_at_most_half_a_step(dtype, shape, group_size):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)) * torch.logspace(-3, 1, shape[-1])
    values, scales = quantise(x, dtype, group_size)
    y = dequantise("t", "x", values, scales, shape, dtype, group_size)
    assert y.dtype == torch.float32 and y.shape == x.shape
    step = scales.float().repeat_interleave(group_size)[:x.numel()].reshape(shape)
    # half a step, plus the fp16 rounding of the scale (relative 2^-11 of max|x| = QMAX steps)
    assert bool(((x - y).abs() <= step * (0.5 + QMAX[dtype] * 2**-10)).all())
    assert not torch.equal(x, y)


@pytest.mark.parametrize("dtype", ["int8", "int4"])
@pytest.mark.parametrize("shape, group_size", [((8, 27), 64), ((5, 3, 3, 1), 7), ((3,), 64), ((2, 65), 1)])
def test_the_calibration_round_trip_is_exactly_what_a_reader_dequantises(dtype, shape, group_size):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1)) * torch.logspace(-3, 1, shape[-1])
    x.reshape(-1)[: min(group_size, x.numel())] = 0.0                      # an all-zero first group
    values, scales = quantise(x, dtype, group_size)
    assert torch.equal(round_trip(x, dtype, group_size), dequantise("t", "x", values, scales, shape, dtype, group_size))


def test_an_all_zero_group_has_scale_zero_and_dequantises_to_zeros():
    x = torch.cat([torch.zeros(8), torch.linspace(-1, 1, 8)])
    values, scales = quantise(x, "int4", 8)
    assert scales.tolist() == [0.0, pytest.approx(1 / 7, rel=1e-3)]
    y = dequantise("t", "x", values, scales, (16,), "int4", 8)
    assert torch.equal(y[:8], torch.zeros(8))
    assert -float(y[8]) == float(y[15]) == pytest.approx(1.0, rel=1e-3)   # 7 x fp16(1 / 7)


@pytest.mark.parametrize("dtype", ["int8", "int4"])
@pytest.mark.parametrize("short", ["values", "scales"])
def test_dequantise_refuses_values_or_scales_of_the_wrong_size(dtype, short):
    values, scales = quantise(torch.linspace(-1, 1, 18), dtype, 4)
    values, scales = (values[:-1], scales) if short == "values" else (values, scales[:-1])
    with pytest.raises(ManifestError, match=f"^t: tensor 'x' does not hold 18 {dtype} values in groups of 4$"):
        dequantise("t", "x", values, scales, (3, 6), dtype, 4)


def test_int4_packing_is_low_nibble_first_offset_by_8_with_a_zero_pad():
    x = torch.tensor([-7.0, 7.0, 0.0, 1.0, -1.0])      # max 7: scale exactly 1, q = x
    values, scales = quantise(x, "int4", 64)
    assert scales.tolist() == [1.0]
    assert values.tolist() == [0x1 | 0xF << 4, 0x8 | 0x9 << 4, 0x7]
    values8, _ = quantise(x * 127 / 7, "int8", 64)
    assert values8.tolist() == [-127, 127, 0, 18, -18]


def test_non_finite_or_huge_deltas_are_refused_when_writing():
    for bad in (float("nan"), float("inf"), 1e9):
        with pytest.raises(BundleError, match="cannot be stored as int4"):
            quantise(torch.tensor([0.0, bad]), "int4", 2)
    # a finite fp16 scale above MAX_DELTA_SCALE (1e4): 1e5 / 7 for int4, 2e6 / 127 for int8; at the bound it is stored
    for dtype, bad in (("int4", 1e5), ("int8", 2e6)):
        message = f"beyond {limits.MAX_DELTA_SCALE * QMAX[dtype]:g}: it cannot be stored as {dtype}"
        with pytest.raises(BundleError, match=re.escape(message) + "$"):
            quantise(torch.tensor([0.0, bad]), dtype, 2)
    assert quantise(torch.tensor([0.0, 7e4]), "int4", 2)[1].tolist() == [limits.MAX_DELTA_SCALE]


# --- the stored layout, read with the spec's words only (tests/spec_reader.py) ---------------------------------------


@pytest.mark.parametrize("name", ["valid_int4.hello"])
def test_the_reader_dequantises_bit_for_bit_as_the_spec_says(name):
    expected = dequantised_deltas(VECTORS / name)
    with Bundle.open(VECTORS / name, verify=True) as bundle:
        ours = {**{f"encoder_lora.{k}": v for k, v in bundle.lora_state_dict().items()},
                **{f"head.{k}": v for k, v in bundle.head_state_dict().items()}}
    assert set(ours) == set(expected) and len(ours) == 8
    for key, value in ours.items():
        assert value.dtype == torch.float32 and np.array_equal(value.numpy(), expected[key]), key
    # and the values are the vector's fp16 deltas up to half a step
    for key, fp16 in samples.sample_tensors().items():
        assert torch.allclose(ours[key], fp16.float(), atol=0.5 / 7 * 0.5 * 1.01)


def test_int8_bundles_read_bit_for_bit_too(tmp_path):
    path = requantize(VECTORS / "valid_png.hello", tmp_path / "int8.hello", "int8", 3).path
    expected = dequantised_deltas(path)
    with Bundle.open(path) as bundle:
        assert bundle.tensor("head.lora_B").dtype == torch.int8
        assert np.array_equal(bundle.head_state_dict()["lora_B"].numpy(), expected["head.lora_B"])


# --- hostile files -------------------------------------------------------------------------------------------------


def quantised_file(tmp_path, *, manifest_edit=None, tensors_edit=None, name="q.hello"):
    """The int4 vector's content, edited, correctly hashed and written without validation."""
    manifest, tensors = store_deltas(samples.sample_manifest(format_version="1.1"), samples.sample_tensors(),
                                     "int4", 5)
    images = samples._image_tensors(samples.sample_images(), "png", None)
    manifest["images"] = {"count": 6, "channels": 3, "height": 8, "width": 8, "codec": "png", "quality": None}
    tensors = {**tensors, **images, "labels": samples.sample_labels()}
    (manifest_edit or (lambda m: None))(manifest)
    (tensors_edit or (lambda t: None))(tensors)
    samples.write_unchecked(tmp_path / name, manifest, tensors)
    return tmp_path / name


def test_the_unedited_hostile_base_file_is_valid(tmp_path):
    with Bundle.open(quantised_file(tmp_path), verify=True) as bundle:
        assert bundle.manifest["lora"]["dtype"] == "int4"


@pytest.mark.parametrize("scale, why", [(float("nan"), "NaN"), (-0.5, "negative"), (2e4, "above 1e4"),
                                        (float("inf"), "infinite")])
def test_a_bad_scale_is_refused_before_it_is_used(tmp_path, scale, why):
    def edit(tensors):
        tensors["head.lora_A.scales"] = tensors["head.lora_A.scales"].clone()
        tensors["head.lora_A.scales"][1] = scale

    path = quantised_file(tmp_path, tensors_edit=edit)
    with pytest.raises(BundleError, match="tensor 'head.lora_A.scales' holds a scale") as caught:
        Bundle.open(path, verify=True)
    assert "\n" not in str(caught.value), why
    with Bundle.open(path) as bundle, pytest.raises(BundleError, match="holds a scale"):
        bundle.head_state_dict()                     # dequantising checks too, without verify


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.update({"head.lora_B": t["head.lora_B"][:-1].clone()}), "tensor 'head.lora_B' is U8 [5], expected U8 [6]"),
    (lambda t: t.update({"head.lora_B.scales": t["head.lora_B.scales"][:1].clone()}),
     "tensor 'head.lora_B.scales' is F16 [1], expected F16 [3]"),
    (lambda t: t.update({"head.lora_B": t["head.lora_B"].to(torch.int8)}), "is I8 [6], expected U8 [6]"),
    (lambda t: t.pop("head.lora_A.scales"), "tensor 'head.lora_A.scales' is missing"),
    (lambda t: t.update({f"{ENCODER_KEY}.scales.scales": torch.zeros(1, dtype=torch.float16)}), "is not listed in field 'lora.shapes'"),
    (lambda t: t.update({f"{ENCODER_KEY}.x": torch.zeros(1, dtype=torch.float16)}), "is not listed in field 'lora.shapes'"),
])
def test_wrong_packed_sizes_are_refused_on_open(tmp_path, edit, message):
    with pytest.raises(ManifestError, match="^[^\n]*$") as caught:
        Bundle.open(quantised_file(tmp_path, tensors_edit=edit))
    assert message in str(caught.value)


def _shapes(section, key, value):
    return lambda m: m[section].update(shapes={**m[section]["shapes"], key: value}) if section == "lora" \
        else m["head"]["lora"].update(shapes={**m["head"]["lora"]["shapes"], key: value})


@pytest.mark.parametrize("edit, error, message", [
    (lambda m: m["lora"].update(group_size=limits.MAX_GROUP_SIZE + 1), ManifestError, "field 'lora.group_size': 65537 is outside"),
    (lambda m: m["head"]["lora"].update(group_size=2**62), ManifestError, "field 'head.lora.group_size'"),
    (lambda m: m["lora"].pop("shapes"), ManifestError, "field 'lora'"),
    (lambda m: m.update(format_version="1.0"), ManifestError, "field 'lora.dtype' is int4, which needs format_version 1.1"),
    (lambda m: m["lora"].update(dtype="float16"), ManifestError, "field 'lora'"),       # float with group_size, shapes
    (_shapes("head", "lora_B", [2**31 - 1] * 8), ManifestError, "field 'head.lora.shapes.lora_B': [2147483647,"),
    (_shapes("head", "lora_B", [2**31] * 2), ManifestError, "field 'head.lora.shapes.lora_B'"),
    *[(_shapes("head", "lora_B", shape), ManifestError,
       "field 'head.lora.shapes.lora_B': not a list of at most 8 integers in [0, 2147483647]")
      for shape in ([2**31, 1], [1] * 9, "8")],
    (_shapes("lora", "x" * 2000, [1]), ManifestError, "a key of 2000 characters"),
    # zero elements, every dimension in range, but a product torch's strides overflow (as a header's shape)
    (_shapes("lora", ENCODER_KEY.removeprefix("encoder_lora."), [4, 0, 2**31 - 1, 2**31 - 1]), ManifestError,
     f"the product of its dimensions (a 0 counted as 1) must be at most {limits.MAX_TENSOR_ELEMENTS:,}"),
    (_shapes("lora", "base_model.model.conv9.lora_A.weight", [2, 8]), ManifestError,
     "tensor 'encoder_lora.base_model.model.conv9.lora_A.weight' is missing"),
])
def test_hostile_manifests_are_refused_before_anything_is_allocated(tmp_path, edit, error, message):
    with pytest.raises(error, match="^[^\n]*$") as caught:
        Bundle.open(quantised_file(tmp_path, manifest_edit=edit))
    assert message in str(caught.value)


# --- hello requantize ----------------------------------------------------------------------------------------------


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_requantize_keeps_a_2_0_file_and_its_prior_mix(tmp_path):
    # versions compare as pairs: 2.0 is later than 1.1, so int4 deltas need no change of version
    result = invoke("requantize", VECTORS / "valid_prior_mix.hello", tmp_path / "int8.hello", "--delta-dtype", "int8")
    assert result.exit_code == 0, result.output
    with Bundle.open(tmp_path / "int8.hello", verify=True) as after:
        manifest = after.manifest
    assert (manifest["format_version"], manifest["requires"]) == ("2.0", ["prior_mix"])
    assert manifest["head"]["prior_weight"] == 0.25 and manifest["lora"]["dtype"] == "int8"


def test_requantize_round_trip_keeps_everything_but_the_deltas(tmp_path):
    source = tmp_path / "in.hello"
    source.write_bytes((VECTORS / "valid_minor_version.hello").read_bytes())   # 1.7, with an unknown section
    result = invoke("requantize", source, tmp_path / "int4.hello", "--delta-dtype", "int4", "--group-size", "4")
    assert result.exit_code == 0, result.output
    assert "deltas float16/float16 -> int4 (group size 4)" in result.output
    with Bundle.open(source) as before, Bundle.open(tmp_path / "int4.hello", verify=True) as after:
        assert after.manifest["format_version"] == "1.7"                            # kept: it is later than 1.1
        assert after.manifest["future_section"] == {"added_in": "1.7"}
        for field in ("class_names", "images", "recipe", "base"):
            assert after.manifest[field] == before.manifest[field], field
        provenance = dict(after.manifest["provenance"])
        assert provenance.pop("fidelity") == {"quantisation": {"dtype": "int4", "group_size": 4, "steps": 0}}
        # the conversion is recorded beside the build's own options, which stay the build's
        assert provenance.pop("requantized") == [{"from": ["float16", "float16"], "to": "int4", "group_size": 4,
                                                  "version": hello_format.__version__}]
        assert provenance == before.manifest["provenance"]
        for name in ("images.data", "images.offsets", "labels"):
            assert torch.equal(after.tensor(name), before.tensor(name)), name
        assert after.manifest["lora"]["group_size"] == 4 and after.manifest["head"]["lora"]["dtype"] == "int4"
        assert after.storage().label_generator_bytes <= before.storage().label_generator_bytes / 2
        assert torch.allclose(after.head_state_dict()["lora_B"], before.head_state_dict()["lora_B"].float(), atol=0.05)
    info = invoke("info", tmp_path / "int4.hello")
    assert "int4 (group size 4)" in info.output and "head: 2 templates" in info.output

    refused = invoke("requantize", tmp_path / "int4.hello", tmp_path / "fp16.hello", "--delta-dtype", "fp16")
    assert refused.exit_code == 2 and "--allow-upcast" in refused.output and not (tmp_path / "fp16.hello").exists()
    upcast = invoke("requantize", tmp_path / "int4.hello", tmp_path / "fp16.hello", "--delta-dtype", "fp16",
                    "--allow-upcast")
    assert upcast.exit_code == 0 and "the deltas are the dequantised values of IN's" in upcast.output
    assert "deltas int4/int4 -> float16; the deltas" in upcast.output     # no group size for float deltas
    with Bundle.open(tmp_path / "fp16.hello", verify=True) as fp16, Bundle.open(tmp_path / "int4.hello") as int4:
        assert "group_size" not in fp16.manifest["lora"] and fp16.manifest["lora"]["dtype"] == "float16"
        assert fp16.manifest["provenance"]["fidelity"] == {}       # float deltas: no quantisation record
        assert [(r["from"], r["to"], r["group_size"]) for r in fp16.manifest["provenance"]["requantized"]] == \
            [(["float16", "float16"], "int4", 4), (["int4", "int4"], "float16", None)]   # oldest first
        # the dequantised int4 values, rounded to fp16 (q x an fp16 scale can need more than fp16's 11 bits)
        assert torch.equal(fp16.head_state_dict()["lora_A"], int4.head_state_dict()["lora_A"].half())


def test_requantize_refuses_an_output_that_names_a_folder(tmp_path):
    """``hello requantize IN somedir/`` wrote a file named somedir (a user's walkthrough)."""
    source = tmp_path / "in.hello"
    source.write_bytes((VECTORS / "valid_png.hello").read_bytes())
    result = invoke("requantize", source, f"{tmp_path / 'somedir'}/", "--delta-dtype", "int8")
    assert result.exit_code == 2 and "somedir/ is a folder: name the bundle file to write" in result.output, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.hello"]


def test_requantize_refuses_an_empty_output_path(tmp_path):
    path = write_labelled_bundle(tmp_path / "fp32.hello", "vit")
    refused = invoke("requantize", path, "", "--delta-dtype", "int8")
    assert refused.exit_code == 2 and refused.stderr == "error: the output path is empty: name the bundle file to write\n"


def test_requantize_refuses_a_missing_folder_before_reading_or_calibrating(tmp_path):
    """The folder was checked after the calibration: minutes of work, then the error."""
    source = tmp_path / "in.hello"
    source.write_bytes(b"not a bundle: reading it would fail first")
    out = tmp_path / "nodir" / "x.hello"
    result = invoke("requantize", source, out, "--delta-dtype", "int8", "--calibration-steps", "10")
    assert result.exit_code == 2 and f"{out}: directory {out.parent} does not exist" in result.output, result.output


def test_requantize_refuses_to_overwrite_unless_asked(tmp_path):
    source = tmp_path / "in.hello"
    source.write_bytes((VECTORS / "valid_png.hello").read_bytes())
    before = source.read_bytes()
    result = invoke("requantize", source, source, "--delta-dtype", "int8")
    assert result.exit_code == 2 and "(it is the input bundle): pass --overwrite" in result.output
    assert source.read_bytes() == before
    assert invoke("requantize", source, source, "--delta-dtype", "int8", "--overwrite").exit_code == 0
    with Bundle.open(source, verify=True) as bundle:
        assert bundle.manifest["lora"]["dtype"] == "int8" and bundle.manifest["format_version"] == "1.1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.hello"]    # no temp file left


@pytest.mark.parametrize("same", [False, True])
def test_requantize_never_leaves_or_replaces_with_a_file_the_reader_refuses(tmp_path, monkeypatch, same):
    """A reader that let a logical shape through which a header may not hold (here: without the product
    bound on lora.shapes) made requantize write a float16 file the reader then refused, left at OUT
    (with --overwrite and OUT = IN: in place of IN). OUT is renamed into place only once it reopens."""
    from hello_format import manifest as manifest_module

    monkeypatch.setattr(manifest_module, "_check_quantised", lambda *args: None)
    key = ENCODER_KEY.removeprefix("encoder_lora.")

    def zero_elements(manifest):
        manifest["lora"]["shapes"][key] = [2, 0, 2**31 - 1, 2**31 - 1]      # rank 2, as lora.r
        manifest["lora"]["shapes"][key.replace("lora_A", "lora_B")] = [0, 2, 1, 1]

    def empty(tensors):
        for name in (ENCODER_KEY, ENCODER_KEY.replace("lora_A", "lora_B")):
            tensors[name], tensors[name + ".scales"] = torch.zeros(0, dtype=torch.uint8), torch.zeros(0, dtype=torch.float16)

    source = quantised_file(tmp_path, manifest_edit=zero_elements, tensors_edit=empty, name="in.hello")
    before = source.read_bytes()
    target = source if same else tmp_path / "out.hello"
    with pytest.raises(BundleError, match="^[^\n]*$") as caught:
        requantize(source, target, "float16", overwrite=True, allow_upcast=True)
    assert str(caught.value).startswith(f"{target}: tensor ") and "2147483647" in str(caught.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.hello"] and source.read_bytes() == before


def test_requantize_int4_to_int8_is_an_upcast_too(tmp_path):
    """int8 holds no precision int4 dropped: a wider integer dtype is refused like a float one."""
    source = quantised_file(tmp_path, name="in.hello")
    with pytest.raises(BundleError, match="stores int4 deltas: as int8 .* --allow-upcast"):
        requantize(source, tmp_path / "int8.hello", "int8")
    assert not (tmp_path / "int8.hello").exists()
    assert requantize(source, tmp_path / "int8.hello", "int8", allow_upcast=True).after == "int8"


def test_requantize_refuses_a_corrupted_input(tmp_path):
    result = invoke("requantize", VECTORS / "tensor_byte_flipped.hello", tmp_path / "out.hello", "--delta-dtype", "int4")
    assert result.exit_code == 2 and "corrupted" in result.output and not (tmp_path / "out.hello").exists()


# --- projectors ----------------------------------------------------------------------------------------------------


def test_quantised_projectors_label_like_the_float_one(tmp_path):
    path = write_labelled_bundle(tmp_path / "fp32.hello", "vit")      # non-zero fp32 deltas
    views = torch.rand(64, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with Bundle.open(path) as bundle:
        reference = Projector.from_bundle(bundle).label(views)
    errors = {}
    for dtype in ("int8", "int4"):
        with Bundle.open(requantize(path, tmp_path / f"{dtype}.hello", dtype, 64).path, verify=True) as bundle:
            logits = Projector.from_bundle(bundle).label(views)
        errors[dtype] = float((logits - reference).abs().max())
    spread = float(reference.abs().max())
    assert errors["int8"] < 0.01 * spread and errors["int4"] < 0.1 * spread
    assert 0 < errors["int8"] < errors["int4"]       # the deltas matter, and int4 is coarser


# --- calibration ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_calibrated_int4_values_keep_more_labels_and_are_what_the_file_stores(tmp_path, objective):
    """Calibration (under each objective) raises the int4 projector's agreement with the float one on
    the selection views, records it, and the written file's own projector (read as any reader reads it)
    agrees exactly that often: the kept state is what was stored. A coarse group (512) and large deltas
    make rounding cost labels on this tiny base."""
    path = write_labelled_bundle(tmp_path / "fp32.hello", "vit", classes=tuple("abcdefghij"), ipc=2, lora_std=0.3)
    config = CalibrationConfig(steps=30, lr=0.01, selection_views=128, batch_size=16, check_every=10, objective=objective)
    rounded = requantize(path, tmp_path / "rounded.hello", "int4", 512)
    done = requantize(path, tmp_path / "calibrated.hello", "int4", 512, calibration=config)
    assert rounded.calibration is None
    report = done.calibration
    assert report["agreement"] > report["agreement_rounded"]
    with Bundle.open(path) as bundle:
        reference, images = Projector.from_bundle(bundle), bundle.images()
        augment = Recipe.from_manifest(bundle.manifest["recipe"]).augment
    generator = torch.Generator().manual_seed(SELECTION_SEED)
    views = torch.cat([augment_batch(images[torch.randint(0, len(images), (16,), generator=generator)], augment,
                                     generator).images for _ in range(128 // 16)])
    for name, expected in (("rounded", report["agreement_rounded"]), ("calibrated", report["agreement"])):
        with Bundle.open(tmp_path / f"{name}.hello", verify=True) as bundle:
            same = (Projector.from_bundle(bundle).label(views).argmax(1) == reference.label(views).argmax(1))
            assert abs(float(same.float().mean()) - expected) <= 1 / 128, name     # merged vs unmerged round-off
            if name == "calibrated":
                assert bundle.manifest["provenance"]["fidelity"]["quantisation"] == report
                assert report["steps"] == 30 and report["views"] == 128 and report["objective"] == objective


def test_calibration_decodes_only_the_images_it_draws(tmp_path, monkeypatch):
    """requantize decoded every image before calibrating; its views draw fewer (at most 16 here, of 30 images)."""
    from support import count_decodes

    path = write_labelled_bundle(tmp_path / "fp32.hello", "vit", classes=tuple("abcdefghij"), ipc=3, lora_std=0.3)
    decoded = count_decodes(monkeypatch)
    config = CalibrationConfig(steps=1, selection_views=8, batch_size=8)   # 8 selection views, 8 fitted
    assert requantize(path, tmp_path / "int4.hello", "int4", 512, calibration=config).calibration["views"] == 8
    assert 0 < len(decoded) == len(set(decoded)) <= 16


def test_the_rounded_agreement_is_measured_on_the_selection_views_not_the_fitted_ones(tmp_path):
    """calibrate chooses its kept state on views of SELECTION_SEED, never on the views it fits (FIT_SEED):
    its rounded agreement is exactly that of the round-to-nearest deltas on those views (the same unmerged
    projector; 64 views, where the fitted views' agreement differs by one)."""
    import copy

    from hello_format.calibration import calibrate

    path = write_labelled_bundle(tmp_path / "fp32.hello", "vit", classes=tuple("abcdefghij"), ipc=2, lora_std=0.3)
    with Bundle.open(path) as bundle:
        projector, images = Projector.from_bundle(bundle, merge=False), bundle.images()
        augment = Recipe.from_manifest(bundle.manifest["recipe"]).augment
    rounded = copy.deepcopy(projector)
    with torch.no_grad():
        for name, parameter in rounded.named_parameters():
            if "lora_" in name:
                parameter.copy_(round_trip(parameter, "int4", 512))
    generator = torch.Generator().manual_seed(SELECTION_SEED)
    views = torch.cat([augment_batch(images[torch.randint(0, len(images), (16,), generator=generator)], augment,
                                     generator).images for _ in range(64 // 16)])
    with torch.no_grad():
        expected = float((rounded(views).argmax(1) == projector(views).argmax(1)).float().mean())
    report = calibrate(projector, images, augment, "int4", 512,
                       CalibrationConfig(steps=0, selection_views=64, batch_size=16))
    assert report["views"] == 64 and report["agreement_rounded"] == report["agreement"] == expected


def test_calibration_refuses_an_unknown_objective(tmp_path):
    with pytest.raises(ValueError, match="calibration objective must be one of kl, mse, got 'l1'"):
        CalibrationConfig(objective="l1")
    path = write_labelled_bundle(tmp_path / "fp32.hello", "vit", lora_std=0.3)
    refused = invoke("requantize", path, tmp_path / "int4.hello", "--delta-dtype", "int4", "--calibration-steps", "3",
                     "--calibration-objective", "l1")
    assert refused.exit_code == 2 and "'l1' is not one of 'kl', 'mse'" in refused.output
    assert not (tmp_path / "int4.hello").exists()


def test_requantize_to_a_float_dtype_too_narrow_for_the_deltas_says_so(tmp_path):
    """float32 deltas of 1e5 (a valid file) cast to float16 became inf, and the written copy's finite check
    blamed the output, 'holds NaN or infinite values ... rebuild the bundle', where the int8/int4 path says the
    values cannot be stored as that dtype (fifteenth audit)."""
    def large(manifest, tensors):
        for name in [n for n in tensors if n.startswith("encoder_lora.") and n.endswith("lora_B.weight")]:
            tensors[name] = torch.full_like(tensors[name], 1e5)
    path = rewritten(write_labelled_bundle(tmp_path / "fp32.hello", "vit"), tmp_path / "large.hello", large)
    refused = invoke("requantize", path, tmp_path / "fp16.hello", "--delta-dtype", "fp16")
    assert refused.exit_code == 2, refused.output
    assert refused.stderr.splitlines() == ["error: a delta holds values beyond 65504, the largest float16: it cannot "
                                           "be stored as float16"]
    assert not (tmp_path / "fp16.hello").exists()
    assert requantize(path, tmp_path / "bf16.hello", "bfloat16").after == "bfloat16"   # its range holds them


def test_calibrating_a_projector_whose_logits_are_not_finite_is_one_line_and_writes_nothing(tmp_path):
    """Calibration ran the float projector's forward without label()'s finite check: a file whose deltas are
    finite when merged (int8-storable, 1e6) but overflow the activations (lora_alpha 1e6) gave NaN logits on
    every view, whose argmax agreed with itself, so hello requantize wrote the file with agreement 1.0 rounded
    and calibrated, where every reader's labels are refused (fifteenth audit)."""
    def overflowing(manifest, tensors):
        manifest["lora"]["lora_alpha"] = 1e6
        for name in [n for n in tensors if n.startswith("encoder_lora.")]:
            tensors[name] = torch.full_like(tensors[name], 1e6)
    path = rewritten(write_labelled_bundle(tmp_path / "fp32.hello", "vit"), tmp_path / "hot.hello", overflowing)
    refused = invoke("requantize", path, tmp_path / "int8.hello", "--delta-dtype", "int8", "--calibration-steps", "2",
                     "--calibration-batch-size", "8", "--calibration-selection-views", "8", "--quiet")
    assert refused.exit_code == 2, refused.output
    assert refused.stderr.splitlines() == [f"error: {path}: the float projector produced non-finite logits on a "
                                           "calibration view: its weights overflow (rebuild the bundle)"]
    assert not (tmp_path / "int8.hello").exists()


@pytest.mark.parametrize("steps, what", [("5", "calibrate"), ("0", "requantize")])
def test_requantizing_a_bundle_without_deltas_is_one_line_before_anything_is_built(tmp_path, monkeypatch, steps, what):
    """A zero-shot bundle (no LoRA, schema-valid) made calibration raise a bare ValueError: a traceback
    after the base was built and every image decoded (found by the ninth hostile-input audit). Without
    calibration a new file was written, format 1.1 for no int8 value, its provenance recording a
    quantisation of deltas it does not have (a CLI walkthrough)."""
    def zero_shot(manifest, tensors):
        manifest["lora"], manifest["head"]["lora"] = None, None
        for name in [n for n in tensors if n.startswith("encoder_lora.") or n in ("head.lora_A", "head.lora_B")]:
            del tensors[name]
    path = rewritten(write_labelled_bundle(tmp_path / "fp32.hello", "vit"), tmp_path / "zero-shot.hello", zero_shot)
    monkeypatch.setattr(Projector, "from_bundle", lambda *a, **k: pytest.fail("a projector was built"))
    refused = invoke("requantize", path, tmp_path / "int4.hello", "--delta-dtype", "int4", "--calibration-steps", steps)
    assert refused.exit_code == 2, refused.output
    assert refused.stderr.splitlines() == [f"error: {path} stores no LoRA deltas (the zero-shot projector): there is "
                                           f"nothing to {what}"]
    assert not (tmp_path / "int4.hello").exists()


def test_requantize_says_which_calibration_options_it_does_not_use(tmp_path):
    """Without --calibration-steps the calibration options and the base's did nothing, unsaid (a CLI
    walkthrough); hello eval says so of its inputs."""
    path = write_labelled_bundle(tmp_path / "fp32.hello", "rn")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plain = invoke("requantize", path, tmp_path / "a.hello", "--delta-dtype", "int8")
    assert plain.exit_code == 0, plain.output
    with pytest.warns(UserWarning) as caught:
        told = invoke("requantize", path, tmp_path / "b.hello", "--delta-dtype", "int8", "--calibration-lr", "0.01",
                      "--calibration-objective", "mse", "--allow-remote-base")
    assert told.exit_code == 0, told.output
    assert [str(w.message) for w in caught] == ["requantize without --calibration-steps does not use "
                                                "--calibration-objective or --calibration-lr or --allow-remote-base"]
    assert (tmp_path / "a.hello").read_bytes() == (tmp_path / "b.hello").read_bytes()
    # a group size for float deltas, dropped unsaid too (the commands walkthrough)
    with pytest.warns(UserWarning) as caught:
        told = invoke("requantize", path, tmp_path / "c.hello", "--delta-dtype", "fp16", "--group-size", "16")
    assert told.exit_code == 0 and [str(w.message) for w in caught] == ["requantize to fp16 does not use --group-size"]


def test_requantize_quiet_shows_no_text_head_bar_either(tmp_path, monkeypatch):
    """--quiet hid the calibration's bar, but the projector's text-head bar (a base whose head is neither stored
    nor cached) was left to tqdm's own choice: shown on a terminal, where CliRunner's output is not one."""
    from hello_format import head
    from support import with_local_base

    bars, tqdm = [], head.tqdm

    def recorded(*args, **kwargs):
        bars.append((kwargs.get("desc"), kwargs.get("disable")))
        return tqdm(*args, **kwargs)

    source = write_labelled_bundle(tmp_path / "fp32.hello", "vit", lora_std=0.3)
    path = with_local_base(source, tmp_path / "local.hello", tmp_path / "base.safetensors")
    monkeypatch.setenv("HELLO_CACHE", str(tmp_path / "cache"))   # the head is computed, not read from the cache
    monkeypatch.setattr(head, "tqdm", recorded)
    result = invoke("requantize", path, tmp_path / "int8.hello", "--delta-dtype", "int8", "--calibration-steps", "2",
                    "--base-checkpoint", tmp_path / "base.safetensors", "--quiet")
    assert result.exit_code == 0, result.output
    assert bars and all(disable is True for _, disable in bars), bars


def test_both_commands_take_the_calibration_bounds_of_calibration_config():
    """hello requantize --calibration-X, hello-build --delta-calibration-X and CalibrationConfig share
    calibration.BOUNDS (the command lines had restated them)."""
    from hello_build.cli import main as build_main

    requantize_ranges = {p.name: p.type for p in cli.commands["requantize"].params}
    build_ranges = {p.name: p.type for p in build_main.params}
    for name, (low, high) in BOUNDS.items():
        for kind in (requantize_ranges[f"calibration_{name}"], build_ranges[f"delta_calibration_{name}"]):
            assert (kind.min, kind.max, kind.min_open) == (low, high, name in ABOVE_LOW), name
        below = low if name in ABOVE_LOW else low - 1
        for value in (below, high * 2):
            with pytest.raises(ValueError, match=f"calibration {name} must be in "):
                CalibrationConfig(**{name: value})


def test_requantize_calibrates_from_the_command_line(tmp_path):
    path = write_labelled_bundle(tmp_path / "fp32.hello", "vit", lora_std=0.3)
    result = invoke("requantize", path, tmp_path / "int8.hello", "--delta-dtype", "int8", "--calibration-steps", "3",
                    "--calibration-lr", "0.02", "--calibration-batch-size", "16", "--calibration-selection-views", "64",
                    "--calibration-check-every", "2", "--calibration-objective", "mse")
    assert result.exit_code == 0, result.output
    assert "calibrated 3 steps (mse): top-1 agreement with the float projector on 64 selection views" in result.output
    assert "calibrate int8" in result.stderr   # its progress bar, which --quiet leaves out
    quiet = invoke("requantize", path, tmp_path / "quiet.hello", "--delta-dtype", "int8", "--calibration-steps", "3",
                   "--quiet")
    assert quiet.exit_code == 0 and quiet.stderr == "", quiet.output
    with Bundle.open(tmp_path / "int8.hello", verify=True) as bundle:
        record = bundle.manifest["provenance"]["fidelity"]["quantisation"]
    assert (record["steps"], record["lr"], record["batch_size"], record["check_every"], record["objective"]) == \
        (3, 0.02, 16, 2, "mse")
    refused = invoke("requantize", path, tmp_path / "x.hello", "--delta-dtype", "int8", "--calibration-steps", "3",
                     "--calibration-lr", "0")
    assert refused.exit_code == 2 and "--calibration-lr" in refused.output and not (tmp_path / "x.hello").exists()
    refused = invoke("requantize", path, tmp_path / "fp16.hello", "--delta-dtype", "fp16", "--calibration-steps", "3")
    assert refused.exit_code == 2 and "calibration chooses int8/int4 values" in refused.output
    assert not (tmp_path / "fp16.hello").exists()
