"""One validation result for a batch validated a chunk of rows at a time: the Great Expectations results of its
chunks merged into the result GX gives for the whole batch, so that the failures named, the kept result and its
Data Docs page say what a validation of the whole batch says.

A column's checks merge by counting (rows, nulls and unexpected values add up; the examples are the first ones in
row order; success is GX's own rule on the totals). What needs the whole batch is done across chunks: the row
count is the total, and rows that share the contract's key are found by a 64-bit hash of each row's key, kept for
every row, then confirmed on the rows whose hashes repeat, read again (:class:`KeyDuplicates`; GX's own check runs
on those rows, so the count and the examples are GX's). Pure functions over the JSON form of GX's results
(``to_json_dict()``); ``tests/unit/ingest/test_chunked_validation.py`` holds them equal to a whole-batch
validation.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

#: GX's ``partial_unexpected_count`` of the SUMMARY result format: how many examples a result keeps.
PARTIAL_COUNT = 20
ROW_COUNT_CHECK = "expect_table_row_count_to_be_between"
KEY_CHECK = "expect_compound_columns_to_be_unique"
COLUMNS_CHECK = "expect_table_columns_to_match_set"
#: Checks of the whole table: each chunk's result says nothing of the batch.
TABLE_CHECKS = (ROW_COUNT_CHECK, KEY_CHECK, COLUMNS_CHECK)


class KeyDuplicates:
    """Rows sharing their key with another row, found across chunks in two passes: the first hashes each row's key
    (pandas' ``hash_pandas_object``, 64 bits) and keeps the hash and the row's position, 16 bytes a row; when a
    hash repeats, a second pass over the key columns picks out those rows for GX's own check to confirm (a hash
    that repeats by chance is no repeated key there). Rows whose every key value is null are left out, as GX's
    check leaves them."""

    def __init__(self, key: list[str]) -> None:
        self.key = list(key)
        self._hashes: list[Any] = []
        self._positions: list[Any] = []
        self.missing = 0

    def add(self, chunk: pd.DataFrame, offset: int) -> None:
        """Take in a chunk whose first row is the batch's row ``offset``."""
        import numpy as np
        import pandas as pd

        keys = _comparable(chunk[self.key])
        present = keys.notna().any(axis=1).to_numpy()
        self.missing += int((~present).sum())
        self._hashes.append(pd.util.hash_pandas_object(keys[present], index=False).to_numpy())
        self._positions.append(np.arange(offset, offset + len(chunk), dtype="int64")[present])

    def repeated(self) -> Any:
        """The positions of the rows whose key hash repeats, in batch order (empty: every key is unique)."""
        import numpy as np

        if not self._hashes:
            return np.empty(0, dtype="int64")
        hashes = np.concatenate(self._hashes)
        values, counts = np.unique(hashes, return_counts=True)
        chosen = np.isin(hashes, values[counts > 1])
        return np.concatenate(self._positions)[chosen]

    def candidates(self, chunks: Iterable[pd.DataFrame]) -> pd.DataFrame | None:
        """The rows whose key hash repeats, their key columns taken from ``chunks`` (the batch read again, in the
        same chunks), indexed by position in batch order; ``None`` when no hash repeats."""
        import pandas as pd

        positions = self.repeated()
        if not len(positions):
            return None
        picked, offset = [], 0
        for chunk in chunks:
            inside = positions[(positions >= offset) & (positions < offset + len(chunk))]
            if len(inside):
                rows = chunk[self.key].iloc[inside - offset]
                picked.append(rows.set_axis(pd.Index(inside), axis=0))
            offset += len(chunk)
        return pd.concat(picked) if picked else None


def _comparable(keys: pd.DataFrame) -> pd.DataFrame:
    """Key columns in one form per kind of value, whatever type each chunk holds them in (files of one delivery
    may differ: int32 and int64, times in ms and in ns, with a zone or not): numbers as float64, times as float64
    nanoseconds since the epoch in UTC, anything else as text. Values that compare equal hash equal; a few more may
    (floats round), which GX's own check then tells apart."""
    import pandas as pd

    columns = {}
    for name in keys.columns:
        values = keys[name]
        if isinstance(values.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(values.dtype):
            utc = values.dt.tz_convert("UTC") if isinstance(values.dtype, pd.DatetimeTZDtype) else values
            nanos = utc.dt.as_unit("ns").astype("int64").astype("float64")
            columns[name] = nanos.where(values.notna())
        elif pd.api.types.is_bool_dtype(values.dtype) or pd.api.types.is_numeric_dtype(values.dtype):
            columns[name] = values.astype("float64")
        else:
            columns[name] = values.astype("object")
    return pd.DataFrame(columns, index=keys.index)


def merge_results(
    first: dict[str, Any],
    later: list[dict[str, Any]],
    *,
    rows: int,
    key_item: dict[str, Any] | None,
    nan_columns: set[str],
) -> dict[str, Any]:
    """The whole batch's result from its first chunk's (all checks) and the later chunks' (the column checks):
    ``rows`` the batch's rows, ``key_item`` the key check's result for the batch (``None``: no key),
    ``nan_columns`` the columns some chunk holds as floats (the whole batch would: their nulls are NaNs)."""
    merged = json.loads(json.dumps(first))
    by_check = [{_identity(item): item for item in result["results"]} for result in later]
    results = []
    for item in merged["results"]:
        kind = item["expectation_config"]["type"]
        if kind == COLUMNS_CHECK:
            results.append(item)
        elif kind == ROW_COUNT_CHECK:
            results.append(_row_count(item, rows))
        elif kind == KEY_CHECK:
            results.append(key_item if key_item is not None else item)
        else:
            others = [checks[_identity(item)] for checks in by_check if _identity(item) in checks]
            column = item["expectation_config"]["kwargs"].get("column")
            results.append(merge_items([item, *others], distinct_nulls=column in nan_columns))
    merged["results"] = results
    successful = sum(1 for item in results if item["success"])
    merged["success"] = successful == len(results)
    merged["statistics"] = {
        "evaluated_expectations": len(results),
        "successful_expectations": successful,
        "unsuccessful_expectations": len(results) - successful,
        "success_percent": successful / len(results) * 100 if results else None,
    }
    return merged


def key_result(
    template: dict[str, Any], confirmed: dict[str, Any] | None, *, rows: int, missing: int
) -> dict[str, Any]:
    """The key check's result for the batch: GX's result on the candidate rows (``confirmed``; ``None``: no key
    hash repeated) counted over the batch's ``rows`` (``missing`` of them with no key at all)."""
    item = json.loads(json.dumps(confirmed if confirmed is not None else template))
    found = (confirmed or {}).get("result") or {}
    mostly = template["expectation_config"]["kwargs"].get("mostly", 1.0)
    unexpected = int(found.get("unexpected_count") or 0) if confirmed is not None else 0
    examples = list(found.get("partial_unexpected_list") or [])
    positions = list(found.get("partial_unexpected_index_list") or [])
    item["expectation_config"] = template["expectation_config"]
    item["result"] = map_result(rows, rows - missing, unexpected, examples, positions, with_missing=True)
    item["success"] = _mostly_success(rows - missing, unexpected, mostly)
    return item


def merge_items(items: list[dict[str, Any]], *, distinct_nulls: bool = False) -> dict[str, Any]:
    """One check's results over the chunks as its result over the batch; ``distinct_nulls``: the column's nulls
    are floating-point NaNs, each its own value to GX's counts of examples."""
    raised = [item for item in items if (item.get("exception_info") or {}).get("raised_exception")]
    if raised:
        return raised[0]
    counted = [item for item in items if "unexpected_count" in (item.get("result") or {})]
    whole_type = [item for item in items if item not in counted]
    if whole_type and not any(int(item["result"].get("unexpected_count") or 0) for item in counted):
        # A check of the column's type as a whole (its dtype; a chunk of nulls only is checked value by value and
        # finds none wrong): the batch's fails where a chunk's does.
        return next((item for item in whole_type if not item["success"]), whole_type[0])
    # A check value by value (or the type check of a column some chunks hold as objects): counts add up.
    results = [item["result"] for item in counted]
    elements = sum(int(r.get("element_count") or 0) for r in results)
    unexpected = sum(int(r.get("unexpected_count") or 0) for r in results)
    with_missing = all("missing_count" in r for r in results)
    missing = sum(int(r.get("missing_count") or 0) for r in results) if with_missing else 0
    examples = [value for r in results for value in r.get("partial_unexpected_list") or []]
    positions = [index for r in results for index in r.get("partial_unexpected_index_list") or []]
    merged = json.loads(json.dumps(counted[0]))
    merged["result"] = map_result(
        elements,
        elements - missing,
        unexpected,
        examples,
        positions,
        with_missing,
        distinct_nulls=distinct_nulls,
    )
    mostly = merged["expectation_config"]["kwargs"].get("mostly", 1.0)
    merged["success"] = _mostly_success(elements - missing, unexpected, mostly) and all(
        item["success"] for item in whole_type
    )
    return merged


def map_result(
    elements: int,
    considered: int,
    unexpected: int,
    examples: list[Any],
    positions: list[Any],
    with_missing: bool,
    *,
    distinct_nulls: bool = False,
) -> dict[str, Any]:
    """A value-by-value check's result fields, as GX's SUMMARY format makes them (``_format_map_output``):
    ``considered`` the rows the check looked at (the non-null ones, unless ``with_missing`` is false)."""
    total = unexpected / elements * 100 if elements else None
    result: dict[str, Any] = {"element_count": elements, "unexpected_count": unexpected}
    if with_missing:
        nonmissing = unexpected / considered * 100 if elements and considered else None
        result.update(
            {
                "unexpected_percent": nonmissing,
                "missing_count": elements - considered,
                "missing_percent": (elements - considered) / elements * 100 if elements else None,
                "unexpected_percent_total": total,
                "unexpected_percent_nonmissing": nonmissing,
            }
        )
    else:
        result["unexpected_percent"] = total
    examples = examples[:PARTIAL_COUNT]
    result["partial_unexpected_list"] = examples
    result["partial_unexpected_counts"] = _counts(examples, distinct_nulls)
    result["partial_unexpected_index_list"] = positions[:PARTIAL_COUNT]
    return result


def _counts(examples: list[Any], distinct_nulls: bool) -> list[dict[str, Any]]:
    """GX's ``partial_unexpected_counts``: the examples' values with how often each occurs, most frequent first
    (a key's example, a mapping, counted as the list of its values). GX counts Python values: each NaN of a float
    column is a value of its own (NaN equals nothing), where ``None`` and pandas' ``NaT`` and ``NA`` are one value;
    the JSON form says null for all of them, so ``distinct_nulls`` says which they were."""
    hashable = [
        tuple(v.values()) if isinstance(v, dict) else (float("nan") if v is None and distinct_nulls else v)
        for v in examples
    ]
    try:
        counted = sorted(Counter(hashable).most_common(PARTIAL_COUNT), key=lambda x: (-x[1], x[0]))
    except TypeError:
        return [{"error": "partial_exception_counts requires a hashable type"}]
    return [{"value": _json_value(value), "count": n} for value, n in counted]


def _json_value(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, float) and value != value:  # NaN
        return None
    return value


def _mostly_success(considered: int, unexpected: int, mostly: float) -> bool:
    """GX's rule: no rows considered passes; otherwise the share of expected rows is at least ``mostly``."""
    if considered == 0 or unexpected == 0:
        return True
    return (considered - unexpected) / considered >= mostly


def _row_count(item: dict[str, Any], rows: int) -> dict[str, Any]:
    kwargs = item["expectation_config"]["kwargs"]
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    return {
        **item,
        "result": {**item["result"], "observed_value": rows},
        "success": (low is None or rows >= low) and (high is None or rows <= high),
    }


def _identity(item: dict[str, Any]) -> tuple[str, str]:
    config = item["expectation_config"]
    kwargs = config["kwargs"]
    return config["type"], json.dumps(kwargs.get("column", kwargs.get("column_list")))
