from __future__ import annotations

import math
import os
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import yaml

from airloop.core import yaml_cache
from airloop.core.spec import load_specs
from airloop.core.yaml_cache import load_yaml
from airloop.model.task import check_spec

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
MODELS = ROOT / "config" / "models"

DOCUMENT = b"""
name: m
start: 2013-01-01
at: 2013-01-01T06:00:00Z
naive: 2013-01-01 06:00:00
ratio: 0.25
whole: 3
big: 1.0e+300
flags: [true, false, null]
nested: {a: [1, 2.0, "3"], b: ""}
text: "2013-01-01"
nan: .nan
"""


def _parse_refused(monkeypatch) -> None:
    """Make any YAML parse fail: what comes back then came from the cache."""

    def refuse(*args, **kwargs):
        raise AssertionError("parsed again")

    monkeypatch.setattr(yaml_cache.yaml, "load", refuse)


def _same_types(a, b) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_types(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return all(_same_types(x, y) for x, y in zip(a, b, strict=True))
    return True


def test_second_read_comes_from_the_cache_with_the_same_values_and_types(tmp_path, monkeypatch):
    first = load_yaml(DOCUMENT, tmp_path)
    assert len(list(tmp_path.glob("*.json"))) == 1
    _parse_refused(monkeypatch)
    second = load_yaml(DOCUMENT, tmp_path)
    assert _same_types(first, second)
    assert math.isnan(second.pop("nan")) and math.isnan(first.pop("nan"))
    assert second == first
    assert second["start"] == date(2013, 1, 1) and type(second["start"]) is date
    assert second["at"] == datetime(2013, 1, 1, 6, tzinfo=UTC)
    assert second["naive"] == datetime(2013, 1, 1, 6) and second["naive"].tzinfo is None
    assert second["text"] == "2013-01-01" and type(second["whole"]) is int and type(second["ratio"]) is float


def test_other_bytes_are_parsed_not_served_from_another_entry(tmp_path):
    load_yaml(b"a: 1\n", tmp_path)
    assert load_yaml(b"a: 2\n", tmp_path) == {"a": 2}
    assert len(list(tmp_path.glob("*.json"))) == 2


@pytest.mark.parametrize(
    "text",
    [
        b"1: one\n",  # a key JSON would turn into a string
        b"$date: 2013-01-01\n",  # a key that reads as the cache's own tag
        b"s: !!set {a: null}\n",
        b"b: !!binary aGVsbG8=\n",
    ],
)
def test_documents_json_cannot_hold_exactly_are_never_cached(tmp_path, text):
    expected = yaml.load(text, Loader=yaml.SafeLoader)  # noqa: S506 - a safe loader
    assert load_yaml(text, tmp_path) == expected
    assert load_yaml(text, tmp_path) == expected
    assert list(tmp_path.iterdir()) == []


def test_a_damaged_entry_is_parsed_again_and_rewritten(tmp_path, monkeypatch):
    load_yaml(b"a: [1, 2]\n", tmp_path)
    (entry,) = tmp_path.glob("*.json")
    entry.write_text('{"a": [1, ')
    assert load_yaml(b"a: [1, 2]\n", tmp_path) == {"a": [1, 2]}
    _parse_refused(monkeypatch)
    assert load_yaml(b"a: [1, 2]\n", tmp_path) == {"a": [1, 2]}


def test_invalid_yaml_raises_and_leaves_no_entry(tmp_path):
    with pytest.raises(yaml.YAMLError):
        load_yaml(b"a: [1, 2\n", tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
def test_a_cache_folder_that_cannot_be_written_costs_only_the_parse(tmp_path):
    tmp_path.chmod(0o500)
    try:
        assert load_yaml(b"a: 1\n", tmp_path / "specs") == {"a": 1}
        assert load_yaml(b"a: 1\n", tmp_path) == {"a": 1}
    finally:
        tmp_path.chmod(0o700)
    assert list(tmp_path.iterdir()) == []


def test_a_cache_path_that_is_a_file_costs_only_the_parse(tmp_path):
    blocker = tmp_path / "specs"
    blocker.write_text("not a folder")
    assert load_yaml(b"a: 1\n", blocker) == {"a": 1}
    assert load_yaml(b"a: 1\n", blocker / "deeper") == {"a": 1}


def test_the_shipped_specs_load_the_same_through_the_cache(tmp_path, monkeypatch):
    plain = load_specs(MODELS, check=check_spec)
    cold = load_specs(MODELS, check=check_spec, cache_dir=tmp_path)
    _parse_refused(monkeypatch)
    warm = load_specs(MODELS, check=check_spec, cache_dir=tmp_path)
    assert plain.specs and not plain.errors
    assert cold == plain and warm == plain
    assert len(list(tmp_path.glob("*.json"))) == len(plain.specs)
