"""Trains a tiny random Llama with ragft's LoRA loop; run by tests/test_accelerate.py under
`accelerate launch --multi_gpu --num_processes 2` (on CPUs: gloo). Each process writes what it ended with."""

import hashlib
import json
import random
import sys
from pathlib import Path

from helpers import tiny_llama

from ragft.config import FinetuneConfig
from ragft.finetune.data import make_record
from ragft.finetune.lora import train_lora


def main(out: Path) -> None:
    from accelerate import PartialState

    rng = random.Random(0)
    records = [
        make_record(str(i), [rng.randrange(3, 120) for _ in range(rng.randint(6, 20))], [i % 50 + 60, 7], 2, 64)
        for i in range(16)
    ]
    model = tiny_llama(vocab_size=128, pad_token_id=0, eos_token_id=2).train()
    cfg = FinetuneConfig(rank=4, alpha=8, learning_rate=3e-2, epochs=4, batch_size=4)
    model, result = train_lora(model, records, cfg, pad_id=0, seed=0)
    weights = b"".join(p.detach().numpy().tobytes() for n, p in sorted(model.named_parameters()) if "lora_" in n)
    state = PartialState()
    (out / f"rank{state.process_index}.json").write_text(
        json.dumps(
            {
                "processes": state.num_processes,
                "steps": result.steps,
                "losses": result.losses,
                "tokens": result.tokens,
                "expected_tokens": sum(len(r.input_ids) for r in records) * cfg.epochs,
                "weights": hashlib.sha256(weights).hexdigest(),
            }
        )
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
