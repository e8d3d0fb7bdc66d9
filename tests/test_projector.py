"""The Projector: preprocessing, training form, bundle round trip, fast labelling."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hello_format.base import embedded_tensors
from hello_format.bundle import Bundle, write_bundle
from hello_format.errors import BaseModelError, BundleError, HelloError, ManifestError
from hello_format.generator import HeadConfig, HeadLoraConfig
from hello_format.projector import Projector
from hello_format.recipe import Recipe
from hello_format.testing import tiny_base_manifest, tiny_clip, tiny_projector

CLASSES = ("cat", "dog", "bird")


def _smooth_images(count, size, seed=0):
    coarse = torch.rand(count, 3, 4, 4, generator=torch.Generator().manual_seed(seed))
    return F.interpolate(coarse, size=size, mode="bilinear", align_corners=False)


def test_any_input_size_is_resized_to_the_base_size():
    projector = tiny_projector("vit").eval()
    small, large = _smooth_images(2, 32), _smooth_images(2, 64)
    with torch.no_grad():
        logits_small, logits_large = projector(small), projector(large)
        other = projector(_smooth_images(2, 64, seed=1))
    assert logits_large.shape == (2, 3) and logits_large.dtype == torch.float32
    assert (logits_small - logits_large).abs().max() < 0.05 * (logits_small - other).abs().max()
    resized = F.interpolate(large, size=32, mode="bilinear", antialias=True, align_corners=False)
    with torch.no_grad():
        torch.testing.assert_close(projector(resized), logits_large)


def test_normalisation_constants_come_from_the_manifest():
    model = tiny_clip("rn")
    section = tiny_base_manifest(model, "rn") | {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.5, 1.0]}
    projector = Projector.for_training(model, section, CLASSES, head=HeadConfig(templates=["a {}."], logit_scale=5.0),
                                       encoder_lora=None).eval()
    images = torch.rand(2, 3, 32, 32)
    std = torch.tensor([0.25, 0.5, 1.0]).view(1, 3, 1, 1)
    with torch.no_grad():
        features = F.normalize(model.visual((images - 0.5) / std), dim=-1)
        torch.testing.assert_close(projector(images), 5.0 * features @ projector.text_embeddings.T)


def test_unnormalised_features_when_the_manifest_says_so():
    model = tiny_clip("vit")
    head = HeadConfig(templates=["a {}."], logit_scale=2.0, normalize_features=False)
    projector = Projector.for_training(model, tiny_base_manifest(model), CLASSES, head=head, encoder_lora=None).eval()
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        features = model.visual((images - projector.mean) / projector.std)
        torch.testing.assert_close(projector(images), 2.0 * features @ projector.text_embeddings.T)
    assert projector.manifest_sections()["head"]["normalize_features"] is False


def test_uint8_images_are_refused():
    with pytest.raises(TypeError, match="float"):
        tiny_projector("vit")(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))


@pytest.mark.parametrize("family", ["vit", "rn"])
def test_training_form_trains_only_lora_and_keeps_batchnorm_frozen(family):
    projector = tiny_projector(family)
    trainable = [name for name, p in projector.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_A." in n or ".lora_B." in n or n in ("head.lora_A", "head.lora_B")
                             for n in trainable)
    assert "head.lora_A" in trainable and "head.lora_B" in trainable
    norms = [m for m in projector.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert projector.train().training and all(not m.training for m in norms)
    stats = {k: v.clone() for k, v in projector.visual.state_dict().items() if "running" in k}
    optimizer = torch.optim.SGD([p for p in projector.parameters() if p.requires_grad], lr=0.1)
    frozen = {n: p.clone() for n, p in projector.named_parameters() if not p.requires_grad}
    for _ in range(2):  # labelling (inference mode) between steps must not break training
        projector(torch.rand(4, 3, 32, 32)).logsumexp(dim=1).mean().backward()
        optimizer.step()
        projector.label(torch.rand(2, 3, 32, 32))
    assert all(p.grad is not None for n, p in projector.named_parameters() if n in trainable)
    assert all(torch.equal(p, frozen[n]) for n, p in projector.named_parameters() if n in frozen)
    for key, value in projector.visual.state_dict().items():
        if key in stats:
            assert torch.equal(value, stats[key]), f"{key} drifted in training"
    if family == "rn":
        assert stats


def test_bundle_tensors_and_manifest_sections():
    projector = tiny_projector("rn")
    tensors = projector.bundle_tensors()
    assert {t.dtype for t in tensors.values()} == {torch.float16}
    assert tensors["head.lora_A"].shape == (8, 64) and tensors["head.lora_B"].shape == (3, 8)
    encoder = [n for n in tensors if n.startswith("encoder_lora.base_model.model.")]
    assert len(encoder) == len(tensors) - 2 and encoder
    assert {t.dtype for t in projector.bundle_tensors("float32").values()} == {torch.float32}
    sections = projector.manifest_sections("float32")
    assert sections["lora"]["dtype"] == sections["head"]["lora"]["dtype"] == "float32"
    assert sections["head"]["templates"] == ["a photo of a {}."]
    assert sections["base"]["fingerprint"].startswith("sha256:")
    with pytest.raises(RuntimeError, match="merged"):
        projector.merge().bundle_tensors()


def _manifest(projector, dtype):
    return {
        "format_version": "1.0", "class_names": list(projector.class_names), "ipc": 2,
        **projector.manifest_sections(dtype),
        "recipe": Recipe(epochs=3, batch_size=4).to_manifest(),
        "provenance": {"source_dataset": "test", "teacher": "none",
                       "builder": {"name": "test_projector", "version": "0", "options": {}},
                       "timings": {}},
    }


def _write(path, projector, dtype, extra=None):
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    tensors = {**projector.bundle_tensors(dtype), **(extra or {})}
    return write_bundle(path, _manifest(projector, dtype), images, labels, tensors, codec="raw")


@pytest.mark.parametrize("family", ["vit", "rn"])
def test_from_bundle_with_an_embedded_base_equals_the_built_projector(family, tmp_path):
    built = tiny_projector(family, seed=5).eval()
    base = tiny_clip(family, seed=5)
    path = _write(tmp_path / "tiny.hello", built, "float32", embedded_tensors(base))
    images = torch.rand(3, 3, 40, 40)
    with torch.no_grad():
        expected = built(images)
    with Bundle.open(path) as bundle:
        unmerged = Projector.from_bundle(bundle, merge=False)
        merged = Projector.from_bundle(bundle)
    assert merged.merged and not any("lora" in n for n, _ in merged.named_parameters())
    assert not any(p.requires_grad for p in merged.parameters())
    with torch.no_grad():
        torch.testing.assert_close(unmerged(images), expected, atol=0, rtol=0)
    torch.testing.assert_close(merged.label(images), expected, atol=1e-4, rtol=1e-4)


def test_from_bundle_fp16_lora_and_local_base(tmp_path):
    built = tiny_projector("vit", seed=2).eval()
    base = tiny_clip("vit", seed=2)
    from safetensors.torch import save_file

    checkpoint = tmp_path / "tiny-vit.safetensors"
    save_file({k: v.contiguous() for k, v in base.state_dict().items()}, checkpoint)
    built.base_manifest = built.base_manifest | {"source": "local", "checkpoint": checkpoint.name}
    path = _write(tmp_path / "local.hello", built, "float16")
    images = torch.rand(2, 3, 32, 32)
    with Bundle.open(path) as bundle:
        with pytest.raises(BaseModelError, match="tiny-vit.safetensors"):
            Projector.from_bundle(bundle)
        rebuilt = Projector.from_bundle(bundle, checkpoint=str(checkpoint))
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.label(images), built(images), atol=2e-2, rtol=1e-2)


def test_a_bundles_head_is_its_text_head_plus_alpha_over_r_times_b_a(tmp_path):
    """Spec 3.2: logits = logit_scale * normalize(f) @ (W0 + (lora_alpha / r) * B @ A)^T, from the stored
    tensors with lora_alpha != r (every other bundle's head had lora_alpha == r, so a reader that built
    its head with the scale 1 passed them)."""
    import open_clip

    from hello_format.head import text_embeddings

    model = tiny_clip("vit", seed=3)
    templates = ("a photo of a {}.",)
    built = Projector.for_training(model, tiny_base_manifest(model), CLASSES, encoder_lora=None,
                                   head=HeadConfig(templates=templates, logit_scale=10.0,
                                                   lora=HeadLoraConfig(r=2, lora_alpha=6)))
    with torch.no_grad():
        built.head.lora_B.normal_(0, 0.05, generator=torch.Generator().manual_seed(0))
    path = _write(tmp_path / "head.hello", built, "float32", embedded_tensors(tiny_clip("vit", seed=3)))
    images = _smooth_images(4, 32)
    with Bundle.open(path) as bundle:
        a, b = bundle.tensor("head.lora_A"), bundle.tensor("head.lora_B")
        labels = Projector.from_bundle(bundle).label(images)
    clip = tiny_clip("vit", seed=3)
    w0 = text_embeddings(clip, open_clip.get_tokenizer("hello-tiny-vit"), list(CLASSES), templates)
    section = tiny_base_manifest(clip)
    mean, std = (torch.tensor(section[key]).view(1, 3, 1, 1) for key in ("mean", "std"))
    with torch.no_grad():
        features = F.normalize(clip.visual((images - mean) / std), dim=-1)
    assert (3.0 * b @ a).abs().max() > 1e-3
    torch.testing.assert_close(labels, 10.0 * features @ (w0 + 3.0 * b @ a).T, atol=1e-5, rtol=1e-5)


def test_from_bundle_refuses_inconsistent_head(tmp_path):
    built = tiny_projector("vit")
    tensors = embedded_tensors(tiny_clip("vit"))
    path = _write(tmp_path / "t.hello", built, "float32", tensors)
    with Bundle.open(path) as bundle:
        manifest = bundle.manifest
        manifest["head"]["ensemble"] = "max"
        with pytest.raises(ManifestError, match="head.ensemble"):
            Projector.from_bundle(bundle)


def test_from_bundle_checks_what_peft_will_adapt_before_it_allocates(tmp_path):
    """A target pattern that also matches modules with no stored weights made peft allocate them at lora.r
    (up to 4,096) before loading failed; the modules are compared with the stored ones first."""
    built = tiny_projector("vit")
    path = _write(tmp_path / "t.hello", built, "float32", embedded_tensors(tiny_clip("vit")))
    with Bundle.open(path) as bundle:
        lora = bundle.manifest["lora"]
        assert isinstance(lora["target_modules"], str)
        lora["target_modules"] = "conv1|" + lora["target_modules"]
        with pytest.raises(ManifestError, match="module 'conv1' of the image encoder is adapted by "
                                                "lora.target_modules but the file stores no LoRA weights"):
            Projector.from_bundle(bundle)


def test_label_matches_forward_on_cpu():
    projector = tiny_projector("rn").eval()
    images = torch.rand(2, 3, 32, 32)
    labelled = projector.label(images)
    with torch.no_grad():
        torch.testing.assert_close(labelled, projector(images))
    assert labelled.dtype == torch.float32 and not labelled.requires_grad


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("family", ["vit", "rn"])
def test_label_on_cuda_bf16_agrees_with_cpu_fp32(family):
    projector = tiny_projector(family, seed=1).eval().merge()
    images = torch.rand(64, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference = projector(images)
    projector.cuda()
    labelled = projector.label(images.cuda())
    assert labelled.dtype == torch.float32 and labelled.is_cuda
    agreement = (labelled.argmax(1).cpu() == reference.argmax(1)).float().mean().item()
    assert agreement >= 0.9
    torch.testing.assert_close(labelled.cpu(), reference, atol=0.15, rtol=0.05)


@pytest.mark.slow
@pytest.mark.parametrize("architecture, tag", [("RN50", "openai"), ("ViT-B-16", "laion2b_s34b_b88k")])
def test_real_architectures_with_random_weights(architecture, tag):
    """The real bases take the same path as the tiny ones (weights random: no download here)."""
    import open_clip

    from hello_format import lora
    from hello_format.base import create_base, describe_base, quiet_open_clip

    tag_cfg = open_clip.get_pretrained_cfg(architecture, tag)
    with quiet_open_clip():
        model = open_clip.create_model(architecture, force_quick_gelu=bool(tag_cfg.get("quick_gelu")))
    section = describe_base(model, architecture=architecture, pretrained=tag, source="embedded")
    assert section["image_size"] == 224
    rebuilt = create_base(section, embedded_state=model.state_dict())
    projector = Projector.for_training(
        rebuilt, section, CLASSES,
        head=HeadConfig(templates=["a photo of a {}."], logit_scale=100.0, lora=HeadLoraConfig(r=2, lora_alpha=2)),
        encoder_lora=lora.encoder_config(rebuilt.visual)).eval()
    with torch.no_grad():
        for name, parameter in projector.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.01)
        images = torch.rand(2, 3, 160, 200)
        unmerged = projector(images)
        merged = projector.merge()(images)
    torch.testing.assert_close(merged, unmerged, atol=1e-3, rtol=1e-3)


# ---- the prior mix (format 2.0): labels that keep part of the zero-shot projector ----


@pytest.mark.parametrize("family", ["vit", "rn"])
def test_a_prior_weight_mixes_in_the_bundle_with_its_deltas_off(family, tmp_path):
    from support import write_labelled_bundle

    adapted = write_labelled_bundle(tmp_path / "adapted.hello", family, lora_std=0.05)
    plain = write_labelled_bundle(tmp_path / "plain.hello", family, lora_std=0.0)   # the same base, head and images
    mixed = write_labelled_bundle(tmp_path / "mixed.hello", family, lora_std=0.05, prior_weight=0.3)
    with Bundle.open(adapted) as a, Bundle.open(plain) as p, Bundle.open(mixed, verify=True) as m:
        assert (m.manifest["format_version"], m.manifest["requires"], m.manifest["head"]["prior_weight"]) == \
            ("2.0", ["prior_mix"], 0.3)
        x = a.images().float() / 255
        projector, zero_shot = Projector.from_bundle(a).label(x), Projector.from_bundle(p).label(x)
        merged, unmerged = Projector.from_bundle(m), Projector.from_bundle(m, merge=False)
        overridden = Projector.from_bundle(m, prior_weight=0.0)
    assert not torch.allclose(projector, zero_shot, atol=1e-3)   # the deltas matter
    torch.testing.assert_close(merged.zero_shot(x), zero_shot, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(merged.label(x), 0.7 * projector + 0.3 * zero_shot, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(unmerged.label(x), merged.label(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(overridden.label(x), projector, atol=1e-5, rtol=1e-5)


def test_a_bad_prior_weight_or_remote_opt_in_argument_is_blamed_on_the_argument(tmp_path):
    """prior_weight=1.5 was a ManifestError, 'head.prior_weight must be ...', as if the file were bad; and
    allow_remote_base="false", a truthy string, would have let a file's config fetch a model (found by a
    walkthrough of the Python API)."""
    from support import write_labelled_bundle

    path = write_labelled_bundle(tmp_path / "mixed.hello", "vit", prior_weight=0.3)
    for weight in (1.5, "0.2", True):
        with pytest.raises(HelloError) as info:
            Projector.from_bundle(path, prior_weight=weight)
        assert not isinstance(info.value, BundleError)
        assert str(info.value) == f"prior_weight must be a number in [0, 1), got {weight!r}"
    for opt_in in ("false", 0, None):
        with pytest.raises(HelloError, match=f"^allow_remote_base takes True or False, got {opt_in!r}$"):
            Projector.from_bundle(path, allow_remote_base=opt_in)
    projector = Projector.from_bundle(path, prior_weight=0.5, allow_remote_base=False, merge=False)
    assert projector.prior_weight == 0.5
    with pytest.raises(HelloError, match=r"^prior_weight must be a number in \[0, 1\), got 1\.5$"):
        projector.set_prior_weight(1.5)
    # checked before it was tested for truth: a bad weight on a merged projector was "set it before merging",
    # and an array of weights numpy's or torch's ambiguous-truth error (sixteenth audit of the builder)
    merged = Projector.from_bundle(path)
    for weight in ("0.2", 1.5, np.array([0.1, 0.2]), torch.tensor([0.1, 0.2])):
        with pytest.raises(HelloError, match=r"^prior_weight must be a number in \[0, 1\), got "):
            merged.set_prior_weight(weight)
        with pytest.raises(HelloError, match=r"^prior_weight must be a number in \[0, 1\), got "):
            projector.set_prior_weight(weight)


@pytest.mark.parametrize("family", ["vit", "rn"])
def test_a_prior_weight_set_on_a_trained_projector_mixes_in_the_base_without_its_deltas(family):
    """hello-build sets the prior weight after the transfer trained the deltas (pipeline._mix_prior): the
    zero-shot tower must be the base's own, not a copy with the trained deltas folded in (a reader sets it
    while its deltas are still zero, so bundle round trips cannot tell)."""
    projector = tiny_projector(family, ["a", "b", "c"], lora_std=0.05).eval()
    plain = tiny_projector(family, ["a", "b", "c"], randomize_lora=False).eval()   # the same base and text head
    x = _smooth_images(4, 32)
    with torch.no_grad():
        adapted, zero_shot = projector(x), plain(x)
        assert not torch.allclose(adapted, zero_shot, atol=1e-3)
        projector.set_prior_weight(0.3)
        torch.testing.assert_close(projector.zero_shot(x), zero_shot, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(projector(x), 0.7 * adapted + 0.3 * zero_shot, atol=1e-5, rtol=1e-5)


def test_a_head_only_projector_mixes_with_one_encoder_pass():
    model = tiny_clip("rn")
    projector = Projector.for_training(model, tiny_base_manifest(model, "rn"), ["a", "b", "c"], encoder_lora=None,
                                       head=HeadConfig(templates=("a {}.",), logit_scale=10.0, prior_weight=0.5,
                                                       lora=HeadLoraConfig(r=2, lora_alpha=2)))
    with torch.no_grad():
        projector.head.lora_B.normal_(0, 0.05, generator=torch.Generator().manual_seed(0))
    assert projector.prior_visual is None   # no encoder LoRA: one tower serves both projectors
    x = _smooth_images(2, 32)
    with torch.no_grad():
        features = projector.encode(x)
        delta = projector.class_weights() - projector.text_embeddings
        assert delta.abs().max() > 1e-3
        expected = 10.0 * features @ (projector.text_embeddings + 0.5 * delta).t()
        torch.testing.assert_close(projector(x), expected, atol=1e-5, rtol=1e-5)


def test_the_prior_weight_is_set_before_merging_and_bounded():
    projector = tiny_projector("vit", ["a", "b"], lora_std=0.05)
    with pytest.raises(RuntimeError, match="needs a prior weight"):
        projector.zero_shot(_smooth_images(1, 32))
    with pytest.raises(HelloError, match=r"prior_weight must be a number in \[0, 1\)") as info:   # the argument's
        projector.set_prior_weight(1.0)
    assert not isinstance(info.value, ManifestError)
    for weight in ("0.3", None, float("nan"), True):   # a string was a TypeError from inside the comparison
        with pytest.raises(ManifestError, match=r"prior_weight must be a number in \[0, 1\)"):
            HeadConfig(templates=("a {}.",), logit_scale=10.0, prior_weight=weight)
    numpy_weight = HeadConfig(templates=("a {}.",), logit_scale=10.0, prior_weight=np.float32(0.25)).prior_weight
    assert type(numpy_weight) is float and numpy_weight == 0.25   # written into the manifest as JSON
    projector.merge()
    with pytest.raises(RuntimeError, match="before merging"):
        projector.set_prior_weight(0.2)


@pytest.mark.parametrize("family", ["vit", "rn"])
def test_an_empty_batch_is_labelled_without_running_the_base(family):
    """Under torchrun a short last batch leaves a rank an empty share: a ViT's patch embedding cannot take
    none (hello eval --regime projector crashed on two ranks; fourteenth audit)."""
    projector = tiny_projector(family, ["a", "b", "c"], seed=0).eval()
    assert projector.label(torch.empty(0, 3, 32, 32)).shape == (0, 3)


def test_a_large_batch_is_labelled_in_chunks_with_the_same_logits(monkeypatch):
    """One label() call ran any batch through the base at once: a file's batch size and image count
    could make that pass tens of gigabytes (found by the eleventh hostile-input audit)."""
    from hello_format import limits

    projector = tiny_projector("vit", ["a", "b", "c"], seed=0).eval()
    images = torch.rand(10, 3, 32, 32)
    whole = projector.label(images)
    sizes = []
    projector.visual.register_forward_hook(lambda module, inputs, output: sizes.append(len(inputs[0])))
    monkeypatch.setattr(limits, "LABEL_CHUNK_PIXELS", 3 * projector.image_size[0] * projector.image_size[1] + 1)
    chunked = projector.label(images)
    assert sizes == [3, 3, 3, 1] and torch.allclose(chunked, whole, atol=1e-5)


# ------------------------------------------------------- the Python API as researchers use it (an integration review)

def _flip_in_tensor(path, name: str) -> None:
    """Flip one exponent bit of the first value of tensor ``name`` in the file (its sha256 then fails)."""
    with Bundle.open(path) as bundle:
        at = bundle._header.data_start + bundle._header.tensors[name].begin + 1
    data = bytearray(path.read_bytes())
    data[at] ^= 0x40
    path.write_bytes(bytes(data))


def test_a_projector_from_a_bundle_opened_without_verify_checks_its_weights_hashes(tmp_path):
    """Projector.from_bundle(Bundle.open(path)) used corrupted head weights without a word (logits moved by
    0.24), while the same file given to HelloDataset was refused."""
    from hello_format.errors import IntegrityError
    from support import write_labelled_bundle

    path = write_labelled_bundle(tmp_path / "b.hello", "vit")
    _flip_in_tensor(path, "head.lora_A")
    with Bundle.open(path) as bundle:   # opening reads the manifest and the small tensors only
        with pytest.raises(IntegrityError, match=r"tensor 'head.lora_A' is corrupted"):
            Projector.from_bundle(bundle)
        Projector.from_bundle(bundle, verify=False)   # asked for: the weights are used as they are
    with pytest.raises(IntegrityError, match=r"tensor 'head.lora_A' is corrupted"):
        Projector.from_bundle(path)   # a path is taken too (it was an AttributeError)


def test_label_refuses_0_255_pixels_not_colour_augmented_ones():
    projector = tiny_projector("vit").eval()
    images = _smooth_images(2, 32)
    projector.label(images)
    projector.label(images * 3.0 - 1.0)   # a harness's colour jitter may reach -1 and 2: still labelled
    with pytest.raises(ValueError, match=r"labels float images in \[0, 1\]; these reach [\d.]+ \(0-255 pixels: divide by 255\)"):
        projector.label(images * 255)


def test_labels_do_not_follow_a_train_mode_lora_dropout():
    """A third party's bundle with lora_dropout > 0, built unmerged and put in train mode (a parent module's
    .train()), labelled each call differently."""
    projector = tiny_projector("vit")
    dropouts = [m for m in projector.modules() if hasattr(m, "lora_dropout")]
    assert dropouts
    for module in dropouts:
        for key in module.lora_dropout:
            module.lora_dropout[key] = torch.nn.Dropout(0.5)
    projector.train()
    images = _smooth_images(3, 32)
    assert torch.equal(projector.label(images), projector.label(images)) and projector.training


def test_float64_images_label_as_float32_ones():
    projector = tiny_projector("rn").eval()
    images = _smooth_images(2, 32)
    torch.testing.assert_close(projector.label(images.double()), projector.label(images))


@pytest.mark.parametrize("family", ["vit", "rn"])
def test_a_projector_and_its_teacher_are_built_and_label_under_a_callers_default_device(family, tmp_path):
    """Under the caller's default device (``torch.set_default_device("cuda")``, common for models; "meta"
    here, where every tensor made without a device fails) Projector.from_bundle failed in open_clip, and
    ProjectorTeacher.from_bundle made its buffers there."""
    from hello_format import ProjectorTeacher
    from support import write_labelled_bundle

    path = write_labelled_bundle(tmp_path / "b.hello", family)
    images = _smooth_images(2, 32)
    expected = Projector.from_bundle(path).label(images), ProjectorTeacher.from_bundle(path, ["c", "a", "b"])(images)
    with torch.device("meta"):
        got = Projector.from_bundle(path).label(images), ProjectorTeacher.from_bundle(path, ["c", "a", "b"])(images)
        assert torch.empty(1).is_meta   # the caller's default is left as it was
    for labels, want in zip(got, expected, strict=True):
        torch.testing.assert_close(labels, want)


def test_an_unusable_device_is_one_error(tmp_path):
    from hello_format.errors import DeviceError
    from support import write_labelled_bundle

    if torch.cuda.is_available():
        pytest.skip("CUDA is usable here")
    path = write_labelled_bundle(tmp_path / "b.hello", "vit")
    with pytest.raises(DeviceError):
        Projector.from_bundle(path, device="cuda")


def test_one_template_string_is_refused_not_read_letter_by_letter():
    with pytest.raises(ManifestError, match=r"head.templates must be a list of prompt templates, not one string"):
        HeadConfig(templates="a photo of a {}.", logit_scale=10.0)


def test_a_recipe_takes_its_augmentation_as_a_dict_or_refuses_it_at_once():
    from hello_format.augment import AugmentConfig, AugmentError

    assert Recipe(augment={"cutmix": 0.0}).augment == AugmentConfig(cutmix=0.0)   # was kept as a dict, to fail later
    with pytest.raises(AugmentError, match="augment must be an AugmentConfig or a dict of its fields"):
        Recipe(augment=[("cutmix", 0.0)])
