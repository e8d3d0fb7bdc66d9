"""peft LoRA on the CLIP image encoder (``model.visual``): targets, injection, weights, merging.

Weights are exchanged under peft adapter-file keys (``base_model.model.<path in visual>.lora_A.weight``)
so that a bundle's encoder LoRA is also a plain peft adapter (see ``write_peft_adapter``).
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import torch
from packaging.version import InvalidVersion, Version
from torch import nn

import hello_format  # noqa: F401  (installs the torchvision op shim before open_clip loads)
from open_clip.modified_resnet import ModifiedResNet
from open_clip.transformer import VisionTransformer
from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model
from peft.tuners.lora.layer import MultiheadAttention as LoraMultiheadAttention
from peft.tuners.tuners_utils import BaseTunerLayer

from hello_format.peft_keys import (ADAPTER_PREFIX, LORA_B_SUFFIX, MHA_OUT_PROJ, adapted_module, check_match_work,
                                    compile_pattern, pattern_value, peft_module)
from hello_format.container import write_container
from hello_format.errors import BaseModelError, ManifestError
from hello_format.generator import EncoderLoraConfig
from hello_format.limits import MAX_PEFT_VERSION_CHARS
from hello_format.text import shortened

ADAPTER_NAME = "default"
ADAPTER_CONFIG_FILE = "adapter_config.json"         # peft's file names in an adapter folder
ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors"
# A ViT block's attention (peft wraps in_proj and out_proj together; out_proj alone would be dead)
# and both MLP projections.
VIT_TARGETS = r"transformer\.resblocks\.\d+\.(attn|mlp\.c_fc|mlp\.c_proj)"
# Every conv of the ResNet stem and bottlenecks. Never the attention pool's q/k/v/c projections:
# F.multi_head_attention_forward reads their .weight directly, so a LoRA there is silently dead.
RESNET_TARGETS = r"(conv[123]|layer\d+\.\d+\.(conv[123]|downsample\.0))"
# The out_proj update of an nn.MultiheadAttention target counts twice (spec section 3.1): peft <= 0.21
# applies it twice in its forward and its merge (huggingface/peft#3774), every file so far was trained
# that way, and the format keeps that meaning. hello computes the update itself (``_Attention``), so
# no peft version changes a file's labels.
ATTENTION_OUT_PROJ_FACTOR = 2
# The peft_version an exported adapter config names (spec section 15): a peft that counts out_proj once
# (0.22.0 on) doubles the out_proj lora_B of an adapter saved before 0.22.0 when it loads it, so every
# peft rebuilds the bundle's encoder from the folder.
EXPORT_PEFT_VERSION = "0.21.2"
# The keys an exported adapter config holds (spec section 15): the LoraConfig fields of the oldest
# supported peft (0.15.0) and peft_version, so that a later peft's new fields (at their defaults) do not
# make an earlier one warn of unexpected keys, and the file is the same whichever peft wrote it.
EXPORT_CONFIG_KEYS = frozenset({
    "alpha_pattern", "auto_mapping", "base_model_name_or_path", "bias", "corda_config", "eva_config",
    "exclude_modules", "fan_in_fan_out", "inference_mode", "init_lora_weights", "layer_replication",
    "layers_pattern", "layers_to_transform", "loftq_config", "lora_alpha", "lora_bias", "lora_dropout",
    "megatron_config", "megatron_core", "modules_to_save", "peft_type", "peft_version", "r", "rank_pattern",
    "revision", "target_modules", "task_type", "trainable_token_indices", "use_dora", "use_rslora"})


def default_targets(visual: nn.Module) -> str:
    """The peft ``target_modules`` regex for an open_clip image encoder."""
    if isinstance(visual, VisionTransformer):
        return VIT_TARGETS
    if isinstance(visual, ModifiedResNet):
        return RESNET_TARGETS
    raise BaseModelError(f"no default LoRA targets for image encoder {type(visual).__name__}: "
                         "give target_modules explicitly")


def encoder_config(visual: nn.Module, **fields) -> EncoderLoraConfig:
    """An ``EncoderLoraConfig`` for ``visual``: ``fields`` over its defaults, and the targets of
    ``default_targets`` unless ``target_modules`` is given."""
    targets = fields.pop("target_modules", None)
    return EncoderLoraConfig(target_modules=targets if targets is not None else default_targets(visual), **fields)


def peft_config(config: EncoderLoraConfig, **resolved) -> LoraConfig:
    """The peft ``LoraConfig`` an encoder LoRA config describes (``resolved``: target_modules,
    rank_pattern, alpha_pattern as ``explicit`` resolved them, in place of the config's)."""
    targets = resolved.get("target_modules", config.target_modules)
    return LoraConfig(
        r=config.r, lora_alpha=config.lora_alpha,
        target_modules=targets if isinstance(targets, str) else list(targets),
        rank_pattern=dict(resolved.get("rank_pattern", config.rank_pattern)),
        alpha_pattern=dict(resolved.get("alpha_pattern", config.alpha_pattern)),
        lora_dropout=config.lora_dropout, bias="none")


def explicit(visual: nn.Module, config: EncoderLoraConfig) -> LoraConfig:
    """The peft config for ``config`` with its target pattern and rank/alpha patterns resolved against
    ``visual``'s modules (in linear time, see hello_format.targets) into escaped literal module names,
    so peft's backtracking regex engine never runs a pattern that came from a file. (The result is
    ours, not the file's: no bound on a file's pattern length applies to it.)"""
    targets, chosen, values = _resolve(visual, config)
    # every module gets its own literal key anchored at the start ('^'), so no key meant for 'conv1'
    # also catches 'layer1.0.conv1', whatever order a JSON writer (adapter_config.json) puts the keys in
    resolved = {key: {"^" + re.escape(name): by_name[name] for name in sorted(by_name, key=len, reverse=True)}
                for key, by_name in values.items()}
    return peft_config(config, target_modules=targets, **resolved)


def _resolve(visual: nn.Module, config: EncoderLoraConfig) -> tuple[str, list[str], dict[str, dict]]:
    """(peft's target_modules, the names of the modules of ``visual`` it adapts, and for rank_pattern
    and alpha_pattern each adapted module's value, {} when the section's patterns are empty)."""
    names = [name for name, _ in visual.named_modules() if name]
    targets = config.target_modules
    check_match_work("lora", targets, names)
    if isinstance(targets, str):
        pattern = compile_pattern(targets, "lora.target_modules")
        chosen = [name for name in names if pattern.fullmatch(name)]
    else:   # peft's rule for a list: a name, or a dot-separated suffix of one
        chosen = [name for name in names if name in targets or any(name.endswith("." + t) for t in targets)]
    if not chosen:
        raise ManifestError(f"lora.target_modules {shortened(targets)} matches no module of the image encoder")
    targets = "|".join(re.escape(name) for name in chosen)   # the file's own strings never reach peft
    values = {}
    for key, default in (("rank_pattern", config.r), ("alpha_pattern", config.lora_alpha)):
        patterns = getattr(config, key)
        check_match_work(f"lora.{key}", list(patterns), chosen, patterns=True, dot_suffixes=True)   # as pattern_value
        compiled = [(compile_pattern(pattern, f"lora.{key}"), value) for pattern, value in patterns.items()]
        values[key] = {name: pattern_value(compiled, name, default) for name in chosen} if compiled else {}
    return targets, chosen, values


def check_stored(visual: nn.Module, config: EncoderLoraConfig, shapes: dict[str, tuple[int, ...]],
                 where: str = "lora") -> None:
    """ManifestError unless ``config`` makes peft adapt exactly the modules of ``visual`` that ``shapes``
    (peft key -> shape, a bundle's ``lora_shapes()``, already checked on open) holds LoRA weights for,
    each weight of the very shape peft gives it. Called before ``inject``, it bounds what peft allocates
    by what the file stores: a rank-4096 pair stored as ``[4096, 0]`` / ``[0, 4096]`` is refused here."""
    _, chosen, values = _resolve(visual, config)
    ranks = values["rank_pattern"] or dict.fromkeys(chosen, config.r)
    stored = {}
    for key, shape in shapes.items():
        parsed = peft_module(key)
        if parsed is not None and parsed[1] == "A" and len(shape) >= 1:
            stored.setdefault(adapted_module(parsed[0]), set()).add(shape[0])
    missing = [name for name in chosen if name not in stored]
    if missing:
        raise ManifestError(f"{where}: module {shortened(missing[0])} of the image encoder is adapted by "
                            f"lora.target_modules but the file stores no LoRA weights for it ({len(missing)} such)")
    extra = sorted(stored.keys() - set(chosen))
    if extra:
        raise ManifestError(f"{where}: the file stores LoRA weights for {shortened(extra[0])}, which "
                            f"lora.target_modules does not adapt in the image encoder ({len(extra)} such)")
    for name in chosen:
        if stored[name] != {ranks[name]}:
            raise ManifestError(f"{where}: module {shortened(name)}: stored rank {min(stored[name])}, but "
                                f"lora.r / lora.rank_pattern give it {ranks[name]}")
    made = peft_shapes(visual, config)
    for key in sorted(made.keys() | shapes.keys()):
        if tuple(shapes.get(key, ())) != made.get(key):
            have = list(shapes[key]) if key in shapes else "absent"
            want = list(made[key]) if key in made else "no such weight"
            raise ManifestError(f"{where}: tensor {shortened('encoder_lora.' + key, 160)} is {have}, but peft makes "
                                f"{want} for this image encoder at the manifest's ranks")


def peft_shapes(visual: nn.Module, config: EncoderLoraConfig) -> dict[str, tuple[int, ...]]:
    """The LoRA weights peft makes for ``config`` on ``visual`` (peft key -> shape), found by peft itself
    on a copy of ``visual`` on the meta device: no weight is allocated, and ``visual`` is untouched."""
    memo = {id(t): nn.Parameter(t.to("meta"), t.requires_grad) if isinstance(t, nn.Parameter) else t.to("meta")
            for t in [*visual.parameters(), *visual.buffers()]}
    with torch.device("meta"):
        shadow = copy.deepcopy(visual, memo)
        _inject_peft(shadow, config)
    return {ADAPTER_PREFIX + key: tuple(value.shape)
            for key, value in get_peft_model_state_dict(shadow, adapter_name=ADAPTER_NAME).items()}


def inject(visual: nn.Module, config: EncoderLoraConfig) -> nn.Module:
    """Wrap the targeted modules of ``visual`` in fresh LoRA layers (in place; returns ``visual``)."""
    _inject_peft(visual, config)
    for module in visual.modules():
        if type(module) is LoraMultiheadAttention:
            module.__class__ = _Attention   # the same layer and weights; its update computed as the spec says
    return visual


class _Attention(LoraMultiheadAttention):
    """peft's LoRA attention (its parameters and adapter-file keys) with a forward of hello's own:
    ``nn.MultiheadAttention`` run on ``attention_weights`` passed in, not merged into the module as
    peft does around every call. So the labels follow the spec under any peft version, both deltas get
    their whole gradient (peft's out_proj merge writes ``.data``: half of that delta's reached B), and
    the frozen base weights are never written."""

    def forward(self, query: torch.Tensor, *args, **kwargs):
        in_proj, out_proj = attention_weights(self)
        output, weights = torch.func.functional_call(
            self.get_base_layer(), {"in_proj_weight": in_proj, "out_proj.base_layer.weight": out_proj}, (query, *args), kwargs)
        return output.to(query.dtype), None if weights is None else weights.to(query.dtype)   # as peft's, under autocast


def attention_weights(layer: LoraMultiheadAttention) -> tuple[torch.Tensor, torch.Tensor]:
    """The in_proj and out_proj weights of a LoRA attention with their updates (spec section 3.1):
    ``W + (alpha / r) * B @ A``, and for out_proj ``ATTENTION_OUT_PROJ_FACTOR`` times the update."""
    base = layer.get_base_layer()
    in_proj, out_proj = base.in_proj_weight, base.out_proj.get_base_layer().weight
    in_delta = layer.get_delta_weight(ADAPTER_NAME).to(in_proj.dtype)
    out_delta = base.out_proj.get_delta_weight(ADAPTER_NAME).to(out_proj.dtype)
    return in_proj + in_delta, out_proj + ATTENTION_OUT_PROJ_FACTOR * out_delta


def counts_out_proj_once(config: dict) -> bool:
    """Whether the adapter config ``config`` (its JSON object) says its attention out_proj update counts
    once, by peft 0.22's own rule on ``peft_version``'s release X.Y.Z (epoch kept; pre, post, dev and
    local parts and an ``@commit`` aside): twice when the field is absent (peft before 0.18), when X.Y.Z is
    before 0.21.1, or when it is before 0.22.0 and not a dev version; once otherwise. ValueError when the
    field is not a version string (null included: peft would read it as its own version)."""
    if "peft_version" not in config:
        return False
    peft_version = config["peft_version"]
    if not isinstance(peft_version, str) or len(peft_version) > MAX_PEFT_VERSION_CHARS:
        raise ValueError(f"peft_version must be a version string of at most {MAX_PEFT_VERSION_CHARS} characters, "
                         f"got {shortened(peft_version)}")
    try:
        version = Version(peft_version.partition("@")[0])   # peft's dev versions append @<commit>
    except InvalidVersion:
        raise ValueError(f"peft_version {shortened(peft_version)} is not a version") from None
    release = Version(version.base_version)
    return release >= Version("0.22.0") or (version.is_devrelease and release >= Version("0.21.1"))


def _inject_peft(visual: nn.Module, config: EncoderLoraConfig) -> None:
    try:
        inject_adapter_in_model(explicit(visual, config), visual, adapter_name=ADAPTER_NAME)
    except ValueError as error:  # peft: no module matched target_modules
        raise ManifestError(f"lora.target_modules {shortened(config.target_modules)} matches no module of "
                            f"the image encoder: {' '.join(str(error).split())[:200]}") from None


def export_state_dict(visual: nn.Module, dtype: torch.dtype = torch.float16) -> dict[str, torch.Tensor]:
    """The LoRA weights under peft adapter-file keys, as contiguous CPU tensors of ``dtype``."""
    state = get_peft_model_state_dict(visual, adapter_name=ADAPTER_NAME)
    return {ADAPTER_PREFIX + key: value.detach().to("cpu", dtype).contiguous()
            for key, value in state.items()}


def out_proj_lora_b_keys(visual: nn.Module) -> list[str]:
    """The adapter-file keys of the out_proj lora_B of every ``nn.MultiheadAttention`` LoRA in ``visual``."""
    return [f"{ADAPTER_PREFIX}{name}{MHA_OUT_PROJ}{LORA_B_SUFFIX}"
            for name, module in visual.named_modules() if isinstance(module, LoraMultiheadAttention)]


def load_state_dict(visual: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy adapter-file-keyed LoRA weights into an injected ``visual``; every key must match."""
    expected = export_state_dict(visual, torch.float32)
    unknown = sorted(state.keys() - expected.keys())
    missing = sorted(expected.keys() - state.keys())
    if unknown:
        raise ManifestError(f"tensor encoder_lora.{unknown[0]} is not a LoRA weight of the "
                            f"manifest's lora section ({len(unknown)} such); the file is inconsistent")
    if missing:
        raise ManifestError(f"tensor encoder_lora.{missing[0]} is missing ({len(missing)} LoRA "
                            "weights in all); the file is incomplete")
    parameters = dict(visual.named_parameters())
    with torch.no_grad():
        for key, value in state.items():
            if tuple(value.shape) != tuple(expected[key].shape):
                raise ManifestError(f"tensor encoder_lora.{key} has shape {list(value.shape)}, the "
                                    f"lora section needs {list(expected[key].shape)}")
            parameter = parameters[_parameter_name(key)]
            parameter.copy_(value.to(parameter.dtype))


def merge(visual: nn.Module) -> nn.Module:
    """Fold every LoRA into its base weights and put the plain modules back (no per-batch cost)."""
    return _unload(visual, merge=True)


def base_copy(visual: nn.Module) -> nn.Module:
    """A copy of ``visual`` with every LoRA dropped: the plain modules with the base weights."""
    return _unload(copy.deepcopy(visual), merge=False)


def _unload(visual: nn.Module, *, merge: bool) -> nn.Module:
    """Put the plain modules back in place of the LoRA layers, their deltas folded in or dropped."""
    tuner_names = [name for name, module in visual.named_modules() if isinstance(module, BaseTunerLayer)]
    outermost = [name for name in tuner_names
                 if not any(name.startswith(other + ".") for other in tuner_names)]
    for name in outermost:
        parent_name, _, child_name = name.rpartition(".")
        parent = visual.get_submodule(parent_name)
        layer = getattr(parent, child_name)
        if isinstance(layer, LoraMultiheadAttention):
            plain = _plain_attention(layer, merge=merge)
        else:
            if merge:
                layer.merge()
            plain = layer.get_base_layer()
        setattr(parent, child_name, plain)
    if hasattr(visual, "peft_config"):
        del visual.peft_config
    return visual


def _plain_attention(layer: LoraMultiheadAttention, *, merge: bool) -> nn.MultiheadAttention:
    """The ``nn.MultiheadAttention`` under ``layer``, its updates folded in (``merge``) or dropped."""
    with torch.no_grad():
        in_proj, out_proj = attention_weights(layer)
        plain = layer.get_base_layer()
        plain.out_proj = plain.out_proj.get_base_layer()
        if merge:
            plain.in_proj_weight.copy_(in_proj)
            plain.out_proj.weight.copy_(out_proj)
    return plain


def write_peft_adapter(folder: str | Path, visual: nn.Module, dtype: torch.dtype) -> None:
    """Write ``adapter_config.json`` + ``adapter_model.safetensors`` of the LoRA injected in ``visual``
    into the existing ``folder``: ``peft.PeftModel.from_pretrained(fresh_visual, folder)`` rebuilds
    exactly that model, since the config is the one ``inject`` used (``explicit``: literal module
    names, per-module ranks and alphas), its keys are ``EXPORT_CONFIG_KEYS`` and its ``peft_version`` is
    ``EXPORT_PEFT_VERSION``, whatever peft is installed. Nothing in it names a model or code to fetch
    (``base_model_name_or_path``, ``revision``, ``auto_mapping`` are null); both files are deterministic."""
    folder = Path(folder)
    if ADAPTER_NAME not in getattr(visual, "peft_config", {}):
        raise ValueError("the image encoder holds no injected (unmerged) LoRA to write")
    config = visual.peft_config[ADAPTER_NAME].to_dict()
    defaults = LoraConfig().to_dict()
    newer = sorted(key for key in config.keys() - EXPORT_CONFIG_KEYS if config[key] != defaults.get(key))
    if newer:
        raise ValueError(f"the LoRA sets {', '.join(newer)}, which peft 0.15 cannot read: not exportable")
    config = {key: value for key, value in config.items() if key in EXPORT_CONFIG_KEYS}
    config.update(base_model_name_or_path=None, revision=None, auto_mapping=None, inference_mode=True,
                  peft_version=EXPORT_PEFT_VERSION)
    config = {key: sorted(value) if isinstance(value, set) else value for key, value in config.items()}
    (folder / ADAPTER_CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True, allow_nan=False) + "\n")
    with open(folder / ADAPTER_WEIGHTS_FILE, "wb") as file:
        write_container(file, {"format": "pt"}, export_state_dict(visual, dtype))


def _parameter_name(adapter_key: str) -> str:
    """``base_model.model.x.lora_A.weight`` -> the injected parameter ``x.lora_A.default.weight``."""
    path = adapter_key.removeprefix(ADAPTER_PREFIX)
    module, _, leaf = path.rpartition(".")
    return f"{module}.{ADAPTER_NAME}.{leaf}"

