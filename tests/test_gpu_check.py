"""bench/gpu_check.py: its correctness checks run (here on the CPU against itself) and can fail."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import gpu_check  # noqa: E402


def test_checks_pass_where_the_paths_agree(tmp_path, capsys):
    assert gpu_check.correctness(tmp_path, "cpu") == []
    assert "same seed, same batches: True" in capsys.readouterr().out


def test_checks_fail_when_labels_drift(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, "BF16_RELATIVE", -1.0)  # no difference is small enough
    assert any("logit difference" in f for f in gpu_check.correctness(tmp_path, "cpu"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_skips_without_cuda(capsys):
    assert gpu_check.main([]) == 0
    assert "skipped" in capsys.readouterr().out
