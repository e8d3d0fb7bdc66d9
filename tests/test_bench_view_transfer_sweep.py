"""bench/view_transfer_sweep.py's own logic: its variants and its clean skip where the data is absent."""

import pytest
from support import load_script


@pytest.fixture(scope="module")
def sweep():
    return load_script("bench/view_transfer_sweep.py")


def test_a_variant_names_view_transfer_options(sweep):
    assert sweep.variant("views=960,real=0.25,lr=0.005,checks=40") == {
        "view_transfer_epochs": 960.0, "view_transfer_real_fraction": 0.25, "view_transfer_lr": 0.005,
        "view_transfer_checks": 40}
    with pytest.raises(SystemExit, match="'epochs' is not one of"):
        sweep.variant("epochs=3")


def test_skips_cleanly_without_the_archives(sweep, tmp_path, capsys):
    assert sweep.main(["--variant", "views=10", "--data", str(tmp_path), "--cache", str(tmp_path / "cache"),
                       "--out", str(tmp_path / "out")]) == 0
    assert capsys.readouterr().out.startswith("skipped: CIFAR-10 archives not found")
    assert not (tmp_path / "cache").exists() and not (tmp_path / "out").exists()


def test_the_students_options_it_never_uses_are_named(sweep, tmp_path, capsys):
    """It parsed bench/cifar10.py's whole command line and silently ignored the students' options
    (bench/README.md passed --students convnet3); each is one only bench/cifar10.py's students read."""
    assert sweep.main(["--variant", "views=10", "--data", str(tmp_path), "--students", "convnet3", "--jobs", "2",
                       "--seeds", "0", "--student-epochs", "200"]) == 0
    assert capsys.readouterr().err == ("warning: view_transfer_sweep.py builds and measures fidelity only; it does not "
                                       "use --seeds, --students, --jobs\n")
