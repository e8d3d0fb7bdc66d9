"""Stage 2, LoRA knowledge transfer: train the projector's low-rank deltas to imitate the teacher(s).

On augmented views of the *real* training images, loss = MSE(projector, teacher logits)
+ lambda * CE(projector, hard labels) (the paper's objective), with one weak teacher drawn per batch
(or their mean). Only the LoRA matrices train; the CLIP base and its BatchNorm statistics stay frozen.
Each epoch ends with a checkpoint (LoRA + optimizer moments) in the work directory, so an interrupted
transfer resumes at the last finished epoch and continues exactly as it would have.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from hello_format.augment import AugmentConfig, augment_batch, mix_targets


@dataclass(frozen=True)
class TransferOptions:
    """The transfer's settings; their defaults live in hello_build.options (one source of truth)."""

    epochs: int
    batch_size: int
    lr: float
    lambda_ce: float
    seed: int
    weight_decay: float = 0.0


def _autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


def _views(loader_images, labels, augment: AugmentConfig, generator, device):
    images = loader_images.to(device, non_blocking=True)
    return augment_batch(images, augment, generator), labels.to(device, non_blocking=True)


@torch.no_grad()
def fidelity(projector, teachers, data, augment: AugmentConfig, *, batch_size: int, device, seed: int = 1234) -> dict:
    """How well the projector imitates the teacher on augmented views of ``data`` (held-out real images).

    Returns top-1 agreement with the mean teacher, KL(teacher || projector) at T=1, and both models'
    top-1 accuracy on the (un-mixed) labels (None for all four when ``data`` is empty). The views are the
    same for every call with the same seed.
    """
    projector.eval()
    generator = torch.Generator().manual_seed(seed)
    plain = augment.replace(cutmix=0.0, mixup=0.0)
    agree = kl = p_correct = t_correct = n = 0.0
    for images, labels in DataLoader(data, batch_size=batch_size, shuffle=False):
        view, labels = _views(images, labels, plain, generator, device)
        with _autocast(device):
            p = projector(view.images).float()
            t = teachers.mean_logits(view.images).float()
        agree += (p.argmax(1) == t.argmax(1)).sum().item()
        kl += F.kl_div(F.log_softmax(p, 1), F.log_softmax(t, 1), log_target=True, reduction="sum").item()
        p_correct += (p.argmax(1) == labels).sum().item()
        t_correct += (t.argmax(1) == labels).sum().item()
        n += len(labels)
    if not n:
        return {"agreement": None, "kl": None, "projector_top1": None, "teacher_top1": None, "images": 0}
    return {"agreement": agree / n, "kl": kl / n, "projector_top1": p_correct / n, "teacher_top1": t_correct / n, "images": int(n)}


def run_transfer(
    projector,
    teachers,
    train_data,
    augment: AugmentConfig,
    options: TransferOptions,
    *,
    checkpoint_dir: Path,
    device: torch.device,
    num_workers: int = 0,
    progress: bool = True,
) -> list[float]:
    """Train ``projector``'s LoRA parameters in place; returns the mean loss of each epoch."""
    params = [p for p in projector.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=options.lr, weight_decay=options.weight_decay)
    steps_per_epoch = math.ceil(len(train_data) / options.batch_size)
    total = max(1, options.epochs * steps_per_epoch)
    start_epoch, history = _restore(checkpoint_dir, projector, optimizer)

    for epoch in range(start_epoch, options.epochs):
        projector.train()
        epoch_seed = options.seed * 1_000_003 + epoch
        generator = torch.Generator().manual_seed(epoch_seed)
        order = torch.Generator().manual_seed(epoch_seed ^ 0x5EED)
        loader = DataLoader(train_data, batch_size=options.batch_size, shuffle=True, generator=order, num_workers=num_workers, drop_last=False)
        teacher_choice = torch.Generator().manual_seed(epoch_seed ^ 0x7EAC)
        total_loss = 0.0
        bar = tqdm(loader, desc=f"transfer {epoch + 1}/{options.epochs}", disable=not progress, leave=False)
        for step, (images, labels) in enumerate(bar, start=epoch * steps_per_epoch):
            for group in optimizer.param_groups:  # cosine decay over all steps, a function of the step alone
                group["lr"] = options.lr * 0.5 * (1 + math.cos(math.pi * step / total))
            view, labels = _views(images, labels, augment, generator, device)
            labels_a, labels_b, lam = mix_targets(labels, view.mix)
            with torch.no_grad(), _autocast(device):
                target = teachers.logits(view.images, generator=teacher_choice).float()
            with _autocast(device):
                logits = projector(view.images).float()
            ce = lam * F.cross_entropy(logits, labels_a) + (1 - lam) * F.cross_entropy(logits, labels_b)
            loss = F.mse_loss(logits, target) + options.lambda_ce * ce
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(labels)
            bar.set_postfix(loss=f"{loss.item():.3f}")
        history.append(total_loss / len(train_data))
        _save(checkpoint_dir, projector, optimizer, epoch + 1, history)
    projector.eval()
    return history


def _trainable(projector) -> dict[str, torch.Tensor]:
    return {name: p for name, p in projector.named_parameters() if p.requires_grad}


def _save(directory: Path, projector, optimizer, epochs_done: int, history: list[float]) -> None:
    """Checkpoint LoRA weights and AdamW moments as safetensors (no pickle), atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for name, p in _trainable(projector).items():
        tensors[f"param/{name}"] = p.detach().cpu().contiguous()
        for key, value in optimizer.state.get(p, {}).items():
            tensors[f"{key}/{name}"] = torch.as_tensor(value).detach().cpu().reshape(1).float() if key == "step" else value.detach().cpu().contiguous()
    meta = {"epochs_done": str(epochs_done), "history": ",".join(repr(h) for h in history)}
    tmp = directory / "transfer.safetensors.tmp"
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(directory / "transfer.safetensors")


def _restore(directory: Path, projector, optimizer) -> tuple[int, list[float]]:
    """Load the last epoch checkpoint, if any; returns (epochs done, loss history)."""
    path = directory / "transfer.safetensors"
    if not path.exists():
        return 0, []
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    tensors = load_file(str(path))
    with torch.no_grad():
        for name, p in _trainable(projector).items():
            p.copy_(tensors[f"param/{name}"])
            if f"step/{name}" in tensors:
                optimizer.state[p] = {
                    "step": tensors[f"step/{name}"].reshape(()),
                    "exp_avg": tensors[f"exp_avg/{name}"].to(p.device),
                    "exp_avg_sq": tensors[f"exp_avg_sq/{name}"].to(p.device),
                }
    return int(meta["epochs_done"]), [float(h) for h in meta["history"].split(",") if h]
