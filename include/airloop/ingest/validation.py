"""Batch validation: a model's data contract, checked by Great Expectations Core.

The suite is generated from ``spec.contract`` (never written twice), run on a pandas DataFrame in an ephemeral
GX context, and condensed into a small :class:`ValidationOutcome` whose failures name the column and the
problem. The full GX result is written as JSON; optionally a GX Data Docs site is updated.

Great Expectations (3-5 s to import) is reached through :mod:`airloop.vendor.gx`, imported on first use.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from airloop.core.files import write_json
from airloop.core.spec import ColumnSpec, ColumnType, ModelSpec
from airloop.ingest.chunk_results import KEY_CHECK, KeyDuplicates, key_result, merge_results
from airloop.ingest.data_docs import publish
from airloop.vendor.gx import context as gx_context
from airloop.vendor.gx import gx

if TYPE_CHECKING:
    import pandas as pd

_INTEGER_DTYPES = (
    "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "Int8Dtype", "Int16Dtype", "Int32Dtype", "Int64Dtype", "UInt8Dtype", "UInt16Dtype", "UInt32Dtype", "UInt64Dtype",
)  # fmt: skip
#: Contract type -> the dtype names accepted. A pandas dtype class name (``Int64Dtype``, ``DatetimeTZDtype``)
#: accepts every parametrisation of it (any time zone, any string storage).
#: Object columns are checked value by value (``str`` accepts Python strings; ``bool_`` rejects Python bools,
#: which keeps ``boolean`` strict).
_TYPE_LISTS: dict[ColumnType, tuple[str, ...]] = {
    "integer": _INTEGER_DTYPES,
    "number": (*_INTEGER_DTYPES, "float16", "float32", "float64", "Float32Dtype", "Float64Dtype"),
    "string": ("str", "StringDtype"),
    # Instants: every reading path converts to UTC (landing.parse_timestamps); a naive column left is one whose
    # local times do not exist or are ambiguous in the contract's zone.
    "timestamp": ("DatetimeTZDtype",),
    "boolean": ("bool_", "BooleanDtype"),
}
_MAX_EXAMPLES = 3
#: How many bad values a check of airloop's own keeps to pick its distinct examples from.
_EXAMPLE_POOL = 50
_SAFE_KEY = re.compile(r"[^A-Za-z0-9._=-]+")


@dataclass(frozen=True)
class ValidationOutcome:
    """What a validation decided, small enough for an Airflow XCom."""

    passed: bool
    result_id: str
    failures: list[str] = field(default_factory=list)
    statistics: dict[str, Any] = field(default_factory=dict)
    result_path: str | None = None

    @property
    def reason(self) -> str:
        """All failures in one line; empty when the batch passed."""
        return "; ".join(self.failures)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (with ``reason``), e.g. for XCom."""
        return {**asdict(self), "reason": self.reason}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ValidationOutcome:
        """The inverse of :meth:`to_dict` (``reason`` is derived, so it is ignored)."""
        return cls(
            passed=bool(data["passed"]),
            result_id=str(data["result_id"]),
            failures=list(data.get("failures", [])),
            statistics=dict(data.get("statistics", {})),
            result_path=data.get("result_path"),
        )


def build_suite(spec: ModelSpec) -> Any:
    """The GX expectation suite of ``spec.contract``, named after the model.

    Table level: the columns match the declared set (extra columns fail unless ``allow_extra_columns``) and the
    row count lies within ``row_count``. Per column: its type, not-null unless ``nullable``, ``min``/``max`` and
    ``allowed`` (both with ``mostly``).
    """
    return _suite(spec, spec.name, table_checks=True)


def _suite(spec: ModelSpec, name: str, *, table_checks: bool) -> Any:
    """The contract's suite; without ``table_checks``, its checks of columns only (what one chunk of a batch
    validated in chunks is checked by)."""
    gx_ = gx()
    gxe = gx_.expectations
    contract = spec.contract
    expectations: list[Any] = []
    if table_checks:
        expectations += [
            gxe.ExpectTableColumnsToMatchSet(
                column_set=[c.name for c in contract.columns], exact_match=not contract.allow_extra_columns
            ),
            gxe.ExpectTableRowCountToBeBetween(
                min_value=contract.row_count.min, max_value=contract.row_count.max
            ),
        ]
        if contract.key:
            expectations.append(gxe.ExpectCompoundColumnsToBeUnique(column_list=list(contract.key)))
    for column in contract.columns:
        expectations.extend(_column_expectations(gx_, column))
    meta = {"model": spec.name, "contract_digest": _contract_digest(spec)}
    return gx_.gx.ExpectationSuite(name=name, expectations=expectations, meta=meta)


def _key_suite(spec: ModelSpec) -> Any:
    gx_ = gx()
    check = gx_.expectations.ExpectCompoundColumnsToBeUnique(column_list=list(spec.contract.key))
    return gx_.gx.ExpectationSuite(name=f"{spec.name}-key", expectations=[check])


def _contract_digest(spec: ModelSpec) -> str:
    """A digest of the contract: the Data Docs site re-renders the suite page only when it changes."""
    return hashlib.sha256(spec.contract.model_dump_json().encode()).hexdigest()[:16]


def validate_frame(
    df: pd.DataFrame,
    spec: ModelSpec,
    *,
    batch_key: str,
    results_dir: Path,
    data_docs_dir: Path | None = None,
    interval: tuple[datetime, datetime] | None = None,
) -> ValidationOutcome:
    """Validate one batch (``batch_key``, e.g. the partition ``2013-01-05``) against the model's contract.

    The full GX result is written to ``results_dir/<model>/<batch_key>/<result_id>.json``. With
    ``data_docs_dir``, the batch's page is added to the Data Docs site there and its index rebuilt; pages of
    earlier validations, from any process, are kept (see :func:`airloop.ingest.data_docs.publish`).
    """
    return validate_chunks(
        [df],
        spec,
        batch_key=batch_key,
        results_dir=results_dir,
        data_docs_dir=data_docs_dir,
        interval=interval,
    )


def validate_chunks(
    chunks: Iterable[pd.DataFrame],
    spec: ModelSpec,
    *,
    batch_key: str,
    results_dir: Path,
    data_docs_dir: Path | None = None,
    interval: tuple[datetime, datetime] | None = None,
    key_columns: Callable[[list[str]], Iterable[pd.DataFrame]] | None = None,
) -> ValidationOutcome:
    """Validate a batch given as chunks of rows (each indexed by its rows' positions in the batch), holding one
    chunk at a time: the same verdict, failures and kept result as :func:`validate_frame` of the whole batch
    (:mod:`airloop.ingest.chunk_results`). One chunk is validated as the whole batch it is. ``key_columns(names)``
    reads the batch again, those columns only, for rows whose key hash repeats (needed for more than one chunk
    when the contract has a key)."""
    gx_ = gx()
    run_time = datetime.now(UTC)
    result_id = _result_id(spec.name, batch_key, run_time)
    context = gx_context()
    data = context.data_sources.add_pandas(spec.name).add_dataframe_asset(spec.name)
    batch_definition = data.add_batch_definition_whole_dataframe(_safe(batch_key))

    def runner(suite: Any, name: str) -> Callable[[pd.DataFrame], Any]:
        definition = context.validation_definitions.add(
            gx_.gx.ValidationDefinition(name=name, data=batch_definition, suite=context.suites.add(suite))
        )
        run_id = gx_.RunIdentifier(run_name=batch_key, run_time=run_time)
        return lambda frame: definition.run(
            batch_parameters={"dataframe": frame}, result_format="SUMMARY", run_id=run_id
        )

    chunks = iter(chunks)
    first = next(chunks, None)
    if first is None:
        raise ValueError(f"{batch_key}: no chunk of rows to validate")
    first_chunk = arrow_strings(first, spec)
    del first
    own = _OwnChecks(spec, interval)
    own.add(first_chunk, offset=0)
    # Every row's key is hashed, in case more chunks follow (a few milliseconds for a day of a thousand rows); a
    # key column missing is the columns check's failure, with no key to check.
    key = list(spec.contract.key or [])
    keys = KeyDuplicates(key) if key and set(key) <= set(first_chunk.columns) else None
    if keys is not None:
        keys.add(first_chunk, offset=0)
    result = runner(build_suite(spec), result_id)(first_chunk)
    result_dict = result.to_json_dict()
    rows = len(first_chunk)
    nan_columns = _float_columns(first_chunk)
    del first_chunk
    later = []
    check_chunk = None
    for chunk in chunks:
        chunk = arrow_strings(chunk, spec)
        check_chunk = check_chunk or runner(
            _suite(spec, f"{spec.name}-columns", table_checks=False), f"{result_id}-columns"
        )
        own.add(chunk, offset=rows)
        if keys is not None:
            keys.add(chunk, offset=rows)
        later.append(check_chunk(chunk).to_json_dict())
        nan_columns |= _float_columns(chunk)
        rows += len(chunk)
        del chunk
    if later:  # a batch in chunks: its table checks are the batch's
        key_item = None
        if keys is not None:
            if key_columns is None:
                raise ValueError(
                    "a batch in chunks whose contract has a key needs key_columns to read it again"
                )
            template = next(i for i in result_dict["results"] if i["expectation_config"]["type"] == KEY_CHECK)
            candidates = keys.candidates(key_columns(keys.key))
            confirmed = None
            if candidates is not None:
                check_keys = runner(_key_suite(spec), f"{result_id}-key")
                confirmed = check_keys(candidates).to_json_dict()["results"][0]
            key_item = key_result(template, confirmed, rows=rows, missing=keys.missing)
        result_dict = merge_results(result_dict, later, rows=rows, key_item=key_item, nan_columns=nan_columns)
    failures = _describe_failures(result_dict, spec)
    unstorable = own.failures()
    result.meta["airloop"] = {"result_id": result_id, "model": spec.name, "batch_key": batch_key}
    if unstorable:
        # Checks of airloop's own (no GX expectation holds them): the kept result and its Data Docs page must not
        # say "success" for a batch that failed them.
        result.meta["airloop"]["failures"] = unstorable
        result_dict["success"] = False
    result_dict["meta"]["airloop"] = result.meta["airloop"]

    result_path = Path(results_dir) / spec.name / _safe(batch_key) / f"{result_id}.json"
    write_json(result_path, result_dict)
    if data_docs_dir is not None:
        key = gx_.ValidationResultIdentifier(
            expectation_suite_identifier=gx_.ExpectationSuiteIdentifier(name=spec.name),
            run_id=result.meta["run_id"],
            batch_identifier=result.batch_id,
        )
        publish(gx_, build_suite(spec), key, result_dict, Path(data_docs_dir))
    passed = bool(result_dict["success"]) and not unstorable
    failures += unstorable
    if not passed and not failures:
        failures = ["validation failed; see the result JSON"]
    return ValidationOutcome(
        passed=passed,
        result_id=result_id,
        failures=failures,
        statistics=_statistics(result_dict.get("statistics", {})),
        result_path=str(result_path),
    )


def _float_columns(frame: pd.DataFrame) -> set[str]:
    return {str(name) for name, dtype in frame.dtypes.items() if dtype.kind == "f"}


def arrow_strings(df: pd.DataFrame, spec: ModelSpec) -> pd.DataFrame:
    """``df`` with each contract string column whose values are all text (or null) held as Arrow strings: the
    same values, whose type, nulls and characters are then checked in bulk (an ``object`` column is checked value
    by value, in Python). A column holding anything but text stays as it is, for the type check to name. The
    caller's frame is not changed."""
    import pandas as pd

    names = [
        c.name
        for c in spec.contract.columns
        if c.type == "string"
        and c.name in df.columns
        and df[c.name].dtype == object
        and pd.api.types.infer_dtype(df[c.name], skipna=True) == "string"
    ]
    if not names:
        return df
    converted = df.copy(deep=False)
    for name in names:
        try:
            converted[name] = df[name].astype("string[pyarrow]")
        except (
            UnicodeError,
            ValueError,
            TypeError,
        ):  # text Arrow cannot hold (a lone surrogate): checked as is
            continue
    return converted


def own_failures(
    df: pd.DataFrame, spec: ModelSpec, interval: tuple[datetime, datetime] | None = None
) -> list[str]:
    """airloop's own checks of one frame (see :class:`_OwnChecks`)."""
    checks = _OwnChecks(spec, interval)
    checks.add(df, offset=0)
    return checks.failures()


@dataclass
class _Tally:
    """Bad values of one column found by one of airloop's own checks, counted over a batch's chunks: how many,
    the first rows (their positions in the batch) and the first values, as text."""

    count: int = 0
    rows: list[int] = field(default_factory=list)
    values: list[str] = field(default_factory=list)

    def add(self, bad: Any, values: pd.Series, offset: int, text: Callable[[Any], str]) -> None:
        found = int(bad.sum())
        if not found:
            return
        self.count += found
        if len(self.rows) < _MAX_EXAMPLES:
            self.rows += [offset + int(i) for i in bad.nonzero()[0][: _MAX_EXAMPLES - len(self.rows)]]
        if len(self.values) < _EXAMPLE_POOL:
            self.values += [text(v) for v in values[bad].head(_EXAMPLE_POOL - len(self.values))]

    def examples(self) -> list[str]:
        """The first distinct values among the first bad ones."""
        return list(dict.fromkeys(self.values))[:_MAX_EXAMPLES]

    def where(self) -> str:
        return f"_row {', '.join(map(str, self.rows))}{', ...' if self.count > len(self.rows) else ''}"


class _OwnChecks:
    """Checks of airloop's own, which no GX expectation holds, taken chunk by chunk:

    * values of a timestamp column that are no time at all (``"soon"``), named with their rows: the type check only
      says the column is not all times, and its examples are the values that did parse;
    * string values holding a NUL character, naming the first rows: PostgreSQL cannot store them in text (its
      load would fail after validation passed), and a batch must mean the same on every warehouse, so none gets
      them (GX has no check for a character in any position; this is one pass of pandas' string search);
    * rows whose time column lies outside the partition's data interval ``[start, end)``, widened by the
      contract's ``partition_tolerance_hours``: a whole other day delivered as this one, or mixed into it (a time
      column that is not instants is left to the type check).
    """

    def __init__(self, spec: ModelSpec, interval: tuple[datetime, datetime] | None) -> None:
        self.spec = spec
        self.interval = interval
        self.unparsed: dict[str, _Tally] = {}
        self.nul: dict[str, _Tally] = {}
        self.outside = _Tally()

    def add(self, df: pd.DataFrame, offset: int) -> None:
        """Check a chunk whose first row is the batch's row ``offset``."""
        import pandas as pd

        for column in self.spec.contract.columns:
            if column.name not in df.columns:
                continue
            values = df[column.name]
            if column.type == "timestamp" and values.dtype == object:
                parsed = pd.Series(
                    [
                        pd.to_datetime(v, errors="coerce", format="ISO8601", utc=True)
                        if isinstance(v, str)
                        else v
                        for v in values
                    ],
                    index=values.index,
                    dtype=object,
                )
                bad = (parsed.isna() & values.notna()).to_numpy(dtype=bool)
                self.unparsed.setdefault(column.name, _Tally()).add(bad, values, offset, str)
            elif column.type == "string":
                try:
                    holds = values.str.contains("\x00", regex=False, na=False).to_numpy(dtype=bool)
                except AttributeError:
                    continue  # not text at all: the type check names it
                self.nul.setdefault(column.name, _Tally()).add(holds, values, offset, str)
        time = self.spec.time_column
        if self.interval and time in df.columns and isinstance(df[time].dtype, pd.DatetimeTZDtype):
            start, end = self._bounds()
            times = df[time]
            outside = ((times < start) | (times >= end)).to_numpy(dtype=bool)
            self.outside.add(outside, times, offset, lambda t: t.isoformat())

    def _bounds(self) -> tuple[Any, Any]:
        import pandas as pd

        assert self.interval is not None
        tolerance = pd.Timedelta(hours=self.spec.contract.partition_tolerance_hours)
        return pd.Timestamp(self.interval[0]) - tolerance, pd.Timestamp(self.interval[1]) + tolerance

    def failures(self) -> list[str]:
        """One line per column that failed a check: the unparsed times, the NUL characters, the rows outside."""
        failures = [
            f"column '{name}': {tally.count} value(s) not a time, e.g. {tally.examples()!r} ({tally.where()})"
            for name, tally in self.unparsed.items()
            if tally.count
        ]
        failures += [
            f"column '{name}': {tally.count} value(s) hold a NUL character, which the warehouse cannot store "
            f"({tally.where()})"
            for name, tally in self.nul.items()
            if tally.count
        ]
        if self.outside.count and self.interval:
            hours = self.spec.contract.partition_tolerance_hours
            widened = f" widened by {hours:g} h" if hours else ""
            failures.append(
                f"column '{self.spec.time_column}': {self.outside.count} row(s) outside the partition's interval "
                f"[{self.interval[0].isoformat()}, {self.interval[1].isoformat()}){widened}, "
                f"e.g. {self.outside.examples()!r}"
            )
        return failures


def outcome_from_failures(spec: ModelSpec, batch_key: str, failures: list[str]) -> ValidationOutcome:
    """A failed outcome for problems found before GX can run (unreadable file, wrong format)."""
    if not failures:
        raise ValueError("a failed outcome needs at least one failure")
    return ValidationOutcome(
        passed=False,
        result_id=_result_id(spec.name, batch_key, datetime.now(UTC)),
        failures=list(failures),
        statistics=_statistics({}),
        result_path=None,
    )


def _column_expectations(gx_: SimpleNamespace, column: ColumnSpec) -> list[Any]:
    gxe = gx_.expectations
    name = column.name
    expectations: list[Any] = [
        gx_.ExpectColumnValuesToBeInTypeFamily(
            column=name, type_list=list(_TYPE_LISTS[column.type]), meta={"contract_type": column.type}
        )
    ]
    if not column.nullable:
        expectations.append(gxe.ExpectColumnValuesToNotBeNull(column=name))
    elif column.max_null_share is not None:
        expectations.append(gxe.ExpectColumnValuesToNotBeNull(column=name, mostly=1 - column.max_null_share))
    if column.min is not None or column.max is not None:
        expectations.append(
            gxe.ExpectColumnValuesToBeBetween(
                column=name, min_value=column.min, max_value=column.max, mostly=column.mostly
            )
        )
    if column.allowed is not None:
        expectations.append(
            gxe.ExpectColumnValuesToBeInSet(column=name, value_set=column.allowed, mostly=column.mostly)
        )
    return expectations


_COLUMNS_CHECK = "expect_table_columns_to_match_set"
_ROW_COUNT_CHECK = "expect_table_row_count_to_be_between"
_KEY_CHECK = "expect_compound_columns_to_be_unique"
_TYPE_CHECK = "expect_column_values_to_be_in_type_family"
_NOT_NULL_CHECK = "expect_column_values_to_not_be_null"
_RANGE_CHECK = "expect_column_values_to_be_between"
_SET_CHECK = "expect_column_values_to_be_in_set"
_CHECK_ORDER = (
    _COLUMNS_CHECK,
    _ROW_COUNT_CHECK,
    _KEY_CHECK,
    _TYPE_CHECK,
    _NOT_NULL_CHECK,
    _RANGE_CHECK,
    _SET_CHECK,
)


def _describe_failures(result: dict[str, Any], spec: ModelSpec) -> list[str]:
    """One line per failed expectation of a GX suite result (``to_json_dict()``), in contract order.

    Failures that only follow from another are left out: every check on a missing column (it is reported once,
    as missing) and, on a column of the wrong type, range checks and checks that raised (comparing strings
    with numbers says nothing more than the type failure).
    """
    missing: set[str] = set()
    wrong_type: set[str] = set()
    for item in result.get("results", []):
        config = item["expectation_config"]
        if config["type"] == _COLUMNS_CHECK:
            mismatched = (item.get("result") or {}).get("details", {}).get("mismatched", {})
            missing.update(mismatched.get("missing", []))
        elif config["type"] == _TYPE_CHECK and not item["success"]:
            wrong_type.add(config["kwargs"]["column"])

    failed = []
    for item in result.get("results", []):
        config = item["expectation_config"]
        column = config["kwargs"].get("column")
        if item["success"] or any(c in missing for c in config["kwargs"].get("column_list") or [column]):
            continue
        if column in wrong_type and (_raised(item) or config["type"] == _RANGE_CHECK):
            continue
        failed.append(item)

    position = {column.name: index for index, column in enumerate(spec.contract.columns)}

    def order(item: dict[str, Any]) -> tuple[int, int]:
        config = item["expectation_config"]
        kind = config["type"]
        return (
            position.get(config["kwargs"].get("column"), -1),
            _CHECK_ORDER.index(kind) if kind in _CHECK_ORDER else len(_CHECK_ORDER),
        )

    return [_describe(item) for item in sorted(failed, key=order)]


def _raised(item: dict[str, Any]) -> bool:
    return bool((item.get("exception_info") or {}).get("raised_exception"))


def _describe(item: dict[str, Any]) -> str:
    config, details = item["expectation_config"], item.get("result") or {}
    kind, kwargs = config["type"], config["kwargs"]
    column = kwargs.get("column")
    where = f"column '{column}': " if column else ""
    if _raised(item):
        message = str(item["exception_info"].get("exception_message") or "unknown error").splitlines()[0]
        return f"{where}{kind} could not run: {message}"
    if kind == _COLUMNS_CHECK:
        mismatched = details.get("details", {}).get("mismatched", {})
        parts = []
        if mismatched.get("missing"):
            parts.append(f"missing column(s): {', '.join(mismatched['missing'])}")
        if mismatched.get("unexpected"):
            parts.append(f"unexpected column(s): {', '.join(mismatched['unexpected'])}")
        return "; ".join(parts) or "columns do not match the contract"
    if kind == _ROW_COUNT_CHECK:
        bounds = _bounds(kwargs.get("min_value"), kwargs.get("max_value"))
        return f"row count {details.get('observed_value')} outside {bounds}"
    count = details.get("unexpected_count")
    if kind == _KEY_CHECK:
        key = ", ".join(kwargs["column_list"])
        return f"key ({key}): {count} row(s) share their key with another row{_examples(details)}"
    if kind == _TYPE_CHECK:
        expected = config.get("meta", {}).get("contract_type", "/".join(kwargs["type_list"]))
        observed = details.get("observed_value")
        if observed is not None and expected == "timestamp" and str(observed).startswith("datetime64"):
            return (
                f"{where}type {observed}, expected timestamp: times without a zone that do not exist or are "
                "ambiguous in the contract's timezone (a daylight-saving change)"
            )
        if observed is not None:
            return f"{where}type {observed}, expected {expected}"
        # An object column: GX checked it value by value. Only a string column may be of type object.
        if expected == "string":
            return f"{where}type object, expected string ({count} value(s) not str{_examples(details)})"
        return f"{where}type object, expected {expected}{_examples(details)}"
    if kind == _NOT_NULL_CHECK:
        mostly = kwargs.get("mostly")
        if mostly is None or mostly >= 1:
            return f"{where}{count} null value(s)"
        share = details.get("unexpected_percent") or 0.0
        return (
            f"{where}{count} null value(s) ({share:.2f}% of rows; at most {(1 - mostly) * 100:.2f}% allowed)"
        )
    if kind == _RANGE_CHECK:
        bounds = _bounds(kwargs.get("min_value"), kwargs.get("max_value"))
        return f"{where}{count} value(s) outside {bounds}{_share(kwargs, details)}{_examples(details)}"
    if kind == _SET_CHECK:
        return f"{where}{count} value(s) not in allowed set{_share(kwargs, details)}{_examples(details)}"
    return f"{where}{kind} failed (observed {details.get('observed_value', count)!r})"


def _examples(details: dict[str, Any]) -> str:
    examples: list[Any] = []
    for value in details.get("partial_unexpected_list") or []:
        if value not in examples:
            examples.append(value)
        if len(examples) == _MAX_EXAMPLES:
            break
    return f", e.g. {examples!r}" if examples else ""


def _share(kwargs: dict[str, Any], details: dict[str, Any]) -> str:
    mostly = kwargs.get("mostly")
    if mostly is None or mostly >= 1:
        return ""
    share = details.get("unexpected_percent_nonmissing") or 0.0
    return f" ({share:.2f}% of non-null values; at most {(1 - mostly) * 100:.2f}% allowed)"


def _bounds(low: float | None, high: float | None) -> str:
    return f"[{'-inf' if low is None else f'{low:g}'}, {'inf' if high is None else f'{high:g}'}]"


def _statistics(statistics: dict[str, Any]) -> dict[str, Any]:
    return {
        "evaluated_expectations": int(statistics.get("evaluated_expectations") or 0),
        "successful_expectations": int(statistics.get("successful_expectations") or 0),
        "unsuccessful_expectations": int(statistics.get("unsuccessful_expectations") or 0),
        "success_percent": statistics.get("success_percent"),
    }


def _safe(batch_key: str) -> str:
    """``batch_key`` as one path component (it names a folder and is part of the result id)."""
    safe = _SAFE_KEY.sub("_", batch_key).strip("._")
    if not safe:
        raise ValueError(f"batch_key {batch_key!r} has no usable characters")
    return safe


def _result_id(model: str, batch_key: str, run_time: datetime) -> str:
    return f"{model}-{_safe(batch_key)}-{run_time:%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:8]}"
