"""peft's names and matching rules, applied to values from files: the keys of an adapter's tensors, which
modules a ``target_modules`` list or pattern adapts, the ``rank_pattern`` / ``alpha_pattern`` rule, and
which module peft adapted to make a stored LoRA. Patterns are matched by ``targets.TargetPattern`` in
linear time, and the whole matching is bounded (``check_match_work``) before it runs."""

from __future__ import annotations

from hello_format.errors import ManifestError
from hello_format.limits import MAX_TARGET_MATCH_WORK
from hello_format.targets import PatternError, TargetPattern
from hello_format.text import shortened

ADAPTER_PREFIX = "base_model.model."   # peft's names of the adapted model's modules (hello_format.lora's too)
LORA_B_SUFFIX = ".lora_B.weight"
_PEFT_SUFFIXES = {".lora_A.weight": "A", LORA_B_SUFFIX: "B"}
MHA_OUT_PROJ = ".base_layer.out_proj"   # peft's out_proj LoRA inside an adapted nn.MultiheadAttention


def peft_module(key: str) -> tuple[str, str] | None:
    """``(module path, "A" | "B")`` of a peft adapter key ``base_model.model.<path>.lora_A.weight``."""
    for suffix, which in _PEFT_SUFFIXES.items():
        if key.startswith(ADAPTER_PREFIX) and key.endswith(suffix) and len(key) > len(ADAPTER_PREFIX) + len(suffix):
            return key[len(ADAPTER_PREFIX):-len(suffix)], which
    return None


def is_target(module_path: str, targets: "str | list[str] | TargetPattern") -> bool:
    """peft's rule applied to the module or any module containing it (MultiheadAttention nests):
    a pattern matches the whole path; a name matches a path equal to it or ending in ``.name``."""
    if isinstance(targets, str):
        targets = TargetPattern(targets)
    if isinstance(targets, TargetPattern):
        return targets.matches_a_dot_prefix(module_path)
    padded = f".{module_path}."   # a name matches a run of whole path parts: linear in the path, at any depth
    return any(f".{t}." in padded for t in targets)


def check_match_work(where: str, targets, module_paths, *, patterns: bool = False, dot_suffixes: bool = False) -> None:
    """ManifestError when matching ``targets`` (a pattern, a list of names or, with ``patterns``, a list
    of patterns) against these module paths would cost more than MAX_TARGET_MATCH_WORK: pattern or
    target-list characters times path characters (with ``dot_suffixes``, times the characters of every
    dot-suffix of each path, which ``pattern_value`` may each match: a path from a file may have many
    parts), plus each pattern's length squared (its automaton's closures: ``TargetPattern._closure``)."""
    if isinstance(targets, str):
        targets, patterns = [targets], True
    size = sum(len(t) + 1 for t in targets)
    work = size * sum(_suffix_chars(path) if dot_suffixes else len(path) for path in module_paths)
    work += sum(len(t) ** 2 for t in targets) if patterns else 0
    if work > MAX_TARGET_MATCH_WORK:
        paths = "characters of the paths' dot-suffixes" if dot_suffixes else "path characters"
        raise ManifestError(f"{where}: matching against {len(module_paths)} modules would be {work:,} units "
                            f"of work (pattern characters x {paths}{', plus each pattern length squared' if patterns else ''}; "
                            f"at most {MAX_TARGET_MATCH_WORK:,})")


def _suffix_chars(path: str) -> int:
    return len(path) + sum(len(path) - i - 1 for i, char in enumerate(path) if char == ".")


def compile_pattern(pattern: str, field: str) -> TargetPattern:
    """``pattern`` (a target pattern of ``field``) compiled, or a ManifestError naming the field."""
    try:
        return TargetPattern(pattern)
    except PatternError as exc:
        raise ManifestError(f"{field} {shortened(pattern)} is not a supported target pattern: {exc}") from None


def pattern_value(compiled: list[tuple[TargetPattern, object]], module: str, default):
    """peft's ``rank_pattern`` / ``alpha_pattern`` rule: the value of the first key (in the section's
    order) matching a dot-suffix of ``module``'s name, else ``default`` (``lora.r`` / ``lora.lora_alpha``)."""
    return next((value for pattern, value in compiled if _matches_a_dot_suffix(pattern, module)), default)


def _matches_a_dot_suffix(pattern: TargetPattern, name: str) -> bool:
    parts = name.split(".")
    return any(pattern.fullmatch(".".join(parts[k:])) for k in range(len(parts)))


def adapted_module(module_path: str) -> str:
    """The module peft adapted to make the LoRA at ``module_path`` (a stored key's path), whose rank it
    has: the path itself, or for ``<attn>.base_layer.out_proj`` the nn.MultiheadAttention ``<attn>``."""
    if module_path.endswith(MHA_OUT_PROJ) and len(module_path) > len(MHA_OUT_PROJ):
        return module_path[:-len(MHA_OUT_PROJ)]
    return module_path
