"""bench/student_recipe.py's own logic: variants name recipe fields, typed; results form one row per cell; the
zero-shot labeller is the bundle without its deltas."""

import pytest
from support import load_script


@pytest.fixture(scope="module")
def student_recipe():
    return load_script("bench/student_recipe.py")


def test_a_variant_names_typed_recipe_fields(student_recipe):
    assert student_recipe.parse_variant("beta=1") == {"beta": 1.0}
    assert student_recipe.parse_variant("loss=kl,temperature=4,lr=0.002") == {"loss": "kl", "temperature": 4.0, "lr": 0.002}
    with pytest.raises(SystemExit, match="unknown recipe field .epochs."):
        student_recipe.parse_variant("epochs=50")   # --epochs sets it, once for every variant


def test_the_table_averages_each_variant_and_label_source_over_its_seeds(student_recipe):
    runs = [{"bundle": "b", "variant": "beta=1", "regime": "projector", "seed": s, "holdout_top1": h, "foundation_half_top1": f}
            for s, h, f in ((0, 0.50, 0.51), (1, 0.52, 0.53))]
    runs.append({"bundle": "other", "variant": "beta=1", "regime": "projector", "seed": 0, "holdout_top1": 0.9,
                 "foundation_half_top1": 0.9})
    table = student_recipe.table(runs, "b").splitlines()
    assert len(table) == 3
    assert table[2] == "| beta=1 | projector | 52.00 ± 1.41 | 51.00 | 0, 1 |"


def test_runs_scored_on_test_get_a_reported_only_column(student_recipe):
    """README's test figures (52.5 ± 0.6 ...) were averaged by hand: the table printed no test column."""
    runs = [{"bundle": "b", "variant": "beta=1", "regime": "projector", "seed": s, "holdout_top1": 0.5,
             "foundation_half_top1": 0.5, "test_top1": t} for s, t in ((0, 0.52), (1, 0.53))]
    runs.append({"bundle": "b", "variant": "beta=1", "regime": "teacher", "seed": 0, "holdout_top1": 0.6,
                 "foundation_half_top1": 0.6})
    table = student_recipe.table(runs, "b").splitlines()
    assert table[0] == ("| recipe change | labels | foundation half top-1 % | hold-out top-1 % | test top-1 % (reported "
                        "only) | seeds |")
    assert table[2] == "| beta=1 | projector | 50.00 ± 0.00 | 50.00 | 52.50 ± 0.71 | 0, 1 |"
    assert table[3] == "| beta=1 | teacher | 60.00 | 60.00 | – | 0 |"
