"""Helpers several test files share (fixtures are in conftest.py); no tests here.

- a tiny ImageFolder tree, a tiny base checkpoint and a colour teacher module for builds;
- small schema-valid bundles around a fake base, and a card splitter;
- a huggingface_hub cache populated by hand (offline).
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
import yaml
from huggingface_hub.utils.sha import git_hash
from PIL import Image
from safetensors.torch import save_file

from hello_build.options import BuildOptions
from hello_build.pipeline import build
from hello_format.augment import AugmentConfig
from hello_format.base import embedded_tensors
from hello_format.bundle import Bundle, write_bundle, write_stored
from hello_format.generator import EncoderLoraConfig, HeadConfig, HeadLoraConfig
from hello_format.recipe import Recipe
from hello_format.testing import TINY_ARCHITECTURES, tiny_clip, tiny_projector

COMMIT = "a" * 40  # the hub cache's default snapshot


# devices torch cannot use here, and the start of the one line each is refused with (HelloDataset, hello eval)
UNUSABLE_DEVICES = [
    ("gpu", "device 'gpu' is not a torch device (e.g. cpu, cuda, cuda:1)"),
    pytest.param("cuda", "device 'cuda': this torch has no usable CUDA", marks=pytest.mark.skipif(
        torch.cuda.is_available(), reason="this torch has CUDA")),
    ("meta", "device 'meta': this torch has no usable meta"),   # it holds no data: autocast refused it
    pytest.param("xpu", "device 'xpu': this torch has no usable xpu", marks=pytest.mark.skipif(
        hasattr(torch, "xpu") and torch.xpu.is_available(), reason="this torch has an XPU")),
    ("cpu:5", "device 'cpu:5': the CPU has no index but 0"),
]

# ------------------------------------------------------------------------------- builds

CLASSES = ("apple", "leaf", "sea")
COLOURS = ((200, 40, 40), (40, 180, 60), (50, 60, 210))
TEACHER_MODULE = "h7_colour_teacher"
TEACHER = f"{TEACHER_MODULE}:make"
INTERRUPT_ENV = "H7_INTERRUPT_WHEN_EXISTS"

TEACHER_SOURCE = f'''
"""A fixed colour classifier (test teacher); raises KeyboardInterrupt once ${INTERRUPT_ENV} exists."""
import os
import torch
from torch import nn


class ColourTeacher(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.register_buffer("weight", 3.0 * torch.eye(3)[:num_classes] - 1.0)

    def forward(self, x):
        trigger = os.environ.get("{INTERRUPT_ENV}")
        if trigger and os.path.exists(trigger):
            raise KeyboardInterrupt
        channels = x.mean(dim=(2, 3))
        return 2.0 * (channels - channels.mean(1, keepdim=True)) @ self.weight.T


def make(num_classes=3):
    return ColourTeacher(num_classes)
'''


def write_labelled_bundle(path, family: str = "vit", seed: int = 0, *, classes=("a", "b", "c"), ipc: int = 4,
                          augment: dict | None = None, lora_std: float = 0.05, prior_weight: float = 0.0):
    """A 32-px bundle with an embedded tiny base and non-zero fp32 LoRA (LoRA B of standard deviation
    ``lora_std``; merging is the only difference), smooth random images, ``augment`` as its recipe's
    augmentation, ``prior_weight`` as its head's (format 2.0 when not 0)."""
    classes = list(classes)
    projector = tiny_projector(family, classes, seed=seed, lora_std=lora_std)
    projector.set_prior_weight(prior_weight)
    manifest = {
        "format_version": "1.0", "class_names": classes, "ipc": ipc,
        **projector.manifest_sections("float32"),
        "recipe": Recipe(epochs=2, batch_size=5, student_image_size=32,
                         augment=AugmentConfig.from_dict(augment or {})).to_manifest(),
        "provenance": {"source_dataset": "test", "teacher": "none",
                       "builder": {"name": "tests", "version": "0", "options": {}}, "timings": {}},
    }
    coarse = torch.rand(len(classes) * ipc, 3, 4, 4, generator=torch.Generator().manual_seed(seed))
    images = (F.interpolate(coarse, size=32, mode="bilinear") * 255).round().to(torch.uint8)
    labels = torch.arange(len(classes)).repeat_interleave(ipc)
    tensors = {**projector.bundle_tensors("float32"), **embedded_tensors(tiny_clip(family, seed))}
    return write_bundle(path, manifest, images, labels, tensors, codec="png")


def rewritten(source, target, edit) -> Path:
    """``source`` written again as ``target`` after ``edit(manifest, tensors)`` changed a copy of its
    manifest and stored tensors (hashes recomputed and everything checked, as ``write_stored`` does)."""
    with Bundle.open(source) as bundle:
        manifest = copy.deepcopy(bundle.manifest)
        tensors = {name: bundle.tensor(name).clone() for name in bundle.tensor_names}
    edit(manifest, tensors)
    return write_stored(target, manifest, tensors)


def with_local_base(source, target, checkpoint: Path) -> Path:
    """``source`` (its base embedded) rewritten as ``target`` with the base's weights moved to ``checkpoint``:
    a ``source: local`` base, which only ``--base-checkpoint`` can supply."""
    def edit(manifest, tensors):
        base = {name.removeprefix("base."): tensors.pop(name) for name in [n for n in tensors if n.startswith("base.")]}
        save_file(base, str(checkpoint))
        manifest["base"] |= {"source": "local", "checkpoint": checkpoint.name}

    return rewritten(source, target, edit)


def with_remote_text_base(source, target) -> Path:
    """``source`` rewritten as ``target`` with a custom base config naming a Hugging Face text model
    (``text_cfg.hf_model_name``, architecture ``remote-text-tiny-vit``): refused unless --allow-remote-base."""
    def edit(manifest, tensors):
        config = copy.deepcopy(open_clip.get_model_config(manifest["base"]["architecture"]))
        config["text_cfg"]["hf_model_name"] = "some-org/some-model"
        manifest["base"] |= {"architecture": "remote-text-tiny-vit", "config": config}

    return rewritten(source, target, edit)


def make_tree(root: Path, per_class: int = 16, classes=CLASSES, size: int = 32, seed: int = 0) -> Path:
    """An ImageFolder of PNGs: each class its own colour and stripe pattern, plus per-image noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    patterns = ((yy // 4) % 2, (xx // 4) % 2, ((yy // 4) + (xx // 4)) % 2)
    for label, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        pattern = patterns[label % 3][..., None]
        for i in range(per_class):
            pixels = np.array(COLOURS[label % 3])[None, None] * (0.6 + 0.4 * pattern) + rng.normal(0, 20, (size, size, 3))
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"{i:02d}.png")
    return root


def save_tiny_base(path: Path, family: str = "vit") -> str:
    """A tiny CLIP's state dict as a local safetensors checkpoint; returns its architecture name."""
    model = tiny_clip(family, seed=0)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return TINY_ARCHITECTURES[family]


def write_teacher_module(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{TEACHER_MODULE}.py").write_text(TEACHER_SOURCE)
    return folder


def tiny_options(kit, out_dir: Path, **overrides) -> BuildOptions:
    """Options for a build of seconds on the tiny tree (held-out quarter measures fidelity); the paper's
    stages only unless ``view_transfer_epochs`` is given (tests/test_view_transfer.py covers that stage)."""
    values = dict(
        data=str(kit["data"]), output=str(out_dir / "tiny.hello"), base=kit["base"], base_checkpoint=str(kit["base_file"]),
        embed_base=True, teacher=[TEACHER], holdout=0.25, transfer_epochs=4, transfer_batch_size=12, transfer_lr=5e-3,
        ipc=2, candidates_per_class=8, crops_per_image=2, device="cpu", seed=0, view_transfer_epochs=0,
    )
    values.update(overrides)
    return BuildOptions(**values)


def run_build(options: BuildOptions) -> tuple[dict, list[str]]:
    logs: list[str] = []
    return build(options, progress=False, log=logs.append), logs


# ------------------------------------------------------------------------------ bundles

CARD_CLASSES = ["cat", "dog", "bird"]
FEATURE_WIDTH = 16  # feature width of the fake encoder


def make_manifest(*, classes=CARD_CLASSES, ipc=4, source="local", architecture="hello-tiny-vit", pretrained=None,
                  source_dataset="cifar10", epochs=300):
    """A schema-valid manifest around a fake base (nothing here loads the base)."""
    return {
        "format_version": "1.0",
        "class_names": list(classes),
        "ipc": ipc,
        "base": {
            "source": source, "architecture": architecture, "pretrained": pretrained,
            "checkpoint": "tiny-base.safetensors" if source == "local" else None, "config": None,
            "fingerprint": "sha256:" + "0" * 64, "image_size": 32, "mean": [0.5] * 3, "std": [0.25] * 3,
        },
        "lora": EncoderLoraConfig(target_modules=r"transformer\.resblocks\.\d+\.mlp\.c_fc", r=4, lora_alpha=8).to_manifest(),
        "head": HeadConfig(templates=("a photo of a {}.", "a drawing of a {}."), logit_scale=100.0,
                           lora=HeadLoraConfig(r=8, lora_alpha=8)).to_manifest(),
        "recipe": Recipe(epochs=epochs, batch_size=32, student_image_size=16).to_manifest(),
        "provenance": {
            "source_dataset": source_dataset, "teacher": "resnet18-cifar10",
            "builder": {"name": "hello-build", "version": "0.1.0", "options": {}}, "timings": {"init": 1.5},
        },
    }


def make_bundle(path, *, seed=0, codec="png", embed_base=False, zero_shot=False, **manifest_options):
    """Write a small bundle (random images, random LoRA; ``zero_shot``: no LoRA at all) and return its path."""
    manifest = make_manifest(source="embedded" if embed_base else manifest_options.pop("source", "local"),
                             **manifest_options)
    c, ipc = len(manifest["class_names"]), manifest["ipc"]
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (c * ipc, 3, 12, 12), dtype=torch.uint8, generator=g)
    labels = torch.arange(c).repeat_interleave(ipc)
    module = "encoder_lora.base_model.model.transformer.resblocks.0.mlp.c_fc"
    tensors = {
        f"{module}.lora_A.weight": torch.randn(4, FEATURE_WIDTH, generator=g).half(),
        f"{module}.lora_B.weight": torch.randn(4 * FEATURE_WIDTH, 4, generator=g).half(),
        "head.lora_A": torch.randn(8, FEATURE_WIDTH, generator=g).half(),
        "head.lora_B": torch.randn(c, 8, generator=g).half(),
    }
    if embed_base:
        tensors["base.visual.proj"] = torch.randn(FEATURE_WIDTH, 8, generator=g)
    if zero_shot:
        manifest["lora"], manifest["head"]["lora"] = None, None
        tensors = {name: t for name, t in tensors.items() if name.startswith("base.")}
    return write_bundle(path, manifest, images, labels, tensors, codec=codec)


def split_card(text):
    """(front matter dict, body) of a README.md with YAML front matter."""
    assert text.startswith("---\n")
    front, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(front), body


# ---------------------------------------------------------------------- the hub cache

def cache_file(cache, repo_id, path, data, *, repo_type="dataset", commit=COMMIT, ref="main", lfs=True):
    """Put ``data`` into ``cache`` the way hf_hub_download stores a file: a blob named by the file's etag
    (sha256 for LFS files, git blob sha1 otherwise), a snapshot symlink to it, a ref naming the commit."""
    repo_dir = Path(cache) / f"{repo_type}s--{repo_id.replace('/', '--')}"
    blob = repo_dir / "blobs" / (hashlib.sha256(data).hexdigest() if lfs else git_hash(data))
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(data)
    pointer = repo_dir / "snapshots" / commit / path
    pointer.parent.mkdir(parents=True, exist_ok=True)
    pointer.symlink_to(os.path.relpath(blob, pointer.parent))
    if ref is not None:
        (repo_dir / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
        (repo_dir / "refs" / ref).write_text(commit)
    return pointer


def load_script(relative: str):
    """A repository script (e.g. ``bench/cifar10.py``) loaded as a module, by its path."""
    path = Path(__file__).resolve().parent.parent / relative
    spec = importlib.util.spec_from_file_location(f"script_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_STATUS_KB = ("def _status_kb(field):\n"
              "    return next(int(line.split()[1]) for line in open('/proc/self/status') if line.startswith(field + ':'))\n")


def count_decodes(monkeypatch) -> list[int]:
    """The numbers of the bundle images ``codecs.decode_images`` decodes from now on (it still decodes them),
    in the order it is asked for them."""
    from hello_format import codecs

    decoded, decode = [], codecs.decode_images

    def counted(blobs, *args, **kwargs):
        decoded.extend(range(len(blobs)) if kwargs.get("numbers") is None else kwargs["numbers"])   # None: from 0
        return decode(blobs, *args, **kwargs)

    monkeypatch.setattr(codecs, "decode_images", counted)
    return decoded


def held_memory_growth_mb(script: str) -> float:
    """Run ``script`` in a fresh interpreter; the growth (MB) of its anonymous resident memory (RssAnon:
    what it holds itself, the pages of files it read or mapped left out) across the part after the line
    ``# measure``. Linux only."""
    if not Path("/proc/self/status").exists():
        pytest.skip("resident memory is read from /proc/self/status (Linux)")
    prelude, body = script.split("# measure\n")
    program = prelude + _STATUS_KB + "before = _status_kb('RssAnon')\n" + body + \
        "\nprint((_status_kb('RssAnon') - before) / 1024)\n"
    return _last_number(program)


def peak_rss_growth_mb(script: str) -> float:
    """Run ``script`` in a fresh interpreter; the growth of its peak RSS (MB) across the part after
    the line ``# measure``: the peak (VmHWM) is reset there. (``ru_maxrss`` is not the measure: a child
    starts at its parent's size, pytest's, which grows over a run.) Linux only."""
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("peak RSS is reset through /proc/self/clear_refs (Linux)")
    prelude, body = script.split("# measure\n")
    program = (prelude + _STATUS_KB + "open('/proc/self/clear_refs', 'w').write('5')\nbefore = _status_kb('VmRSS')\n"
               + body + "\nprint((_status_kb('VmHWM') - before) / 1024)\n")
    return _last_number(program)


def _last_number(program: str) -> float:
    """The number ``program``, run in a fresh interpreter with the repository importable, prints last."""
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    assert done.returncode == 0, done.stderr
    return float(done.stdout.strip().splitlines()[-1])
