"""The stand-in foundation model's pretraining (``pretrain_clip``): what it learns, its options and its progress."""

import math

import open_clip
import pytest
import torch
import torch.nn.functional as F

from hello_build.foundation import CAPTION_TEMPLATES, pretrain_clip
from hello_format.testing import TINY_ARCHITECTURES, tiny_clip

NAMES = ["red", "blue"]


def _clip():
    model = tiny_clip("vit")
    model.token_embedding.requires_grad_(False)   # as the bench does: CPU time
    return model, open_clip.get_tokenizer(TINY_ARCHITECTURES["vit"])


def _colours(n=16):
    """Half red, half blue 32 px images with noise; uint8 as pretrain_clip takes them."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(2).repeat(n // 2)
    images = torch.randint(0, 60, (n, 3, 32, 32), generator=generator)
    images[labels == 0, 0] += 180
    images[labels == 1, 2] += 180
    return images.to(torch.uint8), labels


def _zero_shot(model, tokenizer, images):
    mean = torch.tensor(model.visual.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(model.visual.image_std).view(1, 3, 1, 1)
    with torch.no_grad():
        image = F.normalize(model.encode_image((images.float() / 255 - mean) / std), dim=-1)
        text = F.normalize(model.encode_text(tokenizer([f"a photo of a {name}." for name in NAMES])), dim=-1)
    return (image @ text.T).argmax(1)


def test_pretraining_pulls_each_image_to_its_own_class_caption():
    model, tokenizer = _clip()
    images, labels = _colours()
    with torch.no_grad():
        model.logit_scale.fill_(math.log(100))   # CLIP's cap: what training pushes against
    losses = []
    trained = pretrain_clip(model, tokenizer, images, labels, NAMES, steps=12, batch_size=16, lr=2e-3,
                            progress=lambda step, loss: losses.append(loss))
    assert trained is model and not model.training
    assert torch.equal(_zero_shot(model, tokenizer, images), labels)
    assert losses[-1] < 0.5 * losses[0]
    # once the captions are told apart, training raises the logit scale: CLIP caps it at 100
    with torch.no_grad():
        model.logit_scale.fill_(math.log(100))
    pretrain_clip(model, tokenizer, images, labels, NAMES, steps=3, batch_size=16, lr=2e-2, progress=False)
    assert model.logit_scale.exp().item() <= 100 + 1e-3


def test_each_step_sees_normalised_images_or_their_mirrors_and_one_templates_captions(monkeypatch):
    model, tokenizer = _clip()
    images = torch.randint(0, 256, (3, 3, 32, 32), generator=torch.Generator().manual_seed(2), dtype=torch.uint8)
    seen_images, seen_tokens = [], []
    encode_image, encode_text = model.encode_image, model.encode_text
    monkeypatch.setattr(model, "encode_image", lambda x: seen_images.append(x.detach().clone()) or encode_image(x))
    monkeypatch.setattr(model, "encode_text", lambda t: seen_tokens.append(t.clone()) or encode_text(t))
    pretrain_clip(model, tokenizer, images, torch.tensor([0, 1, 1]), NAMES, steps=6, batch_size=4, lr=0.0, progress=False)
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    normalised = (images.float() / 255 - mean) / std
    candidates = {"as is": normalised, "mirrored": normalised.flip(-1)}
    kinds = set()
    for view in torch.cat(seen_images):
        kind = [k for k, options in candidates.items() if any(torch.allclose(view, o, atol=1e-5) for o in options)]
        assert len(kind) == 1, "a view that is neither an image nor its left-right mirror, normalised"
        kinds.add(kind[0])
    assert kinds == {"as is", "mirrored"}
    captions = [tokenizer([template.format(name) for name in NAMES]) for template in CAPTION_TEMPLATES]
    used = {next(i for i, c in enumerate(captions) if torch.equal(tokens, c)) for tokens in seen_tokens}
    assert len(seen_tokens) == 6 and len(used) > 1   # a template drawn per step, every class's caption in it


def test_the_learning_rate_and_the_seed_reach_the_training():
    images, labels = _colours(8)
    images = images[..., ::2, ::2].contiguous()   # 16 px: resized to the model's 32

    def weights(**options):
        model, tokenizer = _clip()
        pretrain_clip(model, tokenizer, images, labels, NAMES, steps=2, batch_size=4, progress=False, **options)
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    untouched = torch.cat([p.detach().flatten() for p in _clip()[0].parameters()])
    assert torch.equal(weights(lr=0.0), untouched)
    once = weights(seed=1)
    assert torch.equal(weights(seed=1), once) and not torch.equal(weights(seed=2), once)


def test_progress_gets_the_mean_loss_of_each_tenth_and_of_the_rest():
    """With nothing learnt (lr 0) and every batch alike, each step's loss is the same: so is every mean."""
    model, tokenizer = _clip()
    images, labels = torch.full((4, 3, 32, 32), 128, dtype=torch.uint8), torch.zeros(4, dtype=torch.long)
    reports = []
    pretrain_clip(model, tokenizer, images, labels, NAMES, steps=25, batch_size=2, lr=0.0, templates=("a {}",),
                  progress=lambda step, loss: reports.append((step, loss)))
    assert [step for step, _ in reports] == [2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 25]
    assert [loss for _, loss in reports] == pytest.approx([reports[0][1]] * 13, rel=1e-5)
    assert reports[0][1] > 0.1
