"""The label generator as data: the manifest's ``lora`` section (the encoder LoRA, in peft
``LoraConfig`` terms) and ``head`` section (the text-guided head and its ``head.lora``).

Each dataclass is the only writer (``to_manifest``) and reader (``from_manifest``) of its section
and the only home of its defaults. Readers get manifests that passed ``validate_manifest`` (bounds,
then schema); still, a missing or ill-typed field is a one-line ManifestError, never a KeyError.
``group_size`` and ``shapes`` (format 1.1) exist only for int8/int4 deltas (spec section 3.3) and are
not written otherwise, so a float section reads and writes exactly as in format 1.0.
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass, field

from hello_format.container import is_json_int, is_json_number
from hello_format.errors import ManifestError
from hello_format.targets import PatternError, TargetPattern
from hello_format.text import shortened

DELTA_GROUP_SIZE = 64   # default values per fp16 scale of int8/int4 deltas (hello-build, hello requantize)
QUANTISED_FIELDS = ("group_size", "shapes")   # written only when the deltas are int8/int4


@dataclass(frozen=True, kw_only=True)
class EncoderLoraConfig:
    """The encoder LoRA (manifest ``lora``, spec section 3.1); ``target_modules`` is a target
    pattern or a tuple of module names (``hello_format.lora.encoder_config`` picks the encoder's
    default targets)."""

    peft_type: str = "LORA"
    module_root: str = "visual"         # the module of the CLIP model peft wraps
    target_modules: str | tuple[str, ...]
    r: int = 8
    lora_alpha: float = 16.0            # scale = lora_alpha / r
    rank_pattern: dict = field(default_factory=dict)    # peft per-module overrides
    alpha_pattern: dict = field(default_factory=dict)
    lora_dropout: float = 0.0
    bias: str = "none"
    dtype: str = "float16"              # of the stored encoder_lora.* tensors; or int8 / int4 (spec 3.3)
    group_size: int | None = None       # int8/int4: values per fp16 scale
    shapes: dict | None = None          # int8/int4: peft key -> the delta's shape

    def __post_init__(self):
        for name, only in (("peft_type", "LORA"), ("module_root", "visual"), ("bias", "none")):
            if getattr(self, name) != only:   # the format stores LoRA deltas of the image tower, no biases
                raise ManifestError(f"lora.{name} must be {only!r}, got {shortened(str(getattr(self, name)))}")
        if isinstance(self.target_modules, list):
            object.__setattr__(self, "target_modules", tuple(self.target_modules))
        if isinstance(self.target_modules, str):
            try:
                TargetPattern(self.target_modules)
            except PatternError as exc:
                raise ManifestError(f"lora.target_modules {shortened(self.target_modules)} is not a supported "
                                    f"target pattern: {exc}") from None

    def to_manifest(self) -> dict:
        """The manifest ``lora`` section."""
        section = _without_unset(dataclasses.asdict(self))
        if isinstance(self.target_modules, tuple):
            section["target_modules"] = list(self.target_modules)
        return section

    @classmethod
    def from_manifest(cls, section: dict | None) -> "EncoderLoraConfig | None":
        """Read a ``lora`` section (unknown keys ignored); None for ``lora: null``."""
        return _read_nullable(cls, section, "lora", _ENCODER_TYPES)


@dataclass(frozen=True, kw_only=True)
class HeadLoraConfig:
    """The head LoRA (manifest ``head.lora``): class weights + ``(lora_alpha / r) * B @ A``."""

    r: int
    lora_alpha: float
    dtype: str = "float16"              # of the stored head.lora_A / head.lora_B; or int8 / int4 (spec 3.3)
    group_size: int | None = None       # int8/int4: values per fp16 scale
    shapes: dict | None = None          # int8/int4: {"lora_A": [r, d], "lora_B": [C, r]}

    def to_manifest(self) -> dict:
        """The manifest ``head.lora`` section."""
        return _without_unset(dataclasses.asdict(self))

    @classmethod
    def from_manifest(cls, section: dict | None) -> "HeadLoraConfig | None":
        """Read a ``head.lora`` section (unknown keys ignored); None for ``head.lora: null``."""
        return _read_nullable(cls, section, "head.lora", _HEAD_LORA_TYPES)


@dataclass(frozen=True, kw_only=True)
class HeadConfig:
    """The text-guided head (manifest ``head``, spec section 3.2)."""

    templates: tuple[str, ...]          # prompt templates, each holding "{}" once
    ensemble: str = "mean"              # how templates combine (the only one)
    normalize_features: bool = True     # L2-normalise image features before the head
    logit_scale: float                  # multiplies the cosine logits
    lora: HeadLoraConfig | None = None  # None: the zero-shot head
    prior_weight: float = 0.0           # w: labels = (1 - w) * projector + w * zero-shot (format 2.0, spec 3.4)

    def __post_init__(self):
        if isinstance(self.templates, str):   # a tuple of it would be its characters
            raise ManifestError(f"head.templates must be a list of prompt templates, not one string: "
                                f"pass [{shortened(self.templates)}]")
        object.__setattr__(self, "templates", tuple(self.templates))
        weight = self.prior_weight   # a number (numpy's too, written as a float), never a string or bool
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not 0 <= weight < 1:
            raise ManifestError(f"head.prior_weight must be a number in [0, 1), got {shortened(weight)}")
        object.__setattr__(self, "prior_weight", float(weight))

    def to_manifest(self) -> dict:
        """The manifest ``head`` section (``prior_weight`` only when not 0: such a file is 1.x)."""
        section = {"templates": list(self.templates), "ensemble": self.ensemble,
                   "normalize_features": self.normalize_features, "logit_scale": self.logit_scale,
                   "lora": self.lora.to_manifest() if self.lora else None}
        return {**section, "prior_weight": self.prior_weight} if self.prior_weight else section

    @classmethod
    def from_manifest(cls, section: dict) -> "HeadConfig":
        """Read a ``head`` section (unknown keys ignored)."""
        values = _read(section, "head", _HEAD_TYPES, {"prior_weight": "number"})
        values["lora"] = HeadLoraConfig.from_manifest(values["lora"])
        return cls(**values)


def rewrite_section(section: dict, config) -> dict:
    """``config``'s section with the fields of ``section`` that ``config`` does not know kept as they
    are (a tool that rewrites a bundle preserves unknown fields, spec section 5)."""
    known = {f.name for f in dataclasses.fields(config)}
    return {**{k: v for k, v in section.items() if k not in known}, **config.to_manifest()}


def _without_unset(section: dict) -> dict:
    return {k: v for k, v in section.items() if not (k in QUANTISED_FIELDS and v is None)}


def _is_names(value) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _is_map_of(check):
    return lambda value: isinstance(value, dict) and all(check(item) for item in value.values())


_KINDS = {  # JSON kind -> (check, how an error message names it)
    "str": (lambda v: isinstance(v, str), "a string"),
    "int": (is_json_int, "an integer"),
    "number": (is_json_number, "a number"),
    "bool": (lambda v: isinstance(v, bool), "a boolean"),
    "pattern or names": (lambda v: isinstance(v, str) or _is_names(v), "a string or a list of strings"),
    "names": (_is_names, "a list of strings"),
    "ranks": (_is_map_of(is_json_int), "an object of integers"),
    "numbers": (_is_map_of(is_json_number), "an object of numbers"),
    "object or null": (lambda v: v is None or isinstance(v, dict), "an object or null"),
    "shapes": (_is_map_of(lambda v: isinstance(v, list) and all(is_json_int(d) for d in v)), "an object of integer lists"),
}
_QUANTISED_TYPES = {"group_size": "int", "shapes": "shapes"}   # optional: present for int8/int4 deltas
_ENCODER_TYPES = {"peft_type": "str", "module_root": "str", "target_modules": "pattern or names", "r": "int",
                  "lora_alpha": "number", "rank_pattern": "ranks", "alpha_pattern": "numbers",
                  "lora_dropout": "number", "bias": "str", "dtype": "str"}
_HEAD_LORA_TYPES = {"r": "int", "lora_alpha": "number", "dtype": "str"}
_HEAD_TYPES = {"templates": "names", "ensemble": "str", "normalize_features": "bool", "logit_scale": "number",
               "lora": "object or null"}


def _read_nullable(cls, section, where: str, kinds: dict[str, str]):
    """``cls`` from a section that may be null (None then)."""
    return None if section is None else cls(**_read(section, where, kinds, _QUANTISED_TYPES))


def _read(section, where: str, kinds: dict[str, str], optional: dict[str, str] | None = None) -> dict:
    """The section's values of the named fields, each present (``optional`` ones if present) and of
    its JSON kind."""
    if not isinstance(section, dict):
        raise ManifestError(f"field '{where}' is {type(section).__name__}, not an object")
    values = {}
    for name, kind in {**kinds, **(optional or {})}.items():
        if name not in section:
            if name in (optional or {}):
                continue
            raise ManifestError(f"field '{where}.{name}' is missing")
        check, wanted = _KINDS[kind]
        if not check(section[name]):
            raise ManifestError(f"field '{where}.{name}' must be {wanted}, got {type(section[name]).__name__}")
        values[name] = section[name]
    return values
