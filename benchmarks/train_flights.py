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

    from airloop import registry, warehouse
    from airloop.demo.replay import day_frame, days
    from airloop.ingest import model_spec
    from airloop.promotion import all_metrics
    from airloop.settings import settings
    from airloop.training import labelled, train_challenger

    config = settings()
    spec = model_spec(MODEL, config)
    if tracking_uri is None:
        # A local store would put artifacts under ./mlruns: keep them in the temporary home.
        mlflow.set_tracking_uri(config.mlflow_tracking_uri)
        mlflow.create_experiment(spec.registered_model, artifact_location=(home / "artifacts").as_uri())

    engine = warehouse.engine_for(config.warehouse_url)
    warehouse.ensure_tables(engine, spec)
    started = time.perf_counter()
    for day in days(date(2013, 1, 1), date(2013, 2, 28)):
        row = {"checksum": f"bench-{day}".ljust(64, "0"), "validation_result_id": f"bench-{day}", "files": []}
        warehouse.replace_partition(engine, spec, day.isoformat(), day_frame(day), ledger_row=row)
    print(f"warehouse: 2013-01-01..2013-02-28 loaded in {time.perf_counter() - started:.1f} s")

    started = time.perf_counter()
    trained = train_challenger(MODEL, config=config)
    training_seconds = time.perf_counter() - started
    metrics = trained["metrics"]
    print(
        f"training: {training_seconds:.1f} s for {trained['window']['partitions']} days, {trained['trials']} trials "
        f"(spec: {spec.training.search.trials} trials, {spec.training.search.timeout_minutes:g} min budget)"
    )
    print(f"  best params: {trained['best_params']}")
    print(
        f"  holdout {trained['holdout']['partitions'][0]}..{trained['holdout']['partitions'][-1]}: "
        + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
    )

    started = time.perf_counter()
    gate = registry.evaluate_gate(MODEL, trained, config=config)
    promoted = registry.promote_challenger(MODEL, gate, config=config)
    print(f"gate + promotion: {time.perf_counter() - started:.1f} s; promoted: {promoted['promoted']}")
    print(f"  reasons: {'; '.join(promoted['reasons'])}")

    march = pd.concat([day_frame(d) for d in days(date(2013, 3, 1), date(2013, 3, 31))])
    rows, y, unlabelled = labelled(march.reset_index(drop=True), spec)
    champion = mlflow.sklearn.load_model(f"models:/{spec.registered_model}@champion")
    scores = registry.predict_proba(champion, rows, spec)
    following = all_metrics(y, scores)
    print(
        f"March 2013 ({len(rows)} labelled flights, {unlabelled} without arrival delay): "
        + ", ".join(f"{k} {v:.4f}" for k, v in following.items())
    )


if __name__ == "__main__":
    main()
