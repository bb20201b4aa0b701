"""Batch validation: a model's data contract, checked by Great Expectations Core.

The suite is generated from ``spec.contract`` (never written twice), run on a pandas DataFrame in an ephemeral
GX context, and condensed into a small :class:`ValidationOutcome` whose failures name the column and the
problem. The full GX result is written as JSON; optionally a GX Data Docs site is updated.

``great_expectations`` (3-5 s to import) is imported inside the functions, never at module level, so DAG
files that import this module still parse fast.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from airloop.spec import ColumnSpec, ColumnType, ModelSpec

if TYPE_CHECKING:
    import great_expectations as gx
    import pandas as pd

#: Name of the Data Docs site in the contexts built here.
_DATA_DOCS_SITE = "airloop"
#: The Data Docs index lists the latest validations only: GX reads every listed result to build it, so an
#: unbounded index makes each publish slower as the site grows (1.7 s at 150 results). Older pages stay on disk.
_INDEX_LIMIT = 31

_INTEGER_DTYPES = (
    "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "Int8Dtype", "Int16Dtype", "Int32Dtype", "Int64Dtype", "UInt8Dtype", "UInt16Dtype", "UInt32Dtype", "UInt64Dtype",
)  # fmt: skip
#: Contract type -> the dtype names accepted. A pandas dtype class name (``Int64Dtype``, ``DatetimeTZDtype``)
#: accepts every parametrisation of it (any time zone, any string storage); ``datetime64`` any naive unit.
#: Object columns are checked value by value (``str`` accepts Python strings; ``bool_`` rejects Python bools,
#: which keeps ``boolean`` strict).
_TYPE_LISTS: dict[ColumnType, tuple[str, ...]] = {
    "integer": _INTEGER_DTYPES,
    "number": (*_INTEGER_DTYPES, "float16", "float32", "float64", "Float32Dtype", "Float64Dtype"),
    "string": ("str", "StringDtype"),
    "timestamp": ("datetime64", "DatetimeTZDtype"),
    "boolean": ("bool_", "BooleanDtype"),
}
_MAX_EXAMPLES = 3
_SAFE_KEY = re.compile(r"[^A-Za-z0-9._=-]+")

log = logging.getLogger(__name__)


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


def build_suite(spec: ModelSpec) -> gx.ExpectationSuite:
    """The GX expectation suite of ``spec.contract``, named after the model.

    Table level: the columns match the declared set (extra columns fail unless ``allow_extra_columns``) and the
    row count lies within ``row_count``. Per column: its type, not-null unless ``nullable``, ``min``/``max`` and
    ``allowed`` (both with ``mostly``).
    """
    gx_ = _gx()
    gxe = gx_.expectations
    contract = spec.contract
    expectations: list[Any] = [
        gxe.ExpectTableColumnsToMatchSet(
            column_set=[c.name for c in contract.columns], exact_match=not contract.allow_extra_columns
        ),
        gxe.ExpectTableRowCountToBeBetween(
            min_value=contract.row_count.min, max_value=contract.row_count.max
        ),
    ]
    for column in contract.columns:
        expectations.extend(_column_expectations(gx_, column))
    meta = {"model": spec.name, "contract_digest": _contract_digest(spec)}
    return gx_.gx.ExpectationSuite(name=spec.name, expectations=expectations, meta=meta)


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
) -> ValidationOutcome:
    """Validate one batch (``batch_key``, e.g. the partition ``2013-01-05``) against the model's contract.

    The full GX result is written to ``results_dir/<model>/<batch_key>/<result_id>.json``. With
    ``data_docs_dir``, the batch's page is added to the Data Docs site there and its index rebuilt; pages of
    earlier validations, from any process, are kept (see :func:`_publish_data_docs`).
    """
    gx_ = _gx()
    run_time = datetime.now(UTC)
    result_id = _result_id(spec.name, batch_key, run_time)
    suite = build_suite(spec)

    context = _context(gx_)
    data = context.data_sources.add_pandas(spec.name).add_dataframe_asset(spec.name)
    batch_definition = data.add_batch_definition_whole_dataframe(_safe(batch_key))
    suite = context.suites.add(suite)
    definition = context.validation_definitions.add(
        gx_.gx.ValidationDefinition(name=result_id, data=batch_definition, suite=suite)
    )
    result = definition.run(
        batch_parameters={"dataframe": df},
        result_format="SUMMARY",
        run_id=gx_.RunIdentifier(run_name=batch_key, run_time=run_time),
    )

    result_dict = result.to_json_dict()
    failures = _describe_failures(result_dict, spec)
    result.meta["airloop"] = {"result_id": result_id, "model": spec.name, "batch_key": batch_key}
    result_dict["meta"]["airloop"] = result.meta["airloop"]

    result_path = Path(results_dir) / spec.name / _safe(batch_key) / f"{result_id}.json"
    _write_json_atomically(result_path, result_dict)
    if data_docs_dir is not None:
        key = gx_.ValidationResultIdentifier(
            expectation_suite_identifier=gx_.ExpectationSuiteIdentifier(name=suite.name),
            run_id=result.meta["run_id"],
            batch_identifier=result.batch_id,
        )
        _publish_data_docs(gx_, spec, key, result_dict, Path(data_docs_dir))
    passed = bool(result.success)
    if not passed and not failures:
        failures = ["validation failed; see the result JSON"]
    return ValidationOutcome(
        passed=passed,
        result_id=result_id,
        failures=failures,
        statistics=_statistics(result_dict.get("statistics", {})),
        result_path=str(result_path),
    )


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
_TYPE_CHECK = "expect_column_values_to_be_in_type_family"
_NOT_NULL_CHECK = "expect_column_values_to_not_be_null"
_RANGE_CHECK = "expect_column_values_to_be_between"
_SET_CHECK = "expect_column_values_to_be_in_set"
_CHECK_ORDER = (_COLUMNS_CHECK, _ROW_COUNT_CHECK, _TYPE_CHECK, _NOT_NULL_CHECK, _RANGE_CHECK, _SET_CHECK)


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
        if item["success"] or column in missing:
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
    if kind == _TYPE_CHECK:
        expected = config.get("meta", {}).get("contract_type", "/".join(kwargs["type_list"]))
        observed = details.get("observed_value")
        if observed is not None:
            return f"{where}type {observed}, expected {expected}"
        # An object column: GX checked it value by value. Only a string column may be of type object.
        if expected == "string":
            return f"{where}type object, expected string ({count} value(s) not str{_examples(details)})"
        return f"{where}type object, expected {expected}{_examples(details)}"
    if kind == _NOT_NULL_CHECK:
        return f"{where}{count} null value(s)"
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


def _write_json_atomically(path: Path, payload: dict[str, Any]) -> None:
    # Readers (the docs, a quarantine task) never see half a file: write aside, then rename.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


@contextmanager
def _lock_if_free(path: Path) -> Iterator[bool]:
    """Hold an exclusive lock on ``path`` if no other process holds it; yields whether it got it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _context(gx_: SimpleNamespace, *, stores_dir: Path | None = None, site_dir: Path | None = None) -> Any:
    """An ephemeral GX context: in-memory stores, no progress bars; optionally file stores and a docs site."""
    defaults = gx_.InMemoryStoreBackendDefaults(init_temp_docs_sites=False)
    sites: dict[str, Any] = {}
    if stores_dir is not None:
        for store, folder in (
            (defaults.expectations_store_name, "expectations"),
            (defaults.validation_results_store_name, "validations"),
        ):
            defaults.stores[store]["store_backend"] = {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(stores_dir / folder),
            }
    if site_dir is not None:
        sites[_DATA_DOCS_SITE] = {
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(site_dir)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder", "validation_results_limit": _INDEX_LIMIT},
        }
    config = gx_.DataContextConfig(
        store_backend_defaults=defaults,
        data_docs_sites=sites,
        analytics_enabled=False,
        progress_bars=gx_.ProgressBarsConfig(globally=False),
    )
    return gx_.gx.get_context(mode="ephemeral", project_config=config)


def _publish_data_docs(
    gx_: SimpleNamespace, spec: ModelSpec, key: Any, result: dict[str, Any], site_dir: Path
) -> None:
    """Add a result's page (``key``, ``result`` as GX's JSON) to the Data Docs site in ``site_dir``, and rebuild
    its index.

    GX builds the index from its validation-results and expectation stores and deletes every page whose
    result is not in them. With the in-memory stores of a fresh (per task) context, each task would therefore
    wipe the pages of earlier tasks. So the docs context keeps both stores on disk, in ``site_dir/.gx/``, and
    only the new results' pages are rendered (incremental build), and the suite's page when the contract changed.

    Publishing is coalesced across processes. The result is queued (``site_dir/.gx/queue/``, written atomically);
    whichever process holds the publish lock renders every queued result with one index rebuild. A process that
    finds the lock taken leaves its result to the holder and returns at once; the holder looks at the queue again
    after releasing the lock, so nothing queued is left behind. A week of days validated at once rebuilds the
    index a few times instead of seven, and no validation waits for another's publishing.
    """
    gx_dir = site_dir / ".gx"
    queue = gx_dir / "queue"
    _write_json_atomically(
        queue / f"{result['meta']['airloop']['result_id']}.json", {"key": list(key.to_tuple()), "result": result}
    )
    while any(queue.glob("*.json")):
        with _lock_if_free(gx_dir / "publish.lock") as held:
            if not held:
                return
            _render_queued(gx_, spec, queue, site_dir)


def _render_queued(gx_: SimpleNamespace, spec: ModelSpec, queue: Path, site_dir: Path) -> None:
    """Move the queued results into the docs stores and render their pages and the index (under the lock)."""
    context = _context(gx_, stores_dir=site_dir / ".gx", site_dir=site_dir)
    store = context.validation_results_store
    queued = sorted(queue.glob("*.json"))
    resources = []
    for path in queued:
        try:
            item = json.loads(path.read_text())
            key = gx_.ValidationResultIdentifier.from_tuple(tuple(item["key"]))
            store.set(key, store.deserialize(item["result"]))
        except Exception:  # noqa: BLE001 - one unreadable item must not stop every later publish
            log.exception("Data Docs: %s cannot be rendered", path)
            _set_aside(path)
            continue
        resources.append(key)
    suite = build_suite(spec)
    suite_key = gx_.ExpectationSuiteIdentifier(name=suite.name)
    # GX's add_or_update compares expectations pairwise (about 0.5 s for 68); the digest says the same.
    stored = context.expectations_store.get(suite_key) if context.expectations_store.has_key(suite_key) else None
    if not stored or stored.get("meta", {}).get("contract_digest") != suite.meta["contract_digest"]:
        context.suites.add_or_update(suite)
        resources.append(suite_key)
    try:
        context.build_data_docs(site_names=[_DATA_DOCS_SITE], resource_identifiers=resources)
    except Exception:
        # Set aside, so that whatever broke this build cannot break every later one; the task fails (and retries).
        for path in queued:
            _set_aside(path)
        raise
    for path in queued:
        path.unlink(missing_ok=True)


def _set_aside(path: Path) -> None:
    """Keep a queued result that could not be rendered as ``<name>.failed``: out of the queue, not lost."""
    if path.exists():
        path.rename(path.with_name(f"{path.name}.failed"))


@cache
def _gx() -> SimpleNamespace:
    """Import Great Expectations once, on first use, and define the type expectation."""
    import great_expectations as gx
    import great_expectations.expectations as expectations
    import numpy as np
    import pandas as pd
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    def dtype_matches(dtype: Any, name: str) -> bool:
        dtype_class = getattr(pd, name, None)
        if isinstance(dtype_class, type) and issubclass(dtype_class, pd.api.extensions.ExtensionDtype):
            return isinstance(dtype, dtype_class)
        try:
            wanted = np.dtype(name)
        except TypeError:
            return False
        if not isinstance(dtype, np.dtype):
            return False
        if wanted.kind == "M" and np.datetime_data(wanted)[0] == "generic":
            return dtype.kind == "M"
        return dtype == wanted

    class ExpectColumnValuesToBeInTypeFamily(expectations.ExpectColumnValuesToBeInTypeList):
        """``ExpectColumnValuesToBeInTypeList`` whose dtype names also match parametrised dtypes.

        On pandas, GX 1.24 compares the column's dtype with instances built without arguments: no list matches
        a time-zone-aware column (``DatetimeTZDtype`` needs a time zone), ``datetime64`` matches no unit and
        ``StringDtype`` only the python storage. Here a pandas dtype class name matches any instance of it,
        ``datetime64`` any naive unit, and the observed value is the dtype itself (GX reports its scalar type:
        ``int64`` for ``Int64``). Object columns are still checked value by value by the parent class.
        """

        def _validate_pandas(self, actual_column_type: Any, expected_types_list: Any) -> dict[str, Any]:
            success = expected_types_list is None or any(
                dtype_matches(actual_column_type, name) for name in expected_types_list
            )
            return {"success": success, "result": {"observed_value": str(actual_column_type)}}

    return SimpleNamespace(
        gx=gx,
        expectations=expectations,
        RunIdentifier=RunIdentifier,
        DataContextConfig=DataContextConfig,
        InMemoryStoreBackendDefaults=InMemoryStoreBackendDefaults,
        ProgressBarsConfig=ProgressBarsConfig,
        ExpectationSuiteIdentifier=ExpectationSuiteIdentifier,
        ValidationResultIdentifier=ValidationResultIdentifier,
        ExpectColumnValuesToBeInTypeFamily=ExpectColumnValuesToBeInTypeFamily,
    )
