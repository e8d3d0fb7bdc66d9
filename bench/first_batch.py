"""Time from ``HelloDataset(path)`` to the first labelled batch, cold and warm head cache.

An ImageNet-1K-shaped bundle: RN50 with random weights as a *public* base (a local safetensors
checkpoint, so its head is computed by the text tower, then cached), 1000 ImageNet classes, the
80-template OpenAI ensemble (``--templates N``: the first N), 224 px, ``--ipc`` images per class,
conv LoRA r 8 and head LoRA r 128. Each measurement runs in a fresh subprocess, so the import of
torch/open_clip/hello is paid and reported on its own line:

    cold      empty cache: the text tower encodes classes x templates prompts, then the head is cached
    warm      the same cache again: the head is read, the text tower is never built
    embedded  the bundle written with the base embedded as its image tower plus the stored head (no cache)

It also prints the RN50 sizes of an embedded base in format 1.0 (whole CLIP) and 1.1 (image tower +
head), and a profile of the warm path (``--profile``).

    python bench/first_batch.py --templates 1 --batch 8 --profile   # ~20 minutes on the 2 shared cores (cold: 1,000 prompts)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

CHILD = r"""
import cProfile, json, pstats, sys, time
started = time.perf_counter()
from hello_format.dataset import HelloDataset
imported = time.perf_counter()
profile = cProfile.Profile() if {profile} else None
if profile: profile.enable()
opened = time.perf_counter()
ds = HelloDataset({path!r}, device="cpu", checkpoint={checkpoint!r})
ready = time.perf_counter()
batch = next(iter(ds.loader(batch_size={batch})))
done = time.perf_counter()
if profile:
    profile.disable()
    pstats.Stats(profile, stream=sys.stderr).sort_stats("cumulative").print_stats(45)
print(json.dumps({{"import_s": imported - started, "dataset_s": ready - opened, "first_batch_s": done - ready,
                  "to_first_batch_s": done - opened, "labels": list(batch.soft_labels.shape)}}))
"""


def build(work: Path, templates: int, ipc: int) -> tuple[Path, Path, Path, dict]:
    """The RN50 checkpoint, the public-base bundle, the embedded (image tower + head) bundle; sizes."""
    import torch

    import hello_format  # noqa: F401  (the torchvision shim before open_clip)
    import open_clip
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES, OPENAI_IMAGENET_TEMPLATES
    from safetensors.torch import save_file

    from hello_format import lora
    from hello_format.base import base_state_dict, describe_base, embedded_part, embedded_tensors, quiet_open_clip
    from hello_format.bundle import write_bundle
    from hello_format.generator import HeadConfig, HeadLoraConfig
    from hello_format.projector import Projector
    from hello_format.recipe import Recipe

    def rn50():   # the same random weights every call
        torch.manual_seed(0)
        with quiet_open_clip():
            return open_clip.create_model("RN50", force_quick_gelu=True)

    model = rn50()
    names = [name if name not in IMAGENET_CLASSNAMES[:i] else f"{name} ({i})"   # 'crane' and 'maillot' occur twice
             for i, name in enumerate(IMAGENET_CLASSNAMES)]
    chosen = tuple(t("{}") for t in OPENAI_IMAGENET_TEMPLATES[:templates])
    checkpoint = work / "rn50-random.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(checkpoint))
    state = base_state_dict(model)
    sizes = {"whole_clip": sum(v.numel() * v.element_size() for v in state.values()),
             "image_tower": sum(v.numel() * v.element_size() for v in embedded_part(state, "visual").values()),
             "head": len(names) * model.text_projection.shape[1] * 4}
    count = len(names) * ipc
    images = (torch.rand(count, 3, 28, 28, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    images = torch.nn.functional.interpolate(images.float(), size=224, mode="bilinear").round().to(torch.uint8)
    labels = torch.arange(len(names)).repeat_interleave(ipc)
    paths = {}
    for kind in ("public", "embedded"):
        model = rn50()   # LoRA is injected into it below
        source = "local" if kind == "public" else "embedded"
        section = describe_base(model, architecture="RN50", pretrained="openai", source=source, embedded="visual",
                                checkpoint=checkpoint.name if kind == "public" else None)
        if kind == "embedded":
            section["pretrained"] = None
        # random like every weight here (timing does not depend on values); stored only for the embedded
        # base, computed by the text tower on reading for the public one
        head_weight = torch.nn.functional.normalize(torch.randn(len(names), model.text_projection.shape[1]), dim=-1)
        projector = Projector(model, section, names, head=HeadConfig(templates=chosen, logit_scale=100.0,
                              lora=HeadLoraConfig(r=128, lora_alpha=128)),
                              encoder_lora=lora.encoder_config(model.visual), class_embeddings=head_weight)
        with torch.no_grad():
            for name, parameter in projector.named_parameters():
                if "lora_B" in name:
                    parameter.normal_(0, 0.01)
        manifest = {"class_names": names, "ipc": ipc, **projector.manifest_sections(),
                    "recipe": Recipe(epochs=300, batch_size=64, student_image_size=224).to_manifest(),
                    "provenance": {"source_dataset": "random", "teacher": "none",
                                   "builder": {"name": "bench/first_batch.py", "version": "0", "options": {}},
                                   "timings": {}}}
        tensors = projector.bundle_tensors()
        if kind == "embedded":
            tensors.update(embedded_tensors(model, parts="visual"))
        paths[kind] = write_bundle(work / f"{kind}.hello", manifest, images, labels, tensors)
    return checkpoint, paths["public"], paths["embedded"], sizes


def measure(path: Path, checkpoint: Path | None, cache: Path, batch: int, profile: bool) -> dict:
    code = CHILD.format(path=str(path), checkpoint=str(checkpoint) if checkpoint else None, batch=batch,
                        profile=profile)
    env = dict(os.environ, HELLO_CACHE=str(cache), PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    if result.returncode:
        raise SystemExit(result.stderr[-3000:])
    if profile:
        print(result.stderr[-6000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--templates", type=int, default=80, help="the first N of the 80 OpenAI templates")
    parser.add_argument("--ipc", type=int, default=1)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--profile", action="store_true", help="print where the warm path's time goes")
    parser.add_argument("--warm-only", action="store_true", help="skip the cold run: reuse --work's cache")
    parser.add_argument("--work", type=Path, help="keep the built files here and reuse them when they exist "
                                                  "(default: a temporary directory)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hello-first-batch-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        built = work / f"built-{args.templates}-{args.ipc}.json"
        if built.is_file():
            checkpoint, public, embedded, sizes = json.loads(built.read_text())
            checkpoint, public, embedded = Path(checkpoint), Path(public), Path(embedded)
        else:
            checkpoint, public, embedded, sizes = build(work, args.templates, args.ipc)
            built.write_text(json.dumps([str(checkpoint), str(public), str(embedded), sizes]))
        cache = work / "cache"
        if not args.warm_only:
            shutil.rmtree(cache, ignore_errors=True)   # the cold run starts from an empty cache
        print(f"built in {time.perf_counter() - started:.0f} s: RN50 (random weights), 1000 classes x {args.templates} "
              f"template(s), {args.ipc} image(s) per class at 224 px, batch {args.batch}; torch threads "
              f"{os.environ.get('OMP_NUM_THREADS', 'default')}")
        print(f"embedded RN50 base: format 1.0 whole CLIP {sizes['whole_clip']:,} bytes; format 1.1 image tower "
              f"{sizes['image_tower']:,} + head {sizes['head']:,} = {sizes['image_tower'] + sizes['head']:,} bytes")
        rows = [] if args.warm_only else [("cold (empty cache)", measure(public, checkpoint, cache, args.batch, False))]
        rows += [("warm (cached head)", measure(public, checkpoint, cache, args.batch, args.profile)),
                 ("embedded, stored head", measure(embedded, None, work / "unused-cache", args.batch, False))]
        print(f"{'run':<24}{'import s':>10}{'HelloDataset s':>16}{'first batch s':>15}{'to first batch s':>18}")
        for name, row in rows:
            print(f"{name:<24}{row['import_s']:>10.2f}{row['dataset_s']:>16.2f}{row['first_batch_s']:>15.2f}"
                  f"{row['to_first_batch_s']:>18.2f}")
        warm = rows[-2][1]["to_first_batch_s"]
        print(f"goal: warm <= 2 s from HelloDataset(path) to the first labelled batch: {warm:.2f} s, "
              f"{'met' if warm <= 2 else 'NOT met'}")


if __name__ == "__main__":
    main()
