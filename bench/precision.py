"""fp32 against bf16 autocast on this machine's CPU, side by side: milliseconds per call of the parts a
build and a student run, for the demo's stand-in CLIP (``hello-tiny-rn``) and the CIFAR-10 bench's
(``hello-rn-w32``), randomly initialised (speed does not depend on the weights).

    python bench/precision.py [--batch 32] [--repeats 30]

Parts: a ConvNet-3 teacher labelling a batch (no gradients); a projector's encoder with its LoRA, forward
and backward (a transfer step's pass); a ConvNet-3 student's training step. Each part alternates fp32
and bf16 calls in rounds, so drift of the machine's speed hits both alike; the median round is printed.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import hello_format.base  # noqa: F401  (registers the stand-in model configs with open_clip)
import open_clip
from hello_build.zoo import create_model
from hello_format.labelling import autocast, native_cpu_bf16
from hello_format.lora import encoder_config, inject

COMPARED = ("fp32", "bf16")


def timed(call, precision: str, repeats: int) -> float:
    """Milliseconds per call of ``call`` under ``precision`` (after one warm-up call)."""
    with autocast("cpu", precision):
        call()
        started = time.perf_counter()
        for _ in range(repeats):
            call()
    return (time.perf_counter() - started) / repeats * 1000


def parts(batch: int) -> dict:
    """The calls to time, by name."""
    x = torch.rand(batch, 3, 32, 32)
    teacher = create_model("convnet3", 10, image_size=32).eval().requires_grad_(False)
    student = create_model("convnet3", 10, image_size=32)
    optimizer = torch.optim.SGD(student.parameters(), lr=0.01)

    def label():
        with torch.no_grad():
            teacher(x).float()

    def student_step():
        optimizer.zero_grad()
        student(x).float().sum().backward()
        optimizer.step()

    calls = {"ConvNet-3 teacher, labels": label, "ConvNet-3 student, training step": student_step}
    for name in ("hello-tiny-rn", "hello-rn-w32"):
        visual = open_clip.create_model(name).visual
        inject(visual, encoder_config(visual, r=8, lora_alpha=16))
        visual.eval()

        def transfer_pass(visual=visual):
            visual.zero_grad()
            visual(x).float().sum().backward()

        calls[f"{name} encoder + LoRA, forward and backward"] = transfer_pass
    return calls


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"CPU with native bf16 (AVX-512-bf16 or AMX): {native_cpu_bf16()}; {torch.get_num_threads()} threads; "
          f"batch {args.batch} at 32 px; median of {args.rounds} alternating rounds of {args.repeats} calls")
    print("| part | fp32 ms | bf16 ms | fp32 / bf16 |")
    print("| --- | --- | --- | --- |")
    for name, call in parts(args.batch).items():
        rounds = {p: [] for p in COMPARED}
        for _ in range(args.rounds):
            for precision in COMPARED:
                rounds[precision].append(timed(call, precision, args.repeats))
        fp32, bf16 = (statistics.median(rounds[p]) for p in COMPARED)
        print(f"| {name} | {fp32:.1f} | {bf16:.1f} | {fp32 / bf16:.2f} |", flush=True)


if __name__ == "__main__":
    main()
