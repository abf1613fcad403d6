"""Drift detection of `ragft monitor` on a served handbook run: how soon it alerts on a real
shift, and how often it alerts with none.

1. A copy of a finished handbook run (`make demo` makes runs/handbook) serves `--pipeline`
   with `ragft serve` on loopback; its training questions are the reference.
2. The 110 test questions go through the HTTP API (the `openai` client), then `--shifted`
   SQuAD v1.1 dev questions from ../shared/data. A scripted reviewer rates every answer
   through `POST /v1/feedback`: up, then from question `--onset` on, down with probability
   `--down` (before it, with probability `--base-down`).
3. `ragft monitor` reads the real store: the first alert of each kind and its delay (the
   questions after the shift when the alerting window closed).
4. The statistics depend on the order of exchanges only, so orders are replayed on the
   stored exchanges, not served again: the 110 test questions alone in `--orders` random
   orders (false alarms: any alert; rated at the base rate throughout); the whole sequence
   with each part shuffled, the reviewer turning at `--onset` (detection delays), and again
   with a reviewer who never turns (quality false alarms). For comparison, a question test
   that treats questions as exchangeable (MMD, Gaussian kernel, permuted questions).

Run: .venv/bin/python benchmarks/drift.py [--run runs/handbook --pipeline rag --orders 200]
(about 15 minutes on 2 CPU cores, most of it answering the 310 questions; the served copy
and its store stay in --out, runs/drift, and a re-run reads them instead of serving again)
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import os
import random
import shutil
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
from openai import OpenAI
from serving import serving

from ragft.feedback.store import read_history
from ragft.feedback.windows import WindowSpec, alert_lines, assess_windows
from ragft.monitor import Watch
from ragft.stats import ALPHA
from ragft.tasks.qa import load_examples

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("RAGFT_DATA") or ROOT.parent / "shared" / "data")


def squad_questions(n: int, seed: int) -> list[str]:
    data = json.loads(gzip.open(DATA / "squad-v1.1" / "dev-v1.1.json.gz").read())
    questions = [q["question"] for a in data["data"] for p in a["paragraphs"] for q in p["qas"]]
    return random.Random(seed).sample(questions, n)


def serve_and_review(run: Path, pipeline: str, questions: list[str], ratings: list[str], args) -> float:
    """Serve `pipeline`, send the questions in order (`--clients` at a time), post the ratings."""
    with serving(run, pipeline) as url:
        api = OpenAI(base_url=url + "/v1", api_key="none", max_retries=2, timeout=600)

        def ask(i: int) -> None:
            reply = api.chat.completions.create(
                model=pipeline, messages=[{"role": "user", "content": questions[i]}], max_tokens=args.max_tokens
            )
            verdict = {"exchange_id": reply.model_extra["ragft"]["exchange_id"], "rating": ratings[i]}
            httpx.post(url + "/v1/feedback", json={**verdict, "reviewer": "scripted"}, timeout=60).raise_for_status()

        start = time.perf_counter()
        for begin in range(0, len(questions), args.clients):  # in order, a batch of clients at a time
            with ThreadPoolExecutor(args.clients) as pool:
                list(pool.map(ask, range(begin, min(begin + args.clients, len(questions)))))
            print(f"\r  {min(begin + args.clients, len(questions))}/{len(questions)} answered", end="", flush=True)
        print()
        return time.perf_counter() - start


def first_alerts(alerts, kinds=("questions", "retrieval", "quality"), after: int = 0) -> dict[str, int | None]:
    """Each kind's first alerting window among those numbered above `after`."""
    return {k: next((a.window for a in alerts if a.kind == k and a.window > after), None) for k in kinds}


def mmd_p(reference: np.ndarray, window: np.ndarray, rng: np.random.Generator, permutations: int = 500) -> float:
    """MMD permutation test treating questions as exchangeable (Gaussian kernel, median bandwidth)."""
    both = np.vstack([reference, window])
    n_ref = len(reference)
    distances = np.maximum(2 - 2 * both @ both.T, 0)
    kernel = np.exp(-distances / np.median(distances[:n_ref, :n_ref][np.triu_indices(n_ref, 1)]))
    signs = np.concatenate([np.full(n_ref, -1 / n_ref), np.full(len(window), 1 / len(window))])
    observed = signs @ kernel @ signs
    shuffled = np.stack([signs[rng.permutation(len(signs))] for _ in range(permutations)], axis=1)
    null = np.einsum("ib,ib->b", shuffled, kernel @ shuffled)
    return float((1 + np.sum(null >= observed)) / (permutations + 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=ROOT / "runs" / "handbook", help="a finished handbook run")
    parser.add_argument("--pipeline", default="rag")
    parser.add_argument("--shifted", type=int, default=200, help="SQuAD questions sent after the test questions")
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--window", default="25")
    parser.add_argument("--onset", type=int, default=60, help="question from which the reviewer down-rates more")
    parser.add_argument("--base-down", type=float, default=0.1)
    parser.add_argument("--down", type=float, default=0.6)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", type=Path, default=ROOT / "runs" / "drift", help="keeps the served copy and its store for a re-run"
    )
    args = parser.parse_args()
    if not (args.run / "config.json").is_file():
        raise SystemExit(f"{args.run} is not a finished run: `make demo` makes runs/handbook")
    spec = WindowSpec.parse(args.window)
    if not spec.size:
        raise SystemExit("--window: a number of exchanges (orders are replayed by position, not by time)")
    rng = random.Random(args.seed)
    test = [e.question for e in load_examples(ROOT / "corpora" / "handbook" / "qa.jsonl") if e.split == "test"]
    shifted = squad_questions(args.shifted, args.seed)
    questions = test + shifted
    ratings = [
        "down" if rng.random() < (args.down if i >= args.onset else args.base_down) else "up"
        for i in range(len(questions))
    ]

    run = args.out / "run"
    store = run / "feedback.sqlite"
    if store.is_file() and len(read_history(store).exchanges) == len(questions):
        print(f"1. reading the store of an earlier serving: {store}")
    else:
        shutil.rmtree(run, ignore_errors=True)
        shutil.copytree(args.run, run, ignore=shutil.ignore_patterns("feedback.sqlite*"))
        print(
            f"1. serving {args.pipeline!r} of a copy of {args.run}; {len(test)} test + {len(shifted)} SQuAD questions"
        )
        seconds = serve_and_review(run, args.pipeline, questions, ratings, args)
        print(f"   answered and rated in {seconds:.0f} s")
    history = read_history(store)
    watch = Watch(run, args.pipeline, None, spec)
    found = watch.assess(history, now=time.time())
    size = spec.size
    print(f"2. `ragft monitor` on the store ({len(history.exchanges)} exchanges, windows of {spec.describe()}):")
    for line in alert_lines(found.alerts):
        print(f"   {line}")
    served = history.exchanges
    new, seen = watch.novelty([x.question for x in served])
    reference = watch.reference

    def run_order(order: list[int], rated: list[str | None]):
        """The alerts of the stored exchanges replayed in `order`, rated `rated`."""
        rows = [  # served one a second in this order, each rated as it is answered
            dataclasses.replace(served[i], created=float(j), ratings=((float(j), r),) if r else (), corrected_at=None)
            for j, (i, r) in enumerate(zip(order, rated))
        ]
        held_out, clusters = reference.held_out, reference.clusters
        return assess_windows(rows, new[order], seen[order], held_out, clusters, spec, ALPHA, time.time())[1]

    n_test = len(test)
    order_rng = random.Random(args.seed + 1)
    false_alarms = {"questions": 0, "retrieval": 0, "quality": 0, "any": 0}
    mmd_false = 0
    np_rng = np.random.default_rng(args.seed)
    shift_delays: list[int | None] = []
    quality_delays: list[int | None] = []
    quality_false = 0
    question_vectors = watch.embedded([x.question for x in served])
    for _ in range(args.orders):
        order = order_rng.sample(range(n_test), n_test)
        steady = ["down" if order_rng.random() < args.base_down else "up" for _ in order]
        first = first_alerts(run_order(order, steady))
        for kind, window in first.items():
            false_alarms[kind] += window is not None
        false_alarms["any"] += any(w is not None for w in first.values())
        windows = [order[i : i + size] for i in range(0, n_test - size + 1, size)]
        mmd_false += any(mmd_p(reference.train, question_vectors[w], np_rng) <= 0.05 / 3 for w in windows)
        # a real shift: the test questions, then the SQuAD ones, each part shuffled; the
        # reviewer turns at --onset (a window's quality is known when the next one closes)
        both = order + order_rng.sample(range(n_test, len(served)), len(served) - n_test)
        turned = [
            "down" if order_rng.random() < (args.down if j >= args.onset else args.base_down) else "up"
            for j in range(len(both))
        ]
        found_both = run_order(both, turned)
        window = first_alerts(found_both, after=n_test // size)["questions"]
        shift_delays.append(window * size - n_test if window is not None else None)
        window = first_alerts(found_both, after=args.onset // size)["quality"]
        quality_delays.append((window + 1) * size - args.onset if window is not None else None)
        # the same questions with a reviewer who never turns: any quality alert is a false one
        steady_both = ["down" if order_rng.random() < args.base_down else "up" for _ in both]
        quality_false += first_alerts(run_order(both, steady_both))["quality"] is not None

    def delays(values: list[int | None]) -> str:
        hit = [v for v in values if v is not None]
        if not hit:
            return f"never detected in {len(values)} orders"
        return (
            f"detected in {len(hit)}/{len(values)} orders; delay median {statistics.median(hit):.0f}, "
            f"max {max(hit)} questions"
        )

    print(f"\n3. over {args.orders} random orders (windows of {size}, alpha 0.05 over all windows and kinds):")
    print(
        "   the 110 test questions alone, rated down at the base rate "
        f"{args.base_down:.0%}: an alert in {false_alarms['any']}/{args.orders} orders "
        f"({false_alarms['any'] / args.orders:.1%}: questions {false_alarms['questions']}, retrieval "
        f"{false_alarms['retrieval']}, quality {false_alarms['quality']})"
    )
    print(
        f"   question-level MMD (permuted questions, alpha 0.05/3 a window): an alert in {mmd_false}/{args.orders} "
        f"orders ({mmd_false / args.orders:.1%})"
    )
    within = sum(1 for d in shift_delays if d is not None and d <= 50)
    print(
        f"   question drift (SQuAD after the test questions): {delays(shift_delays)}; within 50: {within}/{args.orders}"
    )
    print(
        f"   quality drift (down-rated {args.base_down:.0%} -> {args.down:.0%} from question {args.onset}, "
        f"known when the next window closes): {delays(quality_delays)}"
    )
    print(
        f"   quality, a reviewer who stays at {args.base_down:.0%} over all {len(served)} exchanges: an alert in "
        f"{quality_false}/{args.orders} orders ({quality_false / args.orders:.1%})"
    )


if __name__ == "__main__":
    main()
