"""`ragft serve` under load on loopback, then killed with SIGKILL mid-load.

1. Serves one pipeline of a finished run in its own process; N concurrent clients (the
   official `openai` client) send R questions each, and rate every answer through
   POST /v1/feedback. Prints errors, p50/p95 latency of the chat requests, requests/s, and
   checks that the store holds every exchange and every acknowledged feedback row.
2. Starts the server again, sends feedback from the same clients, kills the server with
   SIGKILL once some rows are acknowledged, and checks every acknowledged row is still in
   the store.

Run: .venv/bin/python benchmarks/serve_load.py RUN --pipeline rag+ft [--clients 16 --requests 25]
(RUN: a folder `ragft compare` finished; its feedback.sqlite gets the benchmark's rows).
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from openai import OpenAI
from serving import free_port, start

from ragft.feedback.store import FILENAME, FeedbackStore
from ragft.tasks.qa import load_examples

ROOT = Path(__file__).resolve().parents[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def load(url: str, pipeline: str, questions: list[str], clients: int, requests: int) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    exchanges: list[str] = []
    acked: list[int] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        api = OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=600)
        with httpx.Client(base_url=url, timeout=600) as http:
            for i in range(requests):
                q = questions[(n * requests + i) % len(questions)]
                start = time.perf_counter()
                try:
                    reply = api.chat.completions.create(model=pipeline, messages=[{"role": "user", "content": q}])
                    x = reply.model_extra["ragft"]["exchange_id"]
                    seconds = time.perf_counter() - start
                    r = http.post("/v1/feedback", json={"exchange_id": x, "rating": "up" if i % 2 else "down"})
                    r.raise_for_status()
                except Exception as e:  # counted, not raised: the benchmark reports errors
                    with lock:
                        errors.append(f"{type(e).__name__}: {e}")
                    continue
                with lock:
                    latencies.append(seconds)
                    exchanges.append(x)
                    acked.append(r.json()["id"])

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    wall = time.perf_counter() - start
    return {
        "requests": clients * requests,
        "errors": len(errors),
        "first_errors": errors[:3],
        "p50_s": percentile(latencies, 0.5) if latencies else None,
        "p95_s": percentile(latencies, 0.95) if latencies else None,
        "requests_per_s": len(latencies) / wall,
        "wall_s": wall,
        "exchanges": exchanges,
        "feedback_ids": acked,
    }


def kill_mid_load(run: Path, pipeline: str, clients: int, after: int) -> dict:
    port = free_port()
    server = start(run, pipeline, port)
    url = f"http://127.0.0.1:{port}"
    x = httpx.post(
        url + "/v1/chat/completions",
        json={"model": pipeline, "messages": [{"role": "user", "content": "How many days of leave?"}]},
        timeout=600,
    ).json()["ragft"]["exchange_id"]
    acked: list[str] = []
    stop = threading.Event()

    def post(n: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    r = http.post("/v1/feedback", json={"exchange_id": x, "correction": f"kill test {n}-{i}"})
                except httpx.TransportError:
                    return
                if r.status_code == 200:
                    acked.append(f"kill test {n}-{i}")

    threads = [threading.Thread(target=post, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    while len(acked) < after:
        time.sleep(0.005)
    server.send_signal(signal.SIGKILL)
    server.wait()
    stop.set()
    for t in threads:
        t.join()
    with FeedbackStore(run / FILENAME) as store:
        kept = {f.correction for f in store.feedback(x)}
    lost = [a for a in acked if a not in kept]
    return {"acknowledged": len(acked), "kept": len(kept & set(acked)), "lost": len(lost)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--pipeline", default="rag+ft")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=25)
    parser.add_argument("--kill-after", type=int, default=200, help="acknowledged feedback rows before the SIGKILL")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()

    questions = [e.question for e in load_examples(ROOT / "corpora" / "handbook" / "qa.jsonl")]
    port = free_port()
    server = start(args.run, args.pipeline, port)
    try:
        result = load(f"http://127.0.0.1:{port}", args.pipeline, questions, args.clients, args.requests)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
    with FeedbackStore(args.run / FILENAME) as store:
        stored_x = len({x.id for x in store.recent(len(result["exchanges"]) + 1000)} & set(result["exchanges"]))
        stored_f = {f.id for f in store.feedback()}
    missing_f = [i for i in result["feedback_ids"] if i not in stored_f]
    figures = {
        "clients": args.clients,
        "requests_each": args.requests,
        **{k: v for k, v in result.items() if k not in ("exchanges", "feedback_ids")},
        "exchanges_stored": f"{stored_x}/{len(result['exchanges'])}",
        "feedback_stored": f"{len(result['feedback_ids']) - len(missing_f)}/{len(result['feedback_ids'])}",
        "sigkill": kill_mid_load(args.run, args.pipeline, args.clients, args.kill_after),
    }
    print(json.dumps(figures, indent=2))
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
