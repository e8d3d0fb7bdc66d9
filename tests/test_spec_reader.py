"""A second reader, written from spec/format.md alone (tests/spec_reader.py), gives every conformance
vector the class expected.json assigns: the spec's text is precise enough to reproduce the reference."""

import json
import pathlib

import pytest

from spec_reader import check

VECTORS = pathlib.Path(__file__).resolve().parent.parent / "spec" / "vectors"
EXPECTED = json.loads((VECTORS / "expected.json").read_text())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_second_reader_gives_each_vector_its_expected_class(name):
    outcome = EXPECTED[name]
    assert check(VECTORS / name) == (outcome if outcome == "valid" else outcome["error"])
