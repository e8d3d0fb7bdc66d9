"""The packages' shape: cheap faces, every public name reachable, no import circle among our modules."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import hello_build
import hello_format
import hello_format.hub

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("hello_format", "hello_build")


def _modules() -> dict[str, Path]:
    """Every module of the two packages by dotted name (a package by its own name)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict) -> set[str]:
    """The project modules ``name`` imports anywhere in its file (inside functions too), with the
    packages above each, which Python runs first."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets.add(base)
            targets.update(f"{base}.{alias.name}" for alias in node.names)
    edges = set()
    for target in targets:
        parts = target.split(".")
        edges.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return {edge for edge in edges if edge in modules and edge != name}


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def test_no_import_circle_among_our_modules():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert graph["hello_format.dataset"] >= {"hello_format.hub.resolver", "hello_format.recipe"}  # lazy ones count too
    assert _circles(graph) == []


def test_the_circle_finder_finds_circles():
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("package", [hello_format, hello_build, hello_format.hub])
def test_every_public_name_of_a_face_resolves(package):
    assert package.__all__ and set(package.__all__) <= set(dir(package))
    for name in package.__all__:
        assert getattr(package, name) is not None, name
    with pytest.raises(AttributeError):
        package.no_such_name  # noqa: B018


def test_importing_the_faces_loads_no_model_hub_or_card_code():
    code = ("import sys, hello_format, hello_build, hello_format.hub; "
            "from hello_format import __version__; "
            "print(sorted(m for m in ('open_clip', 'huggingface_hub', 'peft', 'hello_format.hub.card', "
            "'hello_format.hub.publish', 'hello_format.projector', 'hello_build.pipeline') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_front_door_names_of_the_issue():
    from hello_build import BuildOptions, build, evaluate
    from hello_format import Bundle, HelloDataset, Projector, kl_loss, mse_ce_loss, write_bundle

    assert callable(build) and callable(evaluate) and BuildOptions().ipc >= 1
    assert all(callable(x) for x in (Bundle.open, HelloDataset, Projector, kl_loss, mse_ce_loss, write_bundle))


def test_one_version_source():
    assert 'dynamic = ["version"]' in (ROOT / "pyproject.toml").read_text()
    assert hello_format.__version__.count(".") == 2


def test_no_test_file_imports_another_test_file():
    for path in sorted((ROOT / "tests").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(name.split(".")[0].startswith(("test_", "conftest")) for name in names), (path.name, names)


def test_one_meaning_per_fixture_name():
    defined: dict[str, list[str]] = {}
    for path in sorted((ROOT / "tests").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef) and any("fixture" in ast.unparse(d) for d in node.decorator_list):
                defined.setdefault(node.name, []).append(path.name)
    assert {name: files for name, files in defined.items() if len(files) > 1} == {}
