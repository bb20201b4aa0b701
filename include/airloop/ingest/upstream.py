"""Chained models: a SQL source that reads what other models' ingestion fills waits until they have settled.

A model whose query reads another model's batch table (``source.after``) must not read a data interval the
upstream is still ingesting: a week read while its Thursday is being loaded would be validated, loaded and scored
short of a day, and nothing would say so. A run therefore waits until every upstream model's ledger holds each of
its partitions that can hold rows of the run's data interval, passed or quarantined (a quarantined day is
settled: it will not arrive by waiting; the downstream contract judges what is there).

Which upstream partitions can hold the interval's rows: those that start in it, and the one before. A
partition holds what was delivered for it, and its rows' timestamps may cross its bounds: flights_delay's
partitions are New York's local days, so the evening of 5 January is in the first hours of 6 January in UTC.
Partitions outside the upstream's own ``start_date`` .. ``end_date`` are not waited for: they never come.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta

from sqlalchemy.engine import Engine

from airloop.core.partitions import longest_interval, partition_start, partitions_starting
from airloop.core.spec import ModelSpec
from airloop.model.context import ModelContext
from airloop.store.ledger import settled_partitions


def upstream_specs(ctx: ModelContext) -> list[ModelSpec]:
    """The specs of the models ``ctx``'s SQL source reads after (``source.after``), from the same folder."""
    return [ModelContext.load(name, ctx.settings).spec for name in getattr(ctx.spec.source, "after", [])]


def expected_upstream(upstream: ModelSpec, start: datetime, end: datetime) -> list[str]:
    """The partitions of ``upstream`` that can hold rows of ``[start, end)`` (those starting in it and the one
    before), within its own start and end dates."""
    first = datetime.combine(upstream.start_date, time(), UTC)
    last = datetime.combine(upstream.end_date, time(), UTC) + timedelta(days=1) if upstream.end_date else None
    before = start - longest_interval(upstream.schedule)
    return [
        key
        for key in partitions_starting(upstream.schedule, before, end)
        if partition_start(key) >= first and (last is None or partition_start(key) < last)
    ]


def unsettled_upstream(
    engine: Engine, upstreams: Sequence[ModelSpec], start: datetime, end: datetime
) -> dict[str, list[str]]:
    """Per upstream model, the partitions of ``[start, end)`` its ledger does not hold yet (none: ready)."""
    missing = {}
    for upstream in upstreams:
        expected = expected_upstream(upstream, start, end)
        settled = settled_partitions(engine, upstream.name, expected)
        waiting = [key for key in expected if key not in settled]
        if waiting:
            missing[upstream.name] = waiting
    return missing


def describe_unsettled(missing: dict[str, list[str]]) -> str:
    """``flights_delay: 2013-01-03, 2013-01-04`` (at most five partitions named per model)."""
    parts = []
    for model, keys in missing.items():
        named = ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
        parts.append(f"{model}: {named}")
    return "; ".join(parts)
