"""torchrun: split batches are the single-process batches, a 2-process gloo student is the
single-process student, `hello eval` under torchrun prints one line, and a dead rank ends the job."""

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from hello_format.augment import AugmentConfig
from hello_format.dataset import LabelledImages

AUGMENT = AugmentConfig.from_dict({"output_size": 16, "scale": [0.3, 1.0], "cutmix": 1.0})


def images_and_labels():
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (9, 3, 16, 16), dtype=torch.uint8, generator=generator), torch.arange(3).repeat(3)


def split_loader(rank, world, **options):
    images, labels = images_and_labels()
    data = LabelledImages(images, labels, ["a", "b", "c"], AUGMENT, lambda x: x.mean((2, 3)), device="cpu",
                          seed=5, rank=rank, world_size=world)
    return data.loader(4, epochs=2, split_batches=True, **options)


def test_split_batches_are_the_single_process_batches_cut_into_contiguous_shares():
    alone = list(split_loader(0, 1))
    shares = [list(split_loader(rank, 3)) for rank in range(3)]
    assert len(alone) == 6  # 9 images, batches of 4: 4, 4, 1 per epoch, 2 epochs
    assert [len(s) for s in shares] == [6, 6, 6]
    for step, whole in enumerate(alone):
        parts = [share[step] for share in shares]
        for field in range(3):
            assert torch.equal(torch.cat([part[field] for part in parts]), whole[field])
        assert [len(part.images) for part in parts] == ([2, 1, 1] if len(whole.images) == 4 else [1, 0, 0])


def test_split_batches_labelled_ahead_are_the_plain_loops_shares():
    """prefetch labels each rank's own rows of the global batch, as the plain loop does: the soft labels
    describe exactly the images handed over, on every rank."""
    for rank in range(3):
        plain = list(split_loader(rank, 3, prefetch=False))
        ahead = list(split_loader(rank, 3, prefetch=True))
        assert len(plain) == len(ahead) == 6
        for a, b in zip(plain, ahead):
            assert len(b.soft_labels) == len(b.images) == len(b.hard_labels)
            for field in range(3):
                assert torch.equal(a[field], b[field])


TRAIN_SCRIPT = textwrap.dedent("""
    import sys
    import torch
    from hello_build import distributed
    from hello_build.evaluation import StudentRecipe, train_student
    from hello_format.augment import AugmentConfig
    from hello_format.dataset import LabelledImages

    group = distributed.join()
    import os   # under torchrun the job must really be joined: alone, a process would write the single-process result
    assert (group is not None) == ("WORLD_SIZE" in os.environ) and (group is None or group.world_size == int(os.environ["WORLD_SIZE"]))
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (9, 3, 32, 32), dtype=torch.uint8, generator=generator)
    torch.manual_seed(1)  # the same teacher in every process
    teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 3))
    data = LabelledImages(images, torch.arange(3).repeat(3), ["a", "b", "c"],
                          AugmentConfig.from_dict({"output_size": 32, "cutmix": 1.0}), teacher, device="cpu", seed=3,
                          rank=group.rank if group else 0, world_size=group.world_size if group else 1)
    recipe = StudentRecipe(epochs=2, batch_size=4, lr=1e-2, seed=2, optimizer="sgd")
    student = train_student(data, recipe, image_size=32, device="cpu", progress=False, group=group)
    if group is None or group.is_main:
        torch.save(student.state_dict(), sys.argv[1])
    distributed.leave()
""")


def torchrun(*args, nproc=2, timeout=300):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)


def run_alone_and_in_pair(tmp_path, source: str, alone_output, pair_output) -> None:
    """Run the script ``source`` in one process (argument ``alone_output``), then on 2 torchrun processes
    (``pair_output``); both must succeed."""
    script = tmp_path / "script.py"
    script.write_text(source)
    alone = subprocess.run([sys.executable, script, alone_output], capture_output=True, text=True,
                           env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert alone.returncode == 0, alone.stderr
    pair = torchrun(script, pair_output)
    assert pair.returncode == 0, pair.stderr


@pytest.mark.parametrize("device", [None, "cuda", torch.device("cuda"), "cuda:1", "cuda:0"])
def test_each_rank_takes_the_gpu_of_its_local_rank(monkeypatch, device):
    """Only None and the string "cuda" got cuda:LOCAL_RANK: torch.device("cuda") reached set_device
    without an index (a ValueError), and --device cuda:0 put every rank on GPU 0, which NCCL refuses
    (a review of the GPU paths; torch.cuda and the process group faked here, on a CPU)."""
    from hello_build import distributed
    from hello_build.errors import BuildError

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    chosen = []
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 1)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 2)
    if device == "cuda:0":
        with pytest.raises(BuildError, match=r"device 'cuda:0': under torchrun each process takes the GPU of its "
                                             r"LOCAL_RANK \(1\); use cuda"):
            distributed.join(device=device)
        assert chosen == []
    else:
        assert distributed.join(device=device).device == torch.device("cuda", 1)
        assert chosen == [torch.device("cuda", 1)]


LAUNCH = {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}


@pytest.mark.parametrize("changes, cuda, backend, message", [
    ({"RANK": None}, False, None, r"WORLD_SIZE=2 but RANK is not set: launch with torchrun"),
    ({"MASTER_ADDR": None, "MASTER_PORT": None}, False, None, r"but MASTER_ADDR and MASTER_PORT are not set"),
    ({"RANK": None, "MASTER_ADDR": None, "MASTER_PORT": None}, False, None, r"but RANK, MASTER_ADDR and MASTER_PORT are not set"),
    ({"RANK": "2"}, False, None, r"RANK=2 is not below WORLD_SIZE=2"),
    ({"WORLD_SIZE": "two"}, False, None, r"WORLD_SIZE='two' is not a whole number"),
    ({"MASTER_PORT": "70000"}, False, None, r"MASTER_PORT=70000 is not a port"),
    ({}, False, "nccl", r"--dist-backend nccl needs a CUDA device, and this process runs on cpu: use gloo"),
    ({"LOCAL_RANK": None}, True, None, r"LOCAL_RANK is not set: it picks this process's GPU"),
])
def test_a_launch_environment_a_launcher_left_incomplete_is_one_error(monkeypatch, changes, cuda, backend, message):
    """WORLD_SIZE without RANK was a traceback, without a peer a silent wait of 10 minutes, nccl on a CPU a
    traceback on every rank, and a launcher that sets no LOCAL_RANK put every rank of a node on cuda:0 (the
    multi-process walkthrough; nothing here reaches init_process_group)."""
    from hello_build import distributed
    from hello_build.errors import BuildError

    for name, value in {**LAUNCH, **changes}.items():
        monkeypatch.delenv(name, raising=False) if value is None else monkeypatch.setenv(name, value)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)
    monkeypatch.setattr(torch.distributed, "init_process_group", lambda *a, **k: pytest.fail("joined"))
    with pytest.raises(BuildError, match=message):
        distributed.join(backend)


def test_a_backend_given_to_a_process_that_runs_alone_is_said_unused(monkeypatch):
    """--dist-backend outside torchrun was dropped unsaid (the multi-process walkthrough)."""
    from hello_build import distributed

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.warns(UserWarning, match=r"^hello: the distributed backend gloo is not used: this process runs alone"):
        assert distributed.join("gloo") is None


def test_joining_says_where_before_waiting_and_a_failed_join_is_one_error(monkeypatch):
    from hello_build import distributed
    from hello_build.errors import BuildError

    for name, value in LAUNCH.items():
        monkeypatch.setenv(name, value)

    def refused(*args, **kwargs):
        raise torch.distributed.DistStoreError("Timed out after 601 seconds waiting for clients. 1/2 clients joined.\nmore")

    monkeypatch.setattr(torch.distributed, "init_process_group", refused)
    said = []
    with pytest.raises(BuildError, match=r"^rank 0 could not join the job at 127.0.0.1:29500: Timed out after 601 "
                                         r"seconds waiting for clients. 1/2 clients joined.$"):
        distributed.join(timeout_s=5, log=said.append)
    assert said == ["joining a job of 2 processes at 127.0.0.1:29500 (waiting up to 5 s for the others)"]


def test_a_failed_collective_names_the_groups_own_timeout(monkeypatch):
    """The error said "waited over 600 s" whatever timeout the job was joined with."""
    from hello_build.distributed import Group, JobError

    def timed_out(*args, **kwargs):
        raise RuntimeError("[../gloo/transport/tcp/unbound_buffer.cc:81] Timed out waiting 3000ms for recv\nmore")

    monkeypatch.setattr(torch.distributed, "all_reduce", timed_out)
    with pytest.raises(JobError, match=r"^the job stopped: another rank died or a collective waited over 3 s "
                                       r"\(\[\.\./gloo/.*Timed out waiting 3000ms for recv\)$"):
        Group(rank=0, world_size=2, device=torch.device("cpu"), timeout_s=3).sum([1.0])


def test_a_two_process_student_is_the_single_process_student(tmp_path):
    run_alone_and_in_pair(tmp_path, TRAIN_SCRIPT, tmp_path / "alone.pt", tmp_path / "pair.pt")
    a, b = torch.load(tmp_path / "alone.pt"), torch.load(tmp_path / "pair.pt")
    assert a.keys() == b.keys()
    difference = max((a[k] - b[k]).abs().max().item() for k in a)
    # floating-point reduction order only (measured: 3e-8). With AdamW the same runs differ by up to 3.4e-3:
    # Adam divides by the gradient's own scale, so a parameter whose gradient is at noise level moves by
    # about lr per step in a direction the noise picks.
    assert difference < 1e-6, difference


DIE_SCRIPT = textwrap.dedent("""
    import os
    from hello_build import distributed

    group = distributed.join(timeout_s=30)
    if group.rank == 1:
        os._exit(3)
    group.sum([1.0])  # rank 0 waits here for a rank that is gone
""")


def test_a_dead_rank_ends_the_job_with_an_error(tmp_path):
    script = tmp_path / "die.py"
    script.write_text(DIE_SCRIPT)
    started = time.perf_counter()
    result = torchrun(script, timeout=120)
    assert result.returncode != 0
    assert time.perf_counter() - started < 100
    assert "exitcode  : 3" in result.stderr or "exit code 3" in result.stderr or "exitcode: 3" in result.stderr, result.stderr[-2000:]


@pytest.mark.slow
def test_hello_eval_under_torchrun_prints_one_line_equal_to_a_single_process_run(tmp_path):
    from support import make_tree, write_labelled_bundle

    bundle = write_labelled_bundle(tmp_path / "b.hello", classes=("a", "b", "c"))
    val = make_tree(tmp_path / "val", per_class=4, classes=["a", "b", "c"])
    args = ["eval", bundle, "--val", val, "--epochs", 2, "--quiet", "--seed", 1]
    alone = subprocess.run([sys.executable, "-m", "hello_format.cli", *map(str, args)], capture_output=True, text=True,
                           env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
    assert alone.returncode == 0, alone.stderr
    pair = torchrun("-m", "hello_format.cli", *args, "--teacher", "unused.safetensors")
    assert pair.returncode == 0, pair.stderr
    lines = pair.stdout.strip().splitlines()
    assert len(lines) == 1
    assert pair.stderr.count("does not use --teacher") == 1, pair.stderr   # said by rank 0 alone
    one, two = json.loads(alone.stdout.strip().splitlines()[-1]), json.loads(lines[0])
    assert (one["world_size"], two["world_size"]) == (1, 2)
    assert two["top1"] == one["top1"]


STORED_SCRIPT = textwrap.dedent("""
    import sys
    import torch
    from hello_build import distributed
    from hello_build.evaluation import StudentRecipe
    from safetensors.torch import load_file
    from hello_build.stored_labels import StoredLabels, batch_file
    from hello_format.augment import AugmentConfig
    from hello_format.dataset import LabelledImages

    group = distributed.join()
    import os   # under torchrun the job must really be joined: alone, a process would write the single-process result
    assert (group is not None) == ("WORLD_SIZE" in os.environ) and (group is None or group.world_size == int(os.environ["WORLD_SIZE"]))
    images = torch.randint(0, 256, (9, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    data = LabelledImages(images, torch.arange(3).repeat(3), ["a", "b", "c"],
                          AugmentConfig.from_dict({"output_size": 16, "cutmix": 1.0}), None, device="cpu", seed=5,
                          rank=group.rank if group else 0, world_size=group.world_size if group else 1)
    recipe = StudentRecipe(epochs=2, batch_size=4, seed=2)
    teacher = lambda x: x.mean((2, 3))  # noqa: E731  (a row's label depends on that row only)
    data.labeller = StoredLabels.prepare(sys.argv[1], data, teacher, recipe, group=group).replay()
    share = group.rows if group else (lambda size: slice(None))
    for (epoch, step), batch in zip([(e, b) for e in range(2) for b in range(3)], data.loader(4, seed=2, epochs=2, split_batches=True)):
        stored = load_file(str(batch_file(sys.argv[1], epoch, step)))["logits"]  # the loader gets its rows' labels
        assert torch.equal(batch.soft_labels, stored[share(len(stored))].float()), (epoch, step)
    distributed.leave()
""")


def test_the_stored_regime_under_torchrun_writes_the_single_process_files_and_replays_each_ranks_rows(tmp_path):
    from safetensors.torch import load_file

    run_alone_and_in_pair(tmp_path, STORED_SCRIPT, tmp_path / "alone", tmp_path / "pair")
    files = sorted(p.relative_to(tmp_path / "alone") for p in (tmp_path / "alone").rglob("*.safetensors"))
    assert files and files == sorted(p.relative_to(tmp_path / "pair") for p in (tmp_path / "pair").rglob("*.safetensors"))
    for name in files:
        a, b = load_file(tmp_path / "alone" / name), load_file(tmp_path / "pair" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


LATE_GROUP_SCRIPT = textwrap.dedent("""
    import json, sys
    import torch
    import torch.distributed as dist
    from hello_format.augment import AugmentConfig
    from hello_format.dataset import LabelledImages

    def data(**shard):
        return LabelledImages(torch.zeros(8, 3, 8, 8, dtype=torch.uint8), torch.arange(8) % 2, ["a", "b"],
                              AugmentConfig.from_dict({"output_size": 8}), device="cpu", **shard)

    before = data()                  # made before the process group exists
    dist.init_process_group("gloo")
    half = data(world_size=2)        # world_size alone: the rank is the group's
    shards = [d.rank_and_world_size() for d in (before, half)]
    indices = sorted(int(i) for _, batch, _ in before.loader(2, shuffle=False).views() for i in batch)
    if dist.get_rank() == 0:
        gathered = [None, None]
        dist.gather_object((shards, indices), gathered)
        json.dump(gathered, open(sys.argv[1], "w"))
    else:
        dist.gather_object((shards, indices))
    dist.destroy_process_group()
""")


def test_a_dataset_shards_by_the_process_group_of_its_loader_not_of_its_construction(tmp_path):
    """A dataset made before init_process_group read every image on every rank, and one given world_size
    without rank read rank 0's shard on every rank: both silently (an integration review)."""
    script, output = tmp_path / "late.py", tmp_path / "late.json"
    script.write_text(LATE_GROUP_SCRIPT)
    result = torchrun(script, output)
    assert result.returncode == 0, result.stderr
    (shards0, indices0), (shards1, indices1) = json.loads(output.read_text())
    assert shards0 == [[0, 2], [0, 2]] and shards1 == [[1, 2], [1, 2]]
    assert sorted(indices0 + indices1) == list(range(8))   # disjoint halves


SPAWNED_WORKERS_SCRIPT = textwrap.dedent("""
    import sys
    import torch
    import torch.distributed as dist
    from torch.utils.data import DataLoader
    from hello_format.augment import AugmentConfig
    from hello_format.dataset import LabelledImages

    def views(data, **workers):
        return torch.cat([batch.images for batch in DataLoader(data, batch_size=4, **workers)])

    if __name__ == "__main__":   # what a spawned worker imports runs nothing
        images = torch.randint(0, 256, (8, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
        data = LabelledImages(images, torch.arange(8) % 2, ["a", "b"], AugmentConfig.from_dict({"output_size": 8}),
                              device="cpu")   # before the process group, as a script may make it
        dist.init_process_group("gloo")
        spawned = views(data, num_workers=1, multiprocessing_context="spawn")
        assert torch.equal(spawned, views(data)), "a spawned worker drew other views than its rank's main process"
        gathered = [None, None]
        dist.all_gather_object(gathered, spawned)
        assert not torch.equal(*gathered), "both ranks drew the same views"
        if dist.get_rank() == 0:
            open(sys.argv[1], "w").write("ok")
        dist.destroy_process_group()
""")


def test_spawned_dataloader_workers_draw_their_ranks_own_views(tmp_path):
    """A spawned (or forkserver) worker joins no process group: it took rank 0, so every rank's workers
    drew rank 0's views (macOS's default start method, and Linux's from Python 3.14; a training-loop review)."""
    script, output = tmp_path / "spawned.py", tmp_path / "spawned.txt"
    script.write_text(SPAWNED_WORKERS_SCRIPT)
    result = torchrun(script, output)
    assert result.returncode == 0, result.stderr[-3000:]
    assert output.read_text() == "ok"
