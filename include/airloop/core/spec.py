"""Model specs: ``config/models/<name>.yaml``, validated with errors that name the file and the field.

A spec declares a model once; the DAGs, the Great Expectations suite and the warehouse tables are derived from it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from airloop.core.errors import ConfigError
from airloop.core.partitions import cron_of, longest_interval
from airloop.core.yaml_cache import load_yaml

ColumnType = Literal["integer", "number", "string", "timestamp", "boolean"]
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnSpec(_Strict):
    """One column of the data contract."""

    name: str
    type: ColumnType
    nullable: bool = True
    min: float | None = None
    max: float | None = None
    allowed: list[str] | list[int] | None = None
    mostly: float = Field(
        default=1.0, gt=0, le=1, description="share of non-null rows that must meet min/max/allowed"
    )
    max_null_share: float | None = Field(
        default=None,
        ge=0,
        lt=1,
        description="the largest share of a batch's rows that may be null (a nullable column; none: any share)",
    )
    description: str = ""

    @model_validator(mode="after")
    def _check_bounds(self) -> ColumnSpec:
        if self.max_null_share is not None and not self.nullable:
            raise ValueError("max_null_share applies to a nullable column (nullable: false allows no null)")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        if (self.min is not None or self.max is not None) and self.type not in ("integer", "number"):
            raise ValueError(f"min/max apply to integer or number columns, not {self.type}")
        return self


class RowCountSpec(_Strict):
    min: int = Field(ge=0)
    max: int | None = None

    @model_validator(mode="after")
    def _check(self) -> RowCountSpec:
        if self.max is not None and self.max < self.min:
            raise ValueError(f"max ({self.max}) is below min ({self.min})")
        return self


class ContractSpec(_Strict):
    """What every batch must satisfy; becomes the Great Expectations suite."""

    row_count: RowCountSpec
    columns: list[ColumnSpec] = Field(min_length=1)
    allow_extra_columns: bool = False
    partition_tolerance_hours: float = Field(
        default=0,
        ge=0,
        le=168,
        description="how far outside its partition's data interval a row's time may lie (e.g. days cut in a "
        "local zone, kept under UTC keys)",
    )
    timezone: str = Field(
        default="UTC",
        description="the zone of timestamps delivered without one (an IANA name); aware ones keep their instant",
    )
    key: list[str] | None = Field(
        default=None,
        min_length=1,
        description="columns that identify a row: no two rows of a batch share them, and the warehouse enforces it",
    )

    @field_validator("columns")
    @classmethod
    def _unique(cls, columns: list[ColumnSpec]) -> list[ColumnSpec]:
        seen: set[str] = set()
        for column in columns:
            if column.name in seen:
                raise ValueError(f"column {column.name!r} is declared twice")
            seen.add(column.name)
        return columns

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, zone: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"{zone!r} is not a time zone (an IANA name, e.g. UTC or America/New_York)"
            ) from None
        return zone

    @model_validator(mode="after")
    def _check_key(self) -> ContractSpec:
        if self.key is None:
            return self
        names = {column.name: column for column in self.columns}
        unknown = [name for name in self.key if name not in names]
        if unknown:
            raise ValueError(f"key column(s) {unknown} are not declared (columns: {', '.join(names)})")
        if len(set(self.key)) != len(self.key):
            raise ValueError(f"key {self.key} names a column twice")
        nullable = [name for name in self.key if names[name].nullable]
        if nullable:
            raise ValueError(f"key column(s) {nullable} must be nullable: false (a null identifies nothing)")
        return self

    def column(self, name: str) -> ColumnSpec:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)


class _Source(_Strict):
    max_active_runs: int = Field(
        default=4,
        ge=1,
        le=32,
        description="partitions ingested at once (catchup, backfills, a late delivery)",
    )
    max_file_mb: float = Field(default=100, gt=0, description="the largest file a delivery may hold")
    wait_timeout_minutes: float = Field(
        default=60, gt=0, description="how long a partition (landed files, or upstream models) is waited for"
    )
    poke_interval_seconds: float = Field(default=30, gt=0)


class LandingSourceSpec(_Source):
    """Partitions landed as files: ``<landing_dir>/<model>/date=YYYY-MM-DD/*.parquet|*.csv``."""

    kind: Literal["landing"] = "landing"
    formats: list[Literal["parquet", "csv"]] = Field(default_factory=lambda: ["parquet", "csv"], min_length=1)
    completion_marker: str | None = Field(
        default="_SUCCESS",
        pattern=r"^[_.][A-Za-z0-9_.-]{1,63}$",
        description="the file a writer adds last to say a partition is whole (Spark's and Hadoop's _SUCCESS); "
        "the partition is waited for until it is there. null: any data file counts as landed (a writer that "
        "cannot mark completion)",
    )

    manifest: str | None = Field(
        default=None,
        pattern=r"^[_.][A-Za-z0-9_.-]{1,63}$",
        description="a JSON file the writer adds last, listing every data file of the partition with its rows "
        'and SHA-256: {"files": [{"name": "flights.parquet", "rows": 812, "sha256": "..."}]} (a part file of a '
        'folder as "folder/part"). The partition is waited for until it is there (in place of the completion '
        "marker), and a delivery that disagrees with it is quarantined. null: no manifest",
    )
    part_folders: bool = Field(
        default=False,
        description="read a folder in the partition as one data file made of its part files, in name order (as "
        "Spark writes flights.parquet/part-00000-....parquet beside its _SUCCESS and .crc files); false: a "
        "folder in a partition is quarantined",
    )

    @field_validator("completion_marker", "manifest")
    @classmethod
    def _a_file_name(cls, marker: str | None) -> str | None:
        if marker is not None and set(marker) == {"."}:
            raise ValueError(f"{marker!r} names a folder, not a file")
        return marker

    @property
    def ready_file(self) -> str | None:
        """The file whose arrival says the partition is whole: the manifest, else the completion marker."""
        return self.manifest or self.completion_marker


#: The bind parameters a SQL source's query gets: the bounds of the run's data interval.
SQL_BOUNDS = ("start", "end")


class SqlSourceSpec(_Source):
    """Partitions read by a query from a database named by an Airflow connection id (no credentials here).

    The query selects the partition's rows with the bind parameters ``:start`` and ``:end``, the bounds of the
    run's data interval (UTC timestamps, start included, end excluded), passed as parameters: values are never
    formatted into the SQL. Its result is kept as the partition's delivery (a Parquet file in the landing folder)
    and then validated, loaded or quarantined exactly like a landed file.
    """

    kind: Literal["sql"]
    conn_id: str = Field(min_length=1, description="the Airflow connection of the database to query")
    query: str = Field(min_length=1)
    after: list[str] = Field(
        default_factory=list,
        description="models (of the same models folder) whose ingestion fills what the query reads: a run waits "
        "until each has settled (passed or quarantined) every one of its partitions that can hold rows of the "
        "run's data interval (those starting in it, and the one before), so an interval is never read "
        "half-delivered",
    )

    @property
    def formats(self) -> list[str]:
        return ["parquet"]

    @field_validator("query")
    @classmethod
    def _binds_the_interval(cls, query: str) -> str:
        missing = [name for name in SQL_BOUNDS if not re.search(rf"(?<![:\w]):{name}\b", query)]
        if missing:
            raise ValueError(
                f"the query must select the partition with the bind parameters :start and :end (the data "
                f"interval's bounds); it lacks {', '.join(':' + m for m in missing)}"
            )
        return query


def _kind(default: str) -> Callable[[Any], str]:
    """How a section's kind is read: its ``kind``, else ``default`` (specs written before kinds existed)."""

    def kind(value: Any) -> str:
        return str(value.get("kind", default) if isinstance(value, dict) else getattr(value, "kind", default))

    return kind


#: Where batches come from (``source.kind``): landed files, or a SQL query.
SourceSpec = Annotated[
    Annotated[LandingSourceSpec, Tag("landing")] | Annotated[SqlSourceSpec, Tag("sql")],
    Discriminator(
        _kind("landing"),
        custom_error_type="source_kind",
        custom_error_message="source.kind must be one of landing, sql",
    ),
]


class _Target(_Strict):
    column: str
    label_delay_hours: float = Field(
        default=0, ge=0, description="how long after the event the label is known"
    )


class BinaryTarget(_Target):
    """Two classes: ``column > threshold`` is the positive one, or ``column`` holds the class and
    ``positive_class`` names the positive one."""

    kind: Literal["binary"] = "binary"
    threshold: float | None = None
    positive_class: str | int | bool | None = None

    @model_validator(mode="after")
    def _one_rule(self) -> BinaryTarget:
        if (self.threshold is None) == (self.positive_class is None):
            raise ValueError(
                "a binary target needs exactly one of 'threshold' (the label is column > threshold) or "
                "'positive_class' (the column holds the class)"
            )
        return self


class MulticlassTarget(_Target):
    """Three or more classes held by ``column``; the classes are the column's ``allowed`` values in the contract,
    in that order."""

    kind: Literal["multiclass"]


class RegressionTarget(_Target):
    """A number: ``column`` itself."""

    kind: Literal["regression"]


#: What the model predicts (``target.kind``: binary, multiclass or regression) and when it is known.
TargetSpec = Annotated[
    Annotated[BinaryTarget, Tag("binary")]
    | Annotated[MulticlassTarget, Tag("multiclass")]
    | Annotated[RegressionTarget, Tag("regression")],
    Discriminator(
        _kind("binary"),
        custom_error_type="target_kind",
        custom_error_message="target.kind must be one of binary, multiclass, regression",
    ),
]


class EmailChannel(_Strict):
    conn_id: str = "smtp_default"
    to: list[str] = Field(min_length=1)


class SlackChannel(_Strict):
    conn_id: str = "slack_default"


class AlertsSpec(_Strict):
    """Alert channels, by Airflow connection id (never a secret)."""

    email: EmailChannel | None = None
    slack: SlackChannel | None = None


class SearchParam(_Strict):
    """One hyperparameter's range: ``low``..``high`` (int or float, optionally log-scaled) or ``choices``."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    type: Literal["int", "float", "categorical"] = "float"
    choices: list[str | int | float | bool | None] | None = None

    @model_validator(mode="after")
    def _check(self) -> SearchParam:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs choices")
        elif self.low is None or self.high is None or self.low > self.high:
            raise ValueError("a numeric parameter needs low <= high")
        return self


class SearchSpec(_Strict):
    """The hyperparameter search: Optuna's TPE sampler within a budget of trials and time.

    ``retrain_trials`` is the budget of a retrain (``<model>_retrain``; unset: ``trials``); its search starts from
    the champion's parameters, the best found so far on the nearest data. ``parallel_trials`` trials are fitted
    at once, in as many processes; Optuna samples them batch by batch, so the search depends on this number (not
    on the machine): keep it when comparing runs.
    """

    trials: int = Field(default=20, ge=1)
    retrain_trials: int | None = Field(default=None, ge=1)
    parallel_trials: int = Field(
        default=1,
        ge=1,
        le=16,
        description="trials fitted at once, each in its own process (results depend on it)",
    )
    timeout_minutes: float = Field(default=10, gt=0)
    space: dict[str, SearchParam] = Field(default_factory=dict)


class TrainingSpec(_Strict):
    """The estimator (class path + params) inside a preprocessing pipeline, its search and its data window."""

    estimator: str = Field(pattern=r"^[A-Za-z_][\w.]*\.[A-Za-z_]\w*$")
    params: dict[str, str | int | float | bool | None] = Field(default_factory=dict)
    search: SearchSpec = Field(default_factory=SearchSpec)
    window_days: float = Field(
        default=60, gt=0, description="the time (days, fractions allowed) of validated partitions to train on"
    )
    holdout_days: float = Field(default=7, gt=0, description="the most recent time of the window, held out")
    validation_fraction: float = Field(default=0.2, gt=0, lt=1, description="of the rest, for the search")
    seed: int = 42

    @model_validator(mode="after")
    def _check(self) -> TrainingSpec:
        if self.holdout_days >= self.window_days:
            raise ValueError("holdout_days must be smaller than window_days")
        return self


class BootstrapSpec(_Strict):
    samples: int = Field(default=500, ge=50)
    confidence: float = Field(default=0.95, gt=0.5, lt=1)


class PromotionSpec(_Strict):
    """When a challenger may replace the champion."""

    metric: str | None = Field(
        default=None, description="the primary metric, one of the target kind's (None: the kind's default)"
    )
    floor: float = Field(description="absolute minimum of the metric on the holdout")
    min_margin: float = Field(default=0.0, ge=0, description="required improvement over the champion")
    bootstrap: BootstrapSpec = Field(default_factory=BootstrapSpec)
    slices: list[str] = Field(default_factory=list, description="columns whose groups may not regress")
    max_slice_regression: float = Field(default=0.02, ge=0)
    min_slice_rows: int = Field(default=200, ge=1, description="smaller groups are not judged")
    approval: Literal["auto", "manual"] = "auto"


class MonitoringSpec(_Strict):
    """Drift monitoring: reference (a fixed-seed sample of the champion's training data) against the current window."""

    schedule: str = "@weekly"
    window_days: float = Field(
        default=7, gt=0, description="the time (days) of scored data in the current window"
    )
    reference_rows: int = Field(default=50_000, ge=100, description="sample size of the reference")
    current_rows: int = Field(default=50_000, ge=100, description="the current window is sampled above this")
    num_method: str | None = Field(
        default=None, description="Evidently's drift method for numbers (None: its default)"
    )
    cat_method: str | None = Field(default=None, description="Evidently's drift method for categories")
    column_threshold: float | None = Field(
        default=None, gt=0, description="per-column drift threshold of the method"
    )
    drift_share: float = Field(default=0.3, gt=0, le=1, description="share of drifted features that is drift")
    min_rows: int = Field(default=1000, ge=1, description="fewer current rows: no decision")
    max_quality_drop: float = Field(
        default=0.05, ge=0, description="drop of the primary metric that is drift"
    )
    cooldown_hours: float = Field(default=72, ge=0, description="minimum time between two retrains")
    refusal_backoff: float = Field(
        default=1.0,
        ge=1.0,
        le=8.0,
        description="after a retrain the gate refused, the cooldown is this many times longer, compounding over "
        "refusals in a row (at most 8 times the cooldown), until a retrain is promoted",
    )
    max_champion_age_days: float | None = Field(
        default=None,
        ge=1,
        description="retrain when the champion's training data ends more than this many days before the latest "
        "validated partition (None: only drift retrains)",
    )
    seed: int = 42

    @field_validator("schedule")
    @classmethod
    def _schedulable(cls, schedule: str) -> str:
        cron_of(schedule)
        return schedule

    @model_validator(mode="after")
    def _check_age_cap(self) -> MonitoringSpec:
        cap = self.max_champion_age_days
        if cap is not None and cap * 24 < self.cooldown_hours:
            raise ValueError(
                f"max_champion_age_days ({cap:g} days) is shorter than cooldown_hours ({self.cooldown_hours:g} h): "
                "the cooldown would keep the champion past the cap; raise the cap or shorten the cooldown"
            )
        return self


class ModelSpec(_Strict):
    """A model, declared once."""

    name: str
    description: str = ""
    owner: str = "airloop"
    tags: list[str] = Field(default_factory=list)
    schedule: str = "@daily"
    start_date: date
    end_date: date | None = None
    catchup: bool = True
    time_column: str
    features: list[str] = Field(min_length=1)
    target: TargetSpec
    source: SourceSpec = Field(default_factory=LandingSourceSpec)
    contract: ContractSpec
    alerts: AlertsSpec = Field(default_factory=AlertsSpec)
    training: TrainingSpec | None = None
    promotion: PromotionSpec | None = None
    monitoring: MonitoringSpec | None = None

    @field_validator("name")
    @classmethod
    def _valid_name(cls, name: str) -> str:
        if not _NAME.match(name):
            raise ValueError("must be lower-case letters, digits and _ (a SQL table and DAG id prefix)")
        return name

    @field_validator("schedule")
    @classmethod
    def _partitionable(cls, schedule: str) -> str:
        cron_of(schedule)  # the partitions follow the schedule's intervals
        return schedule

    @model_validator(mode="after")
    def _columns_declared(self) -> ModelSpec:
        declared = {c.name for c in self.contract.columns}
        for field, names in (
            ("features", self.features),
            ("target.column", [self.target.column]),
            ("time_column", [self.time_column]),
            ("promotion.slices", self.promotion.slices if self.promotion else []),
        ):
            missing = [n for n in names if n not in declared]
            if missing:
                raise ValueError(f"{field}: {', '.join(missing)} not declared in contract.columns")
        self._check_target()
        if self.end_date is not None and self.end_date < self.start_date:
            raise ValueError("end_date is before start_date")
        if self.monitoring and self.monitoring.max_champion_age_days is not None and self.training is None:
            raise ValueError(
                "monitoring.max_champion_age_days: retraining on the champion's age needs a 'training' section"
            )
        if self.monitoring and timedelta(days=self.monitoring.window_days) < longest_interval(self.schedule):
            raise ValueError(
                f"monitoring.window_days ({self.monitoring.window_days:g}) is shorter than one interval of the "
                f"schedule {self.schedule!r} ({longest_interval(self.schedule) / timedelta(days=1):g} days): a "
                "monitoring window would hold no complete partition"
            )
        return self

    def _check_target(self) -> None:
        target = self.target
        index = next(i for i, c in enumerate(self.contract.columns) if c.name == target.column)
        column = self.contract.columns[index]
        where = f"contract.columns[{index}] ({column.name})"
        if target.kind == "regression" or (target.kind == "binary" and target.threshold is not None):
            if column.type not in ("integer", "number"):
                rule = (
                    "a regression target"
                    if target.kind == "regression"
                    else "a binary target with a threshold"
                )
                raise ValueError(f"target: {rule} needs a numeric column; {where} is a {column.type}")
        elif target.kind == "multiclass":
            if not column.allowed or len(column.allowed) < 3:
                raise ValueError(
                    f"target: a multiclass target needs its classes, three or more, listed in {where}.allowed"
                    + (" (two classes: use kind binary with positive_class)" if column.allowed else "")
                )
            if column.mostly < 1:
                raise ValueError(
                    f"target: {where}.mostly must be 1: a class outside the contract is never a label"
                )
        elif column.allowed is not None and str(target.positive_class) not in {
            str(a) for a in column.allowed
        }:
            raise ValueError(
                f"target.positive_class: {target.positive_class!r} is not among {where}.allowed "
                f"({', '.join(map(str, column.allowed))})"
            )

    @property
    def batches_table(self) -> str:
        """Warehouse table of validated batches."""
        return f"{self.name}_batches"

    # The Assets' scheme: Airflow's documented form for a scheme no provider defines ("x-" prefixed) takes the URI
    # as written; any other unknown scheme sends every Asset() through the providers' URI handlers, whose first
    # lookup imports every provider's asset module (about 30 ms of each DAG file's parse).
    @property
    def batches_asset(self) -> str:
        return f"x-airloop://{self.name}/batches"

    @property
    def batches_alias(self) -> str:
        """The Asset alias the ingest task emits :attr:`batches_asset` through: one event per loaded batch, none for
        a batch it sends to quarantine (a task's plain outlets would emit on every success)."""
        return f"{self.name}_batches_loaded"

    @property
    def drift_alias(self) -> str:
        """The Asset alias the monitor task emits :attr:`drift_asset` through: an event only for a window that
        drifted."""
        return f"{self.name}_drift_recorded"

    @property
    def champion_asset(self) -> str:
        return f"x-airloop://{self.name}/champion"

    @property
    def drift_asset(self) -> str:
        return f"x-airloop://{self.name}/drift"

    @property
    def registered_model(self) -> str:
        """The model's name in the MLflow registry (and its experiment's)."""
        return self.name


def load_spec(path: Path, cache_dir: Path | None = None) -> ModelSpec:
    """Read and validate one spec; errors name the file and the field. With ``cache_dir``, a file read before is
    decoded from there instead of parsed again (:mod:`airloop.core.yaml_cache`); it is validated either way."""
    path = Path(path)
    try:
        # libyaml's parser (PyYAML's C binding, in its wheels): every DAG file reads every spec at each parse,
        # and the pure-Python parser took about 17 ms of the 24 ms per spec (35 specs: 0.85 s per file).
        raw = load_yaml(path.read_bytes(), cache_dir)
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: spec file not found") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a spec must be a mapping of fields, got {type(raw).__name__}")
    try:
        spec = ModelSpec.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_describe(exc)}") from None
    if spec.name != path.stem:
        raise ConfigError(f"{path}: field 'name' is {spec.name!r} but the file is named {path.stem!r}")
    return spec


@dataclass(frozen=True)
class SpecFolder:
    """The specs of a models folder: those that load, and one error per file that does not."""

    specs: list[ModelSpec]
    errors: list[ConfigError]


def load_specs(
    models_dir: Path,
    check: Callable[[ModelSpec, Path], None] | None = None,
    cache_dir: Path | None = None,
) -> SpecFolder:
    """Every spec under ``models_dir`` (``*.yaml``, by name), each loaded on its own: a broken file is reported
    in ``errors`` (naming the file and the field) and never hides the others. ``check`` adds validation that
    needs more than the spec's schema (it raises :class:`ConfigError`)."""
    specs, errors, paths = [], [], {}
    for path in sorted(Path(models_dir).glob("*.yaml")):
        try:
            spec = load_spec(path, cache_dir)
            if check is not None:
                check(spec, path)
        except ConfigError as exc:
            errors.append(exc)
        else:
            specs.append(spec)
            paths[spec.name] = path
    return _check_upstreams(specs, errors, paths)


def _check_upstreams(specs: list[ModelSpec], errors: list[ConfigError], paths: dict[str, Path]) -> SpecFolder:
    """A spec whose ``source.after`` names no other model of the folder that loads (itself, an unknown name, a
    broken spec, or one dropped here in turn), or that waits on itself through others, is an error of its own."""
    kept = list(specs)
    while True:
        names = {spec.name for spec in kept}
        dropped = []
        for spec in kept:
            unknown = [name for name in _after(spec) if name not in names or name == spec.name]
            if unknown:
                where = paths[spec.name]
                dropped.append(spec.name)
                errors.append(
                    ConfigError(
                        f"{where}: field 'source.after': {', '.join(map(repr, unknown))} is not another model of "
                        f"{where.parent} that loads (models: {', '.join(sorted(names - {spec.name}))})"
                    )
                )
            elif cycle := _cycle(spec.name, {s.name: _after(s) for s in kept}):
                dropped.append(spec.name)
                errors.append(
                    ConfigError(
                        f"{paths[spec.name]}: field 'source.after': the models wait on each other "
                        f"({' -> '.join(cycle)}): none would ever read"
                    )
                )
        if not dropped:
            return SpecFolder(kept, errors)
        kept = [spec for spec in kept if spec.name not in dropped]


def _after(spec: ModelSpec) -> list[str]:
    return list(getattr(spec.source, "after", []))


def _cycle(start: str, after: dict[str, list[str]]) -> list[str] | None:
    """A chain of ``after`` from ``start`` back to itself, if there is one."""
    path, seen = [start], set()

    def walk(name: str) -> list[str] | None:
        for upstream in after.get(name, []):
            if upstream == start:
                return [*path, start]
            if upstream not in seen:
                seen.add(upstream)
                path.append(upstream)
                if found := walk(upstream):
                    return found
                path.pop()
        return None

    return walk(start)


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        where = _location(error["loc"])
        # pydantic prefixes the messages of our own checks; the field (or the message itself) says what is wrong.
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"field '{where}': {message}" if where else message)
    return "; ".join(problems)


#: The tags of the kinds of target and source, which pydantic puts in an error's location after the field.
_TAGS = {"target": {"binary", "multiclass", "regression"}, "source": {"landing", "sql"}}


def _location(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
        elif not (len(parts) == 1 and item in _TAGS.get(parts[0], ())):
            parts.append(str(item))
    return ".".join(parts)
