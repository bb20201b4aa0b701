"""The Models view: the loop of every model, as a page of the Airflow UI (served by the plugin in ``plugins/``)."""
