"""The stored text head (format 1.1: base.embedded = "visual", tensor head.weight) and the local head
cache that lets a public base skip its text tower (hello_format.head_cache)."""

from __future__ import annotations

import os

import pytest
import torch
from safetensors.torch import save_file

from hello_format import head_cache
from hello_format.base import create_base, describe_base, embedded_tensors
from hello_format.bundle import Bundle, write_bundle
from hello_format.digests import buffer_sha256
from hello_format.errors import BaseModelError, BundleError, ManifestError
from hello_format.projector import Projector
from hello_format.recipe import Recipe
from hello_format.testing import TINY_ARCHITECTURES, tiny_clip, tiny_projector

CLASSES = ["cat", "dog", "bird"]


def _manifest(projector):
    return {"class_names": list(projector.class_names), "ipc": 2, **projector.manifest_sections("float32"),
            "recipe": Recipe(epochs=3, batch_size=4).to_manifest(),
            "provenance": {"source_dataset": "test", "teacher": "none",
                           "builder": {"name": "test_head_store", "version": "0", "options": {}}, "timings": {}}}


def _write(path, projector, tensors=None):
    manifest = _manifest(projector)
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    tensors = {**projector.bundle_tensors("float32"), **(tensors or {})}
    return write_bundle(path, manifest, images, torch.tensor([0, 0, 1, 1, 2, 2]), tensors, codec="raw")


def _projectors(family: str, seed: int = 3):
    """The same trained projector described with a format 1.0 (whole CLIP) and a 1.1 (image tower) base."""
    full = tiny_projector(family, CLASSES, seed=seed).eval()
    visual = tiny_projector(family, CLASSES, seed=seed).eval()
    visual.base_manifest = describe_base(tiny_clip(family, seed), architecture=TINY_ARCHITECTURES[family],
                                         source="embedded", embedded="visual")
    return full, visual


@pytest.mark.parametrize("family", ["vit", "rn"])
def test_an_image_tower_and_stored_head_label_exactly_as_the_whole_clip(family, tmp_path):
    full, visual = _projectors(family)
    base = tiny_clip(family, 3)
    old = _write(tmp_path / "full.hello", full, embedded_tensors(base))
    new = _write(tmp_path / "visual.hello", visual, embedded_tensors(base, parts="visual"))
    images = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with Bundle.open(old, verify=True) as a, Bundle.open(new, verify=True) as b:
        assert b.manifest["format_version"] == "1.1" and b.manifest["base"]["embedded"] == "visual"
        assert "embedded" not in a.manifest["base"]
        names = [n for n in b.tensor_names if n.startswith("base.")]
        assert names and all(n.startswith("base.visual.") for n in names)
        assert b.head_weight().dtype == torch.float32 and b.head_weight().shape == (3, 64) and a.head_weight() is None
        sa, sb = a.storage(), b.storage()
        assert sa.label_generator_bytes == sb.label_generator_bytes
        assert sb.base_bytes < sa.base_bytes and sb.file_bytes < sa.file_bytes
        labels_a = Projector.from_bundle(a, use_head_cache=False).label(images)
        labels_b = Projector.from_bundle(b).label(images)
    torch.testing.assert_close(labels_b, labels_a, atol=0, rtol=0)


def test_an_image_tower_base_is_built_without_its_text_tower():
    model = tiny_clip("rn", 4)
    section = describe_base(model, architecture=TINY_ARCHITECTURES["rn"], source="embedded", embedded="visual")
    state = {k.removeprefix("base."): v for k, v in embedded_tensors(model, parts="visual").items()}
    rebuilt = create_base(section, embedded_state=state)
    assert rebuilt.token_embedding.weight.is_meta and not any(p.is_meta for p in rebuilt.visual.parameters())
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.visual(x), model.visual(x), atol=0, rtol=0)


@pytest.mark.parametrize("change, error, match", [
    (lambda t, m: t.update({"head.weight": torch.zeros(2, 64)}), ManifestError, r"'head.weight' is \[2, 64\], expected \[3, 64\]"),
    (lambda t, m: t.update({"head.weight": torch.zeros(3, 32)}), ManifestError, r"expected \[3, 64\]"),
    (lambda t, m: t.update({"head.weight": torch.zeros(3, 64).half()}), ManifestError, "'head.weight' is F16"),
    (lambda t, m: t.pop("head.weight"), ManifestError, "'head.weight' is missing"),
    (lambda t, m: t.update({"base.token_embedding.weight": torch.zeros(4, 64)}), ManifestError, "not part of the image tower"),
    (lambda t, m: m["base"].pop("embedded"), ManifestError, "'head.weight' exists but field 'base.embedded' is not 'visual'"),
    (lambda t, m: m["base"].update(source="local") or [t.pop(n) for n in list(t) if n.startswith("base.")],
     ManifestError, "'base.embedded' is 'visual' but base.source is 'local'"),
    (lambda t, m: m["base"].update(embedded="half"), ManifestError, "field 'base.embedded': 'half' is not one of"),
    (lambda t, m: t["head.weight"].__setitem__((0, 0), float("nan")), BundleError, "head.weight.*NaN"),
])
def test_a_stored_head_that_does_not_fit_the_manifest_is_refused(tmp_path, change, error, match):
    """write_bundle runs the reader's checks (spec section 7) before writing."""
    _, visual = _projectors("vit")
    tensors = {**visual.bundle_tensors("float32"), **embedded_tensors(tiny_clip("vit", 3), parts="visual")}
    manifest = _manifest(visual)
    change(tensors, manifest)
    with pytest.raises(error, match=match):
        write_bundle(tmp_path / "bad.hello", manifest, torch.zeros(6, 3, 32, 32, dtype=torch.uint8),
                     torch.tensor([0, 0, 1, 1, 2, 2]), tensors, codec="raw")
    assert not (tmp_path / "bad.hello").exists()


def test_a_tampered_image_tower_fails_the_fingerprint(tmp_path):
    _, visual = _projectors("rn")
    tensors = embedded_tensors(tiny_clip("rn", 3), parts="visual")
    tensors["base.visual.conv1.weight"] = tensors["base.visual.conv1.weight"] + 0.01
    path = _write(tmp_path / "t.hello", visual, tensors)
    with Bundle.open(path, verify=True) as bundle, pytest.raises(BaseModelError, match="fingerprint"):
        Projector.from_bundle(bundle)


def test_a_stored_head_narrower_than_the_image_features_is_refused(tmp_path):
    _, visual = _projectors("vit")
    manifest = _manifest(visual)
    manifest["head"]["lora"] = None   # zero-shot: no head LoRA to fix the width in the file
    tensors = {**{k: v for k, v in visual.bundle_tensors("float32").items() if not k.startswith("head.lora")},
               **embedded_tensors(tiny_clip("vit", 3), parts="visual"), "head.weight": torch.ones(3, 32)}
    path = write_bundle(tmp_path / "t.hello", manifest, torch.zeros(6, 3, 32, 32, dtype=torch.uint8),
                        torch.tensor([0, 0, 1, 1, 2, 2]), tensors, codec="raw")
    with Bundle.open(path) as bundle, pytest.raises(ManifestError, match="64-wide features"):
        Projector.from_bundle(bundle)


def test_an_image_tower_recorded_as_a_whole_clip_is_refused(tmp_path):
    """Without base.embedded = "visual" an embedded base must be the whole CLIP (format 1.0; also what
    a 1.0 reader assumes of a 1.1 file): an image tower alone lacks the text tower, never mislabels."""
    _, visual = _projectors("vit")
    visual.base_manifest = {k: v for k, v in visual.base_manifest.items() if k != "embedded"}
    path = _write(tmp_path / "t.hello", visual, embedded_tensors(tiny_clip("vit", 3), parts="visual"))
    with Bundle.open(path) as bundle, pytest.raises(BaseModelError, match="missing"):
        Projector.from_bundle(bundle)


# ------------------------------------------------------------------------------------ head cache

def _local_bundle(tmp_path, seed=6, classes=CLASSES, templates=None):
    """A bundle whose base is a local checkpoint (a public base: its head is computed, then cached)."""
    projector = tiny_projector("vit", classes, seed=seed, **({"templates": templates} if templates else {})).eval()
    checkpoint = tmp_path / f"base-{seed}.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_clip("vit", seed).state_dict().items()}, checkpoint)
    projector.base_manifest = projector.base_manifest | {"source": "local", "checkpoint": checkpoint.name}
    return _write(tmp_path / f"local-{seed}.hello", projector), checkpoint, projector


@pytest.fixture(scope="module")
def local_bundle(tmp_path_factory):
    return _local_bundle(tmp_path_factory.mktemp("local"))


def _head(path, checkpoint, **kwargs):
    with Bundle.open(path) as bundle:
        return Projector.from_bundle(bundle, checkpoint=checkpoint, merge=False, **kwargs).text_embeddings


def test_a_computed_head_is_cached_and_the_entry_is_used(tmp_path, head_cache_dir):
    path, checkpoint, built = _local_bundle(tmp_path)
    with Bundle.open(path) as bundle:
        key = head_cache.head_key(bundle.manifest["base"], CLASSES, built.head_config.templates, "mean")
    entry = head_cache_dir / f"{key}.safetensors"
    assert not entry.exists()
    torch.testing.assert_close(_head(path, checkpoint), built.text_embeddings, atol=0, rtol=0)
    assert entry.is_file()
    assert torch.equal(head_cache.load(key, len(CLASSES)), built.text_embeddings)
    planted = torch.nn.functional.normalize(torch.randn(3, 64), dim=-1)
    head_cache.store(key, planted)   # a sound entry is trusted as it is: the text tower is not run
    torch.testing.assert_close(_head(path, checkpoint), planted, atol=0, rtol=0)
    torch.testing.assert_close(_head(path, checkpoint, use_head_cache=False), built.text_embeddings, atol=0, rtol=0)


@pytest.mark.parametrize("damage", ["flip a byte of the head", "truncate", "another key", "not safetensors",
                                    "non-finite", "wrong class count", "wrong width"])
def test_an_unsound_entry_is_recomputed_and_rewritten(local_bundle, head_cache_dir, damage):
    path, checkpoint, built = local_bundle
    _head(path, checkpoint)
    with Bundle.open(path) as bundle:
        key = head_cache.head_key(bundle.manifest["base"], CLASSES, built.head_config.templates, "mean")
    entry = head_cache_dir / f"{key}.safetensors"
    data = bytearray(entry.read_bytes())
    if damage == "flip a byte of the head":
        data[-5] ^= 0x40
    elif damage == "truncate":
        del data[-16:]
    elif damage == "not safetensors":
        data = bytearray(b"\x80\x04pickle" + bytes(64))
    entry.write_bytes(bytes(data))
    if damage == "another key":
        head_cache.store("0" * 64, built.text_embeddings)
        (head_cache_dir / f"{'0' * 64}.safetensors").replace(entry)
    elif damage == "non-finite":   # written as a damaged file would be: store() writes no such head
        head_cache._write(entry, key, torch.full((3, 64), float("inf")))
    elif damage == "wrong class count":
        head_cache.store(key, torch.ones(4, 64))
    elif damage == "wrong width":   # sound as a file; it does not fit the base's 64-wide features
        head_cache.store(key, torch.ones(3, 32))
    assert (head_cache.load(key, len(CLASSES)) is None) == (damage != "wrong width")
    torch.testing.assert_close(_head(path, checkpoint), built.text_embeddings, atol=0, rtol=0)
    assert torch.equal(head_cache.load(key, len(CLASSES)), built.text_embeddings)   # rewritten


def test_a_head_that_load_would_refuse_is_never_stored(tmp_path, monkeypatch):
    """store() wrote whatever the text tower gave, and from_bundle stored it before the projector's finite check:
    a base whose text tower overflows (finite weights, a token embedding of 1e30) made a NaN head that was cached,
    then the bundle was refused. Each such file left an entry load() never accepts (up to 512 MiB, counted against
    the cache's 4 GiB, so a few of them evicted every honest head) (fifteenth audit)."""
    monkeypatch.setenv("HELLO_CACHE", str(tmp_path / "cache"))
    model = tiny_clip("vit", 6)
    with torch.no_grad():
        model.token_embedding.weight.fill_(1e30)
    projector = tiny_projector("vit", CLASSES, seed=6).eval()
    projector.base_manifest = describe_base(model, architecture=TINY_ARCHITECTURES["vit"], source="embedded")
    path = _write(tmp_path / "hot-text.hello", projector, embedded_tensors(model))
    with Bundle.open(path) as bundle, pytest.raises(BundleError, match="'class weights' is not finite"):
        Projector.from_bundle(bundle)
    head_cache.store("0" * 64, torch.full((3, 64), float("nan")))
    assert not (tmp_path / "cache" / "heads").exists() or not list((tmp_path / "cache" / "heads").iterdir())


def test_storing_beyond_the_cache_bound_evicts_the_least_recently_used(tmp_path, monkeypatch):
    monkeypatch.setenv("HELLO_CACHE", str(tmp_path))   # a cache of this test's entries alone
    head_cache_dir = tmp_path / "heads"
    heads = {name: torch.full((3, 64), float(i)) for i, name in enumerate("abcd")}
    keys = {name: buffer_sha256(name.encode()) for name in heads}
    entries = {name: head_cache_dir / f"{keys[name]}.safetensors" for name in heads}
    for second, name in enumerate("abc", start=1):   # stored long ago, a before b before c
        head_cache.store(keys[name], heads[name])
        os.utime(entries[name], ns=(second * 10**9, second * 10**9))
    foreign = head_cache_dir / "notes.txt"   # not an entry: neither counted nor removed
    foreign.write_bytes(bytes(2**16))
    monkeypatch.setattr(head_cache, "HEAD_CACHE_BYTES", 3 * entries["a"].stat().st_size)
    assert torch.equal(head_cache.load(keys["a"], 3), heads["a"])   # a hit: a is now the most recent
    head_cache.store(keys["d"], heads["d"])
    assert [name for name in "abcd" if entries[name].exists()] == ["a", "c", "d"]
    assert foreign.exists()
    assert torch.equal(head_cache.load(keys["d"], 3), heads["d"])


def test_the_key_covers_the_base_classes_templates_and_ensemble():
    base = {"fingerprint": "sha256:" + "1" * 64, "architecture": "RN50", "pretrained": "openai", "config": None}
    key = head_cache.head_key(base, ["a", "b"], ["a {}.", "the {}."], "mean")
    assert key == head_cache.head_key(dict(base), ["a", "b"], ("a {}.", "the {}."), "mean")
    others = [
        head_cache.head_key(base, ["b", "a"], ["a {}.", "the {}."], "mean"),
        head_cache.head_key(base, ["a", "b"], ["the {}.", "a {}."], "mean"),
        head_cache.head_key(base, ["a", "b"], ["a {}."], "mean"),
        head_cache.head_key(base, ["a", "b"], ["a {}.", "the {}."], "max"),
        head_cache.head_key(base | {"fingerprint": "sha256:" + "2" * 64}, ["a", "b"], ["a {}.", "the {}."], "mean"),
        head_cache.head_key(base | {"architecture": "RN101"}, ["a", "b"], ["a {}.", "the {}."], "mean"),
    ]
    assert len({key, *others}) == 1 + len(others)


def test_an_unwritable_cache_warns_once_and_still_labels(tmp_path, monkeypatch):
    path, checkpoint, built = _local_bundle(tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("HELLO_CACHE", str(blocker))
    with pytest.warns(UserWarning, match="not writable") as caught:
        head = _head(path, checkpoint)
    assert len(caught) == 1 and caught[0].filename == __file__   # the caller's line, not hello's
    torch.testing.assert_close(head, built.text_embeddings, atol=0, rtol=0)


def test_the_cache_directory_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("HELLO_CACHE", str(tmp_path / "h"))
    assert head_cache.cache_dir() == tmp_path / "h" / "heads"
    monkeypatch.delenv("HELLO_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert head_cache.cache_dir() == tmp_path / "x" / "hello" / "heads"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert head_cache.cache_dir() == tmp_path / "home" / ".cache" / "hello" / "heads"


def test_disabled_cache_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("HELLO_CACHE", str(tmp_path / "cache"))
    path, checkpoint, _ = _local_bundle(tmp_path)
    _head(path, checkpoint, use_head_cache=False)
    assert not (tmp_path / "cache").exists()


def test_hello_info_names_the_stored_head(tmp_path):
    from click.testing import CliRunner

    from hello_format.cli import cli

    full, visual = _projectors("vit")
    path = _write(tmp_path / "v.hello", visual, embedded_tensors(tiny_clip("vit", 3), parts="visual"))
    result = CliRunner().invoke(cli, ["info", str(path)])
    assert result.exit_code == 0, result.output
    assert "format: hello 1.1" in result.output
    assert "base: embedded hello-tiny-vit, image tower + stored head" in result.output
