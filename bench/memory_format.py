"""The transfers' projector step in NCHW against channels_last on this CPU: is NHWC worth it in training?

A transfer step of ``hello-build`` is a forward and a backward pass through a conv base with LoRA on every
conv, then AdamW on the deltas. This times that step for each conv base below (random weights; the builder's
LoRA targets and rank), with the tower's weights contiguous and channels_last (``Projector.set_channels_last``,
as ``hello-build --channels-last`` sets them; the input batch stays NCHW, the first conv's output takes its
weight's layout), interleaved step by step on the same batches, in fp32 or under the builder's bf16 autocast
(``--precision``), on a CPU or a GPU (``--device``), and the forward alone (no gradient) for comparison. It
also prints the largest logit difference between the two.

    python bench/memory_format.py                      # about 3.5 minutes on 2 cores
    python bench/memory_format.py --bases hello-tiny-rn --steps 20
    python bench/memory_format.py --device cuda --precision bf16 --bases RN50 --batch 128   # a GPU's RN50 build
"""

from __future__ import annotations

import argparse
import os
import platform
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# base: (image side, batch): the demo's stand-in at its transfer batch (32), the CIFAR bench's at the
# builder's default (128), RN50 at 224 px in a batch small enough for a CPU
BASES = {"hello-tiny-rn": (32, 32), "hello-rn-w32": (32, 128), "RN50": (224, 8)}


def projector(architecture: str, size: int, seed: int = 0):
    """A trainable projector over ``architecture`` with random weights, the builder's encoder LoRA, 10 classes."""
    import torch
    import hello_format  # noqa: F401  (the torchvision shim before open_clip)
    import open_clip
    from hello_format import lora
    from hello_format.base import describe_base, quiet_open_clip
    from hello_format.generator import HeadConfig, HeadLoraConfig
    from hello_format.projector import Projector

    torch.manual_seed(seed)
    with quiet_open_clip():
        model = open_clip.create_model(architecture)
    section = describe_base(model, architecture=architecture, source="local", checkpoint="random.safetensors")
    width = model.text_projection.shape[1]
    head = torch.nn.functional.normalize(torch.randn(10, width), dim=-1)
    built = Projector(model, section, [f"class {i}" for i in range(10)], class_embeddings=head,
                      head=HeadConfig(templates=("{}",), logit_scale=100.0, lora=HeadLoraConfig(r=8, lora_alpha=8)),
                      encoder_lora=lora.encoder_config(model.visual))
    with torch.no_grad():
        for name, parameter in built.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.01)   # peft starts B at zero: a non-zero delta, as after some training
    assert built.image_size[0] == size, (built.image_size, size)
    return built


def measure(architecture: str, size: int, batch: int, steps: int, device: str = "cpu", precision: str = "fp32") -> dict:
    """Seconds per transfer step and per forward, NCHW and channels_last, interleaved; the logits' largest gap."""
    import torch
    from hello_format.labelling import autocast

    device = torch.device(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    models = {"nchw": projector(architecture, size).to(device), "channels_last": projector(architecture, size).to(device)}
    assert models["channels_last"].set_channels_last(True)   # as hello-build sets it (the inputs stay NCHW)
    optimizers = {name: torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-5)
                  for name, m in models.items()}
    step_s = {name: [] for name in models}
    forward_s = {name: [] for name in models}
    generator, gap = torch.Generator().manual_seed(1), 0.0
    for step in range(steps + 2):   # the first two warm up
        images = torch.rand(batch, 3, size, size, generator=generator).to(device)
        target = torch.randn(batch, 10, generator=generator).to(device)
        outputs = {}
        for name, model in models.items():
            model.train()
            sync()
            started = time.perf_counter()
            with autocast(device, precision):
                logits = model(images).float()
            loss = torch.nn.functional.mse_loss(logits, target)
            optimizers[name].zero_grad(set_to_none=True)
            loss.backward()
            optimizers[name].step()
            sync()
            trained = time.perf_counter()
            model.eval()
            with torch.no_grad(), autocast(device, precision):
                outputs[name] = model(images).float()
            sync()
            done = time.perf_counter()
            if step >= 2:
                step_s[name].append(trained - started)
                forward_s[name].append(done - trained)
        gap = max(gap, float((outputs["nchw"] - outputs["channels_last"]).abs().max()))
    median = lambda values: sorted(values)[len(values) // 2]  # noqa: E731
    return {"step": {n: median(v) for n, v in step_s.items()}, "forward": {n: median(v) for n, v in forward_s.items()},
            "gap": gap}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bases", nargs="+", default=list(BASES), choices=list(BASES))
    parser.add_argument("--steps", type=int, default=30, help="timed steps per base (median reported)")
    parser.add_argument("--batch", type=int, default=None, help="one batch size for every base (default: BASES')")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="the transfer's precision (hello-build --precision; bf16: autocast)")
    args = parser.parse_args()
    import torch

    if torch.device(args.device).type == "cuda":
        where = f"{torch.cuda.get_device_name(args.device)}, torch {torch.__version__}"
    else:
        where = (f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} "
                 f"threads, ATen CPU capability {torch.backends.cpu.get_cpu_capability()}")
    print(f"{where}; {args.precision}; median of {args.steps} steps")
    print()
    print("| base | px | batch | transfer step NCHW | channels_last | ratio | forward NCHW | channels_last | ratio "
          "| max logit gap |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for architecture in args.bases:
        size, batch = BASES[architecture]
        batch = args.batch or batch
        got = measure(architecture, size, batch, args.steps, args.device, args.precision)
        step, forward = got["step"], got["forward"]
        print(f"| {architecture} | {size} | {batch} | {step['nchw'] * 1e3:.1f} ms "
              f"| {step['channels_last'] * 1e3:.1f} ms | {step['nchw'] / step['channels_last']:.2f}x "
              f"| {forward['nchw'] * 1e3:.1f} ms | {forward['channels_last'] * 1e3:.1f} ms "
              f"| {forward['nchw'] / forward['channels_last']:.2f}x | {got['gap']:.1e} |", flush=True)


if __name__ == "__main__":
    main()
