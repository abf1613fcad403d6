"""Injected faults: a full disk at every write site of a run, and SIGKILL at random moments.

Whatever fails, everything written before stays intact, the failure names the write, and
the run finished afterwards equals one that was never interrupted.
"""

from __future__ import annotations

import errno
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from helpers import ROOT, SMALL

import ragft.io
from ragft.config import load_config
from ragft.errors import WriteError, explain
from ragft.experiment import compare

CONFIG = str(ROOT / "configs" / "handbook.toml")
REWRITTEN = {"config.json", "environment.json", "pipelines.json", "report.json", "report.md", "report.html"}
"""Files every run writes afresh; any other file a failed run finds is only ever appended to."""
LOCKS = {".ragft.lock", ".ragft.lock.json"}


def _site(path: Path, run: Path) -> str:
    """A write site's path within the run, temporary folder names made stable."""
    rel = str(Path(path).resolve().relative_to(run.resolve())) if Path(path).is_absolute() else str(path)
    return re.sub(r"\.([^/]+?)\.[A-Za-z0-9_]{6,}\.tmp", r".\1.tmp", rel)


class DiskFull:
    """`ragft.io._before_write`: counts every write; fails (ENOSPC) the first one whose site
    (path and how many writes to it came before in this run) has not failed yet."""

    def __init__(self, run: Path, failed: set[tuple[str, int]] | None):
        self.run, self.failed = run, failed
        self.seen: Counter[str] = Counter()
        self.sites: list[tuple[str, int]] = []
        self.hit: tuple[str, int] | None = None
        self.hit_path: Path | None = None

    def __call__(self, path: Path) -> None:
        name = _site(path, self.run)
        site = (name, self.seen[name])
        self.seen[name] += 1
        self.sites.append(site)
        if self.failed is not None and self.hit is None and site not in self.failed:
            self.hit, self.hit_path = site, path
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _files(run: Path) -> dict[str, bytes]:
    if not run.exists():
        return {}
    return {str(p.relative_to(run)): p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name not in LOCKS}


def _superseded(name: str, files: dict[str, bytes]) -> bool:
    """A training checkpoint is removed once the finished adapter it led to is saved."""
    folder, _, _ = name.partition(".checkpoint/")
    return ".checkpoint/" in name and f"{folder}/manifest.json" in files


def _outcome(run: Path, report: dict) -> dict:
    """What a finished run concluded: every prediction and every metric (not its timings)."""
    outputs = {}
    for path in sorted((run / "predictions").glob("*.jsonl")):
        outputs[path.name] = {r["example_id"]: r["output"] for r in map(json.loads, path.read_text().splitlines())}
    metrics = {name: v["metrics"] for name, v in report["pipelines"].items()}
    return {"outputs": outputs, "metrics": metrics, "comparisons": report.get("comparisons")}


def _sweep_disk_full(tmp_path, monkeypatch, generator, embedder, presets: str) -> tuple[int, int]:
    """ENOSPC at every write site of one run, one site per attempt, resuming in between;
    returns (sites in an uninterrupted run, failures injected)."""
    config = load_config(CONFIG, [*SMALL, f"experiment.presets={presets}"])
    straight_run = tmp_path / "straight"
    counter = DiskFull(straight_run, None)
    monkeypatch.setattr(ragft.io, "_before_write", counter)
    straight = _outcome(straight_run, compare(config, straight_run, generator, embedder).data)

    run, failed = tmp_path / "full-disk", set()
    while True:
        before = _files(run)
        disk = DiskFull(run, failed)
        monkeypatch.setattr(ragft.io, "_before_write", disk)
        try:
            report = compare(config, run, generator, embedder).data
        except WriteError as e:
            assert disk.hit is not None
            message, code = explain(e)
            assert code == 3 and message.startswith("ragft: error: ") and "No space left on device" in message
            assert f"could not write {disk.hit_path}: " in message, message
            after = _files(run)
            for name, data in before.items():  # nothing written before is lost or damaged
                if _superseded(name, after):
                    continue
                assert name in after, f"{name} lost when {disk.hit} failed"
                if Path(name).name in REWRITTEN:
                    assert after[name], name
                else:
                    assert after[name].startswith(data), f"{name} changed when {disk.hit} failed"
            assert not [n for n in after if n.endswith(".tmp") or ".tmp/" in n], "temporary files left behind"
            failed.add(disk.hit)
            continue
        assert disk.hit is None
        break
    monkeypatch.setattr(ragft.io, "_before_write", lambda path: None)
    assert _outcome(run, report) == straight
    missed = set(counter.sites) - failed
    assert not missed, f"write sites never failed: {sorted(missed)}"
    return len(counter.sites), len(failed)


def test_a_full_disk_at_every_write_site_of_a_prompt_run_loses_nothing(tmp_path, monkeypatch, generator, embedder):
    sites, failures = _sweep_disk_full(tmp_path, monkeypatch, generator, embedder, '["prompt"]')
    assert sites == failures >= 8


@pytest.mark.slow
def test_a_full_disk_at_every_write_site_of_a_trained_run_loses_nothing(tmp_path, monkeypatch, generator, embedder):
    sites, failures = _sweep_disk_full(tmp_path, monkeypatch, generator, embedder, '["prompt","rag","rag+ft"]')
    print(f"ENOSPC injected at {failures} write sites of {sites}; every earlier artifact intact")
    assert sites == failures >= 25


def _start(run: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "ragft.cli", "compare", CONFIG, *SMALL[:-3], *KILL_SETTINGS, "--out", str(run)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


KILL_SETTINGS = [
    'experiment.presets=["prompt","rag","rag+ft"]',
    "experiment.context_views=true",
    'experiment.general_examples=""',
    "experiment.bootstrap_samples=100",
]


@pytest.mark.slow
def test_sigkill_at_random_moments_many_times_then_finishing_equals_an_uninterrupted_run(tmp_path):
    """Kill points drawn uniformly over the whole run (start-up, indexing, retrieval,
    training, checkpoints, prediction, report), several in a row on one folder."""
    start = time.monotonic()
    straight = _start(tmp_path / "straight")
    assert straight.wait(timeout=900) == 0, straight.stderr.read()[-2000:]
    duration = time.monotonic() - start
    expected = _outcome(tmp_path / "straight", json.loads((tmp_path / "straight" / "report.json").read_text()))

    rng, kills, sequence = random.Random(0), [], 0
    while len(kills) < 20:
        sequence += 1
        run = tmp_path / f"killed-{sequence}"
        while True:
            proc, at = _start(run), rng.uniform(0.0, duration)
            try:
                proc.wait(timeout=at)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                assert proc.wait() == -signal.SIGKILL
                kills.append(round(at, 1))
                continue
            assert proc.returncode == 0, proc.stderr.read()[-2000:]
            break
        assert _outcome(run, json.loads((run / "report.json").read_text())) == expected, f"sequence {sequence}"
    print(
        f"{len(kills)} SIGKILLs over {sequence} fresh run folders (a run takes {duration:.0f} s), "
        f"at {sorted(kills)} s: identical outcomes"
    )


@pytest.mark.slow
def test_two_processes_converting_the_shared_model_cache_at_once_both_get_one_conversion(tmp_path):
    """Two runs (other run folders) start on a fresh model cache together: one converts the
    GGUF checkpoint under the lock, the other waits and uses it; nothing is converted twice."""
    code = (
        "import time\nfrom ragft.models import resolve\n"
        "start = time.time()\nprint(resolve('smollm2-135m-instruct', 'generator'), time.time() - start)\n"
    )
    env = {**os.environ, "RAGFT_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, "-c", code]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600)[0].split() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert outs[0][0] == outs[1][0]
    folder = Path(outs[0][0])
    manifests = list((tmp_path / "cache" / "models").glob("*/manifest.json"))
    assert manifests == [folder / "manifest.json"]
    assert not [p for p in (tmp_path / "cache" / "models").iterdir() if p.name.endswith(".tmp")]
    from ragft.generation import Generator

    assert Generator.load(str(folder), "float32").model is not None


def test_a_retrieval_cache_torn_by_a_kill_mid_write_is_read_back_and_repaired(tmp_path, generator):
    config = load_config(CONFIG, [*SMALL, 'experiment.presets=["rag"]', "retrieval.method=bm25"])
    first = _outcome(tmp_path, compare(config, tmp_path, generator).data)
    hits = tmp_path / "retrieval" / "test_hits.jsonl"
    rows = hits.read_text().splitlines()
    hits.write_text("\n".join(rows[:-1]) + "\n" + rows[-1][: len(rows[-1]) // 2])  # the last row cut short
    (tmp_path / "predictions" / "rag.jsonl").unlink()  # so the passages are asked for again
    assert _outcome(tmp_path, compare(config, tmp_path, generator).data) == first
    assert [json.loads(line)["question"] for line in hits.read_text().splitlines()] == [
        json.loads(line)["question"] for line in rows
    ]
