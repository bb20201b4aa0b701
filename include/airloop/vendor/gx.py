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

``tests/unit/vendor/test_vendor.py`` pins both. GX (3-5 s to import) is imported on first use.
"""

from __future__ import annotations

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
