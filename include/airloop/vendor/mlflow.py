"""What airloop relies on from MLflow beyond its public API: a dataset source of its own.

MLflow logs a dataset with its source; none of its built-in sources names a warehouse table and a partition
range without a URL (which may hold a password). A source is a subclass of ``DatasetSource``; MLflow reads its
type from the static hook ``_get_source_type`` (private by name, the documented way to define a source) and its
description from ``to_dict``. ``tests/unit/vendor/test_vendor.py`` pins both.
"""

from __future__ import annotations

from functools import cache
from typing import Any

#: The source type logged datasets carry (shown in the MLflow UI's dataset panel).
WAREHOUSE_SOURCE_TYPE = "airloop_warehouse"


@cache
def warehouse_source_class() -> type:
    """MLflow's dataset source for warehouse partitions, defined on first use (MLflow is imported lazily)."""
    from mlflow.data.dataset_source import DatasetSource

    class WarehouseDatasetSource(DatasetSource):
        """Partitions of a warehouse table: the asset URI, the table and range, and the ledger digest."""

        def __init__(self, uri: str, table: str, partitions: str, ledger_digest: str) -> None:
            self.uri, self.table, self.partitions, self.ledger_digest = uri, table, partitions, ledger_digest

        @staticmethod
        def _get_source_type() -> str:
            return WAREHOUSE_SOURCE_TYPE

        def load(self) -> str:
            return self.uri

        def to_dict(self) -> dict[str, Any]:
            return {
                "uri": self.uri,
                "table": self.table,
                "partitions": self.partitions,
                "ledger_digest": self.ledger_digest,
            }

        @classmethod
        def from_dict(cls, source_dict: dict[Any, Any]) -> Any:
            return cls(**source_dict)

    return WarehouseDatasetSource


def warehouse_source(uri: str, table: str, partitions: str, ledger_digest: str) -> Any:
    """A dataset source naming ``table``'s ``partitions`` (``first..last``), never the warehouse's URL."""
    return warehouse_source_class()(uri=uri, table=table, partitions=partitions, ledger_digest=ledger_digest)
