"""The torchvision shim defines op schemas only where torchvision's own ops library cannot load.

On an H200 with torch 2.11 and its CUDA torchvision, schemas defined before torchvision's ``_C``
registered the same ops made that registration abort the process at ``import open_clip``.
"""

import os
import shutil
import subprocess
import sys

import pytest


def _run(code: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)


def test_the_shim_defines_schemas_exactly_where_torchvision_cannot_load_its_ops():
    native = _run("import torchvision").returncode == 0  # torchvision's own ops library loads next to this torch
    shimmed = _run("import hello_format._torchvision_shim as shim\n"
                   "shim.ensure_torchvision_importable()\n"
                   "import torchvision, open_clip, torch\n"
                   "torch.ops.torchvision.nms\n"
                   "print('defined' if shim._library is not None else 'inert')")
    assert shimmed.returncode == 0, shimmed.stderr[-2000:]
    assert shimmed.stdout.split()[-1] == ("inert" if native else "defined")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("c++") is None or shutil.which("ninja") is None, reason="needs a C++ compiler and ninja")
def test_where_torchvision_loads_its_ops_the_shim_defines_nothing_and_the_load_survives(tmp_path):
    """A stand-in torchvision whose compiled ``_C`` registers ``torchvision::nms``, as a working one does
    (compiled here, about 30 s): the shim loads it and defines nothing, and torchvision's own later load
    of the same library does not abort."""
    package = tmp_path / "torchvision"
    package.mkdir()
    (package / "__init__.py").write_text("")
    source = 'TORCH_LIBRARY(torchvision, m) { m.def("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"); }'
    compile_it = ("from torch.utils.cpp_extension import load_inline\n"  # in a process without the shim's schemas
                  f"print(load_inline('torchvision_ops_stand_in', cpp_sources=[{source!r}], is_python_module=False, "
                  f"build_directory={str(tmp_path)!r}))")
    built = _run(compile_it)
    assert built.returncode == 0, built.stderr[-2000:]
    shutil.copy(built.stdout.split()[-1], package / "_C.so")
    code = ("import hello_format._torchvision_shim as shim, torch\n"
            f"torch.ops.load_library({str(package / '_C.so')!r})\n"  # what torchvision's import does next
            "torch.ops.torchvision.nms\n"
            "print('defined' if shim._library is not None else 'inert')")
    done = _run(code, env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.getcwd()])})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == "inert"
