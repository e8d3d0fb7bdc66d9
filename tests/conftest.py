"""Test-wide settings (no hub downloads: each failed one retries for ~46 s; CPU-friendly threads) and the
fixtures several test files share; their helpers are in support.py."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import torch  # noqa: E402

import hello_format  # noqa: E402,F401  (installs the torchvision op shim before open_clip loads)

# One intra-op thread: the tests' models are tiny, and on a loaded 2-core machine OpenMP's spinning
# second thread made them 10-100x slower.
torch.set_num_threads(1)

import sys  # noqa: E402

import pytest  # noqa: E402
from huggingface_hub import constants as hf_constants  # noqa: E402

from support import INTERRUPT_ENV, TEACHER_MODULE, make_tree, save_tiny_base, write_teacher_module  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def head_cache_dir(tmp_path_factory):
    """The head cache of the whole run: a fresh directory, never the user's ~/.cache/hello."""
    with pytest.MonkeyPatch.context() as patch:
        root = tmp_path_factory.mktemp("hello-cache")
        patch.setenv("HELLO_CACHE", str(root))
        yield root / "heads"


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    """For builds: the tiny tree, the tiny base checkpoint and the teacher module (importable while in use)."""
    root = tmp_path_factory.mktemp("kit")
    teacher_dir = write_teacher_module(root / "teacher_module")
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(teacher_dir))
        patch.delenv(INTERRUPT_ENV, raising=False)
        yield {"root": root, "data": make_tree(root / "data"), "base_file": root / "base.safetensors",
               "base": save_tiny_base(root / "base.safetensors")}
    sys.modules.pop(TEACHER_MODULE, None)


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty hub cache that huggingface_hub uses (HF_HUB_CACHE is read once at import, so set both)."""
    cache = tmp_path / "hub-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    assert hf_constants.is_offline_mode()
    return cache
