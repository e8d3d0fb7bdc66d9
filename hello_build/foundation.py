"""A stand-in foundation model: briefly pretrain a small open_clip CLIP on captioned images.

Where no pretrained CLIP can be downloaded (the demo, the CIFAR-10 benchmark, tests), the base is an
ordinary open_clip model pretrained here, contrastively, on images whose captions are class prompts:
each image is pulled towards the text embedding of its own class caption and pushed from the others
(CLIP's image-to-text loss over the batch's caption set, with a random template per class and step).
It is the same kind of object as ``RN50``/``openai``, only smaller and weaker; it is embedded in the
bundles built on it, since nobody else can download it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from hello_format.runtime import cosine_lr

CAPTION_TEMPLATES = (
    "a photo of a {}.",
    "a picture of a {}.",
    "an image of a {}.",
    "a small photo of the {}.",
    "a blurry photo of a {}.",
)


def pretrain_clip(
    model,
    tokenizer,
    images: torch.Tensor,
    labels: torch.Tensor,
    class_names: list[str],
    *,
    steps: int = 300,
    batch_size: int = 128,
    lr: float = 2e-3,
    seed: int = 0,
    device: str | torch.device = "cpu",
    templates: tuple[str, ...] = CAPTION_TEMPLATES,
    progress: bool | Callable[[int, float], None] = True,
):
    """Train ``model`` (an open_clip CLIP, with its open_clip ``tokenizer``) in place on uint8 images
    [N,3,S,S] with integer ``labels``; return it in eval mode. ``progress``: True shows a bar; a
    callable gets ``(steps done, mean loss since its last call)`` at every tenth of the steps."""
    import open_clip

    device = torch.device(device)
    model = model.to(device).train()
    mean = torch.tensor(model.visual.image_mean or open_clip.OPENAI_DATASET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(model.visual.image_std or open_clip.OPENAI_DATASET_STD, device=device).view(1, 3, 1, 1)
    size = _image_size(model)
    prompts = [[t.format(name) for name in class_names] for t in templates]
    tokens = torch.stack([tokenizer(p) for p in prompts]).to(device)  # [T, C, L]

    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    generator = torch.Generator().manual_seed(seed)
    warmup = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: cosine_lr(1.0, s, steps, warmup))
    bar = tqdm(range(steps), desc="pretrain base", disable=progress is not True, leave=False)
    report_every, running = max(1, steps // 10), 0.0
    for step in bar:
        idx = torch.randint(len(images), (batch_size,), generator=generator)
        x = images[idx].to(device).float().div_(255)
        if x.shape[-1] != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        flip = torch.rand(batch_size, generator=generator) < 0.5
        x[flip.to(device)] = x[flip.to(device)].flip(-1)
        y = labels[idx].to(device)
        template = torch.randint(len(templates), (1,), generator=generator).item()
        image_features = F.normalize(model.encode_image((x - mean) / std), dim=-1)
        text_features = F.normalize(model.encode_text(tokens[template]), dim=-1)
        logits = model.logit_scale.exp() * image_features @ text_features.T
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        bar.set_postfix(loss=f"{loss.item():.3f}")
        running += loss.item()
        if callable(progress) and ((step + 1) % report_every == 0 or step + 1 == steps):
            progress(step + 1, running / (report_every if (step + 1) % report_every == 0 else (step + 1) % report_every))
            running = 0.0
    return model.eval()


def _image_size(model) -> int:
    size = model.visual.image_size
    return size[0] if isinstance(size, (tuple, list)) else int(size)

