"""Bits per class (DD-RUO, arXiv 2507.17221): what a distilled dataset costs to store, per class,
counting its samples, its labels and any network that decodes them (spec section 11)."""

from __future__ import annotations

from dataclasses import dataclass

from hello_format.bundle import Bundle
from hello_format.errors import HelloError
from hello_format.text import cut

PUBLIC_BASE_BITS_PER_PARAMETER = 16  # a public base is counted as an fp16 checkpoint


@dataclass(frozen=True)
class BitsPerClass:
    without_base: float          # images + label generator: what a user who has the public base downloads
    with_base: float | None      # + the base (embedded bytes, or a public base's parameters at 16 bits); None: unknown
    stored_labels: float         # images + stored soft labels instead of a generator (SRe2L/FKD)
    base_counted: str            # how the base was counted, in words


def bits_per_class(bundle: Bundle, *, allow_remote_base: bool = False) -> BitsPerClass:
    """The bundle's bits per class with and without its base, and with stored soft labels instead.
    A public base's size is counted from its architecture on the meta device: no weights, no download."""
    storage, classes = bundle.storage(), bundle.num_classes
    base_section = bundle.manifest["base"]
    if base_section["source"] == "embedded":
        base_bits, counted = 8 * storage.base_bytes, "embedded base, as stored"
    else:
        from hello_format.base import parameter_count

        kind = "public" if base_section["source"] == "open_clip" else "local"   # local: the user's own weights
        try:
            parameters = parameter_count(base_section, allow_remote=allow_remote_base)
            base_bits = PUBLIC_BASE_BITS_PER_PARAMETER * parameters
            counted = f"{kind} base, {parameters:,} parameters at {PUBLIC_BASE_BITS_PER_PARAMETER} bits"
        except HelloError as error:
            base_bits, counted = None, f"{kind} base, size unknown: {cut(str(error), 200)}"
    own_bits = 8 * (storage.images_bytes + storage.label_generator_bytes)
    return BitsPerClass(
        without_base=own_bits / classes,
        with_base=None if base_bits is None else (own_bits + base_bits) / classes,
        stored_labels=8 * (storage.images_bytes + storage.stored_label_bytes) / classes,
        base_counted=counted,
    )
