"""Batch scoring: each validated partition scored by ``models:/<name>@champion``, and in shadow by the challenger.

Predictions go to the warehouse table ``<model>_predictions``, one row per batch row and alias, with the model
version that made them and the batch checksum they were made from. A partition is written per (partition, alias)
in one transaction, old rows deleted and new ones inserted, so re-scoring replaces and never duplicates; the
primary key (partition, alias, row) enforces it.

**Row identity.** The batch table has no row id, so a row is identified by its position in a fixed order: the
partition's rows sorted by the time column, then by every other contract column. Identical rows share every
value, so which of them gets which position does not matter. Monitoring reads the batch in the same order to join
the predictions back to the features and, once they arrive, the labels; a partition reloaded since it was scored
(its checksum changed) is left out of that join until it is scored again.

**Labels** are the spec's target, delivered in the batch but known only ``label_delay_hours`` after the event:
they are never copied into the predictions; monitoring takes them from the batch for the rows whose event time
plus the delay falls before the end of its window.

pandas and MLflow are imported inside the functions: DAG files and the CLI import this module cheaply.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from airloop import warehouse
from airloop.errors import AirloopError
from airloop.ingest import model_spec
from airloop.settings import Settings, settings
from airloop.spec import ModelSpec

if TYPE_CHECKING:
    import pandas as pd

CHAMPION = "champion"
#: Scored in shadow: its predictions are stored beside the champion's, never served.
CHALLENGER = "challenger"
#: The probability at or above which the predicted label is positive (the spec has no decision threshold).
DECISION_THRESHOLD = 0.5
#: The position of a row in its partition (see the module's docstring).
ROW_INDEX = "row_index"
PROBABILITY = "probability"
PREDICTED_LABEL = "predicted_label"


class ScoringError(AirloopError):
    """Partitions cannot be scored: not validated, or not in the warehouse."""


def predictions_table(spec: ModelSpec, meta: sa.MetaData | None = None) -> sa.Table:
    """The model's predictions: one row per batch row and alias."""
    meta = meta if meta is not None else sa.MetaData()
    return sa.Table(
        f"{spec.name}_predictions",
        meta,
        sa.Column("partition", sa.String(32), primary_key=True),
        sa.Column("alias", sa.String(32), primary_key=True),
        sa.Column(ROW_INDEX, sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column(PROBABILITY, sa.Float, nullable=False),
        sa.Column(PREDICTED_LABEL, sa.Boolean, nullable=False),
        sa.Column("batch_checksum", sa.String(64), nullable=False),
        sa.Column("scored_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("airflow_run_id", sa.String(250)),
    )


def create_table(engine: Engine, table: sa.Table) -> None:
    """Create ``table`` if missing; safe when several tasks race to do it."""
    try:
        table.create(engine, checkfirst=True)
    except (sa.exc.IntegrityError, sa.exc.ProgrammingError, sa.exc.OperationalError):
        # Another task created it between the check and the CREATE; anything else shows up below.
        if not sa.inspect(engine).has_table(table.name):
            raise


def partitions_to_score(
    event_extras: Iterable[Mapping[str, Any]],
    requested: Sequence[str] | None,
    unscored: Iterable[str] | None = None,
) -> list[str]:
    """The partitions a score run covers, sorted, each once.

    A run with partitions named (``requested``: a person re-scoring) scores those. Otherwise, given ``unscored``
    (the validated partitions the champion has not scored in their current content), it scores exactly those:
    the partitions of the triggering Asset events are among them, and so is a partition whose event Airflow
    merged into a run already queued. A partition an event names but an earlier run has scored meanwhile is not
    scored again: its predictions stay those of the version that served it. Without ``unscored``, the events'
    ``extra["partition"]``.
    """
    if requested:
        return sorted(set(requested))
    if unscored is not None:
        return sorted(set(unscored))
    return sorted({str(extra["partition"]) for extra in event_extras if extra.get("partition")})


def unscored_partitions(model: str, *, config: Settings | None = None) -> list[str]:
    """Validated partitions without champion predictions of their current content (new, or reloaded since)."""
    config = config or settings()
    engine = warehouse.engine_for(config.warehouse_url)
    inspector = sa.inspect(engine)
    if not inspector.has_table(warehouse.ledger.name):
        return []
    passed = {
        r["partition"]: r["checksum"] for r in warehouse.ledger_rows(engine, model) if r["status"] == "passed"
    }
    spec = model_spec(model, config)
    table = predictions_table(spec)
    if not inspector.has_table(table.name):
        return sorted(passed)
    with engine.connect() as conn:
        query = sa.select(table.c.partition, table.c.batch_checksum).where(table.c.alias == CHAMPION).distinct()
        scored = {(p, c) for p, c in conn.execute(query)}
    return sorted(p for p, checksum in passed.items() if (p, checksum) not in scored)


def read_rows(engine: Engine, spec: ModelSpec, partitions: Sequence[str]) -> pd.DataFrame:
    """The stored rows of ``partitions`` in the fixed order that defines each row's :data:`ROW_INDEX`."""
    import pandas as pd

    table = warehouse.batches_table(spec)
    names = [c.name for c in spec.contract.columns if c.name != spec.time_column]
    order = [table.c[warehouse.PARTITION_COLUMN], table.c[spec.time_column], *(table.c[n] for n in names)]
    query = sa.select(table).where(table.c[warehouse.PARTITION_COLUMN].in_(list(partitions))).order_by(*order)
    with engine.connect() as conn:
        frame = pd.read_sql(query, conn)
    frame[ROW_INDEX] = frame.groupby(warehouse.PARTITION_COLUMN, sort=False).cumcount()
    return frame


def score_partitions(
    model: str,
    partitions: Sequence[str],
    *,
    alias: str = CHAMPION,
    run_id: str | None = None,
    config: Settings | None = None,
) -> dict[str, Any]:
    """Score ``partitions`` with the version ``alias`` points at now, and store the predictions.

    Returns ``scored`` False with the ``reason`` when there is nothing to do: no partition, no such alias yet, or
    a challenger that is the champion (its predictions are the champion's already). Raises
    :class:`ScoringError` for partitions that did not pass validation.
    """
    import mlflow
    from mlflow import MlflowClient

    from airloop.registry import aliases, predict_proba

    config = config or settings()
    spec = model_spec(model, config)
    name = spec.registered_model
    skipped = {"model": model, "alias": alias, "scored": False, "partitions": {}, "rows": 0}
    if not partitions:
        return {**skipped, "reason": "no partition to score"}
    engine = warehouse.engine_for(config.warehouse_url)
    warehouse.ensure_tables(engine, spec)
    table = predictions_table(spec)
    create_table(engine, table)
    _check_validated(engine, spec, partitions)

    current = aliases(MlflowClient(config.mlflow_tracking_uri), name)
    version = current.get(alias)
    if version is None:
        return {**skipped, "reason": f"{name} has no {alias} yet"}
    if alias != CHAMPION and version == current.get(CHAMPION):
        return {
            **skipped,
            "reason": f"the {alias} of {name} is the champion (v{version})",
            "version": version,
        }

    # The version is resolved once, then loaded by number: every row of this run comes from the same model even
    # if the alias moves meanwhile, and the stored version is the one that scored.
    mlflow.set_tracking_uri(config.mlflow_tracking_uri)
    pipeline = mlflow.sklearn.load_model(f"models:/{name}/{version}")
    rows = read_rows(engine, spec, partitions)
    probabilities = predict_proba(pipeline, rows, spec)
    scored_at = datetime.now(UTC)
    written: dict[str, int] = {}
    for partition, part in rows.assign(**{PROBABILITY: probabilities}).groupby(warehouse.PARTITION_COLUMN):
        records = [
            {
                "partition": partition,
                "alias": alias,
                ROW_INDEX: int(row[ROW_INDEX]),
                "model": name,
                "version": str(version),
                PROBABILITY: float(row[PROBABILITY]),
                PREDICTED_LABEL: bool(row[PROBABILITY] >= DECISION_THRESHOLD),
                "batch_checksum": row["_batch_checksum"],
                "scored_at": scored_at,
                "airflow_run_id": run_id,
            }
            for row in part[[ROW_INDEX, PROBABILITY, "_batch_checksum"]].to_dict("records")
        ]
        key = (table.c.partition == partition) & (table.c.alias == alias)
        with engine.begin() as conn:
            conn.execute(table.delete().where(key))
            conn.execute(table.insert(), records)
        written[str(partition)] = len(records)
    return {
        "model": model,
        "alias": alias,
        "scored": True,
        "version": str(version),
        "partitions": written,
        "rows": sum(written.values()),
        "table": table.name,
    }


def scored_rows(
    engine: Engine, spec: ModelSpec, partitions: Sequence[str], alias: str = CHAMPION
) -> tuple[pd.DataFrame, list[str]]:
    """The batch rows of ``partitions`` joined with their ``alias`` predictions, and the partitions left out
    because they were reloaded since they were scored. Unscored partitions are simply absent."""
    import pandas as pd

    table = predictions_table(spec)
    rows = read_rows(engine, spec, partitions)
    if not sa.inspect(engine).has_table(table.name):
        return rows.iloc[0:0].assign(**{PROBABILITY: [], PREDICTED_LABEL: [], "version": []}), []
    query = sa.select(
        table.c.partition.label(warehouse.PARTITION_COLUMN),
        table.c[ROW_INDEX],
        table.c[PROBABILITY],
        table.c[PREDICTED_LABEL],
        table.c.version,
        table.c.batch_checksum,
    ).where(table.c.partition.in_(list(partitions)), table.c.alias == alias)
    with engine.connect() as conn:
        predictions = pd.read_sql(query, conn)
    joined = rows.merge(predictions, on=[warehouse.PARTITION_COLUMN, ROW_INDEX], how="inner")
    stale = joined["batch_checksum"] != joined["_batch_checksum"]
    stale_partitions = sorted(set(joined.loc[stale, warehouse.PARTITION_COLUMN]))
    joined = joined.loc[~joined[warehouse.PARTITION_COLUMN].isin(stale_partitions)]
    return joined.drop(columns=["batch_checksum"]).reset_index(drop=True), stale_partitions


def _check_validated(engine: Engine, spec: ModelSpec, partitions: Sequence[str]) -> None:
    ledger = {r["partition"]: r["status"] for r in warehouse.ledger_rows(engine, spec.name)}
    bad = [
        f"{p} ({ledger.get(p, 'not ingested')})" for p in sorted(set(partitions)) if ledger.get(p) != "passed"
    ]
    if bad:
        raise ScoringError(f"{spec.name}: only validated partitions are scored; not these: {', '.join(bad)}")
