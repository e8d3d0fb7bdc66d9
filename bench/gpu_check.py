"""One command for anyone with a GPU: is hello's CUDA label path correct, and how fast is it?

    python bench/gpu_check.py            # exits 0 and says "skipped" without CUDA

Correctness (a tiny RN bundle with random weights, built here):
- HelloDataset on CUDA gives the CPU's batches: the same images and hard labels for the same seed
  (augmentation parameters come from a CPU generator), and soft labels within bf16's rounding of the
  CPU's fp32 labels (top-1 agreement and the largest difference printed, bounds asserted);
- the same seed gives the same batches twice, and labelling ahead (a side stream) changes nothing, also
  with the caller's stream busy while the next batch is drawn and labelled.
Throughput: an RN50 CLIP projector at 224 px, bf16 + channels_last, 1000 classes: labels/s, and the
overhead on a ResNet-18 student step (label + step against the step alone).
Goals (H200): >= 20,000 labels/s and <= 25 % overhead. Prints one line per check; exits 1 on a failure.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

BF16_TOP1 = 0.98  # bf16 labels' top-1 agreement with fp32 on the tiny bundle, at least
BF16_RELATIVE = 0.05  # largest |bf16 - fp32| logit difference, relative to the largest |logit|


def busy(device: torch.device) -> None:
    """Tens of milliseconds of work on the current stream (a student step's stand-in): a side stream that
    does not wait for the caller's work reads what that work has not yet written."""
    x = torch.randn(2048, 2048, device=device)
    for _ in range(20):
        x = torch.tanh(x @ x)


def correctness(workdir: Path, device: str = "cuda") -> list[str]:
    """The checks above on ``device`` against the CPU's fp32 path; the failures found."""
    from loader import Setting, make_bundle

    from hello_format.dataset import HelloDataset

    path = make_bundle(workdir / "tiny.hello", Setting("tiny", 32, 3, "hello-tiny-rn", "convnet3", "convnet3"),
                       images=24, epochs=2, batch_size=8)
    cpu = HelloDataset(path, device="cpu", seed=1, label_options={"precision": "fp32"})
    gpu = HelloDataset(path, device=device, seed=1)
    failures = []
    plain = [tuple(t.clone() for t in b) for b in gpu.loader(8, epochs=2, start_epoch=0, prefetch=False)]
    again = [tuple(t.clone() for t in b) for b in gpu.loader(8, epochs=2, start_epoch=0, prefetch=False)]
    ahead = []
    for batch in gpu.loader(8, epochs=2, start_epoch=0, prefetch=True):
        busy(gpu.device)   # a student step queued on the caller's stream while the next batch is labelled ahead
        ahead.append(tuple(t.clone() for t in batch))
    reference = list(cpu.loader(8, epochs=2, start_epoch=0, prefetch=False))
    same_seed = all(torch.equal(x, y) for a, b in zip(plain, again) for x, y in zip(a, b))
    same_ahead = all(torch.equal(x, y) for a, b in zip(plain, ahead) for x, y in zip(a, b))
    images = max(float((g[0].cpu() - c[0]).abs().max()) for g, c in zip(plain, reference))
    hard = all(torch.equal(g[2].cpu(), c[2]) for g, c in zip(plain, reference))
    soft_gpu = torch.cat([g[1].cpu() for g in plain])
    soft_cpu = torch.cat([c[1] for c in reference])
    top1 = float((soft_gpu.argmax(1) == soft_cpu.argmax(1)).float().mean())
    relative = float((soft_gpu - soft_cpu).abs().max() / soft_cpu.abs().max())
    print(f"same seed, same batches: {same_seed}; labelling ahead changes nothing: {same_ahead}")
    print(f"{device} vs CPU: images max |diff| {images:.2e}, hard labels equal {hard}, "
          f"soft labels top-1 agreement {100 * top1:.1f} %, max |diff| {100 * relative:.2f} % of the largest logit")
    for ok, what in ((same_seed, "same seed gave different batches"), (same_ahead, "labelling ahead changed a batch"),
                     (images <= 1e-4, "augmented images differ from the CPU's"), (hard, "hard labels differ from the CPU's"),
                     (top1 >= BF16_TOP1, f"top-1 agreement below {BF16_TOP1}"),
                     (relative <= BF16_RELATIVE, f"logit difference above {BF16_RELATIVE} of the largest")):
        if not ok:
            failures.append(what)
    return failures


def throughput(batch: int, iterations: int) -> list[str]:
    from loader import IMAGENET, StudentStep, make_projector_labeller, projector_for

    from hello_format.dataset import LabelledBatch

    device = torch.device("cuda")
    projector, _ = projector_for(IMAGENET, device)
    label = make_projector_labeller(projector.merge(), {})  # the defaults: bf16 + channels_last on CUDA
    student = StudentStep(IMAGENET, device)
    student.model.to(memory_format=torch.channels_last)
    images = torch.rand(batch, 3, 224, 224, device=device)
    hard = torch.nn.functional.one_hot(torch.arange(batch, device=device) % 1000, 1000).float()
    fixed = label(images)

    def step(soft):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            student(LabelledBatch(images.contiguous(memory_format=torch.channels_last), soft, hard))

    def timed(fn) -> float:
        for _ in range(3):
            fn()
        torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(iterations):
            fn()
        torch.cuda.synchronize()
        return (time.perf_counter() - started) / iterations

    label_s, step_s, both_s = timed(lambda: label(images)), timed(lambda: step(fixed)), timed(lambda: step(label(images)))
    rate, overhead = batch / label_s, both_s / step_s - 1
    print(f"{torch.cuda.get_device_name()}: RN50 projector @224 bf16, batch {batch}: {rate:,.0f} labels/s; "
          f"ResNet-18 step {1000 * step_s:.1f} ms, with labelling {1000 * both_s:.1f} ms ({100 * overhead:+.0f} %)")
    return [what for ok, what in ((rate >= 20_000, f"{rate:,.0f} labels/s is below the 20,000 goal"),
                                  (overhead <= 0.25, f"overhead {100 * overhead:.0f} % is above the 25 % goal")) if not ok]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--iterations", type=int, default=30)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("skipped: no CUDA device")
        return 0
    sys.path.insert(0, str(Path(__file__).parent))
    with tempfile.TemporaryDirectory() as workdir:
        failures = correctness(Path(workdir))
    goals = throughput(args.batch, args.iterations)
    for what in failures:
        print(f"FAILED: {what}")
    for what in goals:
        print(f"goal missed: {what}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
