"""What airloop relies on from Great Expectations beyond its public API, in one place.

* **A type check by family.** On pandas, GX 1.24's ``ExpectColumnValuesToBeInTypeList`` compares a column's dtype
  with dtypes built from names without arguments: no list matches a time-zone-aware column (``DatetimeTZDtype``
  needs a zone), ``datetime64`` matches no unit, ``StringDtype`` only the python storage. No public expectation
  accepts a family of types (``ExpectColumnValuesToBeOfType`` takes one, and its scalar check lets nullable
  ``Int64`` pass as ``int64``). So :class:`ExpectColumnValuesToBeInTypeFamily` overrides the parent's private
  ``_validate_pandas(self, actual_column_type, expected_types_list)``, which GX calls by keyword for non-object
  dtypes and whose result must hold ``success`` and ``result.observed_value``.
* **Contexts built from a config.** An ephemeral context with in-memory stores, optionally file stores and a Data
  Docs site (``DataContextConfig``, ``InMemoryStoreBackendDefaults``: GX's configuration classes).
* **A column's metrics on that column.** GX 1.x's pandas engine hands every column metric the whole batch
  (``PandasExecutionEngine.get_domain_records``), and its map metrics then drop the column's nulls by a boolean
  mask over every column: copies of the whole frame per expectation. :func:`narrow_column_domains` wraps that
  method to hand a column (or column list, or pair) domain its own columns only, after GX's own filtering: the
  same rows, values and index, so every count and example is the same; any other domain gets what GX gives. GX's
  unexpected-values metric asks for a table domain and still copies the whole frame once per expectation (at a
  million rows of 30 columns, under cProfile, the narrowing took a validation from 16.2 s to 12.7 s; the rest of
  the gain came from ``arrow_strings``). Installed for the process: GX's ``unexpected_index_column_names`` and
  ``include_unexpected_rows`` options, which airloop does not use, would see the domain's columns only.

``tests/unit/vendor/test_vendor.py`` pins all three. GX (3-5 s to import) is imported on first use.
"""

from __future__ import annotations

import functools
from functools import cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any


def context(
    *,
    stores_dir: Path | None = None,
    site_dir: Path | None = None,
    site_name: str = "airloop",
    index_limit: int = 31,
) -> Any:
    """An ephemeral GX context: in-memory stores, no progress bars, no analytics; optionally file stores (under
    ``stores_dir``) and a Data Docs site (in ``site_dir``, its index listing the latest ``index_limit``
    validations)."""
    gx_ = gx()
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
        sites[site_name] = {
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(site_dir)},
            "site_index_builder": {
                "class_name": "DefaultSiteIndexBuilder",
                "validation_results_limit": index_limit,
            },
        }
    config = gx_.DataContextConfig(
        store_backend_defaults=defaults,
        data_docs_sites=sites,
        analytics_enabled=False,
        progress_bars=gx_.ProgressBarsConfig(globally=False),
    )
    return gx_.gx.get_context(mode="ephemeral", project_config=config)


def narrow_column_domains(engine_class: type) -> None:
    """Wrap ``engine_class.get_domain_records`` (GX's pandas engine) so that a column, column-list or column-pair
    domain gets a frame of its own columns; once (the wrapper keeps GX's method as ``__wrapped__``)."""
    original = engine_class.get_domain_records
    if hasattr(original, "__wrapped__"):
        return

    @functools.wraps(original)
    def get_domain_records(self: Any, domain_kwargs: dict[str, Any]) -> Any:
        data = original(self, domain_kwargs=domain_kwargs)
        if "column" in domain_kwargs:
            columns = [domain_kwargs["column"]]
        elif "column_list" in domain_kwargs:
            columns = list(domain_kwargs["column_list"])
        elif "column_A" in domain_kwargs and "column_B" in domain_kwargs:
            columns = [domain_kwargs["column_A"], domain_kwargs["column_B"]]
        else:
            return data
        known = set(data.columns)
        if len(set(columns)) >= len(known) or not all(isinstance(c, str) and c in known for c in columns):
            return data  # nothing to narrow, or a column GX must report missing
        return data[list(dict.fromkeys(columns))]

    engine_class.get_domain_records = get_domain_records


@cache
def gx() -> SimpleNamespace:
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
    from great_expectations.execution_engine import PandasExecutionEngine

    narrow_column_domains(PandasExecutionEngine)

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
