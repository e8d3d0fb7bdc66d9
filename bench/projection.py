"""On paper: an ImageNet-1K `hello-build` on N GPUs, from the work per image measured here.

    python bench/projection.py [--gpus 8] [--tflops 60] [--decode-per-s 200] [--cpus-per-gpu 8]

What is measured: the floating-point operations of each pass per image (torch's FlopCounterMode on
the real modules: a randomly initialised RN50 image tower with the builder's default LoRA, and the
zoo's ResNet-18 teacher at 224 px). Everything else is an assumption, printed with the result: the
sustained throughput of a GPU on these convolutions (``--tflops``, bf16), the JPEG decode + resize rate
of one CPU core (``--decode-per-s``), the CPU cores per GPU, and the builder's defaults (10 transfer
epochs, 100 candidates x 5 crops per class, a view transfer of 1280 views per synthetic image at IPC 10 in
steps of 128, half of them real, 1.28 M images). The
run is the sum over stages of max(GPU time, decode time), each split evenly over the GPUs (the
torchrun build's parallelism: every stage sharded, decoding too in the transfer).
"""

from __future__ import annotations

import argparse

import torch
from torch.utils.flop_counter import FlopCounterMode

import hello_format  # noqa: F401  (installs the torchvision op shim before open_clip loads)
import open_clip
from hello_build.options import BuildOptions
from hello_build.stages.view_transfer import schedule
from hello_build.zoo import create_model
from hello_format.lora import encoder_config, inject

IMAGES, CLASSES = 1_281_167, 1000


def flops(run) -> int:
    with FlopCounterMode(display=False) as counter:
        run()
    return counter.get_total_flops()


def measure() -> dict[str, float]:
    """Floating-point operations per 224-px image of each pass the build makes."""
    visual = open_clip.create_model("RN50", pretrained=None).visual.eval()
    inject(visual, encoder_config(visual))   # the builder's default LoRA
    for name, parameter in visual.named_parameters():
        parameter.requires_grad_("lora_" in name)
    teacher = create_model("resnet18_224", CLASSES).eval()
    x = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        projector_forward = flops(lambda: visual(x)) / 2
        teacher_forward = flops(lambda: teacher(x)) / 2
    projector_step = flops(lambda: visual(x).sum().backward()) / 2   # forward + backward to the LoRA
    return {"projector forward": projector_forward, "projector forward+backward": projector_step,
            "teacher forward": teacher_forward}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--tflops", type=float, default=60.0, help="assumed sustained bf16 TFLOP/s of one GPU on these convolutions")
    parser.add_argument("--decode-per-s", type=float, default=200.0, help="assumed JPEG decodes + resizes per second of one CPU core")
    parser.add_argument("--cpus-per-gpu", type=int, default=8, help="assumed decoding cores per GPU (--num-workers)")
    args = parser.parse_args(argv)
    per_image = measure()
    for name, value in per_image.items():
        print(f"measured: {name}: {value / 1e9:.2f} GFLOP per image (224 px)")
    defaults = BuildOptions()
    view_images = schedule(defaults, CLASSES * defaults.ipc) * defaults.transfer_batch_size
    scored = CLASSES * defaults.candidates_per_class * defaults.crops_per_image
    stages = {  # (images through the pass, FLOP per image, JPEG decodes)
        "transfer": (defaults.transfer_epochs * IMAGES,
                     per_image["projector forward+backward"] + per_image["teacher forward"],
                     defaults.transfer_epochs * IMAGES),
        "RDED scoring": (scored, per_image["projector forward"] + per_image["teacher forward"],
                         CLASSES * defaults.candidates_per_class),
        "view transfer": (view_images, per_image["projector forward+backward"] + per_image["teacher forward"],
                          round(view_images * defaults.view_transfer_real_fraction)),
    }
    gpu_rate = args.gpus * args.tflops * 1e12
    decode_rate = args.gpus * args.cpus_per_gpu * args.decode_per_s
    total = 0.0
    print(f"assumed: {args.gpus} GPUs at {args.tflops:g} TFLOP/s sustained each; {args.cpus_per_gpu} cores per GPU "
          f"decoding {args.decode_per_s:g} images/s each; the builder's defaults; the data scan, teacher files "
          "and the write not counted")
    for name, (count, work, decodes) in stages.items():
        gpu_s, decode_s = count * work / gpu_rate, decodes / decode_rate
        total += max(gpu_s, decode_s)
        print(f"  {name}: {count:,} images x {work / 1e9:.1f} GFLOP -> {gpu_s / 60:.1f} min of GPU; "
              f"{decodes:,} decodes -> {decode_s / 60:.1f} min of CPU")
    print(f"projected: {total / 3600:.2f} h on {args.gpus} GPUs ({total * args.gpus / 3600:.1f} GPU-hours)")


if __name__ == "__main__":
    main()
