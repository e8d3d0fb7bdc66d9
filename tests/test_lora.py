"""Encoder LoRA: every default target is live, merging is exact, weights round-trip (also via peft)."""

import json
import re
import warnings

import pytest
import torch
from peft import PeftModel
from peft.tuners.tuners_utils import BaseTunerLayer

from hello_format import lora
from hello_format.errors import ManifestError
from hello_format.testing import tiny_clip, tiny_projector

FAMILIES = ["vit", "rn"]
IMAGES = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _lora_modules(module):
    return [name for name, sub in module.named_modules() if isinstance(sub, BaseTunerLayer)]


def _randomize_b(visual, seed=1):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in visual.named_parameters():
            if "lora_B" in name:
                parameter.copy_(0.05 * torch.randn(parameter.shape, generator=generator))


def test_vit_default_targets_cover_attention_and_mlp_of_every_block():
    visual = tiny_clip("vit").visual
    lora.inject(visual, lora.encoder_config(visual, r=2))
    wrapped = set(_lora_modules(visual))
    for block in range(len(visual.transformer.resblocks)):
        for part in ("attn", "attn.base_layer.out_proj", "mlp.c_fc", "mlp.c_proj"):
            assert f"transformer.resblocks.{block}.{part}" in wrapped
    assert len(wrapped) == 4 * len(visual.transformer.resblocks)


def test_resnet_default_targets_are_every_conv_but_never_the_attention_pool():
    visual = tiny_clip("rn").visual
    convs = {name for name, sub in visual.named_modules() if isinstance(sub, torch.nn.Conv2d)}
    lora.inject(visual, lora.encoder_config(visual, r=2))
    wrapped = set(_lora_modules(visual))
    assert wrapped == convs
    assert not any(name.startswith("attnpool") for name in wrapped)


def test_lora_on_the_resnet_attention_pool_would_be_dead():
    """Why attnpool is excluded: F.multi_head_attention_forward reads q/k/v_proj.weight directly."""
    visual = tiny_clip("rn").visual
    lora.inject(visual, lora.encoder_config(visual, r=2, target_modules=r"attnpool\.(q|k|v|c)_proj"))
    with torch.no_grad():
        before = visual(IMAGES)
        _randomize_b(visual)
        after = visual(IMAGES)
    torch.testing.assert_close(after, before)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_adapted_module_moves_the_projector_output(family):
    projector = tiny_projector(family, randomize_lora=False).eval()
    b_parameters = [(name, p) for name, p in projector.visual.named_parameters() if "lora_B" in name]
    assert len(b_parameters) == len(_lora_modules(projector.visual))
    with torch.no_grad():
        baseline = projector(IMAGES)
        for name, parameter in b_parameters:
            parameter.normal_(std=0.1)
            moved = (projector(IMAGES) - baseline).abs().max().item()
            parameter.zero_()
            assert moved > 1e-4, f"LoRA on {name} does not change the output"


def _attention_by_hand(layer, x, state, prefix):
    """nn.MultiheadAttention on W + s B A (in_proj) and W + 2 s B A (out_proj), from the stored tensors (spec 3.1)."""
    base = layer.get_base_layer()
    scale = layer.scaling[lora.ADAPTER_NAME]   # alpha / r, the same for in_proj and out_proj
    in_w = base.in_proj_weight + scale * state[f"{prefix}.lora_B.weight"] @ state[f"{prefix}.lora_A.weight"]
    out_w = base.out_proj.get_base_layer().weight + 2 * scale * (
        state[f"{prefix}.base_layer.out_proj.lora_B.weight"] @ state[f"{prefix}.base_layer.out_proj.lora_A.weight"])
    x = x.transpose(0, 1) if base.batch_first else x   # the functional form takes (tokens, batch, width)
    output = torch.nn.functional.multi_head_attention_forward(
        x, x, x, base.embed_dim, base.num_heads, in_w, base.in_proj_bias, None, None, False, 0.0,
        out_w, base.out_proj.get_base_layer().bias, training=False, need_weights=False)[0]
    return output.transpose(0, 1) if base.batch_first else output


def test_an_attention_update_is_the_formats_whatever_peft_does():
    """The out_proj update counts twice (what peft <= 0.21 applied, huggingface/peft#3774): hello computes
    it itself, so the forward, the merge and the gradients follow the spec under any peft version."""
    projector = tiny_projector("vit").eval()
    layer = projector.visual.transformer.resblocks[0].attn
    state = lora.export_state_dict(projector.visual, torch.float32)
    prefix = "base_model.model.transformer.resblocks.0.attn"
    x = torch.randn(5, 2, layer.embed_dim, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = _attention_by_hand(layer, x, state, prefix)
    base_before = {name: p.clone() for name, p in layer.get_base_layer().named_parameters() if "lora_" not in name}
    output = layer(x, x, x, need_weights=False)[0]
    torch.testing.assert_close(output, expected, atol=1e-6, rtol=1e-5)
    # the whole gradient reaches both B's (peft's own forward gave the out_proj B half of it)
    output.square().sum().backward()
    leaves = {key: value.clone().requires_grad_() for key, value in state.items() if key.startswith(prefix)}
    _attention_by_hand(layer, x, {**state, **leaves}, prefix).square().sum().backward()
    for key, parameter in ((f"{prefix}.lora_B.weight", layer.lora_B[lora.ADAPTER_NAME].weight),
                           (f"{prefix}.base_layer.out_proj.lora_B.weight", layer.get_base_layer().out_proj.lora_B[lora.ADAPTER_NAME].weight)):
        torch.testing.assert_close(parameter.grad, leaves[key].grad, atol=1e-5, rtol=1e-4)
    # the frozen base weights are never written, not even by round-off
    for name, parameter in layer.get_base_layer().named_parameters():
        if name in base_before:
            assert torch.equal(parameter, base_before[name]), name
    projector.merge()
    merged = projector.visual.transformer.resblocks[0].attn
    assert type(merged) is torch.nn.MultiheadAttention
    torch.testing.assert_close(merged(x, x, x, need_weights=False)[0], expected.detach(), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_merged_output_matches_unmerged_and_no_lora_remains(family):
    projector = tiny_projector(family).eval()
    base_keys = set(tiny_clip(family).visual.state_dict())
    with torch.no_grad():
        unmerged = projector(IMAGES)
        projector.merge()
        merged = projector(IMAGES)
    torch.testing.assert_close(merged, unmerged, atol=1e-4, rtol=1e-4)
    assert _lora_modules(projector) == []
    assert not any("lora_" in name for name, _ in projector.named_parameters())
    assert set(projector.visual.state_dict()) == base_keys
    assert (merged - tiny_projector(family, randomize_lora=False).eval()(IMAGES)).abs().max() > 1e-3


@pytest.mark.parametrize("family", FAMILIES)
def test_every_merged_weight_is_the_base_plus_alpha_over_r_times_b_a(family):
    """Spec 3.1: each adapted weight becomes W + (lora_alpha / r) * B @ A (a conv's B @ A taken over the rank,
    the attention's out_proj update twice), from the stored tensors alone. tiny_projector's lora_alpha is 2 r:
    a scale of 1 (alpha taken as r) passed every test that compared the projector with itself or with peft's
    own scaling."""
    projector = tiny_projector(family).eval()
    scale = projector.encoder_lora.lora_alpha / projector.encoder_lora.r
    assert scale == 2.0
    state = lora.export_state_dict(projector.visual, torch.float32)
    base = dict(tiny_clip(family).visual.named_parameters())   # tiny_projector's base: the same seed
    expected = {}
    for key, a in state.items():
        if not key.endswith(".lora_A.weight"):
            continue
        module = key.removeprefix("base_model.model.").removesuffix(".lora_A.weight")
        b = state[key.replace(".lora_A.", ".lora_B.")]
        delta = scale * torch.einsum("or,r...->o...", b.flatten(1), a)
        if module.endswith(".attn"):
            name = module + ".in_proj_weight"
        elif module.endswith(".attn.base_layer.out_proj"):
            name, delta = module.replace(".base_layer", "") + ".weight", 2 * delta
        else:
            name = module + ".weight"
        expected[name] = base[name] + delta
    assert len(expected) == len(_lora_modules(projector.visual))
    with torch.no_grad():
        merged = dict(projector.merge().visual.named_parameters())
    for name, weight in expected.items():
        assert not torch.allclose(weight, base[name], atol=1e-4), name   # the delta is not negligible
        torch.testing.assert_close(merged[name], weight, atol=1e-6, rtol=1e-5, msg=name)


@pytest.mark.parametrize("family", FAMILIES)
def test_export_load_round_trip(family):
    source = tiny_projector(family, seed=0).eval()
    state = lora.export_state_dict(source.visual, torch.float32)
    assert all(re.fullmatch(r"base_model\.model\..+\.lora_[AB]\.weight", key) for key in state)
    target = tiny_projector(family, seed=0, randomize_lora=False).eval()
    lora.load_state_dict(target.visual, state)
    target.head.load_state_dict(source.head.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(target(IMAGES), source(IMAGES), atol=0, rtol=0)


def test_fp16_export_is_fp16_and_close():
    source = tiny_projector("vit").eval()
    state = lora.export_state_dict(source.visual, torch.float16)
    assert {value.dtype for value in state.values()} == {torch.float16}
    target = tiny_projector("vit", randomize_lora=False).eval()
    lora.load_state_dict(target.visual, state)
    target.head.load_state_dict(source.head.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(target(IMAGES), source(IMAGES), atol=1e-2, rtol=1e-3)


def test_load_rejects_unknown_missing_and_misshaped_keys():
    source = tiny_projector("rn")
    state = lora.export_state_dict(source.visual, torch.float32)
    key = sorted(state)[0]
    target = tiny_projector("rn", randomize_lora=False).visual
    with pytest.raises(ManifestError, match=re.escape(f"encoder_lora.{key}") + " is missing"):
        lora.load_state_dict(target, {k: v for k, v in state.items() if k != key})
    with pytest.raises(ManifestError, match="encoder_lora.base_model.model.nope.lora_A.weight"):
        lora.load_state_dict(target, state | {"base_model.model.nope.lora_A.weight": state[key]})
    with pytest.raises(ManifestError, match=re.escape(f"encoder_lora.{key} has shape")):
        lora.load_state_dict(target, state | {key: torch.zeros(1, 1)})


def test_targets_matching_nothing_are_a_manifest_error():
    visual = tiny_clip("vit").visual
    with pytest.raises(ManifestError, match="matches no module"):
        lora.inject(visual, lora.encoder_config(visual, target_modules=r"no\.such\.module"))


@pytest.mark.parametrize("family", FAMILIES)
def test_peft_adapter_folder_loads_with_peft(family, tmp_path):
    source = tiny_projector(family).eval()
    folder = tmp_path / "adapter"
    folder.mkdir()
    lora.write_peft_adapter(folder, source.visual, torch.float32)
    assert (folder / "adapter_config.json").is_file()
    peft_visual = PeftModel.from_pretrained(tiny_clip(family).visual, str(folder)).eval()
    with torch.no_grad():
        torch.testing.assert_close(peft_visual(IMAGES), source.visual(IMAGES), atol=1e-5, rtol=1e-5)


def test_the_adapter_config_holds_only_keys_the_oldest_supported_peft_reads(tmp_path):
    """A later peft's new LoraConfig fields are left out: no supported peft warns of unexpected keys but peft
    0.15 of peft_version, the one key it lacks."""
    folder = tmp_path / "adapter"
    folder.mkdir()
    lora.write_peft_adapter(folder, tiny_projector("vit").visual, torch.float32)
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config.keys() <= lora.EXPORT_CONFIG_KEYS and {"r", "lora_alpha", "target_modules", "peft_version"} <= config.keys()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        PeftModel.from_pretrained(tiny_clip("vit").visual, str(folder))
    unexpected = [str(w.message) for w in caught if "Unexpected keyword" in str(w.message)]
    assert all("arguments ['peft_version'] " in message for message in unexpected), unexpected


def test_a_lora_setting_the_oldest_supported_peft_lacks_is_not_exported(tmp_path):
    visual = tiny_projector("rn").visual
    config = visual.peft_config[lora.ADAPTER_NAME]
    if not hasattr(config, "ensure_weight_tying"):
        pytest.skip("this peft has no LoraConfig field beyond peft 0.15's to set")
    config.ensure_weight_tying = True
    with pytest.raises(ValueError, match="sets ensure_weight_tying, which peft 0.15 cannot read"):
        lora.write_peft_adapter(tmp_path, visual, torch.float32)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("version, once", [
    (None, False), ("0.17.0", False), ("0.21.0", False), ("0.21.2", False), ("0.21.2.post1", False),
    ("0.21.1rc1", False), ("0.21.1.dev0", True), ("0.21.1.dev0@1a2b3c", True), ("0.21.0.dev0", False),
    ("0.22.0", True), ("0.22.0rc1", True), ("0.22.0.dev0", True), ("0.22.0+local", True), ("1.0", True),
])
def test_peft_version_says_how_out_proj_counts_as_peft_0_22_reads_it(version, once):
    """peft 0.22.0 doubles out_proj lora_B of exactly the adapters it reads as counting it twice (None: the
    field absent)."""
    assert lora.counts_out_proj_once({} if version is None else {"peft_version": version}) is once


@pytest.mark.parametrize("family, patterns, expected", [
    ("rn", {"rank_pattern": {r"layer1\.0\.conv1": 2}, "alpha_pattern": {r"conv[23]": 3.0}},
     {"layer1.0.conv1": (2, 4.0), "conv1": (4, 2.0), "layer1.0.conv2": (4, 0.75)}),
    # a leading ^ changes nothing in a file (spec 14.2): both convs named conv1 take it, in peft too
    ("rn", {"alpha_pattern": {"^conv1": 1.0}}, {"conv1": (4, 0.25), "layer1.0.conv1": (4, 0.25), "layer1.0.conv2": (4, 2.0)}),
    ("vit", {"rank_pattern": {"attn": 2}, "alpha_pattern": {r"resblocks\.1\.mlp\.c_fc": 1.0}},
     {"transformer.resblocks.0.attn": (2, 4.0), "transformer.resblocks.0.mlp.c_fc": (4, 2.0),
      "transformer.resblocks.1.mlp.c_fc": (4, 0.25)}),
])
def test_peft_adapter_keeps_per_module_ranks_and_alphas(family, patterns, expected, tmp_path):
    """adapter_config.json sorts its keys: a key meant for the stem's conv1 must not set layer1.0.conv1."""
    visual = tiny_clip(family).visual
    lora.inject(visual, lora.encoder_config(visual, r=4, lora_alpha=8.0, **patterns))
    _randomize_b(visual)
    folder = tmp_path / "adapter"
    folder.mkdir()
    lora.write_peft_adapter(folder, visual, torch.float32)
    peft_visual = PeftModel.from_pretrained(tiny_clip(family).visual, str(folder)).eval()
    model = peft_visual.base_model.model
    for name, (rank, scaling) in expected.items():
        module = model.get_submodule(name)
        assert (module.r["default"], module.scaling["default"]) == (rank, scaling), name
    with torch.no_grad():
        torch.testing.assert_close(peft_visual(IMAGES), visual(IMAGES), atol=1e-5, rtol=1e-5)
