"""Optional logging of a finished run to MLflow (`tracking.mlflow_uri`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragft.errors import RagftError

if TYPE_CHECKING:
    from ragft.config import Config

REPORT_FILES = ("report.json", "report.md", "report.html", "config.json", "environment.json", "pipelines.json")


def _name(text: str) -> str:
    """MLflow keys allow letters, digits, `_ - . / ` and spaces: 'rag+ft' becomes 'rag_ft'."""
    return re.sub(r"[^A-Za-z0-9_\-./ ]", "_", text)


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def local_store(uri: str, config: Config) -> str:
    """A `sqlite:///relative/path.db` URI resolved against the config file, its folder made."""
    if not uri.startswith("sqlite:///"):
        return uri
    path = config.path(uri.removeprefix("sqlite:///"))
    path.parent.mkdir(parents=True, exist_ok=True)
    return "sqlite:///" + str(path.resolve())


def log_to_mlflow(uri: str, experiment: str, run_dir: str | Path, config: Config, report: dict[str, Any]) -> str:
    """Log params, per-pipeline metrics and the report files as one MLflow run; return its id.

    For a local `sqlite:///path/mlflow.db` store, artifacts go to `path/artifacts/`.
    """
    try:
        import mlflow
    except ImportError:
        raise RagftError(
            "tracking.mlflow_uri is set but MLflow is not installed: pip install 'ragft[tracking]'"
        ) from None

    uri = local_store(uri, config)
    client = mlflow.MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    if found is not None:
        experiment_id = found.experiment_id
    else:
        location = None
        if uri.startswith("sqlite:///"):
            location = (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").resolve().as_uri()
        experiment_id = client.create_experiment(experiment, artifact_location=location)
    run = client.create_run(
        experiment_id,
        run_name=report["name"],
        tags={
            "ragft.run_dir": str(Path(run_dir).resolve()),
            "ragft.generator": report["generator"],
            "ragft.git_sha": str(report["environment"].get("git_sha")),
        },
    )
    run_id = run.info.run_id
    params = {_name(k): str(v)[:500] for k, v in _flatten(config.to_dict()).items() if k != "base_dir"}
    metrics = {}
    for pipeline, v in report["pipelines"].items():
        for metric, est in v["metrics"].items():
            for part in ("mean", "low", "high"):
                metrics[_name(f"{pipeline}.{metric}.{part}")] = est[part]
        for key, value in _flatten(v["costs"]).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                metrics[_name(f"{pipeline}.{key}")] = float(value)
    from mlflow.entities import Metric, Param

    client.log_batch(run_id, params=[Param(k, v) for k, v in params.items()])
    client.log_batch(run_id, metrics=[Metric(k, val, 0, 0) for k, val in metrics.items()])
    for name in REPORT_FILES:
        if (Path(run_dir) / name).is_file():
            client.log_artifact(run_id, str(Path(run_dir) / name))
    client.set_terminated(run_id)
    return run_id
