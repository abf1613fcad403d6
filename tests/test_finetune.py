import json
import random

import pytest

from ragft.config import FinetuneConfig
from ragft.errors import ArtifactError, RagftError
from ragft.finetune.adapter import load_adapter, save_adapter
from ragft.finetune.data import IGNORE, gold_chunk, make_record, raft_passages
from ragft.finetune.lora import answer_loss, collate, length_grouped_batches, train_lora
from ragft.types import Chunk, Example, Hit


def test_record_masks_prompt_and_keeps_answer_with_eos():
    r = make_record("x", [1, 2, 3, 4], [7, 8], eos_id=2, max_length=100)
    assert r.input_ids == (1, 2, 3, 4, 7, 8, 2)
    assert r.labels == (IGNORE,) * 4 + (7, 8, 2)
    assert not r.truncated


def test_long_record_loses_context_never_the_answer():
    prompt = list(range(100, 400))
    r = make_record("x", prompt, [7, 8, 9], eos_id=2, max_length=100)
    assert len(r.input_ids) == 100 and r.truncated
    assert r.input_ids[-4:] == (7, 8, 9, 2) and r.labels[-4:] == (7, 8, 9, 2)
    assert r.input_ids[:24] == tuple(prompt[:24])  # system line kept
    assert r.input_ids[-5] == prompt[-1]  # question (end of prompt) kept


def test_answer_too_long_for_max_length_is_an_error():
    with pytest.raises(RagftError, match="no room"):
        make_record("x", [1] * 10, list(range(90)), eos_id=2, max_length=100)


def test_raft_context_drops_gold_at_the_configured_rate():
    gold = Chunk("g#0", "g", "the answer is Beacon", 0)
    hits = [Hit(Chunk(f"d{i}#0", f"d{i}", f"distractor {i}", 0), 1.0 - i / 10, i) for i in range(5)]
    ex = Example("e", "q?", ("Beacon",), "train", "g")
    assert gold_chunk(ex, {"g": [Chunk("g#1", "g", "nothing", 0), gold]}) == gold
    rng = random.Random(0)
    runs = [raft_passages(ex, hits, gold, 3, 0.3, rng) for _ in range(2000)]
    assert all(len(p) == 3 for p in runs)
    with_gold = sum(gold in p for p in runs) / len(runs)
    assert 0.65 < with_gold < 0.75
    positions = {p.index(gold) for p in runs if gold in p}
    assert positions == {0, 1, 2}


def test_length_grouped_batches_cover_everything_once_with_little_padding():
    rng = random.Random(0)
    lengths = [rng.randint(20, 400) for _ in range(500)]
    batches = length_grouped_batches(lengths, 8, random.Random(1))
    assert sorted(i for b in batches for i in b) == list(range(500))
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    assert 1 - sum(lengths) / padded < 0.10


def _records(tokenizer, n=8):
    out = []
    for i in range(n):
        prompt = tokenizer(f"Question number {i}: what is the code word?", add_special_tokens=False)["input_ids"]
        answer = tokenizer(f" lantern {i}", add_special_tokens=False)["input_ids"]
        out.append(make_record(str(i), prompt, answer, tokenizer.eos_token_id, 64))
    return out


def test_lora_training_lowers_the_loss(tiny_model, tokenizer):
    records = _records(tokenizer)
    cfg = FinetuneConfig(rank=8, alpha=16, learning_rate=3e-2, epochs=30, batch_size=4)
    model, result = train_lora(tiny_model, records, cfg, tokenizer.pad_token_id, seed=0)
    assert result.steps == 60
    assert sum(result.losses[-4:]) / 4 < 0.7 * sum(result.losses[:4]) / 4
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


@pytest.mark.parametrize("method", ["lora", "full"])
def test_gradient_checkpointing_recomputes_layers_and_trains_the_same_weights(method, tiny_model, tokenizer):
    import copy

    import torch

    records = _records(tokenizer)
    calls = {"plain": 0, "checkpointed": 0}
    results = {}
    for name, on in (("plain", False), ("checkpointed", True)):
        model = copy.deepcopy(tiny_model)
        mlp = model.model.layers[0].mlp
        counted = mlp.forward  # counted here: module hooks do not fire when the backward pass recomputes

        def forward(*args, _name=name, _counted=counted, **kwargs):
            calls[_name] += 1
            return _counted(*args, **kwargs)

        mlp.forward = forward
        cfg = FinetuneConfig(
            method=method, rank=4, learning_rate=1e-2, epochs=2, batch_size=4, gradient_checkpointing=on
        )
        trained, result = train_lora(model, records, cfg, tokenizer.pad_token_id, seed=0)
        weights = {n: p.detach().clone() for n, p in trained.named_parameters() if "lora_" in n or method == "full"}
        results[name] = (result.losses, weights)
        assert not any(getattr(m, "gradient_checkpointing", False) for m in trained.modules())  # off again
    # Each of the 4 steps runs the layer once forward; checkpointing runs it again in backward.
    assert calls == {"plain": 4, "checkpointed": 8}
    assert results["checkpointed"][0] == pytest.approx(results["plain"][0], rel=1e-5)
    plain, checkpointed = results["plain"][1], results["checkpointed"][1]
    assert plain.keys() == checkpointed.keys() and plain
    assert all(torch.allclose(plain[n], checkpointed[n], atol=1e-6) for n in plain)


def test_answer_loss_matches_the_full_model_loss(tiny_model, tokenizer):
    batch = collate(_records(tokenizer, 4), tokenizer.pad_token_id)
    full = tiny_model(**batch).loss
    assert answer_loss(tiny_model, **batch).item() == pytest.approx(full.item(), rel=1e-5)


def test_saved_adapter_reloads_to_identical_logits(tmp_path, tiny_model, tokenizer):
    import torch
    from transformers import AutoModelForCausalLM

    tiny_model.save_pretrained(tmp_path / "base")
    records = _records(tokenizer)
    cfg = FinetuneConfig(rank=4, alpha=8, learning_rate=5e-3, epochs=3, batch_size=4)
    model, _ = train_lora(tiny_model, records, cfg, tokenizer.pad_token_id)
    batch = collate(records, tokenizer.pad_token_id)
    with torch.no_grad():
        expected = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    save_adapter(model, tmp_path / "adapter", base_model="tiny-base")
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()

    fresh = AutoModelForCausalLM.from_pretrained(tmp_path / "base")
    with torch.no_grad():
        plain = fresh(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert not torch.equal(plain, expected)  # the adapter changed the model
    reloaded = load_adapter(fresh, tmp_path / "adapter", base_model="tiny-base")
    with torch.no_grad():
        got = reloaded(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert torch.equal(got, expected)


def test_adapter_for_another_base_is_refused_naming_both(tmp_path, tiny_model, tokenizer):
    cfg = FinetuneConfig(rank=4, epochs=1, batch_size=4)
    model, _ = train_lora(tiny_model, _records(tokenizer, 4), cfg, tokenizer.pad_token_id)
    save_adapter(model, tmp_path / "adapter", base_model="base-a")
    with pytest.raises(ArtifactError) as err:
        load_adapter(model.unload(), tmp_path / "adapter", base_model="base-b")
    assert "base-a" in str(err.value) and "base-b" in str(err.value)


def test_nan_loss_stops_training_naming_step_and_batch(tiny_model, tokenizer):
    import torch

    with torch.no_grad():
        tiny_model.model.norm.weight.fill_(float("nan"))
    cfg = FinetuneConfig(rank=4, epochs=1, batch_size=4)
    with pytest.raises(RagftError, match=r"loss became nan at step 1 \(batch: "):
        train_lora(tiny_model, _records(tokenizer, 4), cfg, tokenizer.pad_token_id)


@pytest.mark.parametrize("method", ["lora", "full"])
def test_a_failed_training_leaves_the_callers_model_as_it_was(method, tiny_model, tokenizer):
    import torch

    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        before = tiny_model(input_ids=ids).logits.clone()
    dtype = next(tiny_model.parameters()).dtype
    names = [n for n, _ in tiny_model.named_modules()]

    def fail(result):
        raise KeyboardInterrupt  # Ctrl-C in the middle of training

    cfg = FinetuneConfig(method=method, rank=4, learning_rate=1e-1, epochs=1, batch_size=2)
    with pytest.raises(KeyboardInterrupt):
        train_lora(tiny_model, _records(tokenizer, 8), cfg, tokenizer.pad_token_id, on_step=fail)
    with torch.no_grad():
        after = tiny_model(input_ids=ids).logits
    assert torch.equal(before, after)  # a step was taken, and undone
    assert [n for n, _ in tiny_model.named_modules()] == names  # no adapter layers left behind
    assert next(tiny_model.parameters()).dtype == dtype and not tiny_model.training


def test_a_failed_training_inside_a_run_gives_the_generator_its_model_back(tmp_path, tiny_model, tokenizer):
    import torch

    from ragft.config import Config
    from ragft.generation import Generator
    from ragft.runner.training import adapted
    from ragft.settings import ladder

    class Task:  # training records only; the failure comes from the loop
        def train_records(self, pipeline, generator):
            return _records(tokenizer, 8)

    config = Config()
    config.finetune.learning_rate = float("inf")  # the first step's update makes the loss NaN
    config.finetune.batch_size = 2
    generator = Generator(tiny_model, tokenizer, "tiny")
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        before = tiny_model(input_ids=ids).logits.clone()
    with pytest.raises(RagftError, match="loss became nan"):
        with adapted(tmp_path / "adapter", ladder(config, ["ft"])[0], generator, Task(), "key"):
            pass
    assert generator.model is tiny_model
    with torch.no_grad():
        assert torch.equal(tiny_model(input_ids=ids).logits, before)
    assert not any("lora_" in n for n, _ in tiny_model.named_parameters())


def test_interrupted_training_resumes_to_identical_weights(tmp_path, tiny_model, tokenizer):
    import copy

    import torch

    records = _records(tokenizer)
    cfg = FinetuneConfig(rank=4, alpha=8, learning_rate=5e-3, epochs=3, batch_size=2, checkpoint_every=2)
    clean = copy.deepcopy(tiny_model)
    straight, expected = train_lora(copy.deepcopy(tiny_model), records, cfg, tokenizer.pad_token_id)

    class Killed(Exception):
        pass

    # Interrupt after step 7 (the last checkpoint is at step 6), then resume.
    steps = []
    original = torch.optim.AdamW.step

    def step_then_maybe_die(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        steps.append(1)
        if len(steps) == 7:
            raise Killed
        return out

    torch.optim.AdamW.step = step_then_maybe_die
    try:
        with pytest.raises(Killed):
            train_lora(
                copy.deepcopy(clean),
                records,
                cfg,
                tokenizer.pad_token_id,
                checkpoint=tmp_path / "ckpt",
                fingerprint="f",
            )
    finally:
        torch.optim.AdamW.step = original
    resumed, result = train_lora(
        clean, records, cfg, tokenizer.pad_token_id, checkpoint=tmp_path / "ckpt", fingerprint="f"
    )
    assert result.steps == expected.steps == 12
    assert result.losses == expected.losses
    a = {n: p for n, p in straight.named_parameters() if "lora_" in n}
    b = {n: p for n, p in resumed.named_parameters() if "lora_" in n}
    assert a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)


def test_checkpoint_from_other_training_is_ignored(tmp_path, tiny_model, tokenizer):
    records = _records(tokenizer, 4)
    cfg = FinetuneConfig(rank=4, epochs=2, batch_size=2, checkpoint_every=1)
    import copy

    train_lora(
        copy.deepcopy(tiny_model), records, cfg, tokenizer.pad_token_id, checkpoint=tmp_path / "c", fingerprint="a"
    )
    _, result = train_lora(tiny_model, records, cfg, tokenizer.pad_token_id, checkpoint=tmp_path / "c", fingerprint="b")
    assert result.steps == 4 and len(result.losses) == 4


def test_validation_keeps_the_best_adapter_and_stops_early(tiny_model, tokenizer):
    from ragft.finetune.lora import split_validation, validation_loss

    records = _records(tokenizer, 12)
    cfg = FinetuneConfig(
        rank=8, alpha=16, learning_rate=3e-2, epochs=40, batch_size=3, validation_fraction=0.25, patience=3
    )
    model, result = train_lora(tiny_model, records, cfg, tokenizer.pad_token_id, seed=0)
    _, held_out = split_validation(records, 0.25, 0)
    assert len(held_out) == 3
    # Training memorises its own code words; the held-out ones get worse after a while.
    assert result.stopped_early and result.steps < 40 * 3
    losses = [loss for _, loss in result.validation]
    assert len(losses) == result.steps // 3 and result.best_step < result.steps
    assert min(losses) == dict(result.validation)[result.best_step]
    # The returned adapter is the best check's, not the last step's.
    assert validation_loss(model, held_out, tokenizer.pad_token_id, 3, "cpu") == pytest.approx(min(losses), rel=1e-5)


def test_nan_loss_mid_training_keeps_the_last_good_checkpoint(tmp_path, tiny_model, tokenizer):
    import copy

    import torch

    clean = copy.deepcopy(tiny_model)
    calls = []

    def poison(module, args, output):
        calls.append(1)
        return output * float("nan") if len(calls) == 5 else output

    tiny_model.model.norm.register_forward_hook(poison)
    cfg = FinetuneConfig(rank=4, epochs=4, batch_size=2, checkpoint_every=2)
    records = _records(tokenizer, 4)
    with pytest.raises(RagftError, match=r"at step 5 \(batch: .*last good checkpoint \(step 4\) is kept"):
        train_lora(tiny_model, records, cfg, tokenizer.pad_token_id, checkpoint=tmp_path / "c", fingerprint="f")
    assert json.loads((tmp_path / "c" / "progress.json").read_text())["steps"] == 4
    _, result = train_lora(clean, records, cfg, tokenizer.pad_token_id, checkpoint=tmp_path / "c", fingerprint="f")
    assert result.steps == 8 and all(torch.isfinite(torch.tensor(result.losses)))


def test_listed_adapter_merges_to_the_same_logits(tmp_path, tiny_model, tokenizer):
    import torch

    from ragft.finetune.adapter import list_adapters, merge_adapter

    records = _records(tokenizer)
    cfg = FinetuneConfig(rank=4, alpha=8, learning_rate=5e-3, epochs=3, batch_size=4)
    model, _ = train_lora(tiny_model, records, cfg, tokenizer.pad_token_id)
    save_adapter(
        model, tmp_path / "run" / "adapters" / "rag_ft", base_model="tiny-base", extra={"training": {"steps": 6}}
    )
    (tmp_path / "run" / "index").mkdir()
    (tmp_path / "run" / "index" / "manifest.json").write_text('{"kind": "vector-index"}')  # not an adapter
    (listed,) = list_adapters(tmp_path / "run")
    assert listed["base_model"] == "tiny-base" and listed["steps"] == 6 and listed["bytes"] > 0

    ids = collate(records, tokenizer.pad_token_id)["input_ids"]
    with torch.no_grad():
        unmerged = model(input_ids=ids).logits
    merged, difference = merge_adapter(model, ids)
    assert not any("lora_" in n for n, _ in merged.named_parameters())
    assert difference < 1e-4
    with torch.no_grad():
        assert torch.allclose(merged(input_ids=ids).logits, unmerged, atol=1e-4)


def test_merging_into_a_quantized_base_is_refused(tiny_model, tokenizer):
    from ragft.finetune.adapter import merge_adapter

    model, _ = train_lora(tiny_model, _records(tokenizer, 4), FinetuneConfig(rank=4, epochs=1, batch_size=4), 0)
    model.get_base_model().config.quantization_config = {"load_in_8bit": True}
    with pytest.raises(ArtifactError, match="quantized"):
        merge_adapter(model, collate(_records(tokenizer, 1), tokenizer.pad_token_id)["input_ids"])


def test_adapters_cli_lists_and_merges(tmp_path, tiny_model, tokenizer, capsys):
    import torch
    from transformers import AutoModelForCausalLM

    from ragft.cli import main
    from ragft.finetune.adapter import MERGE_PROBE

    base = tmp_path / "base"
    tiny_model.save_pretrained(base)
    tokenizer.save_pretrained(base)
    model, _ = train_lora(tiny_model, _records(tokenizer), FinetuneConfig(rank=4, epochs=3, batch_size=4), 0)
    save_adapter(model, tmp_path / "adapter", base_model=str(base))
    assert main(["adapters", "list", str(tmp_path)]) == 0
    assert f"adapter: base {base}" in capsys.readouterr().out
    assert main(["adapters", "merge", str(tmp_path / "adapter"), "--out", str(tmp_path / "merged")]) == 0
    assert "max abs logit difference" in capsys.readouterr().out
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    ids = tokenizer(MERGE_PROBE, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.allclose(merged(input_ids=ids).logits, model(input_ids=ids).logits, atol=1e-4)
    assert json.loads((tmp_path / "merged" / "manifest.json").read_text())["max_abs_logit_difference"] < 1e-4


@pytest.mark.parametrize(("method", "lr"), [("ia3", 3e-2), ("prompt_tuning", 0.3)])
def test_other_peft_methods_train_save_reload_and_generate(method, lr, tmp_path, tiny_model, tokenizer):
    import torch
    from transformers import AutoModelForCausalLM

    from ragft.finetune.adapter import merge_adapter
    from ragft.finetune.detach import detach_adapter
    from ragft.generation import Generator

    tiny_model.save_pretrained(tmp_path / "base")
    records = _records(tokenizer)
    cfg = FinetuneConfig(method=method, learning_rate=lr, epochs=30, batch_size=4, virtual_tokens=4)
    model, result = train_lora(tiny_model, records, cfg, tokenizer.pad_token_id, seed=0)
    assert sum(result.losses[-4:]) / 4 < 0.8 * sum(result.losses[:4]) / 4
    kind = {"ia3": "ia3_", "prompt_tuning": "prompt_encoder"}[method]
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(kind in n for n in trainable)

    batch = collate(records, tokenizer.pad_token_id)
    with torch.no_grad():
        expected = answer_loss(model, **batch)
    save_adapter(model, tmp_path / "adapter", base_model="tiny-base")
    fresh = AutoModelForCausalLM.from_pretrained(tmp_path / "base")
    reloaded = load_adapter(fresh, tmp_path / "adapter", base_model="tiny-base")
    with torch.no_grad():
        assert answer_loss(reloaded, **batch).item() == pytest.approx(expected.item(), rel=1e-5)

    # The adapter changes what the generator writes; taking it off restores the base.
    prompts = ["Question number 3: what is the code word?"]
    tuned = Generator(reloaded, tokenizer, "tiny", max_new_tokens=4).generate_batch(prompts)
    plain = Generator(AutoModelForCausalLM.from_pretrained(tmp_path / "base"), tokenizer, "tiny", max_new_tokens=4)
    assert tuned[0].completion_tokens > 0 and tuned[0].prompt_tokens == plain.generate_batch(prompts)[0].prompt_tokens
    assert detach_adapter(reloaded) is not None and not any(kind in n for n, _ in fresh.named_parameters())
    if method == "prompt_tuning":
        with pytest.raises(ArtifactError, match="no weights to merge"):
            merge_adapter(model, batch["input_ids"])


def test_adapter_for_other_weights_under_the_same_name_is_refused(tmp_path, tiny_model, tokenizer):
    import torch
    from transformers import AutoModelForCausalLM

    base = tmp_path / "base"
    tiny_model.save_pretrained(base)
    model, _ = train_lora(tiny_model, _records(tokenizer, 4), FinetuneConfig(rank=4, epochs=1, batch_size=4), 0)
    save_adapter(model, tmp_path / "adapter", base_model=str(base))
    manifest = json.loads((tmp_path / "adapter" / "manifest.json").read_text())
    assert len(manifest["base_model_sha256"]) == 64
    load_adapter(AutoModelForCausalLM.from_pretrained(base), tmp_path / "adapter", str(base))  # same weights: fine

    retrained = AutoModelForCausalLM.from_pretrained(base)
    with torch.no_grad():
        retrained.model.norm.weight.mul_(1.01)
    retrained.save_pretrained(base)  # the same folder now holds other weights
    with pytest.raises(ArtifactError, match="other weights"):
        load_adapter(retrained, tmp_path / "adapter", str(base))


def test_quoted_answers_cite_the_sentence_and_scoring_reads_the_final_answer():
    from ragft.finetune.data import quoted_answer
    from ragft.metrics import final_answer
    from ragft.metrics import qa_scores as score

    passage = "The co-op was founded in 1931.  Jonas Merriweather keeps the boat book. Dues are paid in May."
    target = quoted_answer(passage, "Jonas Merriweather")
    assert target == 'Quote: "Jonas Merriweather keeps the boat book."\nAnswer: Jonas Merriweather'
    assert quoted_answer(None, "May") == quoted_answer("Nothing relevant.", "May") == "Answer: May"
    assert final_answer(target) == "Jonas Merriweather" and final_answer("plain words") == "plain words"
    assert score(target, ("Jonas Merriweather",))["em"] == 1.0


def test_quote_setting_puts_the_gold_sentence_into_rag_ft_targets(tmp_path, generator, embedder):
    from helpers import ROOT, TINY

    from ragft.config import load_config
    from ragft.resources import Resources
    from ragft.runner.run import load_task
    from ragft.settings import ladder

    config = load_config(ROOT / "configs" / "handbook.toml", [*TINY, "finetune.quote=true"])
    task = load_task(tmp_path, config, Resources([generator], [embedder]))
    records = task.train_records(ladder(config, ["rag+ft"])[0], generator)
    targets = [generator.tokenizer.decode([t for t in r.labels if t != IGNORE]) for r in records]
    quoted = [t for t in targets if t.startswith('Quote: "')]
    assert quoted and len(quoted) < len(targets)  # RAFT leaves the gold passage out of some prompts
    for record, target in zip(records, targets):
        answer = target.rsplit("Answer: ", 1)[1].removesuffix(generator.tokenizer.eos_token)
        assert answer in {e.answers[0] for e in task.train}
        if target.startswith('Quote: "'):
            sentence = target.split('"')[1]
            assert sentence in " ".join(generator.tokenizer.decode(record.input_ids).split())


def test_full_fine_tuning_trains_every_weight_saves_reloads_and_restores_the_base(tmp_path, tiny_model, tokenizer):
    import copy

    import torch

    from ragft.finetune.adapter import merge_adapter
    from ragft.finetune.detach import detach_adapter

    base = copy.deepcopy(tiny_model)
    records = _records(tokenizer)
    batch = collate(records, tokenizer.pad_token_id)
    with torch.no_grad():
        before = answer_loss(base, **batch).item()
    cfg = FinetuneConfig(method="full", learning_rate=1e-2, epochs=10, batch_size=4)
    model, result = train_lora(tiny_model, records, cfg, tokenizer.pad_token_id)
    with torch.no_grad():
        tuned = answer_loss(model, **batch).item()
    assert tuned < 0.5 * before and result.steps == 20
    assert not any("lora_" in n for n, _ in model.named_parameters())
    changed = [n for n, p in model.named_parameters() if not torch.equal(p, dict(base.named_parameters())[n])]
    assert len(changed) == len(list(base.parameters()))  # every weight moved
    with pytest.raises(ArtifactError, match="no adapter to merge"):
        merge_adapter(model, batch["input_ids"])

    save_adapter(model, tmp_path / "full", base_model="tiny-base", extra={"method": "full"})
    other = copy.deepcopy(base)
    reloaded = load_adapter(other, tmp_path / "full", base_model="tiny-base")
    with torch.no_grad():
        assert answer_loss(reloaded, **batch).item() == pytest.approx(tuned, rel=1e-5)
    restored = detach_adapter(reloaded)
    assert all(torch.equal(p, dict(base.named_parameters())[n]) for n, p in restored.named_parameters())
    restored_trained = detach_adapter(model)  # the trained model gets its own base back too
    assert all(torch.equal(p, dict(base.named_parameters())[n]) for n, p in restored_trained.named_parameters())
