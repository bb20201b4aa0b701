"""The Asset events a DAG run emitted, read from Airflow's metadata database (``dag.test()`` records them there)."""

from __future__ import annotations


def asset_event_extras(uri: str, run_id: str) -> list[dict]:
    """The ``extra`` of each event of the Asset ``uri`` whose source is the run ``run_id``, oldest first."""
    import sqlalchemy as sa
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        query = (
            sa.select(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.uri == uri, AssetEvent.source_run_id == run_id)
            .order_by(AssetEvent.id)
        )
        return [dict(event.extra) for event in session.scalars(query)]
