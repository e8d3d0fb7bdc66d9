"""The build as declared stages: their order, and options.py as the only home of their settings' defaults."""

import dataclasses
import importlib
import inspect
import os

import numpy as np
import pytest
import torch
from PIL import Image

from hello_build.options import BuildOptions
from hello_build.stages import context
from hello_build.stages.plan import STAGES

STAGE_MODULES = ("context", "plan", "teacher", "text_head", "transfer", "init", "image_update", "view_transfer")
OPTION_NAMES = {f.name for f in dataclasses.fields(BuildOptions)}


def test_the_declared_stages_follow_the_order_results_depend_on():
    names = [stage.name for stage in STAGES]
    assert names == [name for name in context.ORDER if name in names]
    assert len(set(names)) == len(names) and names[0] == "teacher" and names[-1] == "view_transfer"
    stages_of_options = {f.metadata["stage"] for f in dataclasses.fields(BuildOptions)}
    assert stages_of_options <= set(context.ORDER) | {"write", "run"}


@pytest.mark.parametrize("stage", STAGES, ids=lambda stage: stage.name)
def test_every_stage_runs_on_the_context_alone(stage):
    for function in (stage.run, stage.load):
        assert list(inspect.signature(function).parameters)[0] == "ctx", function
    assert isinstance(stage.when(BuildOptions()), bool)


@pytest.mark.parametrize("module", STAGE_MODULES)
def test_no_stage_function_has_a_default_of_its_own_for_a_build_option(module):
    """A stage reads its settings from BuildOptions: a parameter named like an option with a default
    would be a second default (as init's candidates 300 and crop scale (0.08, 1) once were)."""
    found = importlib.import_module(f"hello_build.stages.{module}")
    for name, function in vars(found).items():
        if inspect.isfunction(function) and function.__module__ == found.__name__:
            for parameter in inspect.signature(function).parameters.values():
                assert parameter.default is inspect.Parameter.empty or parameter.name not in OPTION_NAMES, (
                    f"{module}.{name}({parameter.name}={parameter.default!r}) repeats a default of hello_build.options")
            assert not any(isinstance(v, type) and dataclasses.is_dataclass(v) and v.__name__.endswith("Options")
                           for v in vars(found).values() if getattr(v, "__module__", None) == found.__name__)


def test_the_stages_effective_defaults_are_the_options(tmp_path):
    """What the init stage draws with default options: options.py's candidate count, and crops of 1/factor
    to all of the image (whole images at factor 1, scored once)."""
    from PIL import Image

    from hello_build.data import scan_image_folder
    from hello_build.stages.init import initialise_synthetic

    root = tmp_path / "data"
    for name, count in (("a", BuildOptions.candidates_per_class + 20), ("b", 1)):
        (root / name).mkdir(parents=True)
        for i in range(count):
            Image.new("RGB", (8, 8), (i, 0, 0)).save(root / name / f"{i:03d}.png")
    scored = []

    class CountingTeacher(torch.nn.Module):
        def forward(self, images):
            scored.append(len(images))
            return images.new_zeros(len(images), 2)

    options = BuildOptions(ipc=1, factor=2)  # crops of 1/2 to all of the image's area, crops_per_image of each
    result = initialise_synthetic(scan_image_folder(root), CountingTeacher(), options, size=8, classes=[0], device="cpu")
    assert sum(scored) == options.candidates_per_class * options.crops_per_image
    height, width = result.sources[0, 0, 3:].tolist()
    assert height == width and 8 * 8 / 2 - 8 <= height * width <= 8 * 8
    scored.clear()
    options = BuildOptions(ipc=1, factor=1)  # whole images, each scored once
    result = initialise_synthetic(scan_image_folder(root), CountingTeacher(), options, size=8, classes=[0], device="cpu")
    assert sum(scored) == options.candidates_per_class
    assert result.sources[0, 0, 1:].tolist() == [0, 0, 8, 8]


def test_a_resume_key_holds_what_the_named_files_hold(tmp_path):
    """Resuming compared path strings only: a teacher, base or adapter replaced at the same path reused the
    stages made with the old one, while the bundle described the new file (its sha256)."""
    teacher, adapter = tmp_path / "t.safetensors", tmp_path / "adapter"
    teacher.write_bytes(b"first teacher")
    adapter.mkdir()
    (adapter / "adapter_model.safetensors").write_bytes(b"weights")
    options = BuildOptions(data="d", output="o", teacher=[str(teacher), "pkg.mod:make"], init_adapter=str(adapter))
    before = context.stage_key(options, "transfer", "listing")
    assert before["contents"]["teacher"][1] is None  # a module:factory names no file
    assert context.stage_key(options, "transfer", "listing") == before  # the same files: the same key
    teacher.write_bytes(b"the second teacher")
    replaced = context.stage_key(options, "transfer", "listing")
    assert replaced["contents"]["teacher"] != before["contents"]["teacher"]
    (adapter / "adapter_config.json").write_text("{}")
    assert context.stage_key(options, "transfer", "listing")["contents"]["init_adapter"] != replaced["contents"]["init_adapter"]
    assert "init_adapter" not in context.stage_key(options, "teacher", "listing")["contents"]  # read by a later stage
    assert "init_adapter" not in context.stage_key(options, "init", "listing")["contents"]  # the teachers choose the images


def test_a_folders_resume_key_changes_when_a_file_is_rewritten_at_the_same_size(tmp_path):
    """A folder's files are not hashed: their names, sizes and modification times stand for them, so
    weights rewritten in place with as many bytes must still change the key."""
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    weights = adapter / "adapter_model.safetensors"
    weights.write_bytes(b"weights")
    options = BuildOptions(data="d", output="o", init_adapter=str(adapter))
    before = context.stage_key(options, "transfer", "listing")["contents"]["init_adapter"]
    mtime = weights.stat().st_mtime_ns
    weights.write_bytes(b"WEIGHTS")
    os.utime(weights, ns=(mtime + 10**9, mtime + 10**9))   # a later time even where the clock is coarse
    assert context.stage_key(options, "transfer", "listing")["contents"]["init_adapter"] != before


def test_a_resume_key_holds_the_data_folders_listing_not_its_place(tmp_path):
    """A rerun after images were added to or removed from the data folder reused every stage, and a new
    hold-out could hold images the reused teacher trained on (a user's walkthrough). The same images in
    another place (a copy on a node's local disk) keep the key."""
    import shutil

    from hello_build.data import scan_image_folder
    from support import make_tree

    data = make_tree(tmp_path / "data", per_class=3)
    options = BuildOptions(data=str(data), output="o")
    before = context.stage_key(options, "teacher", scan_image_folder(data).listing_digest)
    copy = shutil.copytree(data, tmp_path / "elsewhere")
    moved = BuildOptions(data=str(copy), output="o")
    assert context.stage_key(moved, "teacher", scan_image_folder(copy).listing_digest) == before
    first = sorted(p for p in data.rglob("*.png"))[0]
    first.rename(first.with_name("renamed.png"))
    assert context.stage_key(options, "teacher", scan_image_folder(data).listing_digest) != before
    first.with_name("renamed.png").unlink()
    assert context.stage_key(options, "teacher", scan_image_folder(data).listing_digest) != before
    # the same names with other pixels (a dataset exported again) reused every stage (a builder's review)
    other = make_tree(tmp_path / "other", per_class=3, seed=1)
    assert [p.relative_to(other) for p in sorted(other.rglob("*.png"))] == \
           [p.relative_to(copy) for p in sorted(copy.rglob("*.png"))]
    assert context.stage_key(BuildOptions(data=str(other), output="o"), "teacher",
                             scan_image_folder(other).listing_digest) != before
    # ... in a format whose files all have one size (BMP): every stage was reused (the work-directory audit)
    same_size = {seed: tmp_path / f"bmp{seed}" for seed in (0, 1)}
    for seed, tree in same_size.items():
        for i, png in enumerate(sorted(other.rglob("*.png"))):
            target = tree / png.relative_to(other).with_suffix(".bmp")
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.random.default_rng([seed, i]).integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(target)
    digests = [scan_image_folder(same_size[seed]).listing_digest for seed in (0, 1)]
    assert [p.stat().st_size for p in sorted(same_size[0].rglob("*.bmp"))] == \
           [p.stat().st_size for p in sorted(same_size[1].rglob("*.bmp"))] and digests[0] != digests[1]
    # a folder of fewer than 64 files is hashed whole: its last file changed (only the first few were hashed:
    # the diff review)
    last = shutil.copytree(same_size[0], tmp_path / "bmp-last")
    shutil.copy(sorted(same_size[1].rglob("*.bmp"))[-1], sorted(last.rglob("*.bmp"))[-1])
    assert scan_image_folder(last).listing_digest != digests[0]
    # how the folder was read is not part of it: the listing says what was read
    following = BuildOptions(data=str(data), output="o", follow_external_links=True)
    assert context.stage_key(following, "view_transfer", "l") == context.stage_key(options, "view_transfer", "l")


@pytest.mark.parametrize("change", [{"student_batch_size": 20}, {"view_transfer_target": "set"}])
def test_the_agreement_options_rerun_the_stages_that_measure_with_them(change):
    """The image update's synthetic-view agreement (its views and judge) and the view transfer."""
    default, other = BuildOptions(data="d", output="o"), BuildOptions(data="d", output="o", **change)
    assert context.stage_key(default, "init", "listing") == context.stage_key(other, "init", "listing")
    for stage in ("image_update", "view_transfer"):
        assert context.stage_key(default, stage, "listing") != context.stage_key(other, stage, "listing")


# The stage each option that spec/'s "Defaults the paper leaves open" table does not list is first read by
# (test_build_cli holds the open ones to that table): a resumed build reuses every stage before an option's,
# so an option placed too late would reuse, silently, a result made with its other value.
STAGES_OF_THE_OPTIONS_NOT_IN_THE_SPEC_TABLE = {
    "data": ("data", "class_names", "seed"),
    "base": ("base", "pretrained", "base_checkpoint", "base_config"),
    "teacher": ("teacher", "teacher_arch", "train_teacher", "precision"),
    "text_head": ("channels_last",),
    "transfer": ("lora_rank", "init_adapter"),
    "init": ("ipc", "factor", "init_images"),
    "write": ("output", "embed_base", "codec", "quality", "source_dataset"),
    # skip_bad: what it leaves out is in the data's listing, which keys every stage
    "run": ("skip_bad", "follow_external_links", "num_workers", "trust_teacher_code", "workdir", "fresh", "device"),
}


def test_each_option_outside_the_spec_table_names_the_first_stage_it_changes():
    found = {f.name: f.metadata["stage"] for f in dataclasses.fields(BuildOptions) if not f.metadata["open"]}
    assert found == {name: stage for stage, names in STAGES_OF_THE_OPTIONS_NOT_IN_THE_SPEC_TABLE.items() for name in names}


def test_an_option_is_in_the_key_of_its_stage_and_of_every_later_one_that_reads_it_only():
    """A stage is reused while its key is unchanged: each option (but the data folder, which its listing
    stands for) must change the key of its own stage and of every later one but those that do not read
    its stage (the init does not read the text head's or the transfer's), and of no earlier one."""
    default = BuildOptions(data="d", output="o")
    for f in dataclasses.fields(BuildOptions):
        changed = dataclasses.replace(default, **{f.name: f"another {f.name}"})
        for position, name in enumerate(context.ORDER):
            differs = context.stage_key(changed, name, "listing") != context.stage_key(default, name, "listing")
            read = f.metadata["stage"] in context.ORDER[: position + 1] and not (
                name == "init" and f.metadata["stage"] in ("text_head", "transfer"))
            assert differs == (f.name != "data" and read), (f.name, name)
