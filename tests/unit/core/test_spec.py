from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from airloop.core.errors import ConfigError
from airloop.core.spec import SpecFolder, load_spec, load_specs

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
FLIGHTS = ROOT / "config" / "models" / "flights_delay.yaml"


def _write(tmp_path: Path, raw: dict, name: str = "flights_delay") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture
def raw() -> dict:
    return yaml.safe_load(FLIGHTS.read_text())


def test_unknown_field_names_file_and_field(tmp_path, raw):
    raw["contract"]["columns"][2]["nulable"] = False
    path = _write(tmp_path, raw)
    with pytest.raises(ConfigError) as err:
        load_spec(path)
    assert str(path) in str(err.value)
    assert "contract.columns[2].nulable" in str(err.value)


def test_bad_type_names_the_field(tmp_path, raw):
    raw["contract"]["columns"][0]["type"] = "int"
    with pytest.raises(ConfigError, match=r"contract\.columns\[0\]\.type"):
        load_spec(_write(tmp_path, raw))


def test_feature_not_in_contract(tmp_path, raw):
    raw["features"].append("runway")
    with pytest.raises(ConfigError, match="features: runway not declared"):
        load_spec(_write(tmp_path, raw))


def test_min_above_max(tmp_path, raw):
    raw["contract"]["columns"][1].update(min=12, max=1)
    with pytest.raises(ConfigError, match=r"contract\.columns\[1\].*min \(12.0\) is greater than max"):
        load_spec(_write(tmp_path, raw))


def test_range_on_a_string_column(tmp_path, raw):
    raw["contract"]["columns"].append({"name": "gate", "type": "string", "min": 1})
    with pytest.raises(ConfigError, match="min/max apply to integer or number"):
        load_spec(_write(tmp_path, raw))


def test_duplicate_column(tmp_path, raw):
    raw["contract"]["columns"].append(dict(raw["contract"]["columns"][0]))
    with pytest.raises(ConfigError, match="column 'year' is declared twice"):
        load_spec(_write(tmp_path, raw))


def test_name_must_match_file(tmp_path, raw):
    with pytest.raises(ConfigError, match="file is named 'other'"):
        load_spec(_write(tmp_path, raw, name="other"))


def test_invalid_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "x.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(ConfigError, match="x.yaml: not valid YAML"):
        load_spec(bad)
    with pytest.raises(ConfigError, match="spec file not found"):
        load_spec(tmp_path / "missing.yaml")
    not_a_mapping = tmp_path / "y.yaml"
    not_a_mapping.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_spec(not_a_mapping)


def test_missing_required_field(tmp_path, raw):
    del raw["target"]
    with pytest.raises(ConfigError, match="field 'target': Field required"):
        load_spec(_write(tmp_path, raw))


def test_shipped_specs_are_valid():
    folder = load_specs(ROOT / "config" / "models")
    assert folder.errors == []
    specs = {s.name: s for s in folder.specs}
    assert list(specs) == ["flights_arrival_minutes", "flights_delay", "flights_delay_band"]
    # One of each kind, three cadences, files and SQL (the SQL ones chained on flights_delay's table).
    assert [(s.target.kind, s.schedule, s.source.kind) for s in specs.values()] == [
        ("regression", "@weekly", "sql"),
        ("binary", "@daily", "landing"),
        ("multiclass", "@monthly", "sql"),
    ]
    assert all(s.source.after == ["flights_delay"] for s in specs.values() if s.source.kind == "sql")
    assert specs["flights_delay_band"].contract.column("delay_band").allowed == [
        "early",
        "on_time",
        "late",
        "very_late",
    ]
    spec = specs["flights_delay"]
    assert spec.batches_asset == "x-airloop://flights_delay/batches"
    assert spec.contract.column("carrier").allowed
    assert spec.alerts.email is not None and spec.alerts.slack is not None


def test_champion_age_cap_is_off_by_default(raw, tmp_path):
    assert load_spec(_write(tmp_path, raw)).monitoring.max_champion_age_days is None
    raw["monitoring"]["max_champion_age_days"] = 30
    assert load_spec(_write(tmp_path, raw)).monitoring.max_champion_age_days == 30


@pytest.mark.parametrize(
    ("cap", "message"),
    [
        (0, r"field 'monitoring\.max_champion_age_days': Input should be greater than or equal to 1"),
        ("a month", r"field 'monitoring\.max_champion_age_days': Input should be a valid number"),
        (2, r"max_champion_age_days \(2 days\) is shorter than cooldown_hours \(336 h\)"),
    ],
)
def test_bad_champion_age_cap_names_file_and_field(tmp_path, raw, cap, message):
    raw["monitoring"]["max_champion_age_days"] = cap
    path = _write(tmp_path, raw)
    with pytest.raises(ConfigError, match=message) as err:
        load_spec(path)
    assert str(path) in str(err.value)


def test_champion_age_cap_needs_training(tmp_path, raw):
    raw["monitoring"]["max_champion_age_days"] = 30
    del raw["training"]
    with pytest.raises(ConfigError, match="monitoring.max_champion_age_days: .* needs a 'training' section"):
        load_spec(_write(tmp_path, raw))


def test_a_broken_spec_is_reported_and_never_hides_the_others(tmp_path, raw):
    good = _write(tmp_path, raw)
    raw["contract"]["columns"][0]["type"] = "int"
    broken = _write(tmp_path, {**raw, "name": "broken"}, name="broken")
    (tmp_path / "unreadable.yaml").write_text("name: [unclosed")
    folder = load_specs(tmp_path)
    assert isinstance(folder, SpecFolder)
    assert [s.name for s in folder.specs] == [good.stem]
    assert len(folder.errors) == 2 and all(isinstance(e, ConfigError) for e in folder.errors)
    broken_error, unreadable_error = (str(e) for e in folder.errors)  # by file name
    assert str(broken) in broken_error and "contract.columns[0].type" in broken_error
    assert "unreadable.yaml: not valid YAML" in unreadable_error


def test_a_check_refusal_is_reported_like_a_schema_error(tmp_path, raw):
    path = _write(tmp_path, raw)
    seen = []

    def check(spec, spec_path):
        seen.append((spec.name, spec_path))
        raise ConfigError(f"{spec_path}: field 'promotion.metric': refused")

    folder = load_specs(tmp_path, check=check)
    assert seen == [("flights_delay", path)]
    assert folder.specs == [] and [str(e) for e in folder.errors] == [
        f"{path}: field 'promotion.metric': refused"
    ]


@pytest.mark.parametrize(
    ("where", "value", "message"),
    [
        (
            "schedule",
            "every day",
            r"field 'schedule': 'every day' is not a schedule partitions can follow",
        ),
        (
            "monitoring.schedule",
            "0 0 32 * *",
            r"field 'monitoring\.schedule': '0 0 32 \* \*' is not a schedule",
        ),
        (
            "schedule",
            "@monthly",
            r"monitoring\.window_days \(7\) is shorter than one interval of the schedule '@monthly' \(31 days\)",
        ),
    ],
)
def test_a_schedule_partitions_cannot_follow_names_file_and_field(tmp_path, raw, where, value, message):
    section, _, key = where.rpartition(".")
    (raw[section] if section else raw)[key] = value
    path = _write(tmp_path, raw)
    with pytest.raises(ConfigError, match=message) as err:
        load_spec(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("schedule", ["@hourly", "*/30 * * * *", "@daily", "@weekly", "0 0 * * 1"])
def test_any_cadence_loads(tmp_path, raw, schedule):
    raw["schedule"] = schedule
    assert load_spec(_write(tmp_path, raw)).schedule == schedule
