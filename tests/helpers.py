"""What the tests share besides fixtures: the repository's paths, the run settings that
make an experiment small enough for a test, a tiny random Llama for training mechanics,
real SQLite files, an app behind a real uvicorn server, and the flags headless Chromium
runs with here."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HANDBOOK = ROOT / "corpora" / "handbook"

OFF = ['experiment.general_examples=""', "experiment.context_views=false"]
"""The forgetting check and the context views off: each has tests of its own."""

TINY = [
    "data.test_limit=6",
    "data.train_limit=16",
    "finetune.max_steps=2",
    "finetune.batch_size=4",
    "generation.max_new_tokens=12",
    "experiment.bootstrap_samples=200",
    *OFF,
]
"""A handbook run in seconds: 6 test and 16 training questions, two training steps."""

QUICK = [
    'experiment.presets=["prompt"]',
    "data.test_limit=2",
    "generation.max_new_tokens=4",
    "experiment.bootstrap_samples=100",
    *OFF,
]
"""The smallest run there is: one untrained pipeline, two questions (errors and exit codes)."""

SMALL = [
    "data.test_limit=4",
    "data.train_limit=8",
    "finetune.max_steps=2",
    "finetune.batch_size=4",
    "finetune.checkpoint_every=1",
    "generation.batch_size=2",
    "generation.max_new_tokens=8",
    "models.dtype=float32",
    "experiment.bootstrap_samples=100",
    *OFF,
]
"""Many small steps (a checkpoint every step, batches of two): where faults are injected."""

RESUME = [
    'experiment.presets=["rag+ft"]',
    "data.test_limit=8",  # two batches: killed after the first
    "data.train_limit=16",
    "finetune.max_steps=2",  # killed after the first
    "finetune.batch_size=4",
    "finetune.checkpoint_every=1",
    "generation.batch_size=4",
    "generation.max_new_tokens=12",
    "experiment.bootstrap_samples=200",
    *OFF,  # views and the forgetting check resume alike; they have their own tests
]
"""A run killed and started again: two prediction batches and two training steps."""

BROWSER_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
"""Headless Chromium on a machine with no network beyond package registries."""


def data_dir() -> Path | None:
    """../shared/data beside the project, or $RAGFT_DATA."""
    path = Path(os.environ.get("RAGFT_DATA") or ROOT.parent / "shared" / "data")
    return path if path.is_dir() else None


def tiny_llama(vocab_size: int, pad_token_id: int, eos_token_id: int):
    """A randomly initialised 2-layer Llama (seeded), for training mechanics."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=512,
        initializer_range=0.2,  # logits large enough for LoRA alone to move the loss
        pad_token_id=pad_token_id,
        eos_token_id=eos_token_id,
    )
    return LlamaForCausalLM(config).eval()


def shop_database(path, items: int):
    """A real SQLite file with one table of `items` rows."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT, price REAL)")
    conn.executemany("INSERT INTO item (name, price) VALUES (?, ?)", [(f"item {i}", i * 1.5) for i in range(items)])
    conn.commit()
    conn.close()
    return path


@contextmanager
def running(app):
    """The app behind a real uvicorn server on a free loopback port, in a thread."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
