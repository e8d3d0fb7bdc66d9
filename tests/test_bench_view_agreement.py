"""bench/view_agreement.py's label sources: the bundle read with other prior weights is scored beside
the bundle's own labels, and differs from them (the measured runs themselves are the benchmark)."""

import re

import torch
from support import load_script, write_labelled_bundle

from hello_build.teachers import Teacher, save_teacher
from hello_build.zoo import create_model


def test_other_prior_weights_are_scored_as_label_sources_of_their_own(tmp_path, capsys):
    bundle = write_labelled_bundle(tmp_path / "b.hello", prior_weight=0.2, lora_std=0.5)
    torch.manual_seed(0)
    teacher = save_teacher(Teacher(create_model("convnet3", 3), input_size=32, num_classes=3), tmp_path / "t.safetensors",
                           "convnet3")
    script = load_script("bench/view_agreement.py")
    assert script.main([str(bundle), "--teacher", str(teacher), "--prior-weights", "0.9", "0.2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    scores = {match[1]: match[2] for line in lines if (match := re.match(r"  (.+): (\d+\.\d) % with", line))}
    assert list(scores) == ["projector of b.hello", "projector read with prior weight 0.9",
                            "projector read with prior weight 0.2"]
    assert scores["projector read with prior weight 0.2"] == scores["projector of b.hello"]   # the bundle's own w
    assert scores["projector read with prior weight 0.9"] != scores["projector of b.hello"]   # another label source
