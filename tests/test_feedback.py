"""The feedback store (a real SQLite file in WAL mode) and the training records made from it."""

import json
import re
import sqlite3
import threading

import pytest

from ragft.cli import main
from ragft.errors import InputError
from ragft.feedback.records import export, feedback_data
from ragft.feedback.store import FeedbackStore, Passage, UnknownExchange


def _exchange(store, question, answer, passages=("Leave is 25 days a year.",)):
    shown = tuple(Passage(f"doc#{i}", text) for i, text in enumerate(passages))
    return store.add_exchange("rag+ft", "rag+ft", question, shown, f"<prompt>{question}</prompt>", answer, 40, 4, 0.3)


def test_store_is_wal_sqlite_and_keeps_what_it_was_given(tmp_path):
    path = tmp_path / "run" / "feedback.sqlite"
    with FeedbackStore(path) as store:
        x = _exchange(store, "How many leave days?", "20 days")
        store.add_feedback(x.id, "down", "  25 days ", "ana")
        with pytest.raises(UnknownExchange, match="no exchange 'missing'"):
            store.add_feedback("missing", "up")
        with pytest.raises(InputError, match="needs a rating"):
            store.add_feedback(x.id, None, "   ")
        with pytest.raises(InputError, match="'up' or 'down'"):
            store.add_feedback(x.id, "sideways")
    with sqlite3.connect(path) as db:  # another reader, as an export or a person would open it
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("SELECT question, answer, passages FROM exchanges").fetchone() == (
            "How many leave days?",
            "20 days",
            json.dumps([{"id": "doc#0", "text": "Leave is 25 days a year."}]),
        )
        assert db.execute("SELECT rating, correction, reviewer FROM feedback").fetchall() == [
            ("down", "25 days", "ana")
        ]
    again = FeedbackStore(path)
    assert again.exchange(x.id).passages == (Passage("doc#0", "Leave is 25 days a year."),)
    assert again.counts() == {"exchanges": 1, "feedback": 1}
    again.close()
    (tmp_path / "junk.sqlite").write_text("not a database, just text" * 100)
    with pytest.raises(InputError, match="junk.sqlite: not a ragft feedback store"):
        FeedbackStore(tmp_path / "junk.sqlite")


def test_writes_from_many_threads_all_land(tmp_path):
    store = FeedbackStore(tmp_path / "feedback.sqlite")
    x = _exchange(store, "q", "a")

    def write(n):
        for i in range(25):
            store.add_feedback(x.id, "up" if i % 2 else "down", f"fix {n}-{i}")

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({f.correction for f in store.feedback(x.id)}) == 200
    store.close()


def test_feedback_becomes_sft_dpo_and_kto_records(tmp_path):
    store = FeedbackStore(tmp_path / "feedback.sqlite")
    wrong = _exchange(store, "How many leave days?", "20 days")
    right = _exchange(store, "Who approves travel?", "The department head")
    changed = _exchange(store, "Where is the badge office?", "Room 4")
    same = _exchange(store, "When is payday?", "the 25th")
    _exchange(store, "Unreviewed?", "no feedback")
    store.add_feedback(wrong.id, "down", "25 days")
    store.add_feedback(right.id, "up", reviewer="lee")
    store.add_feedback(changed.id, "up")
    store.add_feedback(changed.id, "down", "Room 12")  # the latest word stands
    store.add_feedback(same.id, None, "The 25th.")  # a correction equal to the answer once normalised
    data = feedback_data(store)
    assert data.counts() == {
        "exchanges": 4,
        "left_out_test_questions": 0,
        "rated_up": 1,
        "rated_down": 2,
        "corrected": 3,
        "sft": 3,
        "dpo": 2,
        "kto": 5,
    }
    assert [(r.id, r.answer) for r in data.sft] == [
        (wrong.id, "25 days"),
        (changed.id, "Room 12"),
        (same.id, "The 25th."),
    ]
    assert data.sft[0].prompt == "<prompt>How many leave days?</prompt>"
    assert data.sft[0].passages == ["Leave is 25 days a year."]
    assert [(r.chosen, r.rejected) for r in data.dpo] == [("25 days", "20 days"), ("Room 12", "Room 4")]
    assert [(r.completion, r.label) for r in data.kto] == [
        ("20 days", False),
        ("25 days", True),
        ("The department head", True),
        ("Room 4", False),
        ("Room 12", True),
    ]
    out = tmp_path / "records"
    export(store, out)
    assert [json.loads(line)["chosen"] for line in (out / "dpo.jsonl").read_text().splitlines()] == [
        "25 days",
        "Room 12",
    ]
    assert len((out / "kto.jsonl").read_text().splitlines()) == 5
    store.close()


def test_empty_feedback_refuses_to_make_training_data(tmp_path, capsys):
    run = tmp_path / "run"
    store = FeedbackStore(run / "feedback.sqlite")
    _exchange(store, "q", "a")
    with pytest.raises(InputError, match="no feedback to train on"):
        export(store, tmp_path / "out")
    store.close()
    assert not (tmp_path / "out").exists()
    assert main(["feedback", str(run), "--out", str(tmp_path / "out")]) == 2
    assert "no feedback to train on (0 rated or corrected exchanges)" in capsys.readouterr().err
    assert main(["feedback", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "no feedback store here" in capsys.readouterr().err
    store = FeedbackStore(run / "feedback.sqlite")
    store.add_feedback(store.recent(1)[0].id, "up")
    store.close()
    assert main(["feedback", str(run), "--out", str(tmp_path / "out")]) == 0
    assert (
        "1 exchanges with feedback (1 up, 0 down, 0 corrected): wrote 0 SFT, 0 DPO and 1 KTO" in capsys.readouterr().out
    )


def _rows(tokenizer):
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "How many leave days?"}], tokenize=False, add_generation_prompt=True
    )
    return prompt, [
        {"prompt": prompt, "chosen": "25 days", "rejected": "20 days"},
        {"prompt": prompt.replace("leave", "sick"), "chosen": "10 days", "rejected": "a week"},
    ]


def test_dpo_goes_on_from_an_adapter_held_to_it_as_the_reference(tiny_model, tokenizer, tmp_path):
    import torch
    from peft import get_peft_model

    from ragft.config import FinetuneConfig
    from ragft.finetune.lora import peft_config
    from ragft.finetune.preference import train_preference

    start = get_peft_model(tiny_model, peft_config(FinetuneConfig(rank=4, target_modules=["q_proj", "v_proj"])))
    for name, p in start.named_parameters():
        if "lora_B" in name:  # a starting adapter that is not the base model
            p.data.normal_(0, 0.05)
    start.save_pretrained(tmp_path / "start")
    base = start.unload()
    _, rows = _rows(tokenizer)
    cfg = FinetuneConfig(
        rank=4, target_modules=["q_proj", "v_proj"], objective="dpo", learning_rate=5e-2, batch_size=2, max_steps=4
    )
    model, result = train_preference(base, tokenizer, rows, cfg, seed=0, start=tmp_path / "start")
    assert list(model.peft_config) == ["default"]  # TRL's reference copy is gone
    assert result.steps == 4 and len(result.losses) == 4
    assert result.losses[0] == pytest.approx(0.6931, abs=1e-3)  # the reference is the starting adapter
    assert result.preference["rewards/margins"] > 0 and result.losses[-1] < result.losses[0]
    from safetensors.torch import load_file

    before = load_file(tmp_path / "start" / "adapter_model.safetensors")
    after = {n.replace(".default", ""): p for n, p in model.named_parameters() if "lora_" in n}
    assert before.keys() == after.keys()  # the starting adapter, gone on training
    assert any(not torch.equal(before[n], after[n].detach().cpu()) for n in before)
    model.unload()


def test_kto_trains_on_ratings_and_needs_two_answers_a_batch(tiny_model, tokenizer):
    from ragft.config import FinetuneConfig
    from ragft.errors import ConfigError
    from ragft.finetune.preference import train_preference

    prompt, _ = _rows(tokenizer)
    rows = [
        {"prompt": prompt, "completion": "25 days", "label": True},
        {"prompt": prompt, "completion": "20 days", "label": False},
        {"prompt": prompt.replace("leave", "sick"), "completion": "10 days", "label": True},
        {"prompt": prompt.replace("leave", "sick"), "completion": "a week", "label": False},
    ]
    cfg = FinetuneConfig(rank=4, target_modules=["q_proj"], objective="kto", batch_size=2, max_steps=2)
    model, result = train_preference(tiny_model, tokenizer, rows, cfg)
    assert result.steps == 2 and all(loss == loss for loss in result.losses) and "kl" in result.preference
    model.unload()
    with pytest.raises(ConfigError, match="batch_size >= 2"):
        train_preference(tiny_model, tokenizer, rows, FinetuneConfig(objective="kto", batch_size=1))


FEEDBACK_ARMS = """
[[pipelines]]
name = "rag+ft+fb"
base = "rag+ft"
finetune = { init_from = "rag+ft", train_data = "feedback", max_steps = 2, batch_size = 2 }
generation = { max_new_tokens = 4 }  # scored like the others, quickly

[[pipelines]]
name = "rag+ft+dpo"
base = "rag+ft"
[pipelines.finetune]
init_from = "rag+ft"
train_data = "feedback"
objective = "dpo"
max_steps = 2
batch_size = 2
learning_rate = 1e-4
[pipelines.generation]
max_new_tokens = 4
"""


def _feedback_config(tmp_path, pipelines=FEEDBACK_ARMS):
    """configs/handbook.toml with feedback pipelines, under the test settings tiny_run was made with."""
    from helpers import ROOT, TINY

    from ragft.config import load_config

    text = (ROOT / "configs" / "handbook.toml").read_text().replace('"../', f'"{ROOT}/')
    path = tmp_path / "feedback.toml"
    path.write_text(text + pipelines)
    return load_config(path, TINY)


def test_feedback_arms_go_on_from_the_served_adapter_and_retrain_when_feedback_grows(
    tiny_run, generator, embedder, tmp_path, caplog
):
    import shutil

    from helpers import HANDBOOK

    from ragft.experiment import compare
    from ragft.runner.run import plan
    from ragft.serve.served import Request, ServedPipeline
    from ragft.tasks.qa import load_examples

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    examples = load_examples(HANDBOOK / "qa.jsonl")
    train = [e for e in examples if e.split == "train"][20:24]  # training questions, served
    served = ServedPipeline.load(run, "rag+ft", generator=generator, embedder=embedder)
    answers = served.answer([Request("rag+ft", (("user", e.question),), 12) for e in train])
    served.close()
    store = FeedbackStore(run / "feedback.sqlite")
    ids = [
        store.add_exchange("rag+ft", "rag+ft", e.question, a.passages, a.prompt, a.text, 1, 1, 0.1).id
        for e, a in zip(train, answers)
    ]
    store.add_feedback(ids[0], "down", train[0].answers[0])
    store.add_feedback(ids[1], "down", train[1].answers[0] + " (corrected)")
    store.add_feedback(ids[2], "up")
    store.add_feedback(ids[3], "down")
    config = _feedback_config(tmp_path)
    stamp = (run / "adapters" / "rag_ft" / "manifest.json").stat().st_mtime_ns
    report = compare(config, run, generator=generator, embedder=embedder).data
    assert {"rag+ft+fb", "rag+ft+dpo"} <= set(report["pipelines"])
    assert (run / "adapters" / "rag_ft" / "manifest.json").stat().st_mtime_ns == stamp  # the served one, reused
    fb = json.loads((run / "adapters" / "rag_ft_fb" / "manifest.json").read_text())["training"]
    dpo = json.loads((run / "adapters" / "rag_ft_dpo" / "manifest.json").read_text())["training"]
    assert fb["records"] == 2 and fb["init_from"] == "rag+ft" and "objective" not in fb  # the two corrections
    assert dpo["records"] == 2 and dpo["objective"] == "dpo" and "rewards/margins" in dpo
    assert dpo["first_loss"] == pytest.approx(0.6931, abs=2e-3)  # held to the served adapter at the start

    before = plan(config, run)
    store.add_feedback(ids[3], None, train[3].answers[0])  # one more correction
    after = plan(config, run)
    changed = {name for name in before if before[name]["adapter"] != after[name]["adapter"]}
    assert changed == {"rag+ft+fb", "rag+ft+dpo"}

    test = next(e for e in examples if e.split == "test")
    leak = store.add_exchange("rag+ft", "rag+ft", test.question, (), "p", "a", 1, 1, 0.1)
    store.add_feedback(leak.id, "down", "fixed")
    chat = store.add_exchange("rag+ft", "rag+ft:chat", "Say hi.", (), "p", "hello", 1, 1, 0.1)
    store.add_feedback(chat.id, "down", "hi")
    store.close()
    with caplog.at_level("WARNING"):
        assert plan(config, run) == after  # a test question's feedback and a :chat answer's: left out
    assert "1 exchanges with feedback ask test questions" in caplog.text


@pytest.mark.parametrize(
    "pipelines,message",
    [
        ('finetune = { init_from = "nope", train_data = "feedback" }', "init_from = 'nope' names no trained pipeline"),
        ('finetune = { objective = "dpo" }', "objective = 'dpo' learns from feedback"),
        (
            'finetune = { init_from = "rag+ft", rank = 4, train_data = "feedback" }',
            "finetune.rank differs from 'rag+ft'",
        ),
        ('finetune = { init_from = "again", train_data = "feedback" }', "goes round in a circle"),
    ],
)
def test_bad_starts_are_refused_naming_the_pipeline(tmp_path, pipelines, message):
    from ragft.errors import ConfigError
    from ragft.settings import resolve_pipelines

    body = f'\n[[pipelines]]\nname = "fb"\nbase = "rag+ft"\n{pipelines}\n'
    body += '\n[[pipelines]]\nname = "again"\nbase = "rag+ft"\nfinetune = { init_from = "fb" }\n'
    with pytest.raises(ConfigError, match=f"pipeline 'fb'.*{re.escape(message)}"):
        resolve_pipelines(_feedback_config(tmp_path, body))
