"""`hello-build` on the command line: the help generated from BuildOptions, the spec's table of open
defaults kept equal to BuildOptions, and a whole build through the CLI (trained teacher, --skip-bad)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from hello_build.cli import main
from hello_build.options import fields
from hello_format.bundle import Bundle
from support import CLASSES, make_tree, save_tiny_base

SPEC = Path(__file__).resolve().parents[1] / "spec" / "format.md"


def _default(f: dataclasses.Field):
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


def _flag(f: dataclasses.Field) -> str:
    return "--" + f.name.replace("_", "-")


def _help_blocks() -> dict[str, str]:
    """Each option's entry of `hello-build --help`, keyed by its first flag, whitespace collapsed."""
    result = CliRunner().invoke(main, ["--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    blocks: dict[str, str] = {}
    current = None
    for line in result.output.splitlines():
        match = re.match(r"^  (-\w, )?(--[\w-]+)", line)
        if match:
            current = match.group(2)
            blocks[current] = ""
        if current:
            blocks[current] += " " + line.strip()
    return {flag: " ".join(text.split()) for flag, text in blocks.items()}


def _shown(default) -> str:
    return ", ".join(str(v) for v in default) if isinstance(default, list) else str(default)


def test_help_lists_every_option_with_its_default():
    blocks = _help_blocks()
    for f in fields():
        if f.name in ("data",):
            continue  # the DATA argument
        flag = _flag(f)
        assert flag in blocks, f"{flag} missing from hello-build --help"
        default = _default(f)
        if default is None or default is False or default == []:
            assert "[default:" not in blocks[flag], flag  # off / unset: nothing misleading shown
        elif default is True:
            assert f"--no-{flag[2:]}" in blocks[flag] and "[default:" in blocks[flag], flag
        elif f.name != "output":   # and the bound, where the option declares one: [default: 0; x>=0]
            assert re.search(rf"\[default: {re.escape(_shown(default))}(; [-\d.<>=x]+)?\]", blocks[flag]), (flag, blocks[flag])


def test_short_help_flag_as_hello_takes():
    short, long = (CliRunner().invoke(main, [flag], terminal_width=200) for flag in ("-h", "--help"))
    assert short.exit_code == 0 and short.output == long.output


def test_help_marks_exactly_the_open_options():
    blocks = _help_blocks()
    for f in fields():
        if f.name in ("data", "output"):
            continue
        marked = "[left open by the paper]" in blocks[_flag(f)]
        assert marked == f.metadata["open"], _flag(f)
    assert any(f.metadata["open"] for f in fields())


# --- spec/format.md "Defaults the paper leaves open" ---------------------------------------------------------------
# Expected rows: | --option-name | default | stage | why |   (backticks around cells allowed; a None default
# is written "none", a list as its values separated by spaces or commas, booleans True/False).


def _spec_rows() -> dict[str, list[str]]:
    text = SPEC.read_text(encoding="utf-8")
    section = text.split("## Defaults the paper leaves open", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip().strip("`").strip() for cell in line.strip().strip("|").split("|")]
        if re.fullmatch(r"--[a-z][a-z0-9-]*", cells[0]):
            rows[cells[0]] = cells[1:]
    return rows


def _same_default(cell: str, default) -> bool:
    if default is None:
        return cell.lower() in ("none", "null", "")
    if isinstance(default, bool):
        return cell.lower() == str(default).lower()
    if isinstance(default, list):
        values = [v for v in re.split(r"[\s,\[\]]+", cell) if v]
        return len(values) == len(default) and all(math.isclose(float(v), d, rel_tol=1e-3) for v, d in zip(values, default))
    if isinstance(default, (int, float)):
        try:
            return float(cell) == float(default)
        except ValueError:
            return False
    return cell == str(default)


def test_spec_table_lists_every_open_option_with_its_default():
    rows = _spec_rows()
    open_fields = {_flag(f): f for f in fields() if f.metadata["open"]}
    assert set(rows) == set(open_fields), (set(rows) ^ set(open_fields))
    for flag, f in open_fields.items():
        assert _same_default(rows[flag][0], _default(f)), (flag, rows[flag][0], _default(f))


def test_spec_table_names_each_open_options_stage():
    rows = _spec_rows()
    stages = {_flag(f): f.metadata["stage"] for f in fields() if f.metadata["open"]}
    wrong = {flag: (cells[1], stages[flag]) for flag, cells in rows.items() if flag in stages and cells[1] != stages[flag]}
    assert not wrong


# --- a whole build through the CLI ------------------------------------------------------------------------------------


def test_cli_build_with_a_trained_teacher_skipping_a_bad_file(tmp_path):
    data = make_tree(tmp_path / "data", per_class=12)
    (data / "leaf" / "broken.png").write_bytes(b"not a png at all")
    base = save_tiny_base(tmp_path / "base.safetensors")
    output = tmp_path / "cli.hello"
    args = [str(data), "-o", str(output), "--base", base, "--base-checkpoint", str(tmp_path / "base.safetensors"),
            "--embed-base", "--train-teacher", "convnet3", "--teacher-epochs", "2", "--teacher-checkpoints", "2",
            "--teacher-lr", "0.02", "--teacher-batch-size", "8", "--teacher-weight-decay", "0.001", "--teacher-momentum", "0.8",
            "--teacher-hflip", "0", "--teacher-pad", "0.25",
            "--image-size", "16", "--transfer-epochs", "1", "--transfer-batch-size", "16", "--ipc", "1",
            "--candidates-per-class", "4", "--crops-per-image", "1", "--holdout", "0.2", "--skip-bad",
            "--view-transfer-epochs", "4", "--view-transfer-checks", "2", "--crop-ratio", "0.5", "2",
            "--device", "cpu", "--quiet"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, (result.output, result.exception)
    summary = json.loads(result.stdout)   # stdout is the report alone ('hello-build ... > report.json'): the log is on stderr
    assert summary["skipped_images"] == 1
    assert any("skipped 1 unreadable image(s)" in line and "broken.png" in line for line in result.stderr.splitlines())
    with Bundle.open(output, verify=True) as bundle:
        assert bundle.class_names == list(CLASSES) and bundle.num_images == 3
        assert bundle.images().shape[-1] == 16
        provenance = bundle.manifest["provenance"]
    assert provenance["skipped_images"] == 1
    assert provenance["teacher"].startswith("2 teachers") and "convnet3" in provenance["teacher"]
    assert provenance["builder"]["options"]["train_teacher"] == "convnet3"
    assert provenance["builder"]["options"]["teacher_epochs"] == 2  # used: recorded as given
    names = ("lr", "batch_size", "weight_decay", "momentum", "hflip", "pad")
    assert {name: provenance["builder"]["options"][f"teacher_{name}"] for name in names} \
        == {"lr": 0.02, "batch_size": 8, "weight_decay": 0.001, "momentum": 0.8, "hflip": 0.0, "pad": 0.25}
    assert "crop after padding 0.25 of the side, flip 0," in provenance["teacher"]
    assert "(SGD lr 0.02 cosine, momentum 0.8, weight decay 0.001, batch 8," in provenance["teacher"]  # and trained with
    assert provenance["builder"]["options"]["crop_ratio"] == [0.5, 2.0]   # a MIN MAX pair, as --crop-scale
    assert bundle.manifest["recipe"]["augment"]["ratio"] == [0.5, 2.0]    # the student's view the labels are for
    assert provenance["fidelity"]["view_transfer_kept_step"] in (0, 2, 4)
    assert (tmp_path / "cli.hello.work" / "teacher.json").exists()  # the trained trajectory is kept for resuming
    # a record that counts more checkpoints than it describes was an IndexError traceback (fourteenth audit)
    record = json.loads((tmp_path / "cli.hello.work" / "teacher.json").read_text())
    record["result"]["checkpoints"] = 5
    (tmp_path / "cli.hello.work" / "teacher.json").write_text(json.dumps(record))
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 2 and "the work directory's teacher.json is unreadable (5 checkpoints, described by" \
        in again.output, again.output
    record["result"].update(checkpoints=2, description=[1, 2])   # descriptions that are not text (review)
    (tmp_path / "cli.hello.work" / "teacher.json").write_text(json.dumps(record))
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 2 and "teacher.json is unreadable (2 checkpoints, described by [1, 2])" in again.output
    for text in ("x" * 70_000, "trained\u202e\x1b[2J"):   # logged and written into provenance (eighteenth audit)
        record["result"].update(checkpoints=1, description=[text])
        (tmp_path / "cli.hello.work" / "teacher.json").write_text(json.dumps(record))
        again = CliRunner().invoke(main, args)
        assert again.exit_code == 2 and "teacher.json is unreadable (1 checkpoints, described by" in again.output
        assert len(again.output) < 2_000, len(again.output)


def test_console_script_reports_a_bad_input_in_one_line(tmp_path):
    """The installed `hello-build` (a fresh process): exit 2, `error: ...` on stderr, no traceback."""
    data = make_tree(tmp_path / "data", per_class=2)
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    script = Path(sys.executable).with_name("hello-build")
    done = subprocess.run([str(script), str(data), "-o", str(tmp_path / "x.hello"), "--teacher", "t.safetensors",
                           "--train-teacher", "convnet3"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2, done
    assert done.stderr.strip() == "error: give either --teacher or --train-teacher, not both"
    assert "Traceback" not in done.stdout + done.stderr


def test_a_build_whose_reader_has_gone_ends_without_an_error_line(tmp_path):
    """``hello-build ... | true``: the bundle was written, then the JSON line met a closed pipe and the build
    said "error: Broken pipe" with status 2, as if it had failed (the hello-build audit)."""
    data = make_tree(tmp_path / "data", per_class=12)
    base = save_tiny_base(tmp_path / "base.safetensors")
    command = [sys.executable, "-m", "hello_build", str(data), "-o", str(tmp_path / "x.hello"), "--base", base,
               "--base-checkpoint", str(tmp_path / "base.safetensors"), "--train-teacher", "convnet3", "--teacher-epochs", "1",
               "--teacher-checkpoints", "1", "--transfer-epochs", "0", "--image-size", "16", "--ipc", "1",
               "--candidates-per-class", "4", "--device", "cpu", "--quiet"]
    read, write = os.pipe()
    os.close(read)   # the reader has gone
    try:
        done = subprocess.run(command, stdout=write, stderr=subprocess.PIPE, text=True, timeout=300,
                              env=dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1"))
    finally:
        os.close(write)
    assert (tmp_path / "x.hello").is_file()
    assert done.returncode == 1 and "error:" not in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_ctrl_c_ends_a_build_with_the_shells_status(tmp_path):
    """Ctrl-C during a stage: exit 130 and one line saying how to resume, no traceback (click's answer was 1,
    as for any failure)."""
    data = make_tree(tmp_path / "data", per_class=12)
    base = save_tiny_base(tmp_path / "base.safetensors")
    command = [sys.executable, "-m", "hello_build", str(data), "-o", str(tmp_path / "x.hello"), "--base", base,
               "--base-checkpoint", str(tmp_path / "base.safetensors"), "--train-teacher", "convnet3", "--teacher-epochs", "100000",
               "--image-size", "16", "--ipc", "1", "--candidates-per-class", "4", "--device", "cpu", "--quiet"]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1"),
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # a background job ignores it
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "x.hello.work" / "hello-build.lock").exists():   # the build is under way
            assert child.poll() is None and time.monotonic() < deadline, child.communicate()
            time.sleep(0.2)
        time.sleep(1)
        child.send_signal(signal.SIGINT)
        stdout, stderr = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == 130, stderr
    # and how to go on: the bare 'interrupted' left a user to guess that a rerun resumes (finished stages kept)
    assert stderr.strip().splitlines()[-1] == ("interrupted: rerun the same command to resume; finished stages are "
                                               f"kept in {tmp_path / 'x.hello.work'}"), stderr
    assert "Traceback" not in stderr, stderr
    assert not (tmp_path / "x.hello").exists()


def test_ctrl_c_of_a_fresh_build_names_both_ways_on(kit, tmp_path, monkeypatch):
    """It said "rerun the same command without --fresh to resume", which, before --fresh had discarded
    anything (it waits until the input is checked), reuses the very records --fresh was given to drop."""
    from support import INTERRUPT_ENV, TEACHER

    monkeypatch.setenv(INTERRUPT_ENV, str(tmp_path / "x.hello.work" / "transfer" / "transfer.safetensors"))
    result = CliRunner().invoke(main, [str(kit["data"]), "-o", str(tmp_path / "x.hello"), "--base", kit["base"],
                                       "--base-checkpoint", str(kit["base_file"]), "--teacher", TEACHER, "--ipc", "2",
                                       "--transfer-epochs", "3", "--candidates-per-class", "8", "--device", "cpu",
                                       "--fresh", "--quiet"])
    assert result.exit_code == 130, result.output
    assert result.stderr.strip().splitlines()[-1] == ("interrupted: rerun the same command to start over, or without "
                                                      f"--fresh to reuse the stages kept in {tmp_path / 'x.hello.work'}")


def test_demo_refuses_what_it_would_ignore():
    """--demo ran its own settings whatever else was given: --ipc 3 or a DATA folder silently did nothing."""
    for args in (["--demo", "--ipc", "3"], ["--demo", "some/folder"], ["--demo", "--device", "cpu", "--fresh"]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2, result.output
        assert "--demo distils its embedded digits with its own settings" in result.output
    assert "not --device, --fresh" in result.output
    # the help and the refusal name the same options (the help said -o, --seed, --precision only)
    shown = " ".join(CliRunner().invoke(main, ["--help"]).output.split())
    assert "it takes -o, --quiet, --dist-backend, --seed, --precision, not" in result.output
    assert "(with -o, --quiet, --dist-backend, --seed, --precision only)" in shown


def test_demo_refuses_a_seed_its_students_cannot_take_before_it_starts():
    """--demo --seed 4294967296 pretrained, trained and built, then failed at its students (the diff review)."""
    result = CliRunner().invoke(main, ["--demo", "--seed", str(2**32)])
    assert result.exit_code == 2 and "--demo --seed 4294967296: its students take seeds up to 4,294,967,295" in result.output


def test_demo_refuses_an_output_it_cannot_write_before_it_starts(tmp_path):
    """-o under a file was a NotADirectoryError traceback once the demo, minutes in, wrote its digits
    beside the bundle; it is the build's one-line refusal, and nothing is made."""
    (tmp_path / "a-file").write_text("")
    output = tmp_path / "a-file" / "demo.hello"
    result = CliRunner().invoke(main, ["--demo", "--quiet", "-o", str(output)])
    assert result.exit_code == 2 and result.stdout == "", result.output
    assert result.stderr == f"error: --output {output}: cannot write there (Not a directory)\n"
    assert [p.name for p in tmp_path.iterdir()] == ["a-file"]


def test_an_output_that_is_a_folder_gets_the_builds_own_line(tmp_path):
    """click's path check answered first ("File ... is a directory"), hiding the build's line that says
    what to give instead (the hello-build audit)."""
    (tmp_path / "out").mkdir()
    result = CliRunner().invoke(main, [str(tmp_path), "-o", str(tmp_path / "out"), "--train-teacher", "convnet3"])
    assert result.exit_code == 2 and result.stderr == (f"error: --output {tmp_path / 'out'} is a folder: name the bundle's "
                                                       f"file (e.g. {tmp_path / 'out' / 'NAME.hello'})\n"), result.output


def test_demo_refuses_a_file_that_is_no_bundle_as_its_output_before_it_starts(tmp_path):
    """It was refused by the build, after the foundation's pretraining and the teacher's training."""
    (tmp_path / "notes.txt").write_text("mine")
    result = CliRunner().invoke(main, ["--demo", "--quiet", "-o", str(tmp_path / "notes.txt")])
    assert result.exit_code == 2 and result.stderr == (f"error: --output {tmp_path / 'notes.txt'} is a file that is not "
                                                       "a .hello bundle; hello-build replaces only an earlier bundle: "
                                                       "move it, or choose another output path\n"), result.output
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"] and (tmp_path / "notes.txt").read_text() == "mine"


def test_hello_build_has_the_package_version():
    """``hello --version`` had one; ``hello-build --version`` was an unknown option."""
    import hello_format

    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"hello-build (hello-distill), version {hello_format.__version__}"


# --- the options generated from BuildOptions' declarations, as the command line parses them ---------------------------

NO_DATA = "give the training ImageFolder DATA"   # the usage error of a command line whose options all parsed


def _parsed(args: list[str]) -> dict:
    return main.make_context("hello-build", args).params


def _bounded_values(f: dataclasses.Field):
    """(value, accepted) at and beyond each declared end of ``f``: a closed end is taken, an open one refused."""
    meta, step = f.metadata, 1 if "int" in str(f.type) else 0.5
    if meta["at_least"] is not None:
        yield meta["at_least"], True
        yield meta["at_least"] - step, False
    if meta["above"] is not None:
        yield meta["above"], False
        yield meta["above"] + (1 if step == 1 else 1e-6), True
    if meta["at_most"] is not None:
        yield meta["at_most"], True
        yield meta["at_most"] + step, False
    if meta["below"] is not None:
        yield meta["below"], False
        yield meta["below"] - (1 if step == 1 else 1e-6), True


def test_each_declared_bound_is_the_command_lines_range_open_or_closed():
    """--holdout 1 and --prior-weight 1 (bounds "below 1") must be refused as usage errors, as --head-alpha 0
    ("above 0") is, while a closed end such as --lambda-ce 0 is taken."""
    bounded = [f for f in fields() if any(f.metadata[k] is not None for k in ("at_least", "above", "at_most", "below"))]
    assert {"holdout", "prior_weight", "head_alpha", "lambda_ce", "seed"} <= {f.name for f in bounded}
    for f in bounded:
        for value, accepted in _bounded_values(f):
            result = CliRunner().invoke(main, [_flag(f), str(value)])
            assert result.exit_code == 2, (f.name, value, result.output)
            if accepted:
                assert NO_DATA in result.output, (f.name, value, result.output)
            else:
                assert f"Invalid value for '{_flag(f)}'" in result.output and "is not in the range" in result.output, \
                    (f.name, value, result.output)


def test_choice_options_take_their_choices_only():
    """A value outside --teacher-combine's choices is the command line's usage error, naming the choices."""
    chosen = [f for f in fields() if f.metadata["choices"]]
    assert {"teacher_combine", "precision", "codec", "loss"} <= {f.name for f in chosen}
    for f in chosen:
        for choice in f.metadata["choices"]:
            assert _parsed([_flag(f), choice])[f.name] == choice
        result = CliRunner().invoke(main, [_flag(f), "no-such-choice"])
        assert result.exit_code == 2 and f"Invalid value for '{_flag(f)}'" in result.output, (f.name, result.output)
        assert all(repr(choice) in result.output for choice in f.metadata["choices"]), result.output


@pytest.mark.parametrize("args, message", [
    (["--bogus"], "No such option '--bogus'."),
    (["--lora-rank", "x"], "Invalid value for '--lora-rank': 'x' is not a valid integer range."),
    (["--teacher-combine", "no-such-choice"], "Invalid value for '--teacher-combine': 'no-such-choice' is not one of"),
    ([], NO_DATA),
    (["--demo", "--ipc", "3"], "--demo distils its embedded digits with its own settings"),
])
def test_a_bad_argument_is_one_error_line(args, message):
    """hello-build said these in click's three lines (usage, a hint, "Error: ..."), where hello's commands
    and hello-build's other errors are one ``error:`` line (session 75's leftovers)."""
    result = CliRunner().invoke(main, args, prog_name="hello-build")
    assert result.exit_code == 2 and result.stdout == "", result.output
    assert result.stderr.startswith(f"error: {message}") and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.endswith(" (see hello-build --help)\n"), result.stderr


def test_flags_default_as_declared_and_switch_both_ways():
    """--train-logit-scale is on unless --no-train-logit-scale: a flag given nothing keeps BuildOptions' default."""
    flags = [f for f in fields() if isinstance(_default(f), bool)]
    assert any(_default(f) for f in flags) and not all(_default(f) for f in flags)
    defaults = _parsed([])
    for f in flags:
        assert defaults[f.name] is _default(f), f.name
        assert _parsed([_flag(f)])[f.name] is True, f.name
        if _default(f):
            assert _parsed([f"--no-{_flag(f)[2:]}"])[f.name] is False, f.name


def test_repeated_teachers_and_min_max_pairs_parse_as_the_build_takes_them():
    params = _parsed(["--teacher", "a.safetensors", "--teacher", "b.safetensors", "--crop-scale", "0.5", "1",
                      "--crop-ratio", "1", "2"])
    assert params["teacher"] == ("a.safetensors", "b.safetensors")
    assert params["crop_scale"] == (0.5, 1.0) and params["crop_ratio"] == (1.0, 2.0)   # numbers, not text
    assert all(isinstance(v, float) for v in params["crop_scale"] + params["crop_ratio"])
    assert _parsed([])["crop_scale"] is None and _parsed([])["teacher"] == ()


def test_demo_takes_seed_and_precision_and_splits_the_digits_by_that_seed(tmp_path, monkeypatch):
    """What the refusal above leaves to --demo is taken, and --seed reaches the digits it writes. The demo
    runs for minutes, so this one is stopped (as by Ctrl-C) where its foundation's pretraining starts."""
    import numpy as np
    import torch
    from PIL import Image

    import hello_build.demo
    from hello_build.demo import DIGIT_NAMES, digits_split

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(hello_build.demo, "pretrain_clip", interrupted)
    result = CliRunner().invoke(main, ["--demo", "--seed", "3", "--precision", "fp32", "--quiet",
                                       "-o", str(tmp_path / "demo.hello")])
    assert result.exit_code == 130 and not (tmp_path / "demo.hello").exists(), result.output
    images, labels = digits_split(3)["original"]
    written = sorted((tmp_path / "demo.hello.work" / "digits" / "train").glob("*/*.png"))
    assert len(written) == len(labels)
    first = tmp_path / "demo.hello.work" / "digits" / "train" / DIGIT_NAMES[labels[0]] / "00000.png"
    assert torch.equal(torch.from_numpy(np.array(Image.open(first))).permute(2, 0, 1), images[0])


def test_hello_eval_takes_the_recipe_bounds_a_bundle_is_held_to():
    """hello eval's recipe overrides are held to limits.RECIPE_* (their one home), an lr above 0 as spec 4 says."""
    from hello_build.cli import eval_command
    from hello_format import limits

    ranges = {p.name: p.type for p in eval_command.params}
    for name, (low, high) in {**limits.RECIPE_INTEGERS, **limits.RECIPE_NUMBERS}.items():
        if name in ranges:
            open_low = name in limits.RECIPE_ABOVE_LOW
            assert (ranges[name].min, ranges[name].max, ranges[name].min_open) == (low, high, open_low), name
    assert {"epochs", "batch_size", "lr", "temperature", "beta"} <= set(ranges)
