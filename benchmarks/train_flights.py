"""Train the flights model on two months of 2013 (Jan-Feb) with the real spec and score the following month.

Prints the time to train (window read, Optuna search with nested MLflow runs, refit, model logged and
registered), the holdout metrics, the time of the gate and the promotion of this first champion, and the AUC of
``models:/flights_delay@champion`` on March 2013, which no training step has seen.

    .venv/bin/python benchmarks/train_flights.py                    # MLflow in a local SQLite file
    .venv/bin/python benchmarks/train_flights.py --tracking-uri http://127.0.0.1:5000   # a running server

Everything else lives in a temporary AIRLOOP_HOME, deleted at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import tempfile
import time
from datetime import date
from pathlib import Path

MODEL = "flights_delay"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--tracking-uri", help="an MLflow tracking server (default: a SQLite file in a temp dir)"
    )
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="airloop-bench-"))
    try:
        run(home, args.tracking_uri)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def run(home: Path, tracking_uri: str | None) -> None:
    os.environ["AIRLOOP_HOME"] = str(home)
    os.environ["AIRLOOP_MLFLOW_TRACKING_URI"] = tracking_uri or f"sqlite:///{home}/mlflow.db"
    home.mkdir(exist_ok=True)

    import mlflow
    import pandas as pd

    from airloop.core.settings import settings
    from airloop.local.demo.replay import day_frame, days
    from airloop.model.context import ModelContext
    from airloop.model.features import model_input
    from airloop.model.registry import CHAMPION
    from airloop.promote.promote import evaluate_gate, promote_challenger
    from airloop.store.db import sync_table
    from airloop.store.ledger import PASSED, LedgerEntry, replace_partition
    from airloop.store.schema import batches_table
    from airloop.train.train import train_challenger

    ctx = ModelContext.load(MODEL, settings())
    spec, task = ctx.spec, ctx.task
    if tracking_uri is None:
        # A local store would put artifacts under ./mlruns: keep them in the temporary home.
        mlflow.set_tracking_uri(ctx.settings.mlflow_tracking_uri)
        mlflow.create_experiment(spec.registered_model, artifact_location=(home / "artifacts").as_uri())

    sync_table(ctx.warehouse, batches_table(spec))
    started = time.perf_counter()
    for day in days(date(2013, 1, 1), date(2013, 2, 28)):
        frame = day_frame(day)
        checksum = hashlib.sha256(f"bench-{day}:{len(frame)}".encode()).hexdigest()
        entry = LedgerEntry(
            partition=day.isoformat(), status=PASSED, checksum=checksum, validation_result_id=f"bench-{day}"
        )
        replace_partition(ctx.warehouse, spec, frame, entry)
    print(f"warehouse: 2013-01-01..2013-02-28 loaded in {time.perf_counter() - started:.1f} s")

    started = time.perf_counter()
    trained = train_challenger(ctx)
    training_seconds = time.perf_counter() - started
    print(
        f"training: {training_seconds:.1f} s for {trained.window.partitions} days, {trained.trials} trials "
        f"(spec: {spec.training.search.trials} trials, {spec.training.search.timeout_minutes:g} min budget)"
    )
    print(f"  best params: {trained.best_params}")
    print(
        f"  holdout {trained.holdout.partitions[0]}..{trained.holdout.partitions[-1]}: "
        + ", ".join(f"{k} {v:.4f}" for k, v in trained.metrics.items())
    )

    started = time.perf_counter()
    gate = evaluate_gate(ctx, trained)
    promoted = promote_challenger(ctx, gate)
    print(f"gate + promotion: {time.perf_counter() - started:.1f} s; promoted: {promoted.promoted}")
    print(f"  reasons: {'; '.join(promoted.reasons)}")

    march = pd.concat([day_frame(d) for d in days(date(2013, 3, 1), date(2013, 3, 31))])
    rows, y, unlabelled = task.labelled(march.reset_index(drop=True))
    champion = ctx.registry.load(ctx.registry.version_of(CHAMPION))
    predicted = task.predict(champion, model_input(rows, spec, champion))
    following = task.all_metrics(y, predicted)
    print(
        f"March 2013 ({len(rows)} labelled flights, {unlabelled} without arrival delay): "
        + ", ".join(f"{k} {v:.4f}" for k, v in following.items())
    )


if __name__ == "__main__":
    main()
