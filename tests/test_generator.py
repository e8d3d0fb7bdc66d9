"""The label generator's sections: one dataclass each writes and reads ``lora``, ``head``, ``head.lora``."""

import dataclasses
import json

import pytest

from hello_build.options import BuildOptions
from hello_format.errors import ManifestError
from hello_format.generator import QUANTISED_FIELDS, EncoderLoraConfig, HeadConfig, HeadLoraConfig
from hello_format.lora import default_targets
from hello_format.manifest import canonical_json
from hello_format.testing import tiny_projector

ENCODER = EncoderLoraConfig(target_modules=("conv1", "layer1.0.conv2"), r=4, lora_alpha=8, rank_pattern={"conv1": 2},
                            alpha_pattern={"conv1": 3.5}, dtype="bfloat16")
HEAD = HeadConfig(templates=("a photo of a {}.", "a {}."), normalize_features=False, logit_scale=42.5,
                  lora=HeadLoraConfig(r=16, lora_alpha=8.0, dtype="float32"))


@pytest.mark.parametrize("config", [ENCODER, EncoderLoraConfig(target_modules=r"conv\d"), HEAD,
                                    HeadConfig(templates=["{}"], logit_scale=1.0), HEAD.lora])
def test_a_section_reads_back_what_it_wrote_through_json(config):
    section = json.loads(canonical_json(config.to_manifest()))
    assert type(config).from_manifest(section) == config


def test_null_sections_read_as_none_and_unknown_keys_are_ignored():
    assert EncoderLoraConfig.from_manifest(None) is None and HeadLoraConfig.from_manifest(None) is None
    assert HeadConfig.from_manifest({**HEAD.to_manifest(), "lora": None}).lora is None
    assert EncoderLoraConfig.from_manifest({**ENCODER.to_manifest(), "use_dora": False}) == ENCODER


@pytest.mark.parametrize("family", ["vit", "rn"])
@pytest.mark.parametrize("dtype", [None, "float32"])
def test_projector_sections_are_byte_identical_to_the_dict_writer(family, dtype):
    """The JSON the sections were written as before they were dataclasses (lora.lora_manifest,
    head.head_lora_manifest and the projector's head dict), for tiny_projector's settings."""
    projector = tiny_projector(family)
    stored = dtype or "float16"
    before = {
        "base": projector.base_manifest,
        "lora": {"peft_type": "LORA", "module_root": "visual", "target_modules": default_targets(projector.visual),
                 "r": 4, "lora_alpha": 8, "rank_pattern": {}, "alpha_pattern": {}, "lora_dropout": 0.0,
                 "bias": "none", "dtype": stored},
        "head": {"templates": ["a photo of a {}."], "ensemble": "mean", "normalize_features": True,
                 "logit_scale": projector.logit_scale, "lora": {"r": 8, "lora_alpha": 8, "dtype": stored}},
    }
    assert canonical_json(projector.manifest_sections(dtype)) == canonical_json(before)


@pytest.mark.parametrize("reader, section, message", [
    (EncoderLoraConfig, {k: v for k, v in ENCODER.to_manifest().items() if k != "r"}, "field 'lora.r' is missing"),
    (EncoderLoraConfig, {**ENCODER.to_manifest(), "r": "8"}, "field 'lora.r' must be an integer, got str"),
    (EncoderLoraConfig, {**ENCODER.to_manifest(), "r": True}, "field 'lora.r' must be an integer, got bool"),
    (EncoderLoraConfig, {**ENCODER.to_manifest(), "target_modules": 5}, "'lora.target_modules' must be a string or a list"),
    (EncoderLoraConfig, {**ENCODER.to_manifest(), "target_modules": "(?=x)"}, "is not a supported target pattern"),
    (EncoderLoraConfig, {**ENCODER.to_manifest(), "rank_pattern": {"conv1": 2.5}}, "'lora.rank_pattern' must be an object of integers"),
    (EncoderLoraConfig, [1, 2], "field 'lora' is list, not an object"),
    (EncoderLoraConfig, {**ENCODER.to_manifest(), "bias": "lora_only"}, "lora.bias must be 'none', got 'lora_only'"),
    (EncoderLoraConfig, {**ENCODER.to_manifest(), "module_root": "transformer"}, "lora.module_root must be 'visual'"),
    (EncoderLoraConfig, {**ENCODER.to_manifest(), "peft_type": "IA3"}, "lora.peft_type must be 'LORA'"),
    (HeadConfig, {**HEAD.to_manifest(), "templates": "a {}."}, "field 'head.templates' must be a list of strings"),
    (HeadConfig, {**HEAD.to_manifest(), "normalize_features": 1}, "field 'head.normalize_features' must be a boolean"),
    (HeadConfig, {**HEAD.to_manifest(), "lora": 3}, "field 'head.lora' must be an object or null"),
    (HeadConfig, {**HEAD.to_manifest(), "lora": {"r": 4, "dtype": "float16"}}, "field 'head.lora.lora_alpha' is missing"),
    (HeadLoraConfig, {"r": 4, "lora_alpha": "big", "dtype": "float16"}, "field 'head.lora.lora_alpha' must be a number"),
])
def test_a_missing_or_ill_typed_field_is_a_one_line_manifest_error(reader, section, message):
    with pytest.raises(ManifestError, match="^[^\n]*$") as caught:
        reader.from_manifest(section)
    assert message in str(caught.value)


def test_the_builder_takes_the_encoder_lora_defaults_from_the_config():
    options, config = BuildOptions(), EncoderLoraConfig(target_modules="conv1")
    assert (options.lora_rank, options.lora_alpha) == (config.r, config.lora_alpha)
    names = {f.name for f in dataclasses.fields(EncoderLoraConfig)}
    assert set(config.to_manifest()) == names - set(QUANTISED_FIELDS)   # a float section reads as in format 1.0
    quantised = dataclasses.replace(config, dtype="int4", group_size=64, shapes={})
    assert set(quantised.to_manifest()) == names
