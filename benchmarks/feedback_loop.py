"""One measured round of the continual loop on the handbook: train, serve, collect feedback,
retrain on it, compare on the unchanged test split.

1. `rag+ft (half)` trains on the first half of the training questions; `rag+ft` on all of them.
2. `ragft serve` serves `rag+ft-half`; the other half of the training questions go through
   its HTTP API with the official `openai` client.
3. A scripted reviewer rates each answer against the gold answer: thumbs up where token F1 >= 0.5,
   else thumbs down with the gold answer as the correction (POST /v1/feedback). The reviewer
   is simulated from gold labels: real reviewers are slower, noisier and fewer.
4. The feedback arms go on from the served adapter: `rag+ft+fb` (SFT on the corrections),
   `rag+ft+dpo` (DPO: correction over the model's answer), `rag+ft+kto` (KTO on the ratings
   and corrections); all arms are scored on the same test questions, with paired intervals.

Run: .venv/bin/python benchmarks/feedback_loop.py --out runs/feedback-loop [key.sub=value ...]
(about 40 minutes on 2 CPU cores; the run folder keeps every stage, so a re-run resumes).
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from openai import OpenAI
from serving import serving

from ragft.config import load_config
from ragft.experiment import compare
from ragft.io import write_jsonl_atomic
from ragft.metrics import token_f1
from ragft.render.markdown import markdown
from ragft.tasks.qa import load_examples

ROOT = Path(__file__).resolve().parents[1]
HANDBOOK = ROOT / "corpora" / "handbook"

ARMS = """
[[pipelines]]
name = "rag+ft-half"
base = "rag+ft"
finetune = {{ train_data = "{half}" }}
"""

FEEDBACK_ARMS = """
[[pipelines]]
name = "rag+ft+fb"
base = "rag+ft"
finetune = { init_from = "rag+ft-half", train_data = "feedback" }

[[pipelines]]
name = "rag+ft+dpo"
base = "rag+ft"
finetune = { init_from = "rag+ft-half", train_data = "feedback", objective = "dpo", learning_rate = 5e-5 }

[[pipelines]]
name = "rag+ft+kto"
base = "rag+ft"
finetune = { init_from = "rag+ft-half", train_data = "feedback", objective = "kto", learning_rate = 5e-5 }
"""


def config_file(out: Path, half: Path, feedback: bool) -> Path:
    text = (ROOT / "configs" / "handbook.toml").read_text().replace('"../', f'"{ROOT}/')
    text = text.replace('presets = ["prompt", "rag", "rag+ft"]', 'presets = ["rag", "rag+ft"]')
    text += ARMS.format(half=half) + (FEEDBACK_ARMS if feedback else "")
    path = out / ("loop.toml" if feedback else "first.toml")
    path.write_text(text)
    return path


def serve_and_review(run: Path, questions: list, clients: int) -> dict:
    """Serve rag+ft-half, send the questions, rate each answer against its gold answers."""
    with serving(run, "rag+ft-half") as url:
        api = OpenAI(base_url=url + "/v1", api_key="none", max_retries=2, timeout=600)

        def review(example) -> str:
            reply = api.chat.completions.create(
                model="rag+ft-half", messages=[{"role": "user", "content": example.question}]
            )
            answer = reply.choices[0].message.content or ""
            exchange = reply.model_extra["ragft"]["exchange_id"]
            f1 = token_f1(answer, example.answers)
            verdict = {"exchange_id": exchange, "reviewer": "scripted (gold labels)"}
            verdict.update({"rating": "up"} if f1 >= 0.5 else {"rating": "down", "correction": example.answers[0]})
            httpx.post(url + "/v1/feedback", json=verdict, timeout=60).raise_for_status()
            return verdict["rating"]

        start = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            ratings = list(pool.map(review, questions))
        seconds = time.perf_counter() - start
    return {"served": len(questions), "up": ratings.count("up"), "down": ratings.count("down"), "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "feedback-loop")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("overrides", nargs="*", help="key.sub=value settings for both stages")
    args = parser.parse_args()
    out = args.out.resolve()
    overrides = ["experiment.context_views=false", 'experiment.general_examples=""', *args.overrides]  # the arms alone
    out.mkdir(parents=True, exist_ok=True)

    train = [e for e in load_examples(HANDBOOK / "qa.jsonl") if e.split == "train"]
    first, second = train[: len(train) // 2], train[len(train) // 2 :]
    half = out / "half.jsonl"
    rows = [
        {"id": e.id, "question": e.question, "answers": list(e.answers), "split": "train", "doc_id": e.doc_id}
        for e in first
    ]
    write_jsonl_atomic(half, rows)
    run = out / "run"

    print(f"1. rag, rag+ft ({len(train)} pairs) and rag+ft-half ({len(first)} pairs)", flush=True)
    compare(load_config(config_file(out, half, feedback=False), overrides), run)
    review = out / "review.json"
    if not review.is_file():  # the loop's one round of feedback, kept for a re-run
        print(f"2. serving rag+ft-half; {len(second)} training questions through the API, reviewed", flush=True)
        review.write_text(json.dumps(serve_and_review(run, second, args.clients), indent=2) + "\n")
    print(f"   {review.read_text().strip()}", flush=True)
    print("3. feedback arms from rag+ft-half, scored beside the others", flush=True)
    report = compare(load_config(config_file(out, half, feedback=True), overrides), run).data
    print(markdown(report))


if __name__ == "__main__":
    main()
