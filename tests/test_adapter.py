"""hello export-adapter: the folder peft loads reproduces the bundle's projector, head file included."""

import json
import pathlib

import open_clip
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from safetensors import safe_open

import hello_format
from hello_format import Bundle, Projector, lora
from hello_format.adapter import HEAD_FILE
from hello_format.base import VISUAL_PREFIX, base_state_dict, embedded_part, fingerprint_state
from hello_format.errors import BaseModelError, IntegrityError
from hello_format.cli import cli
from hello_format.files import atomic_folder
from hello_format.head import text_embeddings
from hello_format.testing import tiny_clip
from peft import PeftModel
from support import rewritten, with_local_base, write_labelled_bundle

IMAGES = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(3))


@pytest.fixture(scope="module")
def family_bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("adapter")
    return {family: write_labelled_bundle(root / f"{family}.hello", family) for family in ("vit", "rn")}


def _export(*args):
    return CliRunner().invoke(cli, ["export-adapter", *map(str, args)])


def _read_head_file(folder):
    with safe_open(str(folder / HEAD_FILE), "pt") as file:
        metadata = file.metadata()
        tensors = {name: file.get_tensor(name) for name in file.keys()}
    assert metadata["format"] == "hello-head"
    return {key: json.loads(metadata[f"hello.{key}"]) for key in ("head", "base", "class_names")}, tensors


def _head_logits(family, saved, tensors, features):
    """The head from hello_head.safetensors alone, as the spec describes it (sections 3.2 and 15)."""
    head, base = saved["head"], saved["base"]
    w0 = text_embeddings(tiny_clip(family), open_clip.get_tokenizer(base["architecture"]), saved["class_names"],
                         head["templates"])
    scale = head["lora"]["lora_alpha"] / head["lora"]["r"]
    weights = w0 + scale * tensors["head.lora_B"].float() @ tensors["head.lora_A"].float()
    features = F.normalize(features, dim=-1) if head["normalize_features"] else features
    return head["logit_scale"] * features @ weights.t()


@pytest.mark.parametrize("family", ["vit", "rn"])
def test_peft_loads_the_exported_adapter_onto_a_fresh_visual_with_the_projectors_outputs(family, family_bundles,
                                                                                             tmp_path):
    path = family_bundles[family]
    result = _export(path, "-o", tmp_path / "adapter")
    assert result.exit_code == 0, result.output
    folder = tmp_path / "adapter"
    assert sorted(p.name for p in folder.iterdir()) == ["adapter_config.json", "adapter_model.safetensors", HEAD_FILE]
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] is None and config["auto_mapping"] is None
    assert not config["modules_to_save"] and not config["use_rslora"]
    # the peft whose attention counts out_proj twice, as the tensors do: a later peft doubles it on load
    assert config["peft_version"] == lora.EXPORT_PEFT_VERSION == "0.21.2"

    with Bundle.open(path) as bundle:
        unmerged = Projector.from_bundle(bundle, merge=False)
        merged = Projector.from_bundle(bundle)
    peft_visual = PeftModel.from_pretrained(tiny_clip(family).visual, str(folder)).eval()
    saved, head_tensors = _read_head_file(folder)
    assert saved["class_names"] == ["a", "b", "c"]
    channel = lambda values: torch.tensor(values).reshape(1, -1, 1, 1)  # noqa: E731
    x = (IMAGES - channel(saved["base"]["mean"])) / channel(saved["base"]["std"])
    with torch.no_grad():
        features = peft_visual(x)
        torch.testing.assert_close(features, unmerged.visual(x), atol=1e-6, rtol=1e-6)
        logits = _head_logits(family, saved, head_tensors, features)
        torch.testing.assert_close(logits, merged(IMAGES), atol=1e-4, rtol=1e-4)
    assert len(list(peft_visual.base_model.model.modules())) > len(list(tiny_clip(family).visual.modules()))


def _image_tower_bundle(source, target):
    """``source`` (its base embedded whole) with the base kept as its image tower and the text head stored
    instead, as hello-build --embed-base writes it."""
    with Bundle.open(source) as bundle:
        w0 = Projector.from_bundle(bundle, merge=False, use_head_cache=False).text_embeddings.contiguous()

    def edit(manifest, tensors):
        state = {name.removeprefix("base."): tensors.pop(name) for name in [n for n in tensors if n.startswith("base.")]}
        visual = embedded_part(state, "visual")
        tensors.update({f"base.{key}": value for key, value in visual.items()})
        tensors["head.weight"] = w0
        manifest["format_version"] = "1.1"
        manifest["base"] |= {"embedded": "visual", "fingerprint": fingerprint_state(visual)}
    return rewritten(source, target, edit)


@pytest.fixture(scope="module")
def source_bundles(tmp_path_factory):
    """The same projector with its base embedded whole, embedded as its image tower, and in a local file:
    (path, the base checkpoint it needs)."""
    root = tmp_path_factory.mktemp("sources")
    full = write_labelled_bundle(root / "full.hello", "rn")
    return {"embedded-full": (full, None),
            "embedded-visual": (_image_tower_bundle(full, root / "visual.hello"), None),
            "local": (with_local_base(full, root / "local.hello", root / "base.safetensors"),
                      str(root / "base.safetensors"))}


@pytest.mark.parametrize("source", ["embedded-full", "embedded-visual", "local"])
def test_load_base_and_the_exported_folder_rebuild_the_labels_whatever_the_base_source(source, source_bundles, tmp_path):
    """Section 15's recipe on ``hello_format.load_base``: an embedded base had no public way onto open_clip,
    and a base embedded as its image tower has no text tower for W0: the head file carries it."""
    path, checkpoint = source_bundles[source]
    model = hello_format.load_base(path, checkpoint=checkpoint)
    visual_only = source == "embedded-visual"
    with Bundle.open(path) as bundle:
        fingerprint, stored_w0 = bundle.manifest["base"]["fingerprint"], bundle.head_weight()
        expected = Projector.from_bundle(bundle, checkpoint=checkpoint, use_head_cache=False)(IMAGES)
    state = base_state_dict(model)
    assert fingerprint_state(embedded_part(state, "visual") if visual_only else state) == fingerprint
    assert not model.training and not any(".lora_" in name for name in model.state_dict())
    assert not any(p.is_meta for p in model.visual.parameters())
    assert all(p.is_meta == visual_only for name, p in state.items() if not name.startswith(VISUAL_PREFIX))

    result = _export(path, "-o", tmp_path / "adapter", *(["--base-checkpoint", checkpoint] if checkpoint else []))
    assert result.exit_code == 0, result.output
    saved, head_tensors = _read_head_file(tmp_path / "adapter")
    assert ("head.weight" in head_tensors) == visual_only   # W0 exactly where the bundle stores it
    peft_visual = PeftModel.from_pretrained(model.visual, str(tmp_path / "adapter")).eval()
    channel = lambda values: torch.tensor(values).reshape(1, -1, 1, 1)  # noqa: E731
    x = (IMAGES - channel(saved["base"]["mean"])) / channel(saved["base"]["std"])
    head = saved["head"]
    if visual_only:
        assert torch.equal(head_tensors["head.weight"], stored_w0)
        w0 = head_tensors["head.weight"]
    else:   # from the text tower load_base gave
        w0 = text_embeddings(model, open_clip.get_tokenizer(saved["base"]["architecture"]), saved["class_names"],
                             head["templates"])
    with torch.no_grad():
        features = F.normalize(peft_visual(x), dim=-1)
        weights = w0 + head["lora"]["lora_alpha"] / head["lora"]["r"] * head_tensors["head.lora_B"] @ head_tensors["head.lora_A"]
        torch.testing.assert_close(head["logit_scale"] * features @ weights.t(), expected, atol=1e-4, rtol=1e-4)


def test_load_base_checks_an_embedded_base_as_the_projector_does(source_bundles, tmp_path):
    """``Bundle.base_state_dict()`` loaded onto open_clip by hand takes a changed or corrupted base silently."""
    path, _ = source_bundles["embedded-visual"]
    with Bundle.open(path) as bundle:
        name = next(n for n in bundle.tensor_names if n.startswith("base.visual.") and n.endswith(".weight"))
        payload = bytearray(bundle.path.read_bytes())
        payload[bundle._header.data_start + bundle._header.tensors[name].begin] ^= 0xFF

    def shifted(manifest, tensors):   # the hashes rewritten, the base's fingerprint kept
        tensors[name] = tensors[name] + 0.5
    with pytest.raises(BaseModelError, match="fingerprint"):
        hello_format.load_base(rewritten(path, tmp_path / "shifted.hello", shifted))
    (tmp_path / "corrupt.hello").write_bytes(bytes(payload))
    with pytest.raises(IntegrityError, match="is corrupted"):
        hello_format.load_base(tmp_path / "corrupt.hello")


def test_a_prior_mix_is_reproduced_from_the_folder_alone(tmp_path):
    path = write_labelled_bundle(tmp_path / "mixed.hello", "rn", prior_weight=0.3)
    assert _export(path, "-o", tmp_path / "adapter").exit_code == 0
    with Bundle.open(path) as bundle:
        labels = Projector.from_bundle(bundle).label(IMAGES)
    saved, head_tensors = _read_head_file(tmp_path / "adapter")
    w = saved["head"]["prior_weight"]
    assert w == 0.3
    peft_visual = PeftModel.from_pretrained(tiny_clip("rn").visual, str(tmp_path / "adapter")).eval()
    channel = lambda values: torch.tensor(values).reshape(1, -1, 1, 1)  # noqa: E731
    x = (IMAGES - channel(saved["base"]["mean"])) / channel(saved["base"]["std"])
    no_delta = {"lora_A": torch.zeros_like(head_tensors["head.lora_A"]), "lora_B": torch.zeros_like(head_tensors["head.lora_B"])}
    with torch.no_grad():
        adapted = _head_logits("rn", saved, head_tensors, peft_visual(x))
        with peft_visual.disable_adapter():   # section 15: the zero-shot projector is the encoder without the adapter
            zero_shot = _head_logits("rn", saved, {f"head.{k}": v for k, v in no_delta.items()}, peft_visual(x))
    torch.testing.assert_close((1 - w) * adapted + w * zero_shot, labels, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("dtype", ["int8", "int4"])
def test_a_quantised_bundle_exports_its_dequantised_deltas(dtype, family_bundles, tmp_path):
    """peft takes float weights: int8/int4 deltas are exported as what the reader dequantises (float32)."""
    path = tmp_path / f"{dtype}.hello"
    assert CliRunner().invoke(cli, ["requantize", str(family_bundles["vit"]), str(path), "--delta-dtype", dtype]).exit_code == 0
    result = _export(path, "-o", tmp_path / "adapter")
    assert result.exit_code == 0, result.output
    with Bundle.open(path) as bundle:
        merged = Projector.from_bundle(bundle)
        stored = bundle.lora_state_dict()
    with safe_open(str(tmp_path / "adapter" / "adapter_model.safetensors"), "pt") as file:
        assert {key: file.get_tensor(key) for key in file.keys()}.keys() == stored.keys()
        assert all(torch.equal(file.get_tensor(key), value) for key, value in stored.items())
    saved, head_tensors = _read_head_file(tmp_path / "adapter")
    assert saved["head"]["lora"]["dtype"] == "float32" and "group_size" not in saved["head"]["lora"]
    peft_visual = PeftModel.from_pretrained(tiny_clip("vit").visual, str(tmp_path / "adapter")).eval()
    channel = lambda values: torch.tensor(values).reshape(1, -1, 1, 1)  # noqa: E731
    x = (IMAGES - channel(saved["base"]["mean"])) / channel(saved["base"]["std"])
    with torch.no_grad():
        logits = _head_logits("vit", saved, head_tensors, peft_visual(x))
    torch.testing.assert_close(logits, merged(IMAGES), atol=1e-4, rtol=1e-4)


def test_export_is_byte_identical_across_runs(family_bundles, tmp_path):
    for name in ("one", "two"):
        assert _export(family_bundles["vit"], "-o", tmp_path / name).exit_code == 0
    for file in (tmp_path / "one").iterdir():
        assert file.read_bytes() == (tmp_path / "two" / file.name).read_bytes(), file.name


def test_a_non_empty_folder_is_kept_unless_forced(family_bundles, tmp_path):
    path = family_bundles["rn"]
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "mine.txt").write_text("keep")
    result = _export(path, "-o", folder)
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and result.output.count("\n") == 1
    assert "not empty" in result.output and "replace it with --overwrite" in result.output
    assert [p.name for p in folder.iterdir()] == ["mine.txt"]
    for flag in ("--overwrite", "--force"):   # the name pull, preview and requantize use, and its earlier one
        (folder / "mine.txt").write_text("keep")
        assert _export(path, "-o", folder, flag).exit_code == 0
        assert not (folder / "mine.txt").exists() and (folder / HEAD_FILE).is_file()
        assert [p.name for p in tmp_path.iterdir()] == ["adapter"]   # no temp folder left


def test_a_bundle_with_a_corrupted_image_is_not_exported(tmp_path):
    """Spec 8: whatever uses a bundle's weights or images checks every tensor's hash first, so a file
    that `hello verify` refuses is not exported, even where the damage is in the images it does not read."""
    vectors = pathlib.Path(__file__).resolve().parent.parent / "spec" / "vectors"
    result = _export(vectors / "image_byte_flipped.hello", "-o", tmp_path / "adapter")
    assert result.exit_code == 2 and "tensor 'images.data' is corrupted" in result.stderr, result.output
    assert list(tmp_path.iterdir()) == []


def test_a_failed_folder_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), atomic_folder(tmp_path / "out") as temp:
        (temp / "half.bin").write_bytes(b"x")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_export_adapter_names_a_file_in_the_way_before_building_the_projector(family_bundles, tmp_path):
    """Called from Python as from the command: "write failed: Not a directory" came after the projector."""
    from hello_format.adapter import export_adapter
    from hello_format.errors import BundleError

    (tmp_path / "notes.txt").write_text("mine")
    with Bundle.open(family_bundles["vit"]) as bundle, pytest.raises(BundleError) as info:
        export_adapter(bundle, tmp_path / "notes.txt" / "adapter")
    blocker = tmp_path / "notes.txt"
    assert str(info.value) == f"{blocker / 'adapter'}: {blocker} is a file, not a directory"


@pytest.mark.parametrize("output", ["", ".", ".."])
def test_export_adapter_refuses_the_current_folder_in_one_line_and_leaves_nothing(family_bundles, tmp_path,
                                                                                  monkeypatch, output):
    """-o . --overwrite said "write failed: Device or resource busy" and left an empty hidden ``..*.old``
    folder in the current one at each try."""
    cwd = tmp_path / "work"
    cwd.mkdir()
    (cwd / "keep.txt").write_text("mine")
    monkeypatch.chdir(cwd)
    result = _export(family_bundles["vit"], "-o", output, "--overwrite")
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
    assert "names the current folder, one above it or a root" in result.stderr
    assert sorted(p.name for p in cwd.iterdir()) == ["keep.txt"] and [p.name for p in tmp_path.iterdir()] == ["work"]


def test_a_folder_that_cannot_be_renamed_aside_leaves_no_empty_folder_beside_it(tmp_path, monkeypatch):
    """The empty folder made to rename the old one onto was left when that rename failed."""
    (tmp_path / "keep.txt").write_text("mine")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OSError), atomic_folder(pathlib.Path("."), replace=True) as temp:
        (temp / "adapter_config.json").write_text("{}")
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
