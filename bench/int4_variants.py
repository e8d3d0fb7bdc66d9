"""Where int4 deltas lose agreement, and what writer-side changes buy: prints measured figures.

For a trained bundle, the top-1 agreement with its fp16 projector (on the student views of
``bench/storage.py``'s (b), with and without CutMix) and the median largest logit error of
projectors whose deltas are the int4 round trip (quantise then dequantise, exactly what a reader
gets) of:

    all deltas, the stored format (absmax scale per group), at group sizes 64 / 32 / 16 (and int8,
    for scale);
    all deltas after rebalancing each LoRA pair (B A kept; both factors U sqrt(S), sqrt(S) V^T);
    all deltas with a per-group scale clipped to the least squared error (a writer's choice; readers
    dequantise q * scale as before);
    one part at a time (the head, the stem, each ResNet stage), the rest left in fp16;
    all deltas calibrated (``hello requantize --calibration-steps N --calibration-objective O``:
    ``hello_format.calibration`` trains the stored values through the round trip on views drawn from
    seeds other than the measured views'), read back from the requantized file itself.

First it prints how many views are near ties (the fp16 projector's two best logits within 0.05, 0.1,
0.25): a view flips when the logit error exceeds its margin, so these bound what int4 can keep.

No variant changes the format: the round-tripped deltas are written as float32 for the measurement.

    python bench/int4_variants.py bench/results/cache/bundles/cifar10-ipc10-5c32904e351256aa.hello --views 2000
"""

from __future__ import annotations

import argparse
import re
import shutil
import tempfile
from pathlib import Path

import torch

from hello_format.bundle import Bundle, write_stored
from hello_format.calibration import OBJECTIVES, CalibrationConfig
from hello_format.consistency import ENCODER_PREFIX
from hello_format.projector import Projector
from hello_format.quantize import QMAX, dequantise, group_count, quantise
from hello_format.recipe import Recipe
from hello_format.requantize import _is_delta, requantize, store_deltas
from storage import student_views


def balanced(deltas: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each (lora_A, lora_B) pair re-factored with the same product and equal singular values."""
    out = dict(deltas)
    for key_a in [k for k in deltas if "lora_A" in k]:
        key_b = key_a.replace("lora_A", "lora_B")
        a, b = deltas[key_a].float(), deltas[key_b].float()
        r = a.shape[0]
        qb, rb = torch.linalg.qr(b.reshape(b.shape[0], r))
        qa, ra = torch.linalg.qr(a.reshape(r, -1).T)
        u, s, vh = torch.linalg.svd(rb @ ra.T)
        out[key_b] = (qb @ u * s.sqrt()).reshape(b.shape)
        out[key_a] = ((s.sqrt()[:, None] * vh) @ qa.T).reshape(a.shape)
    return out


def round_trip(tensor: torch.Tensor, group_size: int, clip: bool, dtype: str = "int4") -> torch.Tensor:
    """What a reader dequantises from ``tensor`` stored as ``dtype``: the format's absmax scale, or
    (``clip``, int4) the scale in 0.5..1 x absmax / 7 with the least squared error in each group."""
    if not clip:
        values, scales = quantise(tensor, dtype, group_size)
        return dequantise("", "", values, scales, tensor.shape, dtype, group_size)
    flat = tensor.detach().float().reshape(-1)
    groups = torch.zeros(group_count(flat.numel(), group_size) * group_size)
    groups[: flat.numel()] = flat
    groups = groups.reshape(-1, group_size)
    absmax = groups.abs().amax(1, keepdim=True)
    best, best_error = None, None
    for fraction in torch.linspace(0.5, 1.0, 26):
        scale = (absmax * fraction / QMAX["int4"]).half().float()
        trip = torch.round(groups / scale.clamp_min(1e-30)).clamp(-QMAX["int4"], QMAX["int4"]) * scale
        error = ((trip - groups) ** 2).sum(1, keepdim=True)
        if best is None:
            best, best_error = trip, error
        else:
            better = error < best_error
            best, best_error = torch.where(better, trip, best), torch.where(better, error, best_error)
    return best.reshape(-1)[: flat.numel()].reshape(tensor.shape)


def top2_margin(batches: list[torch.Tensor]) -> torch.Tensor:
    """The gap between the two largest logits of every view: how far its top label is from flipping."""
    best = torch.cat(batches).topk(2, dim=1).values
    return best[:, 0] - best[:, 1]


PARTS = {"head": r"head\.", "stem": ENCODER_PREFIX + r"base_model\.model\.conv", **{
    f"layer{i}": ENCODER_PREFIX + rf"base_model\.model\.layer{i}\." for i in range(1, 5)}}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--views", type=int, default=2000)
    parser.add_argument("--calibration-steps", type=int, nargs="*", default=[CalibrationConfig.steps],
                        help="calibrated variants to measure, by their steps (none: skip them)")
    parser.add_argument("--calibration-objectives", nargs="+", default=[CalibrationConfig.objective], choices=OBJECTIVES,
                        help="each calibrated variant under each of these objectives")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="hello-int4-") as tmp:
        source = Path(tmp) / args.bundle.name
        shutil.copyfile(args.bundle, source)   # the cache is read-only to this benchmark
        with Bundle.open(source) as bundle:
            manifest, images = bundle.manifest, bundle.images()
            recipe = Recipe.from_manifest(manifest["recipe"])
            deltas = {**{ENCODER_PREFIX + key: t for key, t in bundle.lora_state_dict().items()},
                      **{f"head.{key}": t for key, t in bundle.head_state_dict().items()}}
            kept = {name: bundle.tensor(name) for name in bundle.tensor_names if not _is_delta(name)}
            reference = Projector.from_bundle(bundle)
        mixed, unmixed = student_views(images, recipe, args.views)
        with torch.no_grad():
            logits, logits_unmixed = [reference.label(v) for v in mixed], [reference.label(v) for v in unmixed]
        expected, expected_unmixed = [l.argmax(1) for l in logits], [l.argmax(1) for l in logits_unmixed]
        print(f"{args.bundle.name}: {args.views:,} student views; top-1 agreement with the fp16 projector, and the "
              "median over views of the largest logit error")
        margins, margins_unmixed = top2_margin(logits), top2_margin(logits_unmixed)
        for near in (0.05, 0.1, 0.25):
            print(f"  near ties: the fp16 projector's two best logits lie within {near} on "
                  f"{100 * float((margins < near).float().mean()):.2f} % of CutMix views "
                  f"({100 * float((margins_unmixed < near).float().mean()):.2f} % without CutMix)")

        def measure(name: str, chosen: dict[str, torch.Tensor] | None = None, path: Path | None = None) -> None:
            if path is None:
                written, stored = store_deltas(manifest, chosen, "float32")
                path = write_stored(Path(tmp) / "variant.hello", written, {**kept, **stored})
            with Bundle.open(path) as opened:
                projector = Projector.from_bundle(opened)
            with torch.no_grad():
                got = [projector.label(v) for v in mixed]
                same = sum(int((g.argmax(1) == e).sum()) for g, e in zip(got, expected))
                same_unmixed = sum(int((projector.label(v).argmax(1) == e).sum()) for v, e in zip(unmixed, expected_unmixed))
            error = torch.cat([(g - l).abs().amax(1) for g, l in zip(got, logits)]).median()
            print(f"  {name:<44} CutMix views {100 * same / args.views:6.2f} %   without CutMix "
                  f"{100 * same_unmixed / args.views:6.2f} %   logit error {float(error):.3f}", flush=True)

        def trip(source: dict, group_size: int = 64, clip: bool = False, only: str | None = None) -> dict:
            return {k: round_trip(t, group_size, clip) if _is_delta(k) and (only is None or re.match(only, k)) else t
                    for k, t in source.items()}

        measure("int8, group 64 (for scale)", {k: round_trip(t, 64, False, "int8") if _is_delta(k) else t
                                               for k, t in deltas.items()})
        for group_size in (64, 32, 16):
            measure(f"int4, group {group_size}", trip(deltas, group_size))
        measure("int4, group 64, rebalanced factors", trip(balanced(deltas)))
        measure("int4, group 64, least-error scale", trip(deltas, clip=True))
        for steps in args.calibration_steps:
            for objective in args.calibration_objectives:
                done = requantize(source, Path(tmp) / "calibrated.hello", "int4", 64, overwrite=True,
                                  calibration=CalibrationConfig(steps=steps, objective=objective))
                measure(f"int4, group 64, calibrated {steps} steps ({objective})", path=done.path)
        for part, pattern in PARTS.items():
            measure(f"int4 {part} only (group 64), rest fp16", trip(deltas, only=pattern))


if __name__ == "__main__":
    main()
