"""`make bench`: MLflow logging throughput through the real client against a live server, beside
the native history API measured in the same run. Prints figures; asserts nothing about speed."""

import os
import time

import pytest

from tests.live import LiveTripline

from .results import record

pytestmark = pytest.mark.bench
mlflow = pytest.importorskip("mlflow")

ROWS, METRICS, CALLS = 1000, 5, 10


def test_mlflow_log_batch_throughput_against_the_native_history_api(tmp_path, monkeypatch):
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    live = LiveTripline(tmp_path, worker=False, env={"MEDIA_ROOT": str(tmp_path / "media")}).start()
    try:
        vendor = "postgresql" if live.pg_name else "sqlite"
        base = f"{live.url}/api/v1/teams/acme"
        native = live.session("bob")
        native.post(f"{base}/projects/", json={"name": "bench"})
        native.post(f"{base}/projects/bench/runs/", json={"id": "native"})
        started = time.perf_counter()
        for call in range(CALLS):
            rows = [{"step": call * ROWS + i, "metrics": {f"m{k}": i * 0.001 + k for k in range(METRICS)}} for i in range(ROWS)]
            assert native.post(f"{base}/projects/bench/runs/native/history/", json={"rows": rows}).status_code == 201
        native_rate = CALLS * ROWS * METRICS / (time.perf_counter() - started)

        for key in [k for k in os.environ if k.startswith("MLFLOW_")]:
            monkeypatch.delenv(key)
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", live.tokens["bob"])
        monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        client = MlflowClient(tracking_uri=f"{live.url}/mlflow/acme")
        run_id = client.create_run(client.create_experiment("mlflow bench")).info.run_id
        started = time.perf_counter()
        for call in range(CALLS):  # the client sends each call as 5 requests of 1,000 metrics
            metrics = [Metric(f"m{k}", i * 0.001 + k, 1_700_000_000_000 + i, call * ROWS + i) for i in range(ROWS) for k in range(METRICS)]
            client.log_batch(run_id, metrics=metrics)
        mlflow_rate = CALLS * ROWS * METRICS / (time.perf_counter() - started)
        assert len(client.get_metric_history(run_id, "m0")) == CALLS * ROWS
    finally:
        live.stop()
    record("7", f"MLflow client log_batch vs the native history API ({CALLS} calls of {ROWS:,} rows × {METRICS} metrics)",
           f"{native_rate:,.0f} values/s", f"{mlflow_rate:,.0f} values/s", "report", ratio=mlflow_rate / native_rate, vendor=vendor)
