"""bench/demo_sweep.py's own logic: its variants become the demo's build options with those changes."""

from pathlib import Path

import pytest
from support import load_script

from hello_build.demo import IPC, demo_options
from hello_build.stages.view_transfer import checked, schedule


@pytest.fixture(scope="module")
def demo_sweep():
    return load_script("bench/demo_sweep.py")


def test_a_variant_names_build_options_and_the_teacher_choice(demo_sweep):
    assert demo_sweep.variant("base") == ({}, False, {})
    assert demo_sweep.variant("teachers=last,views=960,checks=12,epochs=3") == (
        {"view_transfer_epochs": 960.0, "view_transfer_checks": 12, "transfer_epochs": 3}, True, {})
    assert demo_sweep.variant("loss=kl,ce=0") == ({"transfer_loss": "kl", "lambda_ce": 0.0}, False, {})
    assert demo_sweep.variant("ipc=2,scale=1-1") == ({"ipc": 2, "crop_scale": [1.0, 1.0]}, False, {})
    assert demo_sweep.variant("beta=1,views=960") == ({"view_transfer_epochs": 960.0}, False, {"beta": 1.0})  # students only
    with pytest.raises(SystemExit, match="'rank=16' is not base"):
        demo_sweep.variant("rank=16")


def test_demo_options_change_only_what_a_variant_names(tmp_path):
    files = [tmp_path / "t1.safetensors", tmp_path / "t2.safetensors"]
    demo = demo_options(tmp_path / "data", tmp_path / "demo.hello", files, tmp_path / "base.safetensors",
                        tmp_path / "work", seed=0, student_epochs=60)
    changed = demo_options(tmp_path / "data", tmp_path / "demo.hello", files[-1:], tmp_path / "base.safetensors",
                           tmp_path / "work", seed=0, student_epochs=60, view_transfer_epochs=demo.view_transfer_epochs + 800)
    assert changed.view_transfer_epochs == demo.view_transfer_epochs + 800
    assert schedule(demo, IPC * 10) == 1600  # the 1600 steps of 16 the demo's 3 minutes were measured with
    # checked every 80 steps (bench/README.md's table)
    assert [step for step in range(1, 1601) if checked(step, 1600, demo.view_transfer_checks)] == list(range(80, 1601, 80))
    assert schedule(changed, IPC * 10) == 2100
    assert changed.teacher == [str(Path(files[-1]))] and len(demo.teacher) == 2
    assert {k: v for k, v in vars(changed).items() if k not in ("view_transfer_epochs", "teacher")} == \
        {k: v for k, v in vars(demo).items() if k not in ("view_transfer_epochs", "teacher")}


def test_a_variant_without_a_view_transfer_has_a_row(demo_sweep):
    """``--variant views=0`` builds no view transfer: its row crashed on the missing selection agreement."""
    fidelity = {"after_transfer": {"agreement": 0.5}, "synthetic_agreement": 0.6}
    row = demo_sweep._row("views=0", fidelity, None, {"hard": [80.0, 82.0], "projector": [90.0, 90.0],
                                                       "teacher": [91.0, 91.0]}, None)
    assert row == "| views=0 | – | 50.0 % | 60.0 % |  | 81.0 ± 1.4 | 90.0 ± 0.0 | 91.0 ± 0.0 | +9.0 | -1.0 |"
