"""hello-build under torchrun (2 gloo processes on the CPU, the tiny tree and stand-in CLIP of
test_build.py): the same synthetic images as one process, LoRA weights and projector labels within
the reduction-order tolerance measured below (given teachers, and a teacher trained under DDP), a
resumable interrupted job, a dead rank that ends the job, and the ranks' share of a batch."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from torch.utils.data import BatchSampler, RandomSampler

from hello_build.data import RealImages, scan_image_folder
from hello_build.distributed import Group
from hello_build.stages.transfer import _ShareBatches
from hello_format.augment import AugmentConfig
from hello_build.teachers import Teacher, TeacherSet
from hello_format.bundle import Bundle
from hello_format.dataset import LabelledImages
from hello_format.projector import Projector
from support import INTERRUPT_ENV, TEACHER, make_tree, run_build, tiny_options

# Largest |difference| of a LoRA/head weight between a 2-process and a 1-process build of the tiny
# tree, and of the projector's logits on the bundle's images. Measured with the given teacher (4
# transfer epochs + 4 view-transfer steps + 2 image-update steps, AdamW, lr 5e-3): 1.5e-5 (largest
# weight 0.40) and 1.9e-6 (largest logit 2.6); 4 processes: 1.5e-5 and 2.9e-6. With a ConvNet-3 teacher
# trained under DDP (3 epochs; its weights differ by 1.2e-7): 1.2e-4 and 8.5e-5 (largest logit 3.1).
# Float32 sums in another order, magnified by Adam's division by the gradient's own scale. The bounds
# leave a factor of about 6 over the worst.
LORA_TOLERANCE = 1e-3
LOGIT_TOLERANCE = 5e-4


def cli_args(options) -> list[str]:
    """``tiny_options`` as hello-build arguments (the subset tiny_options sets)."""
    args = [options.data, "-o", options.output, "--base", options.base, "--base-checkpoint", options.base_checkpoint,
            "--embed-base", "--quiet"]
    if options.train_teacher:
        args += ["--train-teacher", options.train_teacher, "--teacher-epochs", str(options.teacher_epochs),
                 "--teacher-checkpoints", str(options.teacher_checkpoints)]
    else:
        args += ["--teacher", TEACHER]
    for name in ("holdout", "transfer_epochs", "transfer_batch_size", "transfer_lr", "ipc", "candidates_per_class",
                 "crops_per_image", "device", "seed", "view_transfer_epochs", "view_transfer_checks",
                 "image_update_steps"):
        args += ["--" + name.replace("_", "-"), str(getattr(options, name))]
    return args


def torchrun(kit, args, nproc=2, timeout=300, env=None):
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", **(env or {}),
                   "PYTHONPATH": os.pathsep.join([str(kit["root"] / "teacher_module"), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "hello_build", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=environment)


def bundle_parts(path):
    """(images, labels, trainable tensors, projector logits on the bundle's images)."""
    with Bundle.open(path) as bundle:
        tensors = {name: bundle.tensor(name) for name in bundle.tensor_names
                   if name.startswith(("encoder_lora.", "head."))}
        images, labels = bundle.images(), bundle.labels
        logits = Projector.from_bundle(bundle).label(images.float() / 255)
    return images, labels, tensors, logits


def build_alone_and_in_pair(kit, tmp_path, **options):
    """The same tiny build in this process and on 2 torchrun processes: (alone's summary, pair options,
    the torchrun result, which succeeded)."""
    summary, _ = run_build(tiny_options(kit, tmp_path / "alone", **options))
    pair = tiny_options(kit, tmp_path / "pair", **options)
    result = torchrun(kit, cli_args(pair))
    assert result.returncode == 0, result.stderr[-3000:]
    return summary, pair, result


def assert_same_build(one, two, *, updated_images: bool = False):
    """The selected images bit-identical; ``updated_images``: after the image update's gradient steps, whose
    sums over ranks differ in their last bits, a pixel may round one grey level the other way (measured:
    1 of 18,432 after 2 steps on this install)."""
    images, labels, lora, logits = bundle_parts(one)
    images2, labels2, lora2, logits2 = bundle_parts(two)
    assert torch.equal(labels, labels2)
    if updated_images:
        differ = images.int() - images2.int()
        assert differ.abs().max() <= 1 and (differ != 0).float().mean() < 1e-3
    else:
        assert torch.equal(images, images2)
    assert lora.keys() == lora2.keys()
    assert max((lora[k].float() - lora2[k].float()).abs().max().item() for k in lora) < LORA_TOLERANCE
    assert (logits - logits2).abs().max().item() < LOGIT_TOLERANCE
    assert torch.equal(logits.argmax(1), logits2.argmax(1))


@pytest.mark.slow  # ~15 s: two fresh processes import open_clip and build
def test_a_two_process_build_selects_the_single_process_images(kit, tmp_path):
    summary, pair, result = build_alone_and_in_pair(kit, tmp_path, transfer_epochs=2)
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("{") and '"fidelity_after"' in lines[0]  # rank 0 prints the summary
    assert sum("wrote " in line for line in result.stderr.splitlines()) == 1   # and alone logs (on stderr)
    assert_same_build(summary["output"], pair.output)
    assert sorted(p.name for p in Path(pair.workdir_path()).iterdir() if ".part" in p.name) == []
    with Bundle.open(pair.output) as bundle:   # the bundle says how many processes made it
        provenance = bundle.manifest["provenance"]
    assert provenance["builder"]["runs"] == {name: {"processes": 2, "device": "cpu"} for name in provenance["timings"]}


@pytest.mark.slow
def test_every_stage_distributed_gives_the_single_process_bundle(kit, tmp_path):
    """Transfer, RDED scoring, the image update and the view transfer, 4 epochs: the measured tolerance."""
    summary, pair, _ = build_alone_and_in_pair(kit, tmp_path, image_update_steps=2, view_transfer_epochs=4,
                                               view_transfer_checks=2)
    assert_same_build(summary["output"], pair.output, updated_images=True)


@pytest.mark.slow   # ~15 s: four processes on the CPU
def test_a_rank_without_a_class_of_its_own_still_gives_the_single_process_text_head(kit, tmp_path):
    """Each rank embeds its share of the classes for the text head; with 4 ranks and 3 classes rank 3's is empty."""
    alone = tiny_options(kit, tmp_path / "alone", transfer_epochs=1)
    run_build(alone)
    four = tiny_options(kit, tmp_path / "four", transfer_epochs=1)
    result = torchrun(kit, cli_args(four), nproc=4)
    assert result.returncode == 0, result.stderr[-3000:]
    heads = [load_file(str(options.workdir_path() / "class_embeddings.safetensors"))["weight"] for options in (alone, four)]
    assert heads[0].shape == (3, heads[0].shape[1]) and torch.allclose(heads[0], heads[1], atol=1e-6)


@pytest.mark.slow
def test_an_interrupted_two_process_build_resumes_to_the_uninterrupted_one(kit, tmp_path):
    whole = tiny_options(kit, tmp_path / "whole")
    assert torchrun(kit, cli_args(whole)).returncode == 0
    options = tiny_options(kit, tmp_path / "cut")
    checkpoint = options.workdir_path() / "transfer" / "transfer.safetensors"
    cut = torchrun(kit, cli_args(options), env={INTERRUPT_ENV: str(checkpoint)})  # both ranks stop in epoch 2
    assert cut.returncode != 0 and checkpoint.exists() and not Path(options.output).exists()
    resumed = torchrun(kit, cli_args(options))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for ours, theirs in zip(bundle_parts(options.output), bundle_parts(whole.output)):
        if isinstance(ours, dict):
            assert all(torch.equal(ours[k], theirs[k]) for k in ours)
        else:
            assert torch.equal(ours, theirs)


@pytest.mark.slow
def test_a_two_process_build_refused_for_its_input_leaves_no_work_directory(kit, tmp_path):
    """The work directory (and its job.token) is made before the scan: a refusal there still leaves nothing."""
    data = make_tree(tmp_path / "data")
    sorted(data.rglob("*.png"))[0].write_bytes(b"not an image")
    options = tiny_options(kit, tmp_path, data=str(data))
    result = torchrun(kit, cli_args(options))
    assert result.returncode != 0 and "1 unreadable image file" in result.stderr, result.stderr[-3000:]
    assert not options.workdir_path().exists(), sorted(path.name for path in options.workdir_path().iterdir())


DYING_TEACHER = '''
import os
from h7_colour_teacher import ColourTeacher


class Dying(ColourTeacher):
    calls = 0

    def forward(self, x):
        Dying.calls += 1
        if os.environ.get("RANK") == "1" and Dying.calls > 3:
            os._exit(9)
        return super().forward(x)


def make(num_classes=3):
    return Dying(num_classes)
'''


@pytest.mark.slow
def test_a_dead_rank_ends_the_build_within_bounded_time(kit, tmp_path):
    (kit["root"] / "teacher_module" / "dying_teacher.py").write_text(DYING_TEACHER)
    options = tiny_options(kit, tmp_path)
    args = cli_args(options)
    args[args.index(TEACHER)] = "dying_teacher:make"
    started = time.perf_counter()
    result = torchrun(kit, args, timeout=200)
    assert result.returncode != 0
    assert time.perf_counter() - started < 120
    assert "exitcode  : 9" in result.stderr or "exitcode: 9" in result.stderr, result.stderr[-3000:]
    # rank 0, blocked in a collective, says so in one line, unless torchrun stopped it first
    assert "error: rank 0: the job stopped: another rank died" in result.stderr or "SIGTERM" in result.stderr
    assert not Path(options.output).exists()


WORKDIR_SCRIPT = """
import os
import sys
from pathlib import Path
import torch
from hello_build import distributed
from hello_build.data import scan_image_folder
from hello_build.errors import BuildError
from hello_build.workdir import WorkDir

group = distributed.join()
work = WorkDir(Path(sys.argv[1]), group=group)
assert work.lookup("stage", {"a": 1})[0] is None
record = work.finish("stage", {"a": 1}, {"rank": group.rank}, seconds=float(group.rank))
assert record["result"] == {"rank": 0} and record["seconds"] == 0.0, record  # everyone holds rank 0's record
assert work.lookup("stage", {"a": 1})[0]["result"] == {"rank": 0} and work.lookup("stage", {"a": 2})[0] is None
parts = work.gather("part", {"x": torch.full((group.rank + 1,), float(group.rank))})
assert [p["x"].tolist() for p in parts] == [[0.0], [1.0, 1.0]], parts
assert group.rank or not list(work.path.glob("*.part*"))  # rank 0 removes the parts once all have read them
p, q = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2))
p.grad = torch.full((3,), float(group.rank + 1))  # q: no gradient on any rank
group.sum_gradients([p, q])
assert p.grad.tolist() == [3.0] * 3 and q.grad.tolist() == [0.0, 0.0]
made, _, reused = work.memoised("memo", {"k": 1}, lambda: {"t": torch.full((2,), float(group.rank))})
assert not reused and made["t"].tolist() == [float(group.rank)] * 2 and not (work.path / "memo.json").exists()
work.finish("stage", {"a": 3}, {}, seconds=0.0)   # keeps what memoised made, as rank 0 made it
kept, _, reused = work.memoised("memo", {"k": 1}, lambda: 1 / 0)
assert reused and kept["t"].tolist() == [0.0, 0.0], kept
*_, reused = work.memoised("memo", {"k": 1 + group.rank}, lambda: {"t": torch.ones(2)})   # rank 1 sees another key
assert not reused   # on rank 0 too: reused on every rank or on none
alone, shared = scan_image_folder(sys.argv[2]), scan_image_folder(sys.argv[2], group=group)  # headers checked by halves
assert shared.samples == alone.samples and len(alone.samples) > 1, (len(shared.samples), len(alone.samples))
assert scan_image_folder(sys.argv[2], skip_bad=True, group=group).samples == alone.samples  # decoded by halves
for different in (lambda: work.lookup("other", {"a": group.rank}),   # a stage's inputs differ on rank 1
                  lambda: scan_image_folder(sys.argv[2 + group.rank], group=group)):   # so do its image files
    try:
        different()
    except BuildError as error:   # on every rank, before any collective of another size
        assert "on rank 1 differ from rank 0's" in str(error), error
    else:
        raise AssertionError("ranks that see other inputs went on")
os.write(1, f"ok {group.rank}\\n".encode())  # one write: the ranks share the pipe, unbuffered
distributed.leave()
"""


def test_the_work_directory_is_written_by_rank_0_and_read_by_all(kit, tmp_path):
    """... and ranks that see other inputs (a node's own copy of the data or of a file a stage reads) are
    refused together in one line: rank 1 crashed on a stage record that was not its own, or a collective
    of another size aborted the job (the multi-process walkthrough)."""
    script = tmp_path / "workdir.py"
    script.write_text(WORKDIR_SCRIPT)
    other = shutil.copytree(kit["data"], tmp_path / "other-data")
    sorted(other.rglob("*.png"))[0].unlink()
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(script), str(tmp_path / "work"), str(kit["data"]), str(other)], capture_output=True,
                          text=True, timeout=120, env=environment)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(done.stdout.split()) == ["0", "1", "ok", "ok"]


def test_ranks_share_a_batch_as_split_batches_do():
    images, labels = torch.zeros(7, 3, 8, 8, dtype=torch.uint8), torch.arange(7) % 3
    for world in (1, 2, 3, 4):
        shares = [Group(rank, world, torch.device("cpu")).rows(7) for rank in range(world)]
        assert [i for share in shares for i in range(7)[share]] == list(range(7))
        for rank, share in enumerate(shares):
            data = LabelledImages(images, labels, ["a", "b", "c"], None, None, device="cpu", rank=rank, world_size=world)
            assert data.loader(7, shuffle=False, split_batches=True).rows(7) == share


def test_an_empty_share_draws_its_teacher_like_a_full_one():
    teachers = [Teacher(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3)), input_size=2, num_classes=3)
                for _ in range(3)]
    full, empty = TeacherSet(teachers), TeacherSet(teachers)
    draws_full, draws_empty = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    for _ in range(5):
        assert full.logits(torch.rand(2, 3, 2, 2), draws_full).shape == (2, 3)
        assert empty.logits(torch.zeros(0, 3, 2, 2), draws_empty).shape == (0, 3)
        assert full.last_index == empty.last_index


@pytest.mark.slow
def test_a_teacher_trained_on_two_processes_gives_the_single_process_images(kit, tmp_path):
    """--train-teacher under DDP (ConvNet-3: no BatchNorm), then the stages: the measured tolerance."""
    summary, pair, _ = build_alone_and_in_pair(kit, tmp_path, teacher=[], train_teacher="convnet3", teacher_epochs=3,
                                               teacher_checkpoints=2)
    assert_same_build(summary["output"], pair.output)


def test_an_epoch_of_transfer_batches_is_sampled_once(kit):
    """A second pass would draw other augmentations than the ones the first pass paired with its batches."""
    data = RealImages(scan_image_folder(kit["data"]), 32)
    batches = _ShareBatches(data, (32, 32), 10, torch.Generator().manual_seed(0), torch.Generator().manual_seed(1),
                            AugmentConfig(output_size=32), None)
    assert len(list(batches)) == len(batches)
    with pytest.raises(RuntimeError, match="sampled twice"):
        list(batches)


@pytest.mark.parametrize("cutmix", [0.0, 1.0])
def test_a_rank_decodes_only_its_rows_of_each_transfer_batch_and_their_mix_partners(kit, cutmix):
    data = RealImages(scan_image_folder(kit["data"]), 32)
    group = Group(rank=1, world_size=2, device=torch.device("cpu"))
    batches = _ShareBatches(data, (32, 32), 10, torch.Generator().manual_seed(0), torch.Generator().manual_seed(1),
                            AugmentConfig(output_size=32, cutmix=cutmix), group)
    loaded = list(batches)
    order = torch.Generator().manual_seed(0)
    for number, (keys, batch) in enumerate(zip(loaded, BatchSampler(RandomSampler(data, generator=order), 10, False),
                                               strict=True)):
        assert {n for n, _ in keys} == {number}
        positions, (draw, needed, mine) = [p for _, p in keys], batches.draws[number]
        own = batch[group.rows(len(batch))]
        assert positions == [batch[i] for i in needed.tolist()] and set(own) <= set(positions)
        if cutmix == 0.0:
            assert positions == own  # half of each batch, not all of it
        else:
            assert set(positions) == set(own) | {batch[i] for i in draw.mix.perm[mine].tolist()}
