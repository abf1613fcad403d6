"""Logging a finished run to a real local MLflow store (SQLite), read back with its client."""

import json

import pytest
from helpers import ROOT, TINY

from ragft.config import load_config
from ragft.experiment import compare

mlflow = pytest.importorskip("mlflow")


def test_compare_logs_the_run_to_mlflow(tmp_path, generator, embedder):
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    config = load_config(
        ROOT / "configs" / "handbook.toml",
        [
            *TINY,
            'experiment.presets=["prompt","rag"]',
            f"tracking.mlflow_uri={json.dumps(uri)}",
            'tracking.mlflow_experiment="tests"',
        ],
    )
    report = compare(config, tmp_path / "run", generator=generator, embedder=embedder).data

    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.get_run(report["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.metrics["rag.f1.mean"] == pytest.approx(report["pipelines"]["rag"]["metrics"]["f1"]["mean"])
    assert run.data.params["data.test_limit"] == "6"
    assert run.data.tags["ragft.generator"] == "smollm2-135m-instruct"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"report.json", "report.html", "config.json", "pipelines.json"} <= artifacts
    assert (tmp_path / "store" / "artifacts").is_dir()
    assert json.loads((tmp_path / "run" / "report.json").read_text())["mlflow_run_id"] == run.info.run_id
