"""The text-guided head equals open_clip's zero-shot classifier; its LoRA starts at zero."""

import pytest
import torch
import torch.nn.functional as F

import open_clip
from open_clip.zero_shot_classifier import build_zero_shot_classifier
from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

from hello_format.generator import HeadConfig, HeadLoraConfig
from hello_format.head import DEFAULT_TEMPLATES, HeadLoRA, text_embeddings
from hello_format.projector import Projector
from hello_format.testing import TINY_ARCHITECTURES, tiny_base_manifest, tiny_clip

CLASSES = ["tench", "goldfish", "great white shark", "a {weird} name"]


def test_default_templates_are_the_openai_imagenet_ensemble():
    assert len(DEFAULT_TEMPLATES) == len(OPENAI_IMAGENET_TEMPLATES) == 80
    for template, reference in zip(DEFAULT_TEMPLATES, OPENAI_IMAGENET_TEMPLATES):
        assert template.format("goldfish") == reference("goldfish")


@pytest.mark.parametrize("family", ["vit", "rn"])
def test_text_embeddings_equal_open_clips_zero_shot_classifier(family):
    model = tiny_clip(family)
    tokenizer = open_clip.get_tokenizer(TINY_ARCHITECTURES[family])
    templates = DEFAULT_TEMPLATES[:7]
    ours = text_embeddings(model, tokenizer, CLASSES, templates, batch_size=5)  # odd batches
    reference = build_zero_shot_classifier(model, tokenizer, CLASSES, templates).T
    assert ours.shape == (len(CLASSES), model.text_projection.shape[1])
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.norm(dim=-1), torch.ones(len(CLASSES)))
    assert (ours[0] - ours[1]).abs().max() > 1e-3  # classes are told apart


@pytest.mark.parametrize("family", ["vit", "rn"])
def test_untrained_projector_is_clips_zero_shot_classifier(family):
    model = tiny_clip(family, seed=4)
    templates = DEFAULT_TEMPLATES[:5]
    tokenizer = open_clip.get_tokenizer(TINY_ARCHITECTURES[family])
    classifier = build_zero_shot_classifier(model, tokenizer, CLASSES, templates)
    images = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        scale = model.logit_scale.exp().item()
        expected = scale * model.encode_image(
            (images - torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1))
            / torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1), normalize=True) @ classifier
        projector = Projector.for_training(
            model, tiny_base_manifest(model, family), CLASSES,
            head=HeadConfig(templates=templates, logit_scale=scale, lora=HeadLoraConfig(r=4, lora_alpha=4)),
            encoder_lora=None).eval()
        torch.testing.assert_close(projector(images), expected, atol=1e-4, rtol=1e-4)


def test_head_lora_starts_at_zero_and_scales_by_alpha_over_r():
    head = HeadLoRA(num_classes=5, dim=16, r=4, lora_alpha=8)
    assert head.lora_A.shape == (4, 16) and head.lora_B.shape == (5, 4)
    assert torch.count_nonzero(head.delta()) == 0
    assert head.lora_A.abs().max() > 0
    with torch.no_grad():
        head.lora_B.fill_(1.0)
    torch.testing.assert_close(head.delta(), 2.0 * torch.ones(5, 4) @ head.lora_A)


def test_head_delta_changes_logits():
    model = tiny_clip("vit")
    projector = Projector.for_training(
        model, tiny_base_manifest(model), CLASSES[:3],
        head=HeadConfig(templates=["a photo of a {}."], logit_scale=10.0, lora=HeadLoraConfig(r=2, lora_alpha=2)),
        encoder_lora=None).eval()
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        before = projector(images)
        projector.head.lora_B[1].fill_(0.5)
        after = projector(images)
    assert torch.allclose(after[:, [0, 2]], before[:, [0, 2]])  # only class 1's weights moved
    assert not torch.allclose(after[:, 1], before[:, 1])
    features = F.normalize(projector.visual((images - projector.mean) / projector.std), dim=-1)
    torch.testing.assert_close(after, 10.0 * features.detach() @ projector.class_weights().detach().T)


def test_empty_templates_are_refused():
    model = tiny_clip("vit")
    with pytest.raises(ValueError, match="templates"):
        text_embeddings(model, open_clip.get_tokenizer("hello-tiny-vit"), CLASSES, [])


def test_progress_counts_the_classes_encoded(capsys):
    """The builder shows it: ImageNet's 80,000 prompts take minutes on a CPU."""
    model = tiny_clip("vit")
    tokenizer = open_clip.get_tokenizer("hello-tiny-vit")
    quiet = text_embeddings(model, tokenizer, CLASSES, DEFAULT_TEMPLATES[:3], batch_size=6)
    assert capsys.readouterr().err == ""
    shown = text_embeddings(model, tokenizer, CLASSES, DEFAULT_TEMPLATES[:3], batch_size=6, progress=True)
    bar = capsys.readouterr().err
    assert "text head (3 prompts a class)" in bar and f"0/{len(CLASSES)} [" in bar   # counted in classes
    assert torch.equal(quiet, shown)


def test_a_projector_shows_the_text_towers_progress_on_a_terminal_only(capsys, monkeypatch):
    """A stranger's bundle on a public base: the first open encodes every class's prompts (minutes at
    ImageNet scale on a CPU); someone at a terminal sees it, a log file gets nothing, nor a quiet caller."""
    import io
    import sys

    def projector(**kwargs):
        model = tiny_clip("vit")
        return Projector(model, tiny_base_manifest(model), CLASSES, head=HeadConfig(templates=DEFAULT_TEMPLATES[:2], logit_scale=100.0),
                         encoder_lora=None, **kwargs)

    projector()
    assert capsys.readouterr().err == ""

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    projector(progress=False)   # a caller that was asked to be quiet
    assert terminal.getvalue() == ""
    projector()
    assert "text head (2 prompts a class)" in terminal.getvalue()
