"""bench/cifar10.py's own logic: its grid options, the aggregation and goal checks behind its report, and
its clean skip where the data is absent. (The measured runs themselves are the benchmark, not a test.)"""

import pytest
from support import load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("bench/cifar10.py")


def test_skips_cleanly_without_the_archives(bench, tmp_path, capsys):
    assert bench.main(["--data", str(tmp_path), "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "out")]) == 0
    assert capsys.readouterr().out.startswith("skipped: CIFAR-10 archives train.tar.gz, test.tar.gz not found")
    assert not (tmp_path / "cache").exists() and not (tmp_path / "out").exists()


def test_student_epochs_take_per_architecture_and_per_ipc_overrides(bench):
    args = bench.parse(["--student-epochs", "200", "resnet18_32=60", "@50=100", "resnet18_32@50=20"])
    assert args.student_epochs == {"default": 200, "resnet18_32": 60, "@50": 100, "resnet18_32@50": 20}
    pick = lambda student, ipc: bench.student_epochs(args.student_epochs, student, ipc)  # noqa: E731
    assert (pick("convnet3", 10), pick("convnet3", 50), pick("resnet18_32", 10), pick("resnet18_32", 50)) == (200, 100, 60, 20)
    assert bench.parse([]).student_epochs == {"default": 300}
    assert bench.epochs_text(args.student_epochs) == "200 epochs (resnet18_32: 60, IPC 50: 100, resnet18_32 IPC 50: 20)"


@pytest.mark.parametrize("tokens", [["resnet18_32=60"], ["200", "x=0"], ["200", "200"], ["ten"], ["200", "a=1", "a=2"],
                                    ["200", "a@b=3"]])
def test_bad_student_epochs_are_refused(bench, tokens, capsys):
    with pytest.raises(SystemExit) as exit_:
        bench.parse(["--student-epochs", *tokens])
    assert exit_.value.code == 2 and "--student-epochs" in capsys.readouterr().err


def test_jobs_must_be_positive(bench, capsys):
    with pytest.raises(SystemExit):
        bench.parse(["--jobs", "0"])
    assert "--jobs must be at least 1" in capsys.readouterr().err


def _runs():
    runs = []
    for regime, tops in {"projector": [0.40, 0.42, 0.44], "hard": [0.25, 0.27, 0.26], "teacher": [0.405, 0.415, 0.425],
                         "random-real": [0.45, 0.44, 0.46]}.items():
        for seed, top in enumerate(tops):
            runs.append({"ipc": 10, "student": "convnet3", "regime": regime, "seed": seed, "top1": top,
                         "label_bytes": 0 if regime == "hard" else 1000, "train_seconds": 10.0 + seed})
    return runs


def test_summary_is_mean_and_sample_std_per_cell(bench):
    rows = {r["regime"]: r for r in bench.summarise(_runs())}
    assert [r["regime"] for r in bench.summarise(_runs())] == ["projector", "hard", "teacher", "random-real"]
    assert rows["projector"]["runs"] == 3
    assert rows["projector"]["top1_mean"] == pytest.approx(0.42)
    assert rows["projector"]["top1_std"] == pytest.approx(0.02)
    assert rows["hard"]["train_seconds"] == pytest.approx(11.0)


def test_goals_are_judged_from_the_means(bench):
    rows = bench.summarise(_runs())
    found = {g["goal"]: g for g in bench.goals(rows, {10: {"synthetic_agreement": 0.61}})}
    assert found["projector within 1 point of the online teacher"]["met"]  # 42.0 vs 41.5
    assert found["projector within 1 point of the online teacher"]["value"] == "+0.5 points"
    assert found[">= 10 points above hard labels (IPC 10)"]["met"]  # +16.0
    assert not found["distilled beats random-real under projector labels by > 2 std"]["met"]  # 42.0 vs 45.0
    assert not found["projector/teacher agreement on fresh augmented synthetic views >= 90 %"]["met"]


def test_distilled_must_beat_random_real_by_twice_the_larger_std(bench):
    runs = [r for r in _runs() if r["regime"] != "random-real"]
    goal = "distilled beats random-real under projector labels by > 2 std"
    for tops, met in (([0.36, 0.37, 0.38], True), ([0.38, 0.39, 0.40], False)):  # projector 42 ± 2: needs > 4 points
        rows = bench.summarise(runs + [{**runs[0], "regime": "random-real", "seed": i, "top1": t} for i, t in enumerate(tops)])
        found = {g["goal"]: g for g in bench.goals(rows, {})}
        assert found[goal]["met"] is met, found[goal]


def test_report_lists_what_did_not_run(bench):
    rows = bench.summarise(_runs())
    storage = {"file_bytes": 14e6, "images_bytes": 2e5, "label_generator_bytes": 34248, "base_bytes": 13.6e6, "stored_label_bytes": 4e5}
    results = {
        "settings": {"foundation_arch": "hello-tiny-vit", "foundation_steps": 500, "teacher_epochs": 6, "seeds": [0, 1, 2],
                     "student_epochs": {"default": 200}, "transfer_epochs": 10, "transfer_lr": 5e-3, "factor": 1},
        "foundation": {"parameters": 3_388_993, "images": 25_000, "zero_shot_top1": 0.412, "seconds": 198.8},
        "teacher": {"images": 23_750, "test_top1": 0.645, "seconds": 791.8},
        "bundles": {10: {"storage": storage, "seconds": 400, "fidelity_before": {"agreement": 0.35},
                         "fidelity_after": {"agreement": 0.5}, "synthetic_agreement": 0.61, "projector_test_top1": 0.404}},
        "rows": rows, "goals": bench.goals(rows, {}),
        "missing": [{"ipc": 50, "student": "resnet18_32", "regime": r, "seed": 0} for r in ("hard", "teacher")],
    }
    text = bench.markdown(results)
    assert "| 10 | convnet3 | projector | 42.0 ± 2.0 (3) | 1.0 KB | 11 |" in text
    assert "500 steps on 25,000 images, 199 s): zero-shot top-1 41.2 %" in text and "23,750 images, 792 s): top-1 64.5 %" in text
    assert "Not run (2 student runs, --report-only): IPC 50 resnet18_32." in text


def test_ablation_rows_are_chosen_by_number(bench, capsys):
    assert bench.parse([]).ablation is None
    assert bench.parse(["--ablation"]).ablation == []  # every row
    assert bench.parse(["--ablation", "1", "4"]).ablation == [1, 4]
    with pytest.raises(SystemExit):
        bench.parse(["--ablation", str(len(bench.ABLATION) + 1)])
    assert "--ablation rows are 1 to" in capsys.readouterr().err


def test_requantized_projector_runs_are_a_row_of_their_own(bench):
    quantised = [{**r, "regime": "projector (int4)", "top1": r["top1"] - 0.01} for r in _runs() if r["regime"] == "projector"]
    rows = bench.summarise(_runs() + quantised)
    assert [r["regime"] for r in rows] == ["projector", "hard", "teacher", "random-real", "projector (int4)"]
    assert rows[-1]["top1_mean"] == pytest.approx(0.41) and rows[0]["top1_mean"] == pytest.approx(0.42)
    args = bench.parse(["--delta-dtype", "int4"])
    assert (args.delta_dtype, args.delta_group_size) == ("int4", 64) and bench.parse([]).delta_dtype == "fp16"
    # the requantized copy is calibrated as hello-build calibrates by default
    from hello_build.options import BuildOptions
    assert (args.delta_calibration_steps, args.delta_calibration_objective) == \
        (BuildOptions.delta_calibration_steps, BuildOptions.delta_calibration_objective)
    assert args.delta_calibration_steps > 0


def test_bundle_keys_name_every_view_transfer_option_and_the_crop_scale(bench):
    """A bundle is cached by every option the bench sets: another budget, check count, kept-state rule or
    crop scale is another bundle (each chosen after the real transfer, so they share its work directory)."""
    settings = lambda *argv: bench.build_settings(bench.parse(["--ipc", "10", *argv]), {})  # noqa: E731
    from hello_build.options import BuildOptions
    default = settings()
    assert (default["view_transfer_epochs"], default["view_transfer_checks"], default["view_transfer_keep"]) == \
        (BuildOptions.view_transfer_epochs, BuildOptions.view_transfer_checks, BuildOptions.view_transfer_keep)
    assert default["crop_scale"] == [1.0, 1.0]  # the builder's default at the bench's factor 1: whole images
    for argv in (("--view-transfer-epochs", "1920"), ("--view-transfer-checks", "1"), ("--view-transfer-keep", "best"),
                 ("--crop-scale", "0.5", "1")):
        assert bench.key_of(settings(*argv)) != bench.key_of(default), argv
    assert {"view_transfer_epochs", "view_transfer_checks", "view_transfer_keep", "crop_scale"} <= set(bench.LATE_OPTIONS)


def test_the_transfer_loss_and_lora_rank_are_keyed_and_passed_to_the_build_unless_they_are_the_default(bench):
    """Bundles cached before --transfer-loss and --lora-rank were rank-8 MSE builds and keep their keys; a
    KL or rank-4 build gets its own."""
    settings = lambda *argv: bench.build_settings(bench.parse(["--ipc", "10", *argv]), {})  # noqa: E731
    assert "transfer_loss" not in settings() and settings("--transfer-loss", "kl")["transfer_loss"] == "kl"
    assert "lora_rank" not in settings() and settings("--lora-rank", "4")["lora_rank"] == 4
    keys = {bench.key_of(settings(*argv)) for argv in ((), ("--transfer-loss", "kl"), ("--lora-rank", "4"))}
    assert len(keys) == 3
    # they change the real transfer: a work directory of its own
    assert "transfer_loss" not in bench.LATE_OPTIONS and "lora_rank" not in bench.LATE_OPTIONS


def test_student_workers_end_when_the_bench_is_killed(tmp_path):
    # the bench, in a process of its own, starts its pool and a long job, then is killed outright (no
    # cleanup runs): its worker must not train on alone
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    script = tmp_path / "bench_like.py"
    script.write_text(
        "import os, sys, time\n"
        f"sys.path.insert(0, {str(root / 'bench')!r})\n"
        "import cifar10\n"
        "if __name__ == '__main__':\n"
        "    pool = cifar10.student_pool(1)\n"
        "    print(pool.submit(os.getpid).result(), flush=True)\n"
        "    pool.submit(time.sleep, 120)\n"
        "    time.sleep(120)\n")
    bench = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        worker = int(bench.stdout.readline())
        os.kill(worker, 0)   # alive while the bench is
        bench.send_signal(signal.SIGKILL)
        bench.wait(timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(worker, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)
        os.kill(worker, signal.SIGKILL)
        raise AssertionError(f"worker {worker} outlived its killed bench by 30 s")
    finally:
        bench.kill()


def test_student_beta_overrides_the_recipe_of_every_soft_label_regime_only(bench):
    from types import SimpleNamespace

    default, beta = SimpleNamespace(student_beta=None), SimpleNamespace(student_beta=1.0)
    assert bench.student_recipe(default, "projector", "convnet3", 200, 3) == {"arch": "convnet3", "epochs": 200, "seed": 3}
    for regime in ("projector", "teacher", "stored", "random-real"):
        assert bench.student_recipe(beta, regime, "convnet3", 200, 3)["beta"] == 1.0
    assert "beta" not in bench.student_recipe(beta, "hard", "convnet3", 200, 3)


def test_a_margin_exactly_on_a_goal_threshold_meets_it(bench):
    # the whole-image IPC 10 bundle at beta 1, 5 seeds: 25,760 against 20,760 correct of 50,000 test images,
    # exactly 10 points, which binary floating point puts a hair under 0.10
    tops = {"projector": [0.5148, 0.5184, 0.508, 0.5206, 0.5142], "hard": [0.4133, 0.4099, 0.42, 0.4066, 0.4262]}
    runs = [{"ipc": 10, "student": "convnet3", "regime": regime, "seed": seed, "top1": top, "label_bytes": 0,
             "train_seconds": 1.0} for regime, values in tops.items() for seed, top in enumerate(values)]
    rows = bench.summarise(runs)
    assert rows[0]["top1_mean"] - rows[1]["top1_mean"] < 0.10   # what the comparison has to survive
    found = {g["goal"]: g for g in bench.goals(rows, {})}
    assert found[">= 10 points above hard labels (IPC 10)"]["met"]
    tops["projector"][0] -= 0.0001   # one image fewer: below the line
    runs = [{**r, "top1": tops[r["regime"]][r["seed"]]} for r in runs]
    assert not {g["goal"]: g for g in bench.goals(bench.summarise(runs), {})}[">= 10 points above hard labels (IPC 10)"]["met"]


def test_both_screening_sets_can_be_scored_as_hello_eval_scores_test(bench, tmp_path):
    import torch
    from PIL import Image
    from safetensors.torch import save_file

    from hello_build.evaluation import top1

    original = tmp_path / "split-0" / "original"
    for name in ("cat", "dog"):
        (original / name).mkdir(parents=True)
        for i in range(20):
            Image.new("RGB", (bench.SIZE, bench.SIZE), (i * 10, 0, 0)).save(original / name / f"{i}.png")
    save_file({"images": torch.zeros(6, 3, bench.SIZE, bench.SIZE, dtype=torch.uint8), "labels": torch.tensor([0, 1] * 3)},
              str(tmp_path / "split-0" / "foundation.safetensors"))
    _, train_idx, holdout, foundation_half = bench.held_out(original)
    always_cat = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * bench.SIZE ** 2, 2))
    torch.nn.init.zeros_(always_cat[1].weight)
    always_cat[1].bias.data = torch.tensor([1.0, 0.0])
    assert len(train_idx) + len(holdout) == 40 and len(foundation_half) == 6
    assert top1(always_cat, foundation_half, device="cpu") == 0.5
    cats = sum(int(label) == 0 for _, label in holdout)
    assert len(holdout) > 0 and top1(always_cat, holdout, device="cpu") == cats / len(holdout)


def _goal(bench, rows, name, bundles=None):
    return {g["goal"]: g for g in bench.goals(rows, bundles or {})}.get(name)


def _cell(regime, tops, ipc=10):
    return [{"ipc": ipc, "student": "convnet3", "regime": regime, "seed": seed, "top1": top, "label_bytes": 1000,
             "train_seconds": 1.0} for seed, top in enumerate(tops)]


def test_the_projector_may_trail_the_teacher_by_one_point_not_more(bench):
    goal = "projector within 1 point of the online teacher"
    for projector, teacher, met in ((0.42, 0.40, True), (0.401, 0.41, True), (0.40, 0.42, False), (0.398, 0.41, False)):
        rows = bench.summarise(_cell("projector", [projector]) + _cell("teacher", [teacher]))
        assert _goal(bench, rows, goal)["met"] is met, (projector, teacher)


def test_the_hard_label_margin_is_a_goal_at_ipc_10_only(bench):
    runs = _cell("projector", [0.42]) + _cell("hard", [0.20]) + _cell("random-real", [0.30])
    rows = bench.summarise(runs + [{**r, "ipc": 50} for r in runs])
    where = lambda name: [g["where"] for g in bench.goals(rows, {}) if g["goal"] == name]  # noqa: E731
    assert where(">= 10 points above hard labels (IPC 10)") == ["IPC 10, convnet3"]
    assert where("distilled beats random-real under projector labels by > 2 std") == ["IPC 10, convnet3", "IPC 50, convnet3"]


def test_the_default_grid_is_the_reported_protocol(bench):
    """Three seeds (the table's mean ± sample std), both students, IPC 10 and 50, every regime."""
    args = bench.parse([])
    assert (args.seeds, args.students, args.ipc, args.regimes) == ([0, 1, 2], ["convnet3", "resnet18_32"], [10, 50],
                                                                   list(bench.ALL_REGIMES))


def test_an_agreement_of_exactly_90_percent_meets_its_goal(bench):
    goal = "projector/teacher agreement on fresh augmented synthetic views >= 90 %"
    assert _goal(bench, [], goal, {10: {"synthetic_agreement": 4500 / 5000}})["met"]   # counts: exactly 0.9
    assert not _goal(bench, [], goal, {10: {"synthetic_agreement": 4499 / 5000}})["met"]


def test_an_ablation_row_reports_the_sample_std_and_the_label_generators_cost(bench):
    info = {"storage": {"label_generator_bytes": 34248, "file_bytes": 14e6, "stored_label_bytes": 4e5},
            "synthetic_agreement": 0.8, "fidelity_before": {"agreement": 0.3}, "fidelity_after": {"agreement": 0.5}}
    runs = [{"top1": t} for t in (0.40, 0.42, 0.44)]
    row = bench.ablation_row("+ image update", 10, "convnet3", info, runs)
    assert (row["runs"], row["top1_mean"], row["top1_std"]) == (3, pytest.approx(0.42), pytest.approx(0.02))
    assert row["label_bytes"] == 34248 and row["synthetic_agreement"] == 0.8
    assert row["heldout_agreement"] == 0.5   # after the real transfer, where no view transfer ran
    with_views = bench.ablation_row("x", 10, "convnet3", {**info, "view_transfer": {"fidelity": {"agreement": 0.6}}}, runs)
    assert with_views["heldout_agreement"] == 0.6
    assert bench.ablation_row("x", 10, "convnet3", info, [])["top1_mean"] is None


def test_the_bundle_table_shows_decimal_sizes_and_agreements_in_stage_order(bench):
    storage = {"file_bytes": 14e6, "images_bytes": 2e5, "label_generator_bytes": 34248, "base_bytes": 13.6e6,
               "stored_label_bytes": 4e5}
    results = {
        "settings": {"foundation_arch": "hello-tiny-vit", "foundation_steps": 500, "teacher_epochs": 6, "seeds": [0],
                     "student_epochs": {"default": 200}, "transfer_epochs": 10, "transfer_lr": 5e-3, "factor": 1},
        "foundation": {"parameters": 1, "images": 1, "zero_shot_top1": 0.4, "seconds": 1.0},
        "teacher": {"images": 1, "test_top1": 0.6, "seconds": 1.0},
        "bundles": {10: {"storage": storage, "seconds": 400, "fidelity_before": {"agreement": 0.35},
                         "fidelity_after": {"agreement": 0.5}, "view_transfer": {"fidelity": {"agreement": 0.7}},
                         "synthetic_agreement": 0.61, "projector_test_top1": 0.404}},
        "rows": [], "goals": [], "missing": [],
    }
    assert ("| 10 | 14.0 MB | 200.0 KB | 34.2 KB | 13.6 MB | 400.0 KB | 400 () | 35.0 → 50.0 → 70.0 % | 61.0 % | 40.4 |"
            in bench.markdown(results))


def test_a_cache_key_does_not_depend_on_the_order_inputs_were_gathered_in(bench):
    assert bench.key_of({"ipc": 10, "seed": 0}) == bench.key_of({"seed": 0, "ipc": 10})
    assert bench.key_of({"ipc": 10, "seed": 0}) != bench.key_of({"ipc": 10, "seed": 1})


def test_a_cached_result_is_computed_once_and_then_read_back(bench, tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"top1": 0.5}

    path = tmp_path / "evals" / "k.json"
    assert bench.cached_json(path, compute) == {"top1": 0.5} and path.is_file()
    assert bench.cached_json(path, compute) == {"top1": 0.5}
    assert calls == [1]


def test_a_first_run_returns_what_a_rerun_reads_back(bench, tmp_path):
    """Tuples, integer keys and paths come back as JSON has them on the first run too, so no caller
    behaves differently on a rerun."""
    path = tmp_path / "k.json"
    first = bench.cached_json(path, lambda: {"shape": (3, 32), "per_class": {7: 0.5}, "where": tmp_path})
    assert first == {"shape": [3, 32], "per_class": {"7": 0.5}, "where": str(tmp_path)}
    assert bench.cached_json(path, lambda: None) == first


def test_an_architectures_epochs_override_an_ipcs(bench):
    """The most specific wins: ARCH@IPC, then ARCH, then @IPC, then the plain number."""
    epochs = bench.parse(["--student-epochs", "200", "resnet18_32=60", "@50=100"]).student_epochs
    assert bench.student_epochs(epochs, "resnet18_32", 50) == 60
    assert bench.student_epochs(epochs, "convnet3", 50) == 100


def test_the_halves_split_every_class_without_sharing_an_image(bench, tmp_path):
    """The foundation half and the original half (what the teacher trains on and what is distilled) are
    disjoint and together all the training images, each foundation image labelled with its own class."""
    import numpy as np
    import torch
    from PIL import Image

    from support import CLASSES, make_tree

    make_tree(tmp_path / "train", per_class=5)
    pixels = {}
    for label, name in enumerate(CLASSES):
        for path in sorted((tmp_path / "train" / name).iterdir()):
            pixels[np.asarray(Image.open(path).convert("RGB")).tobytes()] = (label, path.name)
    original, images, labels, classes = bench.split_halves(tmp_path, 0)
    assert classes == list(CLASSES) and len(images) == len(labels) == 3 * 2
    found = [pixels[image.permute(1, 2, 0).contiguous().numpy().tobytes()] for image in images]
    assert [label for label, _ in found] == labels.tolist()
    for label, name in enumerate(CLASSES):
        kept = {path.name for path in (original / name).iterdir()}
        given = {file for source, file in found if source == label}
        assert len(kept) == 3 and len(given) == 2 and not kept & given, name
    assert torch.equal(bench.split_halves(tmp_path, 0)[1], images)   # reused, not redrawn


def test_the_screening_hold_out_is_the_one_the_builds_keep_from_their_teacher(bench, tmp_path):
    import torch
    from safetensors.torch import save_file

    from hello_build.data import holdout_split, scan_image_folder
    from hello_build.options import BuildOptions
    from support import make_tree

    original = make_tree(tmp_path / "split-0" / "original", per_class=20)
    save_file({"images": torch.zeros(2, 3, bench.SIZE, bench.SIZE, dtype=torch.uint8), "labels": torch.tensor([0, 1])},
              str(tmp_path / "split-0" / "foundation.safetensors"))
    index, train_idx, holdout, _ = bench.held_out(original)
    # what bench's teacher() and the builds (--build-seed 0) train without
    assert (train_idx, holdout.indices) == holdout_split(scan_image_folder(original), BuildOptions.holdout, 0)


def test_accuracy_and_agreement_score_images_in_0_1(bench, tmp_path):
    import torch
    from PIL import Image

    from hello_build.data import scan_image_folder

    for label, (name, shade) in enumerate((("dark", 30), ("light", 220))):
        (tmp_path / name).mkdir()
        for i in range(3):
            Image.new("RGB", (bench.SIZE, bench.SIZE), (shade + i,) * 3).save(tmp_path / name / f"{i}.png")
    index = scan_image_folder(tmp_path)

    def brightness(images):   # "light" where the mean of a [0, 1] image is above one half
        mean = images.mean(dim=(1, 2, 3))
        return torch.stack([0.5 - mean, mean - 0.5], 1)

    def always_dark(images):
        return torch.tensor([[1.0, 0.0]]).repeat(len(images), 1)

    assert bench.accuracy(brightness, index, batch_size=4) == 1.0
    assert bench.accuracy(always_dark, index) == 0.5
    assert bench.agreement(brightness, always_dark, index, batch_size=4) == 0.5
    assert bench.agreement(brightness, brightness, index) == 1.0


def test_a_student_run_is_reused_only_for_the_same_run(bench, tmp_path):
    """A cached run is keyed by all that changes its result: another epoch count, seed, student or device is run anew
    (--report-only lists it as missing); a hard-label run is shared by bundles of the same images."""
    import shutil
    from types import SimpleNamespace

    from support import CARD_CLASSES, make_bundle, make_tree

    bundle_path = make_bundle(tmp_path / "b.hello")
    test_dir = make_tree(tmp_path / "test", per_class=2, classes=CARD_CLASSES, size=16)
    info, teacher_info = {"inputs": {"ipc": 4}, "storage": {"label_generator_bytes": 10}}, {"inputs": {}, "file_bytes": 5}

    def run(path=bundle_path, epochs=1, student="resnet18_32", seed=0, report_only=True, beta=None, device="cpu"):
        epochs = epochs if isinstance(epochs, dict) else {"default": epochs}
        args = SimpleNamespace(student_epochs=epochs, student_beta=beta, report_only=report_only, device=device)
        return bench.student_run(args, tmp_path / "cache", path, info, None, teacher_info, tmp_path, test_dir, "hard",
                                 student, seed)

    computed = run(report_only=False)
    assert computed["epochs"] == 1 and computed["label_bytes"] == 0
    record = run()   # as read back (JSON: lists for tuples)
    assert (record["inputs"], record["top1"]) == (computed["inputs"], computed["top1"])
    assert run(epochs=2) is None and run(seed=1) is None and run(student="convnet3") is None
    assert run(device="cuda") is None   # a GPU's arithmetic trains another student (the CPU record was reused)
    assert run(epochs={"default": 1, "resnet18_32": 2}) is None and run(epochs={"default": 2, "resnet18_32@4": 1}) == record
    assert run(beta=1.0) == record   # the hard-label loss has no beta
    assert run(shutil.copyfile(bundle_path, tmp_path / "same-images.hello")) == record
