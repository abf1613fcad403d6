"""Reading a run folder's settings back: the config it was made with, and each pipeline as
it ran (`ragft serve` and `ragft report` start from them)."""

from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path

from ragft.config import PIPELINE_SECTIONS, Config, saved_config, saved_section
from ragft.errors import InputError
from ragft.feedback.store import RunIdentity
from ragft.io import read_json, sha256_json
from ragft.optimize import prompt_dir
from ragft.prompts import PromptTemplate
from ragft.settings import PipelineSettings


def run_config(run_dir: str | Path) -> Config:
    """The settings a run folder was made with (its config.json)."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise InputError("not a ragft run folder (no config.json: run `ragft compare` into it first)", run_dir)
    return saved_config(read_json(path))


def run_identity(run_dir: str | Path) -> RunIdentity:
    """The run's identity in its feedback store: a digest of its settings (config.json, as
    written by its last `ragft compare`) and its experiment's name."""
    config = run_config(run_dir)
    return RunIdentity(sha256_json(read_json(Path(run_dir) / "config.json"))[:16], config.experiment.name)


def run_pipeline(run_dir: str | Path, config: Config, name: str) -> PipelineSettings:
    """One pipeline of a run as it ran (its pipelines.json entry): template, what it shows,
    whether it trains, and its own settings over the experiment's."""
    path = Path(run_dir) / "pipelines.json"
    if not path.is_file():
        raise InputError("not a ragft run folder (no pipelines.json)", run_dir)
    saved = read_json(path)
    if name not in saved:
        close = difflib.get_close_matches(name, list(saved), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise InputError(f"no pipeline {name!r} in this run{hint} (it has {', '.join(saved)})", run_dir)
    entry = saved[name]
    sections = {s: saved_section(s, entry[s]) for s in PIPELINE_SECTIONS if s in entry}
    settings = dataclasses.replace(config, pipelines=[], **sections)
    optimized = entry.get("optimized", prompt_dir(Path(run_dir), name).is_dir())  # runs before it was recorded
    template = PromptTemplate(**entry["template"])
    return PipelineSettings.of(name, template, entry["context"], entry["shots"], entry["trained"], settings, optimized)
