"""The `hello` CLI: info / verify / preview, one-line errors with exit 2, plugin commands."""

import importlib.metadata
import json
import math
import os
import pathlib
import re
import subprocess
import sys
import textwrap

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from hello_format import cli as cli_module
from hello_format.bundle import Bundle, write_bundle
from hello_format.cli import cli
from hello_format.text import human_bytes, warning_line
from support import make_bundle, make_manifest, with_local_base, with_remote_text_base, write_labelled_bundle

VECTORS = pathlib.Path(__file__).resolve().parent.parent / "spec" / "vectors"
VALID = VECTORS / "valid_png.hello"


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_info_prints_the_summary_and_storage():
    result = run("info", VALID)
    assert result.exit_code == 0, result.output
    storage = Bundle.open(VALID).storage()
    for text in ("classes: 3 (cat, dog, café)", "images: 6 (ipc 2), 3x8x8, codec png", "hello-tiny-vit",
                 "encoder LoRA: r 2, alpha 4", "LoRA r 4", "loss mse_ce", "300 epochs",
                 f"SRe2L/FKD): {storage.ratio:,.1f}x the label generator",
                 f"  header and manifest    {human_bytes(storage.header_bytes)}"):   # the rows add up to the file's
        assert text in result.stdout
    assert "other tensors" not in result.stdout   # only when a later version's are there


@pytest.mark.parametrize("args, message", [
    (["requantize", VALID, "{tmp}"], "Invalid value for 'OUT': File '{tmp}' is a directory. (see hello requantize --help)"),
    (["preview", VALID, "-o", "{tmp}/x.png", "--per-class", "0"],
     "Invalid value for '--per-class': 0 is not in the range x>=1. (see hello preview --help)"),
    (["info"], "Missing argument 'BUNDLE'. (see hello info --help)"),
    (["nosuch"], "No such command 'nosuch'. (see hello --help)"),
    (["--bogus"], "No such option '--bogus'. (see hello --help)"),
])
def test_a_commands_bad_argument_is_one_error_line(tmp_path, args, message):
    """click said these in three lines (usage, a hint, the error), where every other error is one line (the
    commands walkthrough); requantize's own line for a folder as OUT was never reached."""
    result = CliRunner().invoke(cli, [str(arg).format(tmp=tmp_path) for arg in args], prog_name="hello")
    assert result.exit_code == 2 and result.stderr == f"error: {message.format(tmp=tmp_path)}\n", result.output


def test_info_states_a_prior_mix():
    mixed, plain = run("info", VECTORS / "valid_prior_mix.hello"), run("info", VALID)
    assert mixed.exit_code == 0, mixed.output
    assert "format: hello 2.0" in mixed.stdout
    assert "labels: (1 - 0.25) x projector + 0.25 x zero-shot projector" in mixed.stdout
    assert "labels:" not in plain.stdout


def test_info_json_matches_the_bundle():
    result = run("info", VECTORS / "valid_raw.hello", "--json")
    assert result.exit_code == 0
    document = json.loads(result.stdout)
    bundle = Bundle.open(VECTORS / "valid_raw.hello")
    assert document["manifest"] == bundle.manifest
    assert document["storage"]["stored_label_bytes"] == 6 * 300 * 3 * 2
    assert document["storage"]["label_generator_bytes"] == bundle.storage().label_generator_bytes
    shapes = bundle.lora_shapes()   # what the text summary says too ("N modules, P parameters")
    # peft adapts two modules, the attention (its in-projection and out_proj pairs) and mlp.c_fc: three
    # pairs were counted as three modules, where the exported adapter names two (the commands walkthrough)
    assert document["encoder_lora"] == {"modules": 2, "parameters": sum(math.prod(shape) for shape in shapes.values())}
    assert f"{document['encoder_lora']['modules']} modules, {document['encoder_lora']['parameters']:,} parameters" \
        in run("info", VECTORS / "valid_raw.hello").stdout


@pytest.mark.parametrize("classes, shown", [(8, "c0, c1, c2, c3, c4, c5, c6, c7)"),
                                            (9, "c0, c1, c2, c3, c4, c5, c6, c7, ...)")])
def test_info_lists_eight_class_names_and_says_when_there_are_more(tmp_path, classes, shown):
    path = make_bundle(tmp_path / "b.hello", classes=[f"c{i}" for i in range(classes)], ipc=1)
    result = run("info", path)
    assert result.exit_code == 0, result.output
    assert f"classes: {classes} ({shown}\n" in result.stdout


def test_info_gives_the_quality_of_a_lossy_codec_only(tmp_path):
    lossy = run("info", make_bundle(tmp_path / "jpeg.hello", codec="jpeg"))
    assert lossy.exit_code == 0, lossy.output
    with Bundle.open(tmp_path / "jpeg.hello") as bundle:
        assert f"codec jpeg (quality {bundle.manifest['images']['quality']})\n" in lossy.stdout
    assert "codec png\n" in run("info", VALID).stdout


def test_info_text_shows_the_storage_and_bits_per_class_the_json_gives():
    document = json.loads(run("info", VALID, "--json").stdout)
    storage, bits = document["storage"], document["bits_per_class"]
    lines = run("info", VALID).stdout.splitlines()
    for line in (f"  images and labels      {human_bytes(storage['images_bytes'])}",
                 f"  label generator        {human_bytes(storage['label_generator_bytes'])} (encoder + head LoRA)",
                 f"  file                   {human_bytes(storage['file_bytes'])}",
                 f"  images + generator     {bits['without_base']:,.0f}",
                 f"  images + stored labels {bits['stored_labels']:,.0f}"):
        assert line in lines, line


def test_bits_per_class_count_images_labels_and_the_base(tmp_path):
    """DD-RUO's bits per class, by its definition: (sample + label + decoder bits) / classes. A public
    base is counted from its architecture (here checked against a really built model), an embedded one as stored."""
    import open_clip

    public = json.loads(run("info", VALID, "--json").stdout)["bits_per_class"]
    storage, classes = Bundle.open(VALID).storage(), 3
    parameters = sum(p.numel() for p in open_clip.create_model("hello-tiny-vit").parameters())
    own = 8 * (storage.images_bytes + storage.label_generator_bytes)
    assert public["without_base"] == pytest.approx(own / classes)
    assert public["with_base"] == pytest.approx((own + 16 * parameters) / classes)
    assert public["stored_labels"] == pytest.approx(8 * (storage.images_bytes + 6 * 300 * 3 * 2) / classes)
    assert f"{parameters:,} parameters at 16 bits" in public["base_counted"]

    embedded_path = write_labelled_bundle(tmp_path / "embedded.hello")
    embedded = json.loads(run("info", embedded_path, "--json").stdout)["bits_per_class"]
    storage = Bundle.open(embedded_path).storage()
    assert storage.base_bytes > 0
    assert embedded["with_base"] - embedded["without_base"] == pytest.approx(8 * storage.base_bytes / 3)
    shown = run("info", embedded_path).stdout
    assert f"+ the base             {embedded['with_base']:,.0f} (embedded base, as stored)" in shown


def test_verify_ok():
    result = run("verify", VALID)
    assert result.exit_code == 0
    assert result.stdout.startswith("ok: ") and "all sha256 match" in result.stdout


@pytest.mark.parametrize("flags, decoded", [([], True), (["--no-decode"], False)])
def test_verify_json_is_one_line_a_script_can_read(flags, decoded):
    result = run("verify", VALID, "--json", *flags)
    assert result.exit_code == 0 and len(result.stdout.splitlines()) == 1
    with Bundle.open(VALID) as bundle:
        expected = {"ok": True, "path": str(bundle.path), "format_version": bundle.manifest["format_version"],
                    "images": bundle.num_images, "tensors": len(bundle.tensor_names), "images_decoded": decoded}
    assert json.loads(result.stdout) == expected
    failed = run("verify", VECTORS / "image_does_not_decode.hello", "--json")
    assert failed.exit_code == 2 and failed.stdout == "" and failed.stderr.startswith("error: ")


def test_verify_decodes_a_chunk_at_a_time(tmp_path):
    """verify decodes every image but holds a bounded chunk of them, not all: ImageNet-1K at IPC 50 is
    7.5 GB decoded (here 2,000 224-px images, 300 MB decoded from an 11 MB file)."""
    from support import peak_rss_growth_mb

    path = tmp_path / "flat.hello"
    growth = peak_rss_growth_mb(textwrap.dedent(f"""
        import importlib.util
        import torch
        from click.testing import CliRunner
        from hello_format.bundle import write_bundle
        from hello_format.cli import cli
        spec = importlib.util.spec_from_file_location("make_vectors", {str(VECTORS.parent / "make_vectors.py")!r})
        samples = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(samples)
        images = torch.arange(2000, dtype=torch.uint8).view(-1, 1, 1, 1).expand(-1, 3, 224, 224).contiguous()
        # a noisy strip: the file must be large enough for its views (augment.view_bytes)
        images[:, :, :8] = torch.randint(0, 256, (2000, 3, 8, 224), dtype=torch.uint8)
        write_bundle({str(path)!r}, samples.sample_manifest(ipc=None), images, torch.arange(2000) % 3,
                     samples.sample_tensors())
        del images
        assert CliRunner().invoke(cli, ["verify", {str(VALID)!r}]).exit_code == 0
        # measure
        result = CliRunner().invoke(cli, ["verify", {str(path)!r}])
        assert result.exit_code == 0 and "2000 images" in result.stdout, result.output
        """))
    assert growth < 150, f"verify's peak grew by {growth:.0f} MB"


def test_verify_no_decode_checks_the_hashes_and_does_not_claim_the_images_decode():
    """An image that does not decode passes --no-decode (its bytes match their hash), and the line says
    nothing of decoding; without the flag it is the error."""
    undecodable = VECTORS / "image_does_not_decode.hello"
    result = run("verify", undecodable, "--no-decode")
    assert result.exit_code == 0, result.output
    assert result.stdout.endswith("all sha256 match, label generator finite\n")
    assert "all images decode" in run("verify", VALID).stdout
    assert run("verify", undecodable).exit_code == 2


@pytest.mark.parametrize("name, match", [
    ("tensor_byte_flipped.hello", "tensor 'head.lora_B' is corrupted"),
    ("truncated.hello", "file truncated?"),
    ("unknown_major_version.hello", "major 3"),
    ("not_safetensors.hello", "not a .hello/safetensors file"),
    ("image_does_not_decode.hello", "image 1 does not decode"),
    ("labels_count_mismatch.hello", "tensor 'labels'"),
])
def test_verify_bad_files_one_line_exit_2(name, match):
    result = run("verify", VECTORS / name)
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and match in lines[0]


def test_version_is_the_package_version():
    import hello_format

    result = run("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"hello (hello-distill), version {hello_format.__version__}"


def test_missing_file_is_an_error_line():
    result = run("info", "no/such/file.hello")
    assert result.exit_code == 2 and result.stderr.strip() == "error: no/such/file.hello: no such file"
    result = run("info", "")   # pathlib's current folder: "error: .: not a file"
    assert result.exit_code == 2 and result.stderr.strip() == "error: the bundle path is empty: name a .hello file"


def test_a_path_with_control_characters_stays_one_escaped_error_line():
    """The reader's message quotes the path as given: the command escapes it, so a name cannot start a
    line of its own or send the terminal an escape sequence."""
    result = run("info", "no/such\nerror: forged\x1b[2J.hello")
    assert result.exit_code == 2
    assert result.stderr == "error: no/such\\u000aerror: forged\\u001b[2J.hello: no such file\n"


def test_python_m_hello_format_is_the_hello_command():
    """``python -m hello_build`` worked and ``python -m hello_format`` did not (a docs walkthrough)."""
    done = subprocess.run([sys.executable, "-m", "hello_format", "info", str(VECTORS / "valid_gray_png.hello")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout == run("info", VECTORS / "valid_gray_png.hello").stdout, done.stderr


@pytest.mark.parametrize("message", ["hello: head cache /c is not writable", "hello-build: the work directory /w cannot be locked"])
def test_a_warning_line_names_no_program_twice(message):
    """The library's warnings start with its name, among a program's others; a command printed it after its
    own "warning:" ("warning: hello: ..."). A file's string is still escaped."""
    assert warning_line(message) == "warning: " + message.split(": ", 1)[1]
    assert warning_line("hello: a\nb") == "warning: a\\u000ab"


def test_preview_writes_a_grid(tmp_path):
    out = tmp_path / "grid.png"
    result = run("preview", VECTORS / "valid_gray_png.hello", "-o", out, "--per-class", "1")
    assert result.exit_code == 0, result.output
    with Image.open(out) as grid:
        assert grid.mode == "RGB" and grid.height > 3 * 64      # 3 class rows of 8x8 images shown at 64 px


def test_preview_options_shape_the_sheet(tmp_path):
    """--per-class above the default 10, --max-classes and --top-k reach the picture; --no-labels says so."""
    path = write_labelled_bundle(tmp_path / "b.hello", ipc=11)        # 3 classes (a, b, c), 11 images each

    def sheet(*options):
        out = tmp_path / f"{len(list(tmp_path.glob('*.png')))}.png"
        result = run("preview", path, "-o", out, *options)
        assert result.exit_code == 0 and result.stderr == "", result.output
        with Image.open(out) as grid:
            return grid.size, result.stdout

    (ten_w, ten_h), shown = sheet("--no-labels")
    assert shown == f"wrote {tmp_path / '0.png'} ({ten_w}x{ten_h})\n"   # no projector captions claimed
    (eleven_w, eleven_h), _ = sheet("--no-labels", "--per-class", "11")
    (one_w, one_h), _ = sheet("--no-labels", "--per-class", "1")
    assert eleven_h == one_h == ten_h and one_w < ten_w < eleven_w
    assert (eleven_w - ten_w) * 9 == ten_w - one_w                  # one column each
    (two_w, two_h), _ = sheet("--no-labels", "--max-classes", "2")
    (_, one_row_h), _ = sheet("--no-labels", "--max-classes", "1")
    assert two_w == ten_w and ten_h - two_h == two_h - one_row_h > 0      # one row each
    size, shown = sheet("--per-class", "1", "--top-k", "5")          # at most as many labels as classes
    assert shown.endswith(f"({size[0]}x{size[1]}, projector top-3 under each image)\n")
    assert size == sheet("--per-class", "1", "--top-k", "3")[0]
    # the projector's options beside --no-labels: said, not dropped (the commands walkthrough)
    with pytest.warns(UserWarning) as caught:
        told = run("preview", path, "-o", tmp_path / "told.png", "--no-labels", "--top-k", "3", "--allow-remote-base")
    assert told.exit_code == 0, told.output
    assert [str(w.message) for w in caught] == ["preview --no-labels does not use --top-k or --allow-remote-base"]


def test_a_preview_with_an_uppercase_extension_writes_that_format(tmp_path):
    out = tmp_path / "GRID.PNG"
    result = run("preview", VECTORS / "valid_gray_png.hello", "-o", out, "--per-class", "1", "--no-labels")
    assert result.exit_code == 0, result.output
    with Image.open(out) as grid:
        assert grid.format == "PNG"


@pytest.mark.skipif(not pathlib.Path("/proc/self/mem").exists(), reason="needs Linux's /proc/self/mem")
def test_a_base_checkpoint_that_cannot_be_read_still_gives_the_sheet_with_class_names(tmp_path):
    """An I/O error reading the base (reading /proc/self/mem at offset 0 is one) is a warning line, as
    any base that cannot be built here: the sheet shows class names."""
    out = tmp_path / "grid.png"
    result = run("preview", VECTORS / "valid_gray_png.hello", "-o", out, "--per-class", "1",
                 "--base-checkpoint", "/proc/self/mem")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == ["warning: no projector labels, showing class names only: "
                                          "[Errno 5] Input/output error"]
    assert out.is_file() and "projector" not in result.stdout


def test_a_preview_that_fails_while_writing_keeps_the_old_image_whole(tmp_path, monkeypatch):
    out = tmp_path / "grid.png"
    out.write_bytes(b"the previous grid")

    def disk_full(self, fp, *args, **kwargs):
        pathlib.Path(fp).write_bytes(b"\x89PNG half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", disk_full)
    result = run("preview", VECTORS / "valid_gray_png.hello", "-o", out, "--per-class", "1", "--overwrite")
    assert result.exit_code == 2   # the line names the file, not its hidden temp file
    assert result.stderr.strip().splitlines()[-1] == f"error: cannot write {out}: No space left on device"
    assert out.read_bytes() == b"the previous grid" and [p.name for p in tmp_path.iterdir()] == ["grid.png"]
    monkeypatch.undo()
    for extension in (".txt", ".psd"):   # no format, and one Pillow only reads (a KeyError traceback)
        result = run("preview", VECTORS / "valid_gray_png.hello", "-o", tmp_path / f"grid{extension}")
        assert result.exit_code == 2 and result.stderr.strip().splitlines() == [
            f"error: cannot write {tmp_path / f'grid{extension}'}: Pillow cannot write image files of extension "
            f"'{extension}': use e.g. .png"], result.output


def test_a_preview_into_a_missing_folder_is_refused_before_the_bundle_is_read(tmp_path):
    out = tmp_path / "no-such-folder" / "grid.png"
    result = run("preview", tmp_path / "not-read.hello", "-o", out)
    assert result.exit_code == 2 and result.stderr.strip() == (
        f"error: cannot write {out}: directory {out.parent} does not exist"), result.output


def test_a_preview_replaces_an_existing_image_only_with_overwrite(tmp_path):
    """preview replaced the user's file silently, where requantize asks for --overwrite; refused before
    the bundle is read."""
    out = tmp_path / "grid.png"
    out.write_bytes(b"my picture")
    result = run("preview", tmp_path / "not-read.hello", "-o", out)
    assert result.exit_code == 2 and result.stderr.strip() == f"error: {out} exists: pass --overwrite to replace it"
    assert out.read_bytes() == b"my picture"
    result = run("preview", VECTORS / "valid_gray_png.hello", "-o", out, "--per-class", "1", "--overwrite")
    assert result.exit_code == 0, result.output
    with Image.open(out) as grid:
        assert grid.format == "PNG"


def test_a_preview_never_replaces_the_bundle_it_previews(tmp_path):
    """``hello preview self.png -o self.png --overwrite`` replaced the bundle with its own grid (a CLI
    walkthrough); the same through a link to it."""
    import shutil

    bundle = tmp_path / "self.png"
    shutil.copyfile(VECTORS / "valid_gray_png.hello", bundle)
    (tmp_path / "link.png").symlink_to(bundle)
    before = bundle.read_bytes()
    for out in (bundle, tmp_path / "link.png"):
        result = run("preview", bundle, "-o", out, "--overwrite")
        assert result.exit_code == 2 and result.stderr.strip() == (
            f"error: cannot write {out}: it is the bundle being previewed; name another image file"), result.output
    assert bundle.read_bytes() == before


@pytest.mark.skipif(not pathlib.Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("args", [["info", str(VECTORS / "valid_gray_png.hello")], ["--help"]])
def test_output_that_cannot_be_written_is_one_error_line(tmp_path, args):
    """``hello info X > /dev/full`` (a full disk) printed a Python traceback (a CLI walkthrough); --help too."""
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "hello_format.cli", *args], stdout=full, stderr=subprocess.PIPE,
                              text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 2 and done.stderr == "error: No space left on device\n", done.stderr


# --- the base options that export-adapter, requantize (calibrating) and preview share


@pytest.fixture(scope="module")
def base_kit(tmp_path_factory):
    """A labelled bundle rewritten twice: with its base as a local checkpoint beside it, and with a
    custom base config naming a remote text model (text_cfg.hf_model_name)."""
    root = tmp_path_factory.mktemp("base-options")
    source = write_labelled_bundle(root / "embedded.hello")
    return {"checkpoint": root / "tiny-vit.safetensors",
            "local": with_local_base(source, root / "local.hello", root / "tiny-vit.safetensors"),
            "remote": with_remote_text_base(source, root / "remote.hello")}


WRITES = {"export-adapter": "", "requantize": ".hello", "preview": ".png"}   # a folder, a bundle, an image


def _base_command(command, bundle, out):
    """The command's arguments and the path it writes: ``out`` with the suffix of what it writes."""
    out = pathlib.Path(f"{out}{WRITES[command]}")
    return {"export-adapter": ["export-adapter", bundle, "-o", out],
            "requantize": ["requantize", bundle, out, "--delta-dtype", "int8", "--calibration-steps", "1"],
            "preview": ["preview", bundle, "-o", out, "--per-class", "1"]}[command], out


def test_export_adapter_refuses_a_non_empty_folder_before_building_the_projector(base_kit, tmp_path):
    """The folder was refused only after the bundle was verified and its projector built (a large base:
    minutes); here the projector could not even be built, and that was the error said."""
    out = tmp_path / "adapter"
    out.mkdir()
    (out / "mine.txt").write_text("mine")
    result = run("export-adapter", base_kit["local"], "-o", out)
    assert result.exit_code == 2 and result.stderr == (f"error: {out} is a folder that is not empty: choose a new or "
                                                       "empty folder, or replace it with --overwrite\n"), result.output
    assert [p.name for p in out.iterdir()] == ["mine.txt"]


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_export_adapter_to_a_link_to_a_folder_names_the_link_and_no_remedy_that_fails(base_kit, tmp_path, overwrite):
    """A link to an empty folder was 'not a folder', and the remedy given, --overwrite, was refused alike
    (the commands walkthrough): a link is never written through."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "empty", target_is_directory=True)
    result = run("export-adapter", base_kit["local"], "-o", tmp_path / "link", *overwrite)
    assert result.exit_code == 2 and result.stderr == (f"error: {tmp_path / 'link'} is a symbolic link: name the folder "
                                                       "itself\n"), result.output
    assert list((tmp_path / "empty").iterdir()) == []


@pytest.mark.parametrize("command", ["export-adapter", "requantize", "preview"])
def test_base_checkpoint_reaches_every_command_that_builds_the_projector(base_kit, tmp_path, command):
    needed = "this bundle's base is a local checkpoint ('tiny-vit.safetensors'): pass its path"
    args, out = _base_command(command, base_kit["local"], tmp_path / "without")
    without = run(*args)
    if command == "preview":   # a picture of class names, and one warning line
        assert without.exit_code == 0 and without.stderr.startswith("warning: no projector labels")
        assert needed in without.stderr
    else:
        assert without.exit_code == 2 and needed in without.stderr and not out.exists()
    args, out = _base_command(command, base_kit["local"], tmp_path / "given")
    given = run(*args, "--base-checkpoint", base_kit["checkpoint"])
    assert given.exit_code == 0 and needed not in given.output and out.exists(), given.output
    assert command != "requantize" or "calibrated 1 step (" in given.output, given.output   # once said "1 steps"


@pytest.mark.parametrize("command", ["export-adapter", "requantize", "preview"])
def test_a_mistyped_base_checkpoint_is_refused_before_anything_is_written(base_kit, tmp_path, command):
    """Not a preview without labels (preview warns and goes on when the base cannot be built): the
    path is checked as the command starts."""
    args, out = _base_command(command, base_kit["local"], tmp_path / "out")
    result = run(*args, "--base-checkpoint", tmp_path / "tiny-vit.safetensros")
    assert result.exit_code == 2 and "'--base-checkpoint': File" in result.stderr and "does not exist" in result.stderr
    assert not out.exists() and result.stdout == ""


@pytest.mark.parametrize("command", ["export-adapter", "requantize", "preview"])
def test_a_remote_base_config_is_refused_unless_allowed_in_every_command(base_kit, tmp_path, command):
    """Refused by default, before open_clip is asked; with --allow-remote-base open_clip is asked (and
    fails offline here: the refusal is what the test looks for)."""
    refusal = "uses 'text_cfg.hf_model_name', which is not in hello's allow-list"
    args, out = _base_command(command, base_kit["remote"], tmp_path / "refused")
    refused = run(*args)
    assert refusal in refused.stderr and "--allow-remote-base" in refused.stderr, refused.output
    assert len(refused.stderr.splitlines()) == 1 and out.exists() == (command == "preview")   # preview: class names
    allowed = run(*_base_command(command, base_kit["remote"], tmp_path / "allowed")[0], "--allow-remote-base")
    assert "open_clip cannot build architecture 'remote-text-tiny-vit'" in allowed.stderr
    assert refusal not in allowed.stderr


@pytest.mark.parametrize("command", ["export-adapter", "requantize", "preview"])
@pytest.mark.parametrize("depth", [1, 2])
def test_a_file_where_the_output_folder_should_be_is_named_in_every_command(tmp_path, command, depth):
    """preview and requantize said such a folder "does not exist", and export-adapter built the projector,
    then said "write failed: Not a directory"; one line, in the same words, before the bundle is read."""
    blocker = tmp_path / "notes.txt"
    blocker.write_text("mine")
    args, out = _base_command(command, tmp_path / "not-read.hello", blocker / "sub" / "out" if depth == 2
                              else blocker / "out")
    result = run(*args)
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
    assert result.stderr.endswith(f"{blocker} is a file, not a directory\n"), result.output
    assert blocker.read_text() == "mine"


@pytest.mark.parametrize("command", ["export-adapter", "requantize", "preview"])
def test_a_broken_link_where_the_output_folder_should_be_is_named_as_one(tmp_path, command):
    """files.missing_folder called a symbolic link to nothing "a file, not a directory"."""
    link = tmp_path / "scratch"
    link.symlink_to(tmp_path / "unmounted")
    args, _ = _base_command(command, tmp_path / "not-read.hello", link / "out")
    result = run(*args)
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
    assert result.stderr.endswith(f"{link} is a symbolic link to {tmp_path / 'unmounted'}, which does not exist\n")


def test_export_adapter_into_a_missing_folder_is_refused_before_the_bundle_is_read(tmp_path):
    out = tmp_path / "no-such-folder" / "adapter"
    result = run("export-adapter", tmp_path / "not-read.hello", "-o", out)
    assert result.exit_code == 2 and result.stderr == f"error: {out}: directory {out.parent} does not exist\n"


def test_console_script_error_through_a_real_process():
    process = subprocess.run([sys.executable, "-c", "from hello_format.cli import main; main()",
                              "verify", str(VECTORS / "manifest_byte_flipped.hello")],
                             capture_output=True, text=True, timeout=120)
    assert process.returncode == 2
    assert "Traceback" not in process.stderr
    assert process.stderr.count("\n") == 1 and "does not match 'hello.manifest.sha256'" in process.stderr


# --- plugin commands

def _fake_entry_points(tmp_path, monkeypatch, source: str, value: str):
    """Register one entry point ``fake`` -> value; ``source`` becomes the module ``value`` names."""
    (tmp_path / (value.split(":")[0] + ".py")).write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    entry_point = importlib.metadata.EntryPoint("fake", value, cli_module.ENTRY_POINT_GROUP)
    real = importlib.metadata.entry_points

    def entry_points(**kwargs):
        if kwargs.get("group") == cli_module.ENTRY_POINT_GROUP:
            return [entry_point]
        return real(**kwargs)

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)


def test_entry_point_command_is_loaded(tmp_path, monkeypatch):
    _fake_entry_points(tmp_path, monkeypatch, """
        import click
        @click.command()
        def fake():
            "A plugin command."
            click.echo("plugin ran")
    """, "fake_plugin_ok:fake")
    assert "A plugin command." in run("--help").stdout
    result = run("fake")
    assert result.exit_code == 0 and result.stdout == "plugin ran\n"


def test_entry_point_that_is_not_a_command_is_reported(tmp_path, monkeypatch):
    _fake_entry_points(tmp_path, monkeypatch, "fake = 42\n", "fake_plugin_value:fake")
    result = run("fake")
    assert result.exit_code == 2 and result.stderr == (
        "error: entry point 'fake' (fake_plugin_value:fake) is not a click command\n"), result.output


def test_a_hidden_entry_point_command_runs_but_is_not_listed(tmp_path, monkeypatch):
    _fake_entry_points(tmp_path, monkeypatch, """
        import click
        @click.command(hidden=True)
        def fake():
            "A hidden plugin command."
            click.echo("hidden ran")
    """, "fake_plugin_hidden:fake")
    listing = run("--help")
    assert listing.exit_code == 0 and "hidden plugin" not in listing.stdout and "  info " in listing.stdout
    assert run("fake").stdout == "hidden ran\n"


def test_entry_point_with_a_missing_module_is_no_command(tmp_path, monkeypatch):
    _fake_entry_points(tmp_path, monkeypatch, "", "not_installed_anywhere.cli:fake")
    listed = run("--help")
    assert "fake" not in listed.stdout and listed.stderr == ""   # not even a broken-plugin warning
    result = run("fake")
    assert result.exit_code == 2 and "No such command 'fake'" in result.output and "failed to load" not in result.output


def test_entry_point_whose_module_fails_to_import_is_reported(tmp_path, monkeypatch):
    _fake_entry_points(tmp_path, monkeypatch, "import module_that_does_not_exist\n", "fake_plugin_broken:fake")
    result = run("fake")
    assert result.exit_code == 2
    assert "command 'fake' (fake_plugin_broken:fake) failed to load" in result.stderr
    assert "module_that_does_not_exist" in result.stderr
    help_result = run("--help")
    assert help_result.exit_code == 0 and "warning: command 'fake'" in help_result.stderr


def test_hub_commands_are_registered():
    listing = run("--help")
    assert listing.exit_code == 0
    for name in ("push", "pull", "eval"):
        assert f"  {name} " in listing.stdout
    assert "REPO_ID" in run("push", "--help").stdout


def test_hub_module_that_fails_to_import_is_reported(tmp_path, monkeypatch):
    (tmp_path / "fake_hub_broken.py").write_text("raise ImportError('huggingface_hub is too old')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(cli_module, "HUB_MODULE", "fake_hub_broken")
    result = run("push")
    assert result.exit_code == 2 and "fake_hub_broken failed to load" in result.stderr
    assert "huggingface_hub is too old" in result.stderr
    assert "warning: fake_hub_broken failed to load" in run("--help").stderr


def test_a_preview_says_which_classes_have_no_row(tmp_path):
    """A class without images gets no row; the line said "the first 3 of 4 classes" for a sheet of two rows."""
    manifest = make_manifest(source="local", classes=["a", "b", "c", "d"], ipc=None)
    manifest["lora"], manifest["head"]["lora"] = None, None
    images = torch.randint(0, 256, (6, 3, 12, 12), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    path = write_bundle(tmp_path / "e.hello", manifest, images, torch.tensor([0, 0, 2, 2, 3, 3]), {})   # b: none
    out = tmp_path / "grid.png"
    result = run("preview", path, "-o", out, "--no-labels", "--max-classes", "3")
    with Image.open(out) as grid:
        assert result.stdout == f"wrote {out} ({grid.width}x{grid.height}, the first 3 of 4 classes, no row for 1 class without images)\n"
    result = run("preview", path, "-o", out, "--no-labels", "--overwrite")
    with Image.open(out) as grid:
        assert result.stdout == f"wrote {out} ({grid.width}x{grid.height}, no row for 1 class without images)\n"
    result = run("preview", path, "-o", out, "--no-labels", "--overwrite", "--max-classes", "1")
    assert "without images" not in result.stdout


def test_a_preview_of_a_thousand_classes_says_what_it_shows_and_refuses_a_sheet_its_format_cannot_hold(
        tmp_path, monkeypatch):
    """At ImageNet's class count: the default sheet said nothing of the 1,000 classes left out, and
    --max-classes 1000 into a .jpg drew a sheet 64,004 pixels tall (1,000 rows of 64) before libjpeg refused it
    ("broken data stream when writing image file"); refused now before an image is decoded, saying what to pass."""
    path = make_bundle(tmp_path / "k.hello", classes=[f"n{c:08d}" for c in range(1_100)], ipc=1)
    out = tmp_path / "grid.png"
    result = run("preview", path, "-o", out, "--no-labels")
    assert result.exit_code == 0, result.output
    with Image.open(out) as grid:
        assert result.stdout == f"wrote {out} ({grid.width}x{grid.height}, the first 100 of 1,100 classes)\n"

    def no_decoding(self, *args, **kwargs):
        raise AssertionError("images decoded for a sheet that cannot be written")

    monkeypatch.setattr(Bundle, "images", no_decoding)
    jpeg = tmp_path / "grid.jpg"
    result = run("preview", path, "-o", jpeg, "--no-labels", "--max-classes", "1100")
    assert result.exit_code == 2 and not jpeg.exists()
    assert re.fullmatch(f"error: cannot write {re.escape(str(jpeg))}: the sheet would be [0-9]+x70,404 pixels, more "
                        "than JPEG's 65,500 a side: pass a smaller --max-classes \\(here 1,100 of 1,100 classes\\) "
                        "or --per-class\n", result.stderr), result.output
    webp = tmp_path / "grid.webp"   # with captions: room for them is counted before the projector is built
    result = run("preview", path, "-o", webp, "--max-classes", "200")
    assert result.exit_code == 2 and "would be up to " in result.stderr, result.output   # the captions' room is a bound
    assert "more than WEBP's 16,383 a side with top-2 captions" in result.stderr, result.output
