"""`hello eval`: every label regime end to end on a tiny bundle, bad inputs, and the stored (FKD)
labels: their layout and a replay that meets exactly the views they were made for."""

import json
import re
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import load_file, save_file

from hello_build.evaluation import STUDENT_MEAN, STUDENT_STD, StudentRecipe, evaluate, top1, train_student, val_batch_size
from hello_build.zoo import create_model
from hello_build.regimes import REGIMES
from hello_build.data import RealImages, in_class_order, scan_image_folder
from hello_build.stored_labels import StoredLabels, batch_file
from hello_format import __version__ as hello_version
from hello_format.augment import AugmentConfig
from hello_format.base import embedded_tensors
from hello_format.bundle import Bundle, write_bundle
from hello_format.cli import cli
from hello_format.dataset import LabelledImages
from hello_format.recipe import Recipe
from hello_format.testing import tiny_clip, tiny_projector
from support import UNUSABLE_DEVICES, cache_file, with_local_base, with_remote_text_base

CLASSES = ["bird", "cat", "dog"]  # sorted, as ImageFolder orders class folders
IPC, SIZE, BATCH = 3, 32, 4  # 9 images: batches of 4, 4, 1 per epoch (a short last batch)
AUGMENT = {"output_size": SIZE, "scale": [0.25, 1.0], "cutmix": 1.0}

# A deterministic teacher whose logits are exactly representable in float16, so labels stored as
# float16 and labels computed online are bit-identical and the two regimes must train the same student.
TEACHER_MODULE = textwrap.dedent("""
    import torch
    from hello_build.zoo import create_model

    class Fp16Logits(torch.nn.Module):
        def __init__(self, num_classes):
            super().__init__()
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(7)
                self.net = create_model("convnet3", num_classes, image_size=32)

        def forward(self, x):
            return (4 * self.net(x)).half().float()

    def teacher(num_classes):
        return Fp16Logits(num_classes)
""")


def _write_folder(root, classes, per_class, seed):
    generator = torch.Generator().manual_seed(seed)
    for label, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            image = torch.randint(0, 256, (SIZE, SIZE, 3), dtype=torch.uint8, generator=generator)
            image[:, :, label] = 255 - 20 * i  # a class colour, so labels mean something
            Image.fromarray(image.numpy()).save(root / name / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def eval_kit(tmp_path_factory):
    """A tiny bundle (embedded tiny ViT base), validation and real folders, a teacher factory module."""
    root = tmp_path_factory.mktemp("eval")
    projector = tiny_projector("vit", CLASSES, seed=3).eval()
    manifest = {
        "format_version": "1.0", "class_names": CLASSES, "ipc": IPC, **projector.manifest_sections("float16"),
        "recipe": Recipe(epochs=2, batch_size=BATCH, student_image_size=SIZE,
                         augment=AugmentConfig.from_dict(AUGMENT)).to_manifest(),
        "provenance": {"source_dataset": "test", "teacher": "fp16 factory", "class_folders": CLASSES,
                       "builder": {"name": "test_eval", "version": "0", "options": {}}, "timings": {}},
    }
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (len(CLASSES) * IPC, 3, SIZE, SIZE), dtype=torch.uint8, generator=generator)
    labels = torch.arange(len(CLASSES)).repeat_interleave(IPC)
    tensors = {**projector.bundle_tensors("float16"), **embedded_tensors(tiny_clip("vit", 3))}
    bundle = write_bundle(root / "tiny.hello", manifest, images, labels, tensors, codec="png")
    (root / "modules").mkdir()
    (root / "modules" / "eval_fp16_teacher.py").write_text(TEACHER_MODULE)
    return {"bundle": bundle, "images": images, "labels": labels, "root": root,
            "val": _write_folder(root / "val", CLASSES, 4, seed=1), "real": _write_folder(root / "real", CLASSES, 5, seed=2),
            "modules": root / "modules"}


@pytest.fixture
def on_path(eval_kit, monkeypatch):
    monkeypatch.syspath_prepend(str(eval_kit["modules"]))


def hello(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def eval_args(eval_kit, regime, *extra):
    args = ["eval", eval_kit["bundle"], "--val", eval_kit["val"], "--regime", regime, "--epochs", 1, "--seed", 1]
    if regime in ("teacher", "stored"):
        args += ["--teacher", "eval_fp16_teacher:teacher"]
    if regime == "stored":
        args += ["--stored-dir", eval_kit["root"] / f"stored-{len(extra)}"]
    if regime == "random-real":
        args += ["--real", eval_kit["real"]]
    return args + list(extra)


def final_json(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("regime", REGIMES)
def test_every_regime_trains_and_reports_a_final_json_line(eval_kit, on_path, regime):
    result = hello(*eval_args(eval_kit, regime, "--quiet"))
    report = final_json(result)
    assert report["regime"] == regime
    assert 0.0 <= report["top1"] <= 1.0
    assert (report["student"], report["epochs"], report["seed"]) == ("convnet3", 1, 1)
    assert (report["images"], report["classes"]) == (len(CLASSES) * IPC, len(CLASSES))
    assert report["recipe"]["batch_size"] == BATCH  # the bundle's recorded recipe
    assert report["train_seconds"] <= report["seconds"]
    assert "epoch 1/1" not in result.output  # --quiet: only the JSON line
    assert report["precision"] == "fp32"  # students' default on every device
    # the labels': none for hard labels, the projector's label path's own default (bf16 on CUDA), else the student's
    projector_default = "bf16" if torch.cuda.is_available() else "fp32"
    assert report["label_precision"] == {"hard": None, "projector": projector_default,
                                         "random-real": projector_default}.get(regime, "fp32")
    # what was compared, so that two results can be told apart (an eval walkthrough: paths only before)
    inputs = report["inputs"]
    assert inputs["bundle_manifest_sha256"] == Bundle.open(eval_kit["bundle"]).manifest_sha256
    assert (inputs["val_images"], inputs["val_listing_sha256"]) == (4 * len(CLASSES),
                                                                    scan_image_folder(eval_kit["val"]).listing_digest)
    assert ("sha256" in inputs["teacher"] or "factory" in inputs["teacher"]) if regime in ("teacher", "stored") \
        else "teacher" not in inputs
    assert inputs.get("real_listing_sha256") == (scan_image_folder(eval_kit["real"]).listing_digest
                                                 if regime == "random-real" else None)
    assert report["environment"] == {"device": "cpu", "hello": hello_version, "torch": torch.__version__}
    assert report.get("stored_label_dtype") == ("F16" if regime == "stored" else None)   # not the teacher's fp32
    unused = {"hard": ("loss", "temperature", "beta")}.get(regime, ("temperature",))   # the bundle's mse_ce
    assert all(report["recipe"][name] is None for name in unused) and report["recipe"]["lr"] is not None


def test_overrides_and_per_epoch_log(eval_kit):
    result = hello("eval", eval_kit["bundle"], "--val", eval_kit["val"], "--regime", "projector", "--epochs", 3,
                   "--batch-size", 5, "--optimizer", "sgd", "--lr", 0.05, "--loss", "mse_ce", "--beta", 0.3, "--seed", 4)
    report = final_json(result)
    assert report["epochs"] == 3 and report["seed"] == 4
    assert {k: report["recipe"][k] for k in ("batch_size", "optimizer", "lr", "loss", "beta")} == {
        "batch_size": 5, "optimizer": "sgd", "lr": 0.05, "loss": "mse_ce", "beta": 0.3}
    epoch_lines = [line for line in result.stderr.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in epoch_lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert all("loss" in line for line in epoch_lines)
    assert json.loads(result.stdout) == report   # stdout is the JSON alone: `hello eval ... > r.json` feeds push --eval


def test_the_seed_defaults_to_0_and_the_temperature_reaches_the_student(eval_kit):
    report = final_json(hello("eval", eval_kit["bundle"], "--val", eval_kit["val"], "--regime", "projector", "--epochs", 1,
                              "--loss", "kl", "--temperature", 4, "--quiet"))
    assert report["seed"] == 0 and report["recipe"]["seed"] == 0
    assert (report["recipe"]["loss"], report["recipe"]["temperature"]) == ("kl", 4.0)


def test_a_safetensors_teacher_is_read_as_the_teacher_arch_given(eval_kit, tmp_path):
    """--teacher-arch names the zoo architecture of weights that carry none (without it they are refused)."""
    torch.manual_seed(0)
    save_file(create_model("convnet3", len(CLASSES)).state_dict(), str(tmp_path / "t.safetensors"))
    args = ["eval", eval_kit["bundle"], "--val", eval_kit["val"], "--regime", "teacher", "--epochs", 1, "--quiet",
            "--teacher", tmp_path / "t.safetensors"]
    one_line_error(hello(*args), "holds only weights", "--teacher-arch")
    assert final_json(hello(*args, "--teacher-arch", "convnet3"))["regime"] == "teacher"


def test_a_local_checkpoint_base_is_read_from_base_checkpoint(eval_kit, tmp_path):
    """A bundle whose base is a local checkpoint (not embedded): its projector labels need --base-checkpoint."""
    checkpoint = tmp_path / "tiny-vit.safetensors"
    path = with_local_base(eval_kit["bundle"], tmp_path / "local.hello", checkpoint)
    args = ["eval", path, "--val", eval_kit["val"], "--regime", "projector", "--quiet"]
    one_line_error(hello(*args), "tiny-vit.safetensors")
    assert final_json(hello(*args, "--base-checkpoint", checkpoint))["regime"] == "projector"


@pytest.mark.parametrize("progress", [False, True])
def test_the_text_towers_bar_follows_evals_progress(eval_kit, tmp_path, monkeypatch, progress):
    """--quiet (and every rank but 0) pass progress=False: no bar, even on a terminal, while the projector of a
    public-base bundle encodes its prompts (an empty head cache); with progress, the bar shows."""
    import io

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    checkpoint = tmp_path / "tiny-vit.safetensors"
    path = with_local_base(eval_kit["bundle"], tmp_path / "local.hello", checkpoint)
    monkeypatch.setenv("HELLO_CACHE", str(tmp_path / "empty-cache"))
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    evaluate(path, eval_kit["val"], regime="projector", recipe_overrides={"epochs": 1}, checkpoint=str(checkpoint),
             progress=progress)
    assert ("text head" in terminal.getvalue()) == progress


def test_a_remote_base_config_is_refused_unless_allow_remote_base(eval_kit, tmp_path):
    """A base config that would make open_clip fetch a text model is refused before open_clip is asked;
    --allow-remote-base reaches the projector's loader (which then asks open_clip: offline here, it fails)."""
    path = with_remote_text_base(eval_kit["bundle"], tmp_path / "remote.hello")
    args = ["eval", path, "--val", eval_kit["val"], "--regime", "projector", "--epochs", 1, "--quiet"]
    one_line_error(hello(*args), "uses 'text_cfg.hf_model_name', which is not in hello's allow-list",
                   "--allow-remote-base")
    allowed = hello(*args, "--allow-remote-base")
    one_line_error(allowed, "open_clip cannot build architecture 'remote-text-tiny-vit'")


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")   # convnet3's shape check, constant for one size
def test_a_torchscript_teacher_runs_with_trust_teacher_code(eval_kit, tmp_path):
    torch.manual_seed(0)
    net = create_model("convnet3", len(CLASSES)).eval()
    torch.jit.save(torch.jit.trace(net, torch.zeros(1, 3, SIZE, SIZE)), str(tmp_path / "t.pt"))
    args = ["eval", eval_kit["bundle"], "--val", eval_kit["val"], "--regime", "teacher", "--epochs", 1, "--quiet",
            "--teacher", tmp_path / "t.pt"]
    one_line_error(hello(*args), "--trust-teacher-code")
    assert final_json(hello(*args, "--trust-teacher-code"))["regime"] == "teacher"


def test_a_long_run_logs_every_kth_epoch_and_the_last(eval_kit):
    result = hello("eval", eval_kit["bundle"], "--val", eval_kit["val"], "--regime", "hard", "--epochs", 50)
    epoch_lines = [line.split(":")[0] for line in result.stderr.splitlines() if line.startswith("epoch ")]
    assert epoch_lines == [f"epoch {e}/50" for e in range(3, 51, 3)] + ["epoch 50/50"]  # ceil(50 / 20) = 3


@pytest.mark.slow
def test_another_student_architecture(eval_kit):
    report = final_json(hello("eval", eval_kit["bundle"], "--val", eval_kit["val"], "--student", "resnet18_32", "--epochs", 1, "--quiet"))
    assert report["student"] == "resnet18_32" and 0.0 <= report["top1"] <= 1.0


def one_line_error(result, *fragments):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    missing = [fragment for fragment in fragments if fragment not in lines[0]]
    assert not missing, (missing, lines[0])


def test_validation_classes_must_match_the_bundle_by_name(eval_kit, tmp_path):
    other = _write_folder(tmp_path / "other", ["ant", "bee", "cat"], 1, seed=5)
    one_line_error(hello("eval", eval_kit["bundle"], "--val", other), "lacks class folders 'bird', 'dog'",
                   "has class folders 'ant', 'bee' the bundle does not know")


def test_validation_folders_in_another_order_than_the_bundle_s_classes(eval_kit, tmp_path):
    """A bundle whose classes are not in sorted-folder order (built elsewhere) is evaluated by name."""
    with Bundle.open(eval_kit["bundle"]) as opened:
        manifest, images, labels = opened.manifest, opened.images(), opened.labels
        tensors = {n: opened.tensor(n) for n in opened.tensor_names if not n.startswith(("images.", "labels"))}
    order = ["dog", "bird", "cat"]
    manifest = {key: value for key, value in manifest.items() if key != "integrity"}
    manifest.update(class_names=order, provenance={**manifest["provenance"], "class_folders": order})
    permuted = write_bundle(tmp_path / "permuted.hello", manifest, images, labels, tensors, codec="png")
    assert Bundle.open(permuted).class_folders == order
    report = final_json(hello("eval", permuted, "--val", eval_kit["val"], "--regime", "hard", "--epochs", 1, "--quiet"))
    assert report["classes"] == 3


def test_an_unreadable_validation_image_is_left_out_before_training_with_skip_bad(eval_kit, tmp_path):
    """A validation image whose header is sound but whose pixels are not failed the run when it was scored,
    after the whole student had trained."""
    import io

    val = tmp_path / "val"
    shutil.copytree(eval_kit["val"], val)
    buffer = io.BytesIO()
    Image.fromarray(torch.randint(0, 256, (SIZE, SIZE, 3), dtype=torch.uint8).numpy()).save(buffer, "JPEG")
    (val / "cat" / "truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) * 6 // 10])
    args = ["eval", eval_kit["bundle"], "--val", val, "--regime", "hard", "--epochs", 1, "--quiet"]
    one_line_error(hello(*args), "cannot decode image", "truncated.jpg", "hello eval --skip-bad")
    report = final_json(hello(*args, "--skip-bad"))
    assert (report["val_images"], report["val_skipped"]) == (3 * 4, 1)
    assert "val_skipped" not in final_json(hello("eval", eval_kit["bundle"], "--val", eval_kit["val"], "--regime", "hard",
                                                 "--epochs", 1, "--quiet"))
    # a --real image left out is counted too (it was not: an eval walkthrough)
    real = shutil.copytree(eval_kit["real"], tmp_path / "real")
    shutil.copy(val / "cat" / "truncated.jpg", real / "cat")
    report = final_json(hello("eval", eval_kit["bundle"], "--val", eval_kit["val"], "--regime", "random-real", "--real", real,
                              "--epochs", 1, "--quiet", "--skip-bad"))
    assert (report["val_skipped"], report["real_skipped"]) == (0, 1)


def test_validation_batches_hold_a_bounded_size_of_activations(eval_kit, monkeypatch):
    """A bundle's view size sets the validation images' size; batches shrink with what one view makes the
    student hold (a batch bound by pixels alone let ConvNet-3 at 448 px ask 6.6 GB; thirteenth audit)."""
    from hello_build import evaluation
    from hello_build.evaluation import MIN_BATCH_ACTIVATION_BYTES, VAL_BATCH
    from hello_build.zoo import activation_bytes

    with torch.device("meta"):
        student = create_model("convnet3", 10, image_size=448)
    big = activation_bytes(student, 448)
    assert val_batch_size(big) * big <= MIN_BATCH_ACTIVATION_BYTES < (val_batch_size(big) + 1) * big
    assert val_batch_size(1_000) == VAL_BATCH and val_batch_size(2**40) == 1
    # hello eval scores in batches of what val_batch_size makes of the student's activations per view
    asked, batches = [], []
    monkeypatch.setattr(evaluation, "val_batch_size", lambda view: asked.append(view) or 7)
    monkeypatch.setattr(evaluation, "top1", lambda *args, batch_size, **kwargs: batches.append(batch_size) or 0.0)
    final_json(hello("eval", eval_kit["bundle"], "--val", eval_kit["val"], "--regime", "hard", "--epochs", 1, "--quiet"))
    with torch.device("meta"):
        student = create_model("convnet3", len(CLASSES), image_size=SIZE)
    assert asked == [activation_bytes(student, SIZE)] and batches == [7]
    seen = []

    class Counting(torch.nn.Module):
        def forward(self, x):
            seen.append(len(x))
            return torch.zeros(len(x), len(CLASSES))

    val = RealImages(in_class_order(scan_image_folder(eval_kit["val"]), CLASSES, "validation folder"), SIZE)
    top1(Counting(), val, device="cpu", batch_size=5)
    assert set(seen[:-1]) == {5} and 0 < seen[-1] <= 5 and sum(seen) == len(val)


def test_an_unknown_student_is_refused_before_the_teacher_is_loaded(eval_kit, tmp_path):
    """Free text before: the teacher file was loaded (a .pt2's code run) before the name was refused."""
    result = hello("eval", tmp_path / "missing.hello", "--val", eval_kit["val"], "--regime", "teacher",
                   "--teacher", tmp_path / "missing.pt2", "--trust-teacher-code", "--student", "vgg99")
    assert result.exit_code == 2 and "Invalid value for '--student': 'vgg99' is not one of 'convnet3'" in result.output


def test_unknown_teacher_architecture_is_refused_before_the_bundle_is_read(eval_kit, tmp_path):
    """Free text before: a safetensors teacher's architecture was looked up once the bundle was opened."""
    result = hello("eval", tmp_path / "missing.hello", "--val", eval_kit["val"], "--regime", "teacher",
                   "--teacher", tmp_path / "t.safetensors", "--teacher-arch", "vgg99")
    assert result.exit_code == 2 and "Invalid value for '--teacher-arch': 'vgg99' is not one of 'convnet3'" in result.output


@pytest.mark.parametrize("device, message", UNUSABLE_DEVICES)
def test_a_device_torch_cannot_use_is_one_line(eval_kit, device, message):
    """They were tracebacks: torch's RuntimeError for 'gpu', an AssertionError from deep in the base for 'cuda'."""
    one_line_error(hello(*eval_args(eval_kit, "hard"), "--device", device), f"--device: {message}")


def test_an_optimizer_hello_eval_does_not_train_with_is_refused_in_one_short_line(eval_kit, tmp_path):
    """The file's open string fell back to AdamW, and the result recorded the file's 65,536 characters as
    the optimizer it had used (tenth audit)."""
    from support import rewritten

    path = rewritten(eval_kit["bundle"], tmp_path / "optimizer.hello",
                     lambda manifest, tensors: manifest["recipe"].update(optimizer="\u0410" * 65_536))
    result = hello("eval", path, "--val", eval_kit["val"], "--regime", "hard", "--epochs", 1)
    one_line_error(result, "recipe.optimizer", "is not one hello eval trains with (adamw, sgd)", "--optimizer")
    assert len(result.stderr) < 300
    assert final_json(hello("eval", path, "--val", eval_kit["val"], "--regime", "hard", "--epochs", 1,
                            "--optimizer", "sgd", "--quiet"))["recipe"]["optimizer"] == "sgd"


def test_the_result_gives_the_size_the_student_trained_at(eval_kit, tmp_path):
    """recipe.student_image_size is informational: the JSON echoed the file's 64 for a student of 32-px views."""
    from support import rewritten

    path = rewritten(eval_kit["bundle"], tmp_path / "size.hello",
                     lambda manifest, tensors: manifest["recipe"].update(student_image_size=64))
    report = final_json(hello("eval", path, "--val", eval_kit["val"], "--regime", "hard", "--epochs", 1, "--quiet"))
    with Bundle.open(path) as bundle:
        assert report["recipe"]["student_image_size"] == bundle.image_shape[-1] != 64


def test_empty_validation_folder(eval_kit, tmp_path):
    (tmp_path / "empty").mkdir()
    one_line_error(hello("eval", eval_kit["bundle"], "--val", tmp_path / "empty"), "no class folders")


@pytest.mark.parametrize("regime, missing", [("teacher", "--teacher"), ("stored", "--teacher"), ("random-real", "--real")])
def test_regime_inputs_are_required(eval_kit, regime, missing):
    one_line_error(hello("eval", eval_kit["bundle"], "--val", eval_kit["val"], "--regime", regime, "--stored-dir", eval_kit["root"] / "x"),
                   missing, regime)


def test_an_input_the_regime_does_not_use_is_named_in_a_warning(eval_kit, on_path, tmp_path):
    """--regime projector --teacher FILE trained on the projector's labels and said nothing of the teacher
    (a user's walkthrough). It still runs, without loading what it does not use (the teacher named here
    does not exist): a script may pass one set of inputs to every regime."""
    with pytest.warns(UserWarning, match="hello: the projector regime does not use --teacher or --real or --stored-dir"):
        report = final_json(hello("eval", eval_kit["bundle"], "--val", eval_kit["val"], "--regime", "projector", "--epochs", 1,
                                  "--teacher", "/no/such/teacher.safetensors", "--real", eval_kit["real"],
                                  "--stored-dir", tmp_path / "stored", "--quiet"))
    assert report["regime"] == "projector" and not (tmp_path / "stored").exists()
    from hello_build.evaluation import evaluate

    with pytest.warns(UserWarning, match="hello: the hard regime does not use --teacher"):   # from Python too
        assert evaluate(eval_kit["bundle"], eval_kit["val"], regime="hard", teacher=torch.nn.Identity(), device="cpu",
                        progress=False, recipe_overrides={"epochs": 1})["regime"] == "hard"


def test_a_commands_warning_is_one_line_on_stderr(eval_kit):
    """Python's format printed 'click/core.py:911: UserWarning: ...' and the line of click that called the
    command: two lines, one of them a path into a library."""
    done = subprocess.run([sys.executable, "-m", "hello_format.cli", "eval", str(eval_kit["bundle"]), "--val",
                           str(eval_kit["val"]), "--regime", "hard", "--teacher", "unused.safetensors", "--epochs", "1",
                           "--quiet"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.splitlines() == ["warning: the hard regime does not use --teacher"], done.stderr


@pytest.mark.parametrize("regime, extra, said", [
    ("hard", ["--temperature", "4", "--loss", "kl"], "the hard regime does not use --loss or --temperature"),
    ("projector", ["--temperature", "4"], "the projector regime with the mse_ce loss does not use --temperature"),
    ("projector", ["--loss", "kl", "--beta", "3"], "the projector regime with the kl loss does not use --beta"),
    ("hard", ["--teacher-arch", "convnet3", "--trust-teacher-code"],
     "the hard regime does not use --teacher-arch or --trust-teacher-code"),
    ("teacher", ["--base-checkpoint", "BUNDLE", "--allow-remote-base"],
     "the teacher regime builds no projector: it does not use --base-checkpoint or --allow-remote-base"),
    ("random-real", ["--real", "VAL"], "--real .* and --val .* share images: the random-real student is scored on images "
                                       "it may have trained on"),
])
def test_an_input_the_run_does_not_use_is_said(eval_kit, on_path, regime, extra, said):
    """--temperature beside mse_ce, --beta beside kl, a teacher's or a base's flags beside a regime without
    one were dropped unsaid, and the JSON's recipe recorded them as used; --real at the validation folder
    scored the student on its own training images unsaid (an eval walkthrough)."""
    args = [{"VAL": str(eval_kit["val"]), "BUNDLE": str(eval_kit["bundle"])}.get(arg, arg) for arg in extra]
    args += ["--teacher", "eval_fp16_teacher:teacher"] if regime == "teacher" else []
    with pytest.warns(UserWarning) as caught:
        result = hello("eval", eval_kit["bundle"], "--val", eval_kit["val"], "--regime", regime, "--epochs", 1, "--quiet", *args)
    assert result.exit_code == 0, result.output
    assert [re.search(said, str(w.message)) is not None for w in caught] == [True], [str(w.message) for w in caught]


def test_a_seed_a_student_would_share_with_another_is_refused(eval_kit):
    """torch's generators keep a seed's low 32 bits: --seed 4294967299 trained --seed 3's student and the
    JSON named it 4294967299 (an eval walkthrough)."""
    result = hello("eval", eval_kit["bundle"], "--val", eval_kit["val"], "--seed", 2**32 + 3)
    assert result.exit_code == 2 and "4294967299 is not in the range 0<=x<=4294967295" in result.output, result.output


@pytest.mark.parametrize("flag", ["--val", "--real"])
def test_a_link_out_of_an_evaluation_folder_is_refused_unless_asked_for(eval_kit, tmp_path, flag):
    """hello eval --val with a class folder linking to / checked the headers of 145,109 files of this
    machine (seventeenth audit); --follow-external-links reads a folder the user linked."""
    linked = tmp_path / "linked"
    shutil.copytree(eval_kit["val" if flag == "--val" else "real"], linked)
    first = sorted(p.name for p in linked.iterdir())[0]
    shutil.move(linked / first, tmp_path / "elsewhere")
    (linked / first).symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    args = ["eval", eval_kit["bundle"], "--epochs", 1, "--quiet"]
    args += ["--val", eval_kit["val"], "--regime", "random-real", "--real", linked] if flag == "--real" else ["--val", linked]
    one_line_error(hello(*args), f"{first} links outside the image folder", "--follow-external-links")
    assert final_json(hello(*args, "--follow-external-links"))["top1"] >= 0


def test_stored_labels_without_a_directory_live_in_a_removed_temporary_one(eval_kit, on_path, tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    assert tempfile.gettempdir() == str(tmp_path)  # so the emptiness checked below is where the files went
    report = final_json(hello("eval", eval_kit["bundle"], "--val", eval_kit["val"], "--regime", "stored", "--epochs", 2,
                              "--teacher", "eval_fp16_teacher:teacher", "--quiet"))
    # 9 images x 2 epochs x 3 classes x 2 bytes of float16 logits; the files also hold each view's record
    assert report["stored_label_bytes"] == len(CLASSES) * IPC * 2 * len(CLASSES) * 2
    assert report["stored_disk_bytes"] > report["stored_label_bytes"]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, -signal.SIGTERM), (signal.SIGINT, 130)])
def test_a_stop_signal_removes_the_temporary_stored_labels(eval_kit, tmp_path, signum, status):
    """A plain temporary folder outlived a SIGTERM (a job scheduler's stop): gigabytes at ImageNet scale.
    Ctrl-C ends the command with the shell's 130 (click said 1, as for any failure)."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    command = [sys.executable, "-m", "hello_format.cli", "eval", str(eval_kit["bundle"]), "--val", str(eval_kit["val"]),
               "--regime", "stored", "--epochs", "3000", "--teacher", "eval_fp16_teacher:teacher", "--quiet"]
    path = os.pathsep.join([str(eval_kit["modules"]), os.environ.get("PYTHONPATH", "")])
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "TMPDIR": str(scratch), "PYTHONPATH": path},
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # a background job ignores it
    try:
        deadline = time.monotonic() + 120
        while not any(scratch.glob("hello-stored-*/*")):   # the labels are being written
            assert child.poll() is None and time.monotonic() < deadline, "no stored labels appeared"
            time.sleep(0.2)
        child.send_signal(signum)
        _, stderr = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == status, stderr
    assert "Traceback" not in stderr
    assert list(scratch.iterdir()) == []


def test_a_stored_dir_holding_other_files_counts_only_this_runs_labels(eval_kit, on_path, tmp_path):
    stored = tmp_path / "downloaded-dump"
    stored.mkdir()
    save_file({"x": torch.zeros(2)}, str(stored / "readme.safetensors"))  # no logits: not a label file of this run
    (stored / "other").mkdir()
    (stored / "other" / "broken.safetensors").write_bytes(b"not safetensors")
    result = hello("eval", eval_kit["bundle"], "--val", eval_kit["val"], "--regime", "stored", "--epochs", 1,
                   "--teacher", "eval_fp16_teacher:teacher", "--stored-dir", stored)
    report = final_json(result)
    # said before the first file is written: where, how many and how many bytes at most
    said = next(line for line in result.stderr.splitlines() if line.startswith("stored labels: "))
    assert f"for 3 batches of 1 epoch(s) to {stored}, up to " in said
    assert report["stored_label_bytes"] == len(CLASSES) * IPC * len(CLASSES) * 2
    assert report["stored_disk_bytes"] == sum(p.stat().st_size for p in stored.glob("epoch_*/batch_*.safetensors"))


def test_a_symlinked_epoch_folder_in_the_stored_dir_is_refused_and_left_alone(eval_kit, on_path, tmp_path):
    elsewhere = tmp_path / "another-run"
    elsewhere.mkdir()
    (elsewhere / "batch_00007.safetensors").write_bytes(b"precious")
    stored = tmp_path / "stored"
    stored.mkdir()
    (stored / "epoch_0000").symlink_to(elsewhere, target_is_directory=True)
    one_line_error(hello("eval", eval_kit["bundle"], "--val", eval_kit["val"], "--regime", "stored", "--epochs", 1,
                         "--teacher", "eval_fp16_teacher:teacher", "--stored-dir", stored, "--quiet"),
                   "epoch_0000 is a symbolic link")
    assert [p.name for p in elsewhere.iterdir()] == ["batch_00007.safetensors"]


def test_random_real_needs_enough_real_images(eval_kit, tmp_path, monkeypatch):
    """Refused before the projector is built: its text head's bar came first, and the error was one line only
    when an earlier test had cached the head."""
    from hello_build import evaluation

    monkeypatch.setattr(evaluation.Projector, "from_bundle", lambda *a, **k: pytest.fail("the projector was built"))
    few = _write_folder(tmp_path / "few", CLASSES, IPC - 1, seed=6)
    one_line_error(hello(*eval_args(eval_kit, "random-real")[:-2], "--real", few), "fewer than the bundle's")


def test_eval_decodes_the_bundles_images_on_first_use_as_hello_dataset_does(eval_kit, monkeypatch):
    """hello eval decoded every image before its first batch (ImageNet-1K at IPC 50: 7.5 GB at once), and
    for random-real, whose student never sees them, it decoded them all for their size."""
    from support import count_decodes

    decoded = count_decodes(monkeypatch)
    assert hello(*eval_args(eval_kit, "random-real")).exit_code == 0
    assert decoded == []
    assert hello(*eval_args(eval_kit, "hard")).exit_code == 0
    assert sorted(decoded) == list(range(len(CLASSES) * IPC))   # each once, as its first batch needed it


def test_random_real_takes_none_of_the_bundles_images(eval_kit, monkeypatch):
    """Its student trains on real images: the bundle's were still made lazy images, which for a raw bundle
    copies every image into memory (and onto the GPU on CUDA) and on CUDA allocates their decoded size."""
    def refused(*args, **kwargs):
        raise AssertionError("the bundle's images were read")

    monkeypatch.setattr(Bundle, "lazy_images", refused)
    monkeypatch.setattr(Bundle, "images", refused)
    assert hello(*eval_args(eval_kit, "random-real")).exit_code == 0


def trained_students(monkeypatch) -> list[dict]:
    """What every hello eval run in this test trains: the precision it was asked for and the student's weights
    (top-1 on a dozen images after an epoch is chance for every regime, so it tells runs apart poorly)."""
    from hello_build import evaluation

    seen, real = [], evaluation.train_student

    def spy(*args, **kwargs):
        model = real(*args, **kwargs)
        seen.append({"precision": kwargs["precision"], "state": {k: v.clone() for k, v in model.state_dict().items()}})
        return model

    monkeypatch.setattr(evaluation, "train_student", spy)
    return seen


def test_stored_and_teacher_regimes_train_the_same_student(eval_kit, on_path, monkeypatch):
    students = trained_students(monkeypatch)
    teacher = final_json(hello(*eval_args(eval_kit, "teacher", "--quiet")))
    stored = final_json(hello(*eval_args(eval_kit, "stored", "--quiet")))
    assert stored["top1"] == teacher["top1"] and len(students) == 2
    assert all(torch.equal(students[0]["state"][k], students[1]["state"][k]) for k in students[0]["state"])


def test_the_teacher_regime_takes_a_hub_uri_as_the_others_do(eval_kit, on_path, hub_cache):
    cache_file(hub_cache, "org/tiny", "tiny.hello", eval_kit["bundle"].read_bytes())
    uri = "hf://datasets/org/tiny/tiny.hello"
    args = eval_args(eval_kit, "teacher", "--quiet")   # "eval", BUNDLE, ...
    local, remote = final_json(hello(*args)), final_json(hello(args[0], uri, *args[2:]))
    assert remote["top1"] == local["top1"] and remote["bundle"] == uri


# in-process: the files themselves, and the replay against the teacher on exactly the same views

def teacher_and_data(eval_kit, seed=0):
    from eval_fp16_teacher import teacher

    net = teacher(len(CLASSES)).eval()
    data = LabelledImages(eval_kit["images"], eval_kit["labels"], CLASSES, AugmentConfig.from_dict(AUGMENT), None,
                          device="cpu", seed=seed, normalize=(STUDENT_MEAN, STUDENT_STD))
    return net, data


def test_stored_labels_use_the_fkd_layout(eval_kit, on_path, tmp_path):
    net, data = teacher_and_data(eval_kit)
    recipe = StudentRecipe(epochs=2, batch_size=BATCH, seed=0)
    (tmp_path / "epoch_0009").mkdir()
    (tmp_path / "epoch_0009" / "batch_00000.safetensors").write_bytes(b"stale")  # from an earlier, longer run
    stored = StoredLabels.prepare(tmp_path, data, net, recipe)
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.safetensors"))
    assert files == [f"epoch_{e:04d}/batch_{b:05d}.safetensors" for e in range(2) for b in range(3)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch_0000", "epoch_0001"]   # the stale one's folder went too
    loader = data.loader(BATCH, shuffle=True, seed=0, epochs=2)
    for step, (epoch, indices, view) in enumerate(loader.views()):
        saved = load_file(str(batch_file(tmp_path, epoch, step % 3)))
        assert saved["logits"].dtype == torch.float16 and saved["logits"].shape == (len(indices), len(CLASSES))
        with torch.no_grad():
            torch.testing.assert_close(saved["logits"].float(), net(view.images), rtol=0, atol=0)
        assert saved["crops"].dtype == torch.int32 and torch.equal(saved["crops"], view.crops.to(torch.int32))
        assert torch.equal(saved["flips"], view.flips)
        assert torch.equal(saved["mix_perm"], view.mix.perm.to(torch.int32))  # cutmix on every batch
        assert saved["mix_lam"].item() == pytest.approx(view.mix.lam)
    assert stored.label_bytes() == 2 * len(eval_kit["labels"]) * len(CLASSES) * 2  # epochs x N x C x fp16
    assert stored.bytes_on_disk() > stored.label_bytes()


def _weights(model):
    return torch.cat([p.detach().flatten() for p in model.state_dict().values() if p.is_floating_point()])


def test_replay_is_aligned_with_the_views(eval_kit, on_path, tmp_path):
    net, online = teacher_and_data(eval_kit)
    recipe = StudentRecipe(epochs=2, batch_size=BATCH, seed=0)

    def with_grad_off(images):
        with torch.no_grad():
            return net(images)

    online.labeller = with_grad_off
    expected = _weights(train_student(online, recipe, image_size=SIZE, device="cpu", progress=False))

    _, replayed = teacher_and_data(eval_kit)
    replayed.labeller = StoredLabels.prepare(tmp_path / "aligned", replayed, net, recipe).replay()
    assert torch.equal(_weights(train_student(replayed, recipe, image_size=SIZE, device="cpu", progress=False)), expected)

    # control: labels made for another seed's views (same batch shapes) train a different student
    _, shifted = teacher_and_data(eval_kit, seed=1)
    wrong = StoredLabels.prepare(tmp_path / "shifted", shifted, net, StudentRecipe(epochs=2, batch_size=BATCH, seed=1))
    _, replayed_wrong = teacher_and_data(eval_kit)
    replayed_wrong.labeller = wrong.replay()
    assert not torch.equal(_weights(train_student(replayed_wrong, recipe, image_size=SIZE, device="cpu", progress=False)), expected)


def test_replay_refuses_more_batches_than_stored(eval_kit, on_path, tmp_path):
    from hello_build.errors import BuildError

    net, data = teacher_and_data(eval_kit)
    data.labeller = StoredLabels.prepare(tmp_path, data, net, StudentRecipe(epochs=1, batch_size=BATCH)).replay()
    with pytest.raises(BuildError, match="more batches"):
        train_student(data, StudentRecipe(epochs=2, batch_size=BATCH), image_size=SIZE, device="cpu", progress=False)


def test_train_student_refuses_an_optimizer_it_does_not_train_with(eval_kit, on_path):
    """train_student trained any optimizer name but "sgd" as AdamW; only hello eval checked the name first."""
    from hello_build.errors import BuildError

    _, data = teacher_and_data(eval_kit)
    with pytest.raises(BuildError, match=r"recipe.optimizer 'adam' is not one hello eval trains with \(adamw, sgd\)"):
        train_student(data, StudentRecipe(epochs=1, batch_size=BATCH, optimizer="adam"), image_size=SIZE,
                      device="cpu", progress=False)


def test_a_bf16_student_trains_in_rounded_arithmetic_with_fp32_weights(eval_kit, on_path):
    _, data = teacher_and_data(eval_kit)
    recipe = StudentRecipe(epochs=2, batch_size=BATCH, seed=0)
    fp32 = train_student(data, recipe, image_size=SIZE, device="cpu", progress=False)
    _, data = teacher_and_data(eval_kit)
    bf16 = train_student(data, recipe, image_size=SIZE, device="cpu", progress=False, precision="bf16")
    assert all(p.dtype == torch.float32 for p in bf16.parameters())
    assert not torch.equal(_weights(bf16), _weights(fp32))
    assert torch.allclose(_weights(bf16), _weights(fp32), atol=0.05)


AUTOCAST_TEACHER = textwrap.dedent("""
    import torch

    class Autocast(torch.nn.Module):
        def forward(self, x):   # class 0's logit says whether the labels were computed under autocast
            logits = torch.zeros(len(x), 3)
            logits[:, 0] = float(torch.is_autocast_enabled(x.device.type))
            return logits + 0 * x.mean()

    def teacher(num_classes):
        return Autocast()
""")


def test_eval_reports_the_precision_it_ran_at(eval_kit, on_path, monkeypatch):
    students = trained_students(monkeypatch)
    report = final_json(hello(*eval_args(eval_kit, "teacher", "--quiet", "--precision", "bf16")))
    assert report["precision"] == "bf16" and report["label_precision"] == "bf16"
    assert final_json(hello(*eval_args(eval_kit, "teacher", "--quiet", "--precision", "auto")))["precision"] == "fp32"
    assert [student["precision"] for student in students] == ["bf16", "fp32"]   # what trained, not only what is said


def test_stored_labels_are_computed_at_the_precision_reported(eval_kit, tmp_path, monkeypatch):
    """The stored regime wrote fp32 labels while reporting label_precision bf16 (a docs review found it)."""
    (tmp_path / "eval_autocast_teacher.py").write_text(AUTOCAST_TEACHER)
    monkeypatch.syspath_prepend(str(tmp_path))
    for precision, autocast in (("bf16", 1.0), ("fp32", 0.0)):
        stored = tmp_path / precision
        assert final_json(hello("eval", eval_kit["bundle"], "--val", eval_kit["val"], "--regime", "stored", "--epochs", 1,
                                "--teacher", "eval_autocast_teacher:teacher", "--stored-dir", stored, "--precision", precision,
                                "--quiet"))["label_precision"] == precision
        logits = [load_file(str(path))["logits"] for path in stored.glob("epoch_*/batch_*.safetensors")]
        assert logits and all(bool((batch[:, 0] == autocast).all()) for batch in logits)


def test_a_diverged_student_is_an_error_not_an_accuracy(eval_kit, on_path):
    """A run whose loss blows up (here labels of 1e30, whose squares overflow) must not end in a top-1 figure."""
    from hello_build.errors import BuildError

    _, data = teacher_and_data(eval_kit)
    data.labeller = lambda images: torch.full((len(images), len(CLASSES)), 1e30)
    with pytest.raises(BuildError, match=r"student convnet3 diverged: loss (nan|inf) in epoch 1"):
        train_student(data, StudentRecipe(epochs=2, batch_size=BATCH, seed=0), image_size=SIZE, device="cpu",
                      progress=False)


@pytest.mark.parametrize("option, value", [("--batch-size", "0"), ("--epochs", "0"), ("--lr", "0"), ("--temperature", "-1"),
                                           ("--temperature", "1e-300"), ("--lr", "1e300"), ("--beta", "1e300"),
                                           ("--seed", "-1"), ("--seed", str(2**64))])
def test_a_recipe_override_out_of_the_recipes_range_is_a_usage_error(eval_kit, option, value):
    """Overrides skip the checks that bound a file's recipe: --batch-size 0 was a ZeroDivisionError
    traceback (thirteenth audit), --temperature 1e-300 a student trained on NaN. They take the reader's ranges."""
    result = hello(*eval_args(eval_kit, "hard", option, value))
    assert result.exit_code == 2 and f"Invalid value for '{option}'" in result.output, result.output


# ------------------------------------------------------------- evaluate() from Python (an integration review)

@pytest.mark.parametrize("overrides, message", [
    ({"loss": "KL"}, r"recipe.loss 'KL' is not one of mse_ce, kl"),   # was trained as mse_ce, reported as 'KL'
    ({"lr": -1.0}, r"recipe.lr must be a number in \(0, 10\] \(got -1\.0\)"),   # a traceback mid-training
    ({"lr": 0.0}, r"recipe.lr must be a number in \(0, 10\] \(got 0\.0\)"),   # a student that never moves
    ({"beta": 1e9}, r"recipe.beta must be a number in \[0, 1,000\]"),
    ({"batch_size": "4"}, r"recipe.batch_size must be an integer in \[1, 1,000,000\] \(got '4'\)"),
    ({"seed": 2**32}, r"recipe.seed must be an integer in \[0, 4,294,967,295\] \(got 4294967296\)"),
    ({"epoch": 2}, r"unknown recipe override 'epoch'; the recipe's fields: loss, "),   # a dataclass TypeError
])
def test_evaluate_refuses_recipe_overrides_hello_eval_would_not_take(eval_kit, overrides, message):
    from hello_build.errors import BuildError

    with pytest.raises(BuildError, match=message):
        evaluate(eval_kit["bundle"], eval_kit["val"], regime="hard", recipe_overrides=overrides, device="cpu",
                 progress=False)


def test_evaluate_checks_an_augment_override_against_the_files_images_before_building_the_projector(
        eval_kit, monkeypatch):
    """augment={"patch_shuffle": 64} over the kit's 32-px images built the projector, then failed the first
    batch (in the stored regime after an earlier run's label files were removed), as HelloDataset did."""
    from hello_build import evaluation
    from hello_format.augment import AugmentError

    monkeypatch.setattr(evaluation.Projector, "from_bundle", lambda *a, **k: pytest.fail("the projector was built"))
    with pytest.raises(AugmentError, match="patch_shuffle=64 is larger than the 32x32 images"):
        evaluate(eval_kit["bundle"], eval_kit["val"], regime="projector", recipe_overrides={"augment": {"patch_shuffle": 64}},
                 device="cpu", progress=False)


def test_evaluate_takes_a_teacher_module_and_says_so_for_a_path(eval_kit, tmp_path):
    from hello_build.errors import BuildError

    with pytest.raises(BuildError, match=r"evaluate\(\) takes the teacher as a module, not '.*t\.safetensors': load it with "
                                         r"hello_build\.teachers\.load_teacher"):
        evaluate(eval_kit["bundle"], eval_kit["val"], regime="teacher", teacher=tmp_path / "t.safetensors",
                 device="cpu", progress=False)


def test_training_a_student_leaves_the_callers_random_state_as_it_was(eval_kit, on_path):
    """train_student seeded the global RNG: after evaluate(), torch.rand gave the same numbers whatever the
    caller had seeded."""
    _, data = teacher_and_data(eval_kit)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_student(data, StudentRecipe(epochs=1, batch_size=BATCH, seed=5), image_size=SIZE, device="cpu", progress=False)
    assert torch.equal(torch.rand(3), expected)


def test_a_grey_bundle_trains_a_student_as_before(tmp_path):
    """hello eval's 3-value student normalisation was refused on a 1-channel bundle once the dataset checked
    normalize's length (the review of the session that added the check)."""
    from pathlib import Path

    vectors = Path(__file__).parent.parent / "spec" / "vectors"
    val = tmp_path / "val"
    with Bundle.open(vectors / "valid_gray_png.hello") as bundle:
        names, images, labels = bundle.class_folders, bundle.images(), bundle.labels
    for name in names:
        (val / name).mkdir(parents=True)
    for number, (image, label) in enumerate(zip(images, labels)):
        Image.fromarray(image[0].numpy()).save(val / names[int(label)] / f"{number}.png")
    result = evaluate(vectors / "valid_gray_png.hello", val, regime="hard", device="cpu", progress=False,
                      recipe_overrides={"epochs": 1})
    assert 0.0 <= result["top1"] <= 1.0


def test_the_random_real_subset_is_drawn_with_the_students_seed(eval_kit):
    from hello_build.evaluation import _random_real

    def drawn(seed):
        return _random_real(eval_kit["real"], CLASSES, eval_kit["labels"], SIZE, seed, False, False)[0]

    assert torch.equal(drawn(1), drawn(1))
    assert not torch.equal(drawn(1), drawn(2))


def test_top1_scores_each_validation_image_against_its_own_label(eval_kit):
    class Brightest(torch.nn.Module):   # the validation images' class is their brightest channel
        def forward(self, x):
            return x.mean(dim=(2, 3))

    val = RealImages(in_class_order(scan_image_folder(eval_kit["val"]), CLASSES, "validation folder"), SIZE)
    assert top1(Brightest(), val, device="cpu") == 1.0


def test_random_real_is_labelled_by_the_bundles_projector(eval_kit, tmp_path):
    """random-real labels its real images with the bundle's projector, as the projector regime does: a bundle
    whose base is a local checkpoint that is not given trains a hard-label student, and both regimes ask for it."""
    from hello_format.errors import BaseModelError
    from support import make_bundle

    bundle = make_bundle(tmp_path / "elsewhere.hello", classes=CLASSES)   # its base: a checkpoint not given here
    common = dict(recipe_overrides={"epochs": 1, "augment": AugmentConfig(output_size=SIZE)}, progress=False, device="cpu")
    assert evaluate(bundle, eval_kit["val"], regime="hard", **common)["label_precision"] is None
    for regime, inputs in (("projector", {}), ("random-real", {"real_dir": eval_kit["real"]})):
        with pytest.raises(BaseModelError, match="base is a local checkpoint"):
            evaluate(bundle, eval_kit["val"], regime=regime, **common, **inputs)
