"""Hyperparameter sweep for a fine-tuned pipeline: a grid (or a seeded random sample of it) over
`finetune.*` settings, each trained once and judged by validation loss, never by test.

Every setting's adapter is cached in the run folder under `sweep/`, so an interrupted or
extended sweep trains only what is new.
"""

from __future__ import annotations

import itertools
import random
from pathlib import Path
from typing import Any

from ragft.config import load_config
from ragft.errors import ConfigError
from ragft.io import sha256_json, write_json_atomic
from ragft.locks import run_lock
from ragft.resources import Resources


def parse_grid(items: list[str]) -> dict[str, list[str]]:
    """`finetune.key=v1,v2` strings to {key: [v1, v2]}; only fine-tuning settings may vary."""
    grid: dict[str, list[str]] = {}
    for item in items:
        key, _, values = item.partition("=")
        key = key.strip()
        if not key.startswith("finetune.") or not values:
            raise ConfigError(f"--grid {item!r}: expected finetune.<key>=value1,value2,...")
        grid[key] = [v.strip() for v in _split_values(values)]
    return grid


def _split_values(values: str) -> list[str]:
    """Split on commas outside brackets, so list values such as ["q_proj","v_proj"] stay whole."""
    out, depth, current = [], 0, ""
    for ch in values:
        depth += 1 if ch == "[" else -1 if ch == "]" else 0
        if ch == "," and depth == 0:
            out.append(current)
            current = ""
        else:
            current += ch
    return [*out, current]


def settings_to_try(grid: dict[str, list[str]], sample: int, seed: int) -> list[list[str]]:
    """Every combination of the grid as override lists, or `sample` of them drawn with `seed`."""
    combos = [[f"{k}={v}" for k, v in zip(grid, values)] for values in itertools.product(*grid.values())]
    if 0 < sample < len(combos):
        combos = random.Random(seed).sample(combos, sample)
    return combos


def sweep(
    config_path: str | Path,
    overrides: list[str],
    grid: dict[str, list[str]],
    name: str = "rag+ft",
    sample: int = 0,
    run_dir: str | Path | None = None,
    resources: Resources | None = None,
) -> dict[str, Any]:
    """Train pipeline `name` once per setting and rank the settings by best validation loss.

    Without `finetune.validation_fraction`, a tenth of the training records is held out.
    Writes sweep.json into the run folder and returns the sweep (with the run `folder`).
    """
    from ragft.runner.run import Run, run_dir_for, trained_pipeline

    base = load_config(config_path, overrides)
    trained_pipeline(base, name)  # a trained pipeline of this config, or an error naming them
    if base.finetune.validation_fraction <= 0:
        overrides = [*overrides, "finetune.validation_fraction=0.1"]
        base = load_config(config_path, overrides)
    folder = Path(run_dir) if run_dir is not None else run_dir_for(base)
    with run_lock(folder):
        run = Run(folder, base, resources or Resources())
        rows = []
        for combo in settings_to_try(grid, sample, base.experiment.seed):
            pipeline = trained_pipeline(load_config(config_path, [*overrides, *combo]), name)
            if pipeline.finetune.init_from or pipeline.finetune.objective != "sft":
                raise ConfigError(
                    f"ragft sweep tunes fresh adapters on the next-token loss; {name!r} goes on from another "
                    "pipeline's adapter or trains on preferences (tune its settings with `ragft compare`)"
                )
            adapter = folder / "sweep" / sha256_json(combo)[:12]
            with run.adapted(pipeline, run.generator(pipeline), adapter) as training:
                pass  # trained (or found trained) and taken off again
            best = min(loss for _, loss in training["validation"])
            rows.append({"settings": combo, "validation_loss": best, "adapter": str(adapter), **_summary(training)})
        rows.sort(key=lambda r: r["validation_loss"])
        fraction = base.finetune.validation_fraction
        result = {"pipeline": name, "grid": grid, "validation_fraction": fraction, "rows": rows}
        write_json_atomic(folder / "sweep.json", result)
    return {**result, "folder": folder}


def _summary(training: dict[str, Any]) -> dict[str, Any]:
    return {k: training[k] for k in ("best_step", "steps", "seconds", "stopped_early") if k in training}
