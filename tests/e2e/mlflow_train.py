"""A training script as a user writes it with the unmodified MLflow client; the end-to-end test
runs it as a subprocess with MLFLOW_TRACKING_URI and MLFLOW_TRACKING_TOKEN pointing at Tripline.
Prints what it made as one JSON line."""

import json
import math
import sys
import tempfile
from pathlib import Path

import mlflow
import mlflow.pyfunc
from mlflow import MlflowClient
from mlflow.entities import Metric

EXPERIMENT, MODEL = sys.argv[1], sys.argv[2]


class AddN(mlflow.pyfunc.PythonModel):
    def __init__(self, n):
        self.n = n

    def predict(self, context, model_input, params=None):
        return model_input.apply(lambda column: column + self.n)


def loss(step):
    return 1.0 / (1 + step / 50)  # under 0.1 from step 451 on


mlflow.set_experiment(EXPERIMENT)
client = MlflowClient()
with mlflow.start_run(run_name="train-mnist") as run:
    mlflow.log_params({"lr": "0.01", "epochs": "10", "optimizer": "adam"})
    mlflow.set_tag("team", "vision")
    for step in range(100):  # one call per step, as a training loop does
        mlflow.log_metrics({"loss": loss(step), "acc": 1 - loss(step)}, step=step)
    now = 1_700_000_000_000
    batch = [Metric("loss", loss(step), now + step, step) for step in range(100, 1000)]
    batch += [Metric("acc", 1 - loss(step), now + step, step) for step in range(100, 1000)]
    client.log_batch(run.info.run_id, metrics=batch)  # the client splits it in calls of 1,000
    mlflow.log_metric("nan_metric", math.nan, step=0)
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.txt"
        report.write_text("accuracy report\n")
        mlflow.log_artifact(str(report), artifact_path="reports")
    # Explicit requirements: inferring them would run the model in a subprocess (slow, offline).
    info = mlflow.pyfunc.log_model(name="model", python_model=AddN(5), pip_requirements=["mlflow-skinny", "pandas"])
    version = mlflow.register_model(info.model_uri, MODEL)
    client.set_registered_model_alias(MODEL, "production", version.version)
    client.set_model_version_tag(MODEL, version.version, "stage", "candidate")

print(json.dumps({"run_id": run.info.run_id, "experiment_id": run.info.experiment_id, "model_id": info.model_id,
                  "model_uri": info.model_uri, "version": version.version}))
