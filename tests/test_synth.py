"""Synthetic training pairs: answers picked from passages, the filters, resume after a kill,
test documents kept out, and a pipeline trained on pairs written during its run."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil

import numpy as np
import pytest
from helpers import HANDBOOK, ROOT

from ragft.cli import main
from ragft.config import SynthConfig, load_config
from ragft.corpus.chunking import chunk_documents
from ragft.corpus.loaders import load_corpus
from ragft.errors import InputError
from ragft.io import read_jsonl
from ragft.synth import filters
from ragft.synth.spans import answer_spans
from ragft.synth.synthesize import NoPairs, _journaled, held_out_documents, pairs_from_chunks, stats_path
from ragft.tasks.qa import load_examples
from ragft.types import Document, Example

DOCS = ("dues", "expenses")


def test_answer_spans_prefer_dates_numbers_and_names():
    sentence = "Annual dues are 120 crowns, payable to Anselm Fjeld by the last day of January, as agreed in 1994."
    spans = answer_spans(sentence)
    assert [(s.text, s.kind) for s in spans[:4]] == [
        ("the last day of January", "date"),
        ("1994", "date"),
        ("120 crowns", "quantity"),
        ("Anselm Fjeld", "name"),
    ]
    assert all(sentence[s.start : s.start + len(s.text)] == s.text for s in spans)
    taken = [(s.start, s.start + len(s.text)) for s in spans]
    assert not any(a < d and c < b for i, (a, b) in enumerate(taken) for c, d in taken[i + 1 :]), "spans overlap"
    assert answer_spans("Members over seventy pay half.")[0].text == "seventy"  # no noun glued to a bare number
    assert all(s.kind == "keyphrase" for s in answer_spans("the boat hall keeps old rowing oars dry"))
    hours = answer_spans("The desk is open from 8:30 to 16:00, and briefings start at 7:45 sharp.")
    assert [(s.text, s.kind) for s in hours[:2]] == [("8:30 to 16:00", "time"), ("7:45", "time")]
    assert not any(s.text in ("8", "30", "00", "45") for s in hours), "a clock time split into numbers"
    year = answer_spans("The year runs to the thirty-first of March; changes need a two-thirds majority.")
    assert ("the thirty-first of March", "date") in [(s.text, s.kind) for s in year]
    assert not any(s.text in ("thirty", "two") for s in year), "half of a hyphenated word picked as a number"
    owner = answer_spans("Students of the University of Brinnick's science department visit.")
    assert "the University of Brinnick" in [s.text for s in owner]


def test_each_filter_names_why_a_pair_is_dropped():
    s = SynthConfig(method="answer_first", max_question_words=12, max_answer_words=3)
    passage = "The rebate is credited automatically by the bookkeeper, Anselm Fjeld, every spring."
    assert filters.shape_problem("Who credits the rebate?", "Anselm Fjeld", passage, s) is None
    assert filters.shape_problem("Who?", "Anselm Fjeld", passage, s) == "empty"
    assert filters.shape_problem("Who credits the rebate?", "", passage, s) == "empty"
    long_q = "Who is it that credits the rebate to members every single spring of every year?"
    assert filters.shape_problem(long_q, "Anselm Fjeld", passage, s) == "long_question"
    assert filters.shape_problem("Who credits the rebate?", "the bookkeeper Anselm Fjeld", passage, s) == "long_answer"
    copied = "The rebate is credited automatically by the bookkeeper?"
    assert filters.shape_problem(copied, "Anselm Fjeld", passage, s) == "copied"
    assert filters.shape_problem("What does Anselm Fjeld do?", "Anselm Fjeld", passage, s) == "answer_in_question"
    # "rowing club" comes from a solved example, not from this passage
    assert filters.shape_problem("Who credits the rebate of the rowing club?", "Anselm Fjeld", passage, s) == "borrowed"
    assert filters.shape_problem("Who credits the rowing rebate?", "Anselm Fjeld", "The rowing rebate ...", s) is None
    assert filters.support("Anselm Fjeld", passage) == 1.0
    assert filters.support("bookkeeper Anselm Fjeld himself", passage) == 0.75  # near, not word for word
    assert filters.support("a harbour master", passage) == 0.0
    assert filters.agreement("It is credited by Anselm Fjeld.", "Anselm Fjeld")[0]
    assert not filters.agreement("The treasurer does.", "Anselm Fjeld")[0]
    vectors = np.array([[1, 0], [0.99, 0.141], [0, 1]], dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    assert filters.near_duplicates(vectors, 0.9) == [False, True, False]


def test_ngram_overlap_is_the_longest_word_run_shared_with_a_test_question():
    synthetic = ["Who keeps the tide logs?", "When does the archive open on Tuesdays?"]
    test = ["How late does the archive open on Tuesdays in winter?", "What is the cost?"]
    overlap = filters.ngram_overlap(synthetic, test)
    assert overlap == {
        "words": 5,
        "question": synthetic[1],
        "test_question": test[0],
    }  # does (the) archive open on tuesdays
    assert filters.ngram_overlap(["Completely unrelated words"], test)["words"] == 0


def test_held_out_documents_are_test_documents_and_their_articles():
    docs = [Document("a", "x", "a"), Document("b", "x", "b"), Document("Art/0", "x", "s", {"title": "Art"})]
    docs.append(Document("Art/1", "x", "s", {"title": "Art"}))
    test = [Example("1", "q", ("a",), "test", "a"), Example("2", "q", ("a",), "test", "Art/0", "Art")]
    assert held_out_documents(docs, test) == {"a", "Art/0", "Art/1"}


@pytest.fixture(scope="module")
def chunks():
    docs = [d for d in load_corpus(HANDBOOK / "docs") if d.id in DOCS]
    return chunk_documents(docs, 500, 50)


SETTINGS = SynthConfig(method="answer_first", per_chunk=2, max_new_tokens=24, roundtrip=False, question_word=False)
# questions; round trips: test_round_trip..., question words: test_question_words...
BLOCK = 4  # two blocks of 4 candidates, each 2 batches of 2


@pytest.fixture(scope="module")
def gen(generator):
    return generator.with_decoding(2, 24, 0)


@pytest.fixture(scope="module")
def clean(gen, embedder, chunks):
    return pairs_from_chunks(chunks, gen, embedder, SETTINGS, test_questions=["What is the cost?"], block=BLOCK)


def test_synthesis_keeps_supported_pairs_with_their_provenance(clean, chunks):
    stats = clean.stats
    assert stats["candidates"] == 2 * len(chunks) == stats["kept"] + sum(stats["dropped"].values())
    assert clean.rows, stats
    by_chunk = {c.id: c for c in chunks}
    for row in clean.rows:
        p = row["provenance"]
        chunk = by_chunk[p["chunk"]]
        assert row["split"] == "train" and row["doc_id"] == chunk.doc_id
        assert p["method"] == "answer_first" and p["sentence"] in " ".join(chunk.text.split())
        assert row["answers"][0] in p["sentence"]  # answer-first answers are spans of their sentence
        assert row["answers"][0].lower() not in row["question"].lower() and p["support"] == 1.0
    assert stats["prompt_tokens"] > 0 and stats["seconds"] > 0 and stats["test_overlap"]["words"] >= 1


def test_killed_synthesis_continues_from_its_journal(gen, embedder, chunks, clean, tmp_path, monkeypatch):
    real, calls = gen.generate_batch, []
    journal = tmp_path / "journal.jsonl"

    def dies_in_the_second_block(prompts, max_new_tokens=None):
        if journal.exists():  # the first block is journaled
            raise KeyboardInterrupt
        return real(prompts, max_new_tokens)

    monkeypatch.setattr(gen, "generate_batch", dies_in_the_second_block)
    run = dict(journal=journal, key="k", test_questions=["What is the cost?"], block=BLOCK)
    with pytest.raises(KeyboardInterrupt):
        pairs_from_chunks(chunks, gen, embedder, SETTINGS, **run)
    assert len(journal.read_text().splitlines()) == BLOCK  # the first block, whole
    monkeypatch.setattr(gen, "generate_batch", lambda p, m=None: (calls.append(len(p)), real(p, m))[1])
    resumed = pairs_from_chunks(chunks, gen, embedder, SETTINGS, **run)
    assert resumed.rows == clean.rows and resumed.stats["dropped"] == clean.stats["dropped"]
    assert sum(calls) == clean.stats["candidates"] - BLOCK  # only the second block's questions were written
    assert _journaled(journal, "other settings") == {}  # a journal written under another key is not reused
    assert len(_journaled(journal, "k")) == clean.stats["candidates"]


ROUNDTRIP = dataclasses.replace(SETTINGS, roundtrip=True)  # the same pairs as `clean`, then asked back


def _outcome(*args, **kwargs):
    """A synthesis's record and pairs, also when none survives."""
    try:
        done = pairs_from_chunks(*args, **kwargs)
        return done.stats, done.rows
    except NoPairs as e:  # the 135M model answers few of its own questions back
        return e.stats, []


@pytest.fixture(scope="module")
def asked_back(gen, embedder, chunks):
    return _outcome(chunks, gen, embedder, ROUNDTRIP, block=BLOCK)


def test_round_trip_drops_pairs_the_model_does_not_answer_back(clean, asked_back):
    stats, rows = asked_back
    asked = clean.stats["kept"] + clean.stats["dropped"]["duplicate"]  # every pair that passed the other checks
    dropped = stats["dropped"]
    assert dropped["roundtrip"] >= 1 and dropped["roundtrip"] + stats["kept"] + dropped["duplicate"] == asked
    for row in rows:
        p = row["provenance"]
        assert filters.agreement(p["roundtrip_answer"], row["answers"][0])[0] or p["roundtrip_f1"] >= 0.5


def test_a_checker_asks_the_round_trips_once_every_pair_is_written(
    gen, embedder, chunks, clean, asked_back, tiny_model, tokenizer, tmp_path, monkeypatch
):
    from contextlib import contextmanager

    from ragft.generation import Generator

    reader, opened = gen.with_decoding(2, 24, 0), []

    @contextmanager
    def open_reader(model=reader):
        opened.append(len(journal.read_text().splitlines()))  # rows journaled before it opens
        yield model

    journal = tmp_path / "journal.jsonl"
    run = dict(block=BLOCK, journal=journal, key="k", checker=open_reader, checker_name="itself")
    stats, rows = _outcome(chunks, gen, embedder, ROUNDTRIP, **run)
    assert opened == [clean.stats["candidates"]]  # once, after the last pair was written
    assert (rows, stats["dropped"], stats["checker"]) == (asked_back[1], asked_back[0]["dropped"], "itself")
    written = "".join(line + "\n" for line in journal.read_text().splitlines()[: clean.stats["candidates"]])
    monkeypatch.setattr(gen, "generate_batch", lambda p, m=None: pytest.fail("a question was written again"))

    random = Generator(tiny_model, tokenizer, "tiny", batch_size=2, max_new_tokens=8)
    journal = run["journal"] = tmp_path / "random.jsonl"
    journal.write_text(written)  # every question written, none asked back yet
    run.update(checker=lambda: open_reader(random))
    stats, rows = _outcome(chunks, gen, embedder, ROUNDTRIP, **run)
    asked = clean.stats["kept"] + clean.stats["dropped"]["duplicate"]
    assert rows == [] and stats["dropped"]["roundtrip"] == asked  # the random model's replies are the ones checked

    # killed in the round trips: the next run writes no question again and asks only what is left
    journal = run["journal"] = tmp_path / "killed.jsonl"
    journal.write_text(written)
    real, calls = reader.generate_batch, []

    def dies_after_a_block(prompts, max_new_tokens=None):
        if len(journal.read_text().splitlines()) > clean.stats["candidates"]:  # one block of round trips is in
            raise KeyboardInterrupt
        return real(prompts, max_new_tokens)

    monkeypatch.setattr(reader, "generate_batch", dies_after_a_block)
    run.update(checker=open_reader, block=2)
    with pytest.raises(KeyboardInterrupt):
        pairs_from_chunks(chunks, gen, embedder, ROUNDTRIP, **run)
    monkeypatch.setattr(reader, "generate_batch", lambda p, m=None: (calls.append(len(p)), real(p, m))[1])
    stats, rows = _outcome(chunks, gen, embedder, ROUNDTRIP, **run)
    assert sum(calls) == asked - 2 and (rows, stats["dropped"]) == (asked_back[1], asked_back[0]["dropped"])
    assert stats["prompt_tokens"] == asked_back[0]["prompt_tokens"]  # each round trip counted once

    lines = journal.read_text().splitlines()  # a kill tore the first block of round trips: asked again whole
    journal.write_text("\n".join(lines[: clean.stats["candidates"] + 1]) + "\n")
    calls.clear()
    stats, rows = _outcome(chunks, gen, embedder, ROUNDTRIP, **run)
    assert sum(calls) == asked and (rows, stats["dropped"]) == (asked_back[1], asked_back[0]["dropped"])


def test_a_corpus_no_pair_survives_stops_with_the_counts_per_filter(gen, embedder, chunks):
    strict = SynthConfig(per_chunk=1, max_question_words=1, max_new_tokens=16)
    with pytest.raises(InputError) as caught:
        pairs_from_chunks(chunks[:2], gen, embedder, strict)
    message = str(caught.value)
    assert "no training pair survived" in message and "long_question 2" in message
    assert "synth.method = 'answer_first'" in message and "chunking.chunk_size" in message


def _small_task(tmp_path):
    """Three handbook documents; the test question is on `dues`."""
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in (*DOCS, "library"):
        shutil.copy(HANDBOOK / "docs" / f"{name}.md", docs / f"{name}.md")
    rows = [json.loads(line) for line in (HANDBOOK / "qa.jsonl").read_text().splitlines()]
    keep = [r for r in rows if r["doc_id"] in ("dues", "expenses")]
    test = [dict(r, split="test") for r in keep if r["doc_id"] == "dues"][:2]
    train = [dict(r, split="train") for r in keep if r["doc_id"] == "expenses"][:4]
    examples = tmp_path / "qa.jsonl"
    examples.write_text("".join(json.dumps(r) + "\n" for r in test + train))
    return docs, examples


def test_ragft_synth_writes_an_examples_file_without_test_documents(tmp_path, capsys, monkeypatch):
    from ragft.generation import Generator

    def no_model(*args, **kwargs):
        raise AssertionError("a generator was loaded for rule questions")

    monkeypatch.setattr(Generator, "load", no_model)  # the default method: no model writes or asks back
    docs, examples = _small_task(tmp_path)
    out = tmp_path / "synthetic" / "train.jsonl"
    args = ["synth", str(docs), "synth.per_chunk=2", "synth.max_chunks=2"]
    args += ["generation.batch_size=4", "--out", str(out), "--examples", str(examples), "models.dtype=float32"]
    assert main(args) == 0  # settings before and after the options
    printed = capsys.readouterr().out
    assert "kept fraction per filter" in printed and "1 documents with test questions left out" in printed
    pairs = load_examples(out)
    assert pairs and {e.doc_id for e in pairs} <= {"expenses", "library"} and all(e.split == "train" for e in pairs)
    record = json.loads(stats_path(out).read_text())
    assert record["held_out_documents"] == 1 and record["kept"] == len(pairs)
    assert not out.with_name("train.jsonl.journal").exists()


def test_training_pairs_from_a_test_document_are_refused(tmp_path):
    from ragft.runner.run import plan

    docs, examples = _small_task(tmp_path)
    leaky = tmp_path / "pairs.jsonl"
    row = {"id": "p1", "question": "How much are dues?", "answers": ["120 crowns"], "split": "train"}
    rows = [{**row, "doc_id": "expenses"}, {**row, "id": "p2", "doc_id": "dues"}]
    leaky.write_text("".join(json.dumps(r) + "\n" for r in rows))
    settings = [f"data.corpus={docs}", f"data.examples={examples}", 'experiment.presets=["rag+ft"]']
    config = load_config(None, [*settings, f"finetune.train_data={leaky}"])
    with pytest.raises(InputError) as caught:
        plan(config, tmp_path / "run")
    assert "'dues', which holds test questions" in str(caught.value) and f"{leaky}:2" in str(caught.value)


def test_a_pipeline_trains_on_pairs_written_in_its_run(tmp_path, generator, embedder):
    import ragft

    docs, examples = _small_task(tmp_path)
    corpus = load_corpus(docs)
    task = ragft.QATask.from_jsonl(examples, corpus)
    index = ragft.Index.build(corpus, embedder=embedder)
    spec = ragft.LoRA(rank=4, max_steps=1, batch_size=2, train_data="synth")
    pipeline = ragft.Pipeline(
        "rag+ft-synth",
        generator,
        template="qa-context",
        retriever=index.dense(k=2),
        finetune=spec,
        synth=ragft.Synth(per_chunk=2, max_chunks=2, roundtrip=False, max_new_tokens=24),
    )
    run = tmp_path / "run"
    report = ragft.Experiment(task, [pipeline], run_dir=run, context_views=False).run()
    synthesis = report.pipelines["rag+ft-synth"].costs["synthesis"]
    (folder,) = (run / "synth").iterdir()
    pairs = load_examples(folder / "train.jsonl")
    assert synthesis["kept"] == len(pairs) and synthesis["held_out_documents"] == 1
    assert {e.doc_id for e in pairs} <= {"expenses", "library"}
    assert report.pipelines["rag+ft-synth"].costs["training"]["records"] == len(pairs)
    assert "Synthetic training pairs" in (run / "report.md").read_text()
    again = ragft.Experiment(task, [pipeline], run_dir=run, context_views=False).run()  # all reused
    assert again.pipelines["rag+ft-synth"].costs["synthesis"] == synthesis


def test_a_named_writer_writes_the_pairs_a_smaller_pipeline_trains_on(tmp_path, tiny_model, tokenizer, embedder):
    import ragft
    from ragft.generation import Generator

    docs, examples = _small_task(tmp_path)
    corpus = load_corpus(docs)
    task = ragft.QATask.from_jsonl(examples, corpus)
    index = ragft.Index.build(corpus, embedder=embedder)
    tiny = Generator(tiny_model, tokenizer, "tiny", batch_size=4, max_new_tokens=4)  # random: it writes no pair
    pipeline = ragft.Pipeline(
        "tiny+ft-synth",
        tiny,
        template="qa-context",
        retriever=index.dense(k=2),
        finetune=ragft.LoRA(rank=4, max_steps=1, batch_size=2, train_data="synth"),
        synth=ragft.Synth(
            method="answer_first", generator="smollm2-135m-instruct", per_chunk=2, max_chunks=2, roundtrip=False
        ),
    )
    run = tmp_path / "run"
    report = ragft.Experiment(task, [pipeline], run_dir=run, context_views=False).run()
    costs = report.pipelines["tiny+ft-synth"].costs
    assert costs["synthesis"]["generator"] == "smollm2-135m-instruct" and costs["synthesis"]["kept"] > 0
    assert costs["training"]["records"] == costs["synthesis"]["kept"]
    assert "smollm2-135m-instruct" in (run / "report.md").read_text()  # the table names the writer


def test_a_pipeline_checks_another_ones_synthetic_pairs_with_its_adapter(tmp_path, tiny_model, tokenizer, embedder):
    import ragft
    from ragft.generation import Generator

    docs, examples = _small_task(tmp_path)
    corpus = load_corpus(docs)
    task = ragft.QATask.from_jsonl(examples, corpus)
    index = ragft.Index.build(corpus, embedder=embedder)
    tiny = Generator(tiny_model, tokenizer, "tiny", batch_size=4, max_new_tokens=4)
    writer = dict(method="answer_first", generator="smollm2-135m-instruct", per_chunk=2, max_chunks=2)
    every_reply_agrees = dict(writer, roundtrip_f1=0.0)  # kept whatever the reply: the replies are compared below

    def pipeline(name, synth, **finetune):
        spec = ragft.LoRA(rank=4, batch_size=2, train_data="synth", **{"max_steps": 1, **finetune})
        return ragft.Pipeline(name, tiny, "qa-context", index.dense(k=2), finetune=spec, synth=synth)

    first = pipeline("first", ragft.Synth(roundtrip=False, **writer), max_steps=2, learning_rate=0.05)
    other = pipeline("other", ragft.Synth(roundtrip=False, **writer), max_steps=2, learning_rate=0.02)
    checked = [pipeline(f"by-{p.name}", ragft.Synth(checker=p.name, **every_reply_agrees)) for p in (first, other)]
    run = tmp_path / "run"
    report = ragft.Experiment(task, [*checked, first, other], run_dir=run, context_views=False).run()
    record = report.pipelines["by-first"].costs["synthesis"]
    assert record["checker"] == "first" and record["kept"] > 0
    assert "checker" not in report.pipelines["first"].costs["synthesis"]
    replies = {}
    for folder in {p.parent for p in (run / "synth").glob("*/train.synth.json")}:
        checker = json.loads((folder / "train.synth.json").read_text()).get("checker")
        replies[checker] = {r["id"]: r["provenance"]["roundtrip_answer"] for _, r in read_jsonl(folder / "train.jsonl")}
    shared = replies["first"].keys() & replies["other"].keys()  # the same questions, asked back by two adapters
    assert shared and any(replies["first"][i] != replies["other"][i] for i in shared)
    assert "round trip: first" in (run / "report.md").read_text()


@pytest.mark.parametrize(
    "pipelines,message",
    [
        ('synth = { checker = "nope", method = "answer_first" }', "synth.checker = 'nope' names no trained pipeline"),
        ('synth = { checker = "fb", method = "answer_first" }', "synth.checker names the pipeline itself"),
        ('synth = { checker = "rag", method = "answer_first" }', "synth.checker = 'rag' names no trained pipeline"),
        ('synth = { checker = "again", method = "answer_first", roundtrip = false }', "roundtrip = false skips"),
        ('synth = { checker = "again" }', "which the rule method skips unless synth.roundtrip = true"),
        ('synth = { checker = "again", method = "answer_first" }', "goes round in a circle: fb -> again -> fb"),
        ('synth = { checker = "rag+ft", method = "answer_first" }\nmodels.dtype = "bfloat16"', "another base model"),
    ],
)
def test_bad_checkers_are_refused_naming_the_pipeline(tmp_path, pipelines, message):
    from ragft.errors import ConfigError
    from ragft.settings import resolve_pipelines

    config = _checked_config(tmp_path, f'{pipelines}\nfinetune.train_data = "synth"')
    with pytest.raises(ConfigError, match=f"pipeline 'fb'.*{re.escape(message)}"):
        resolve_pipelines(config)
    with pytest.raises(ConfigError, match="synth.checker applies to a pipeline trained on pairs it writes"):
        resolve_pipelines(_checked_config(tmp_path, 'synth.checker = "rag+ft"'))


def _checked_config(folder, fb: str):
    """configs/handbook.toml with a pipeline `fb` (settings `fb`) and `again`, checked by `fb`."""
    text = (ROOT / "configs" / "handbook.toml").read_text().replace('"../', f'"{ROOT}/')
    text += f'\n[[pipelines]]\nname = "fb"\nbase = "rag+ft"\n{fb}\n'
    text += '\n[[pipelines]]\nname = "again"\nbase = "rag+ft"\nfinetune.train_data = "synth"\nsynth.checker = "fb"\n'
    text += 'synth.method = "answer_first"\n'
    (folder / "checked.toml").write_text(text)
    return load_config(folder / "checked.toml")


def test_a_checked_synthesis_is_keyed_by_its_checkers_adapter(tmp_path):
    from ragft.runner.run import plan

    first = plan(_checked_config(tmp_path, 'finetune.train_data = "synth"'), tmp_path / "run")
    other = plan(_checked_config(tmp_path, 'finetune.train_data = "synth"\nfinetune.rank = 4'), tmp_path / "run")
    assert first["fb"]["adapter"] != other["fb"]["adapter"]
    assert first["again"]["adapter"] != other["again"]["adapter"]  # its pairs, so its adapter, follow fb's
    assert first["rag+ft"] == other["rag+ft"]


def test_other_training_data_is_refused_where_it_cannot_apply(generator):
    import ragft
    from ragft.errors import ConfigError
    from ragft.settings import resolve_pipelines

    overrides = ['experiment.presets=["rag+ft"]', "finetune.train_data=synth"]
    sql = load_config(ROOT / "configs" / "tidewatch-sql.toml", overrides)
    with pytest.raises(ConfigError, match="finetune.train_data .* applies to qa tasks"):
        resolve_pipelines(sql)
    with pytest.raises(ConfigError, match="train_data='synth'"):
        ragft.Pipeline("ft", generator, finetune=ragft.LoRA(), synth=ragft.Synth(per_chunk=2))
    with pytest.raises(ConfigError, match="synth.method: unknown value 'cloze'"):
        ragft.Synth(method="cloze")
    with pytest.raises(ConfigError, match="synth.checker = 'first' names a pipeline of an experiment"):
        ragft.synthesize(HANDBOOK / "docs", "never-written.jsonl", settings=ragft.Synth(checker="first"))
    from ragft.runner.run import plan

    missing = load_config(ROOT / "configs" / "handbook.toml", ["finetune.train_data=nowhere.jsonl"])
    with pytest.raises(ConfigError, match="finetune.train_data: .*nowhere.jsonl is not a file"):
        plan(missing, ROOT / "runs" / "never-made")


def test_question_words_fit_the_answer_and_start_the_question(gen, embedder, chunks):
    from ragft.synth.writing import question_word

    assert [question_word(k, a) for k, a in [("date", "1994"), ("quantity", "90 days")]] == ["When", "How"]
    assert [question_word("name", a) for a in ("Anselm Fjeld", "the Skerrow Savings Bank")] == ["Who", "What"]
    settings = SynthConfig(method="answer_first", per_chunk=4, max_new_tokens=24, roundtrip=False, question_word=True)
    synthesis = pairs_from_chunks(chunks[:1], gen, embedder, settings, block=BLOCK)
    for row in synthesis.rows:
        kind, answer = row["provenance"]["answer_kind"], row["answers"][0]
        assert row["question"].startswith(question_word(kind, answer) + " "), row


def test_rule_questions_replace_the_answer_with_a_question_phrase():
    from ragft.synth.writing import rule_question

    sentence = "The gauge cost 340 crowns in 1988; it was read at 7:45 by Ottilie Brandvold at the oak table."
    assert rule_question(sentence, "340 crowns", "quantity") == "The gauge cost how many crowns in 1988?"
    assert rule_question(sentence, "1988", "date") == "The gauge cost 340 crowns in what year?"  # its clause
    assert rule_question(sentence, "7:45", "time") == "It was read at what time by Ottilie Brandvold at the oak table?"
    assert rule_question(sentence, "Ottilie Brandvold", "name") == "It was read at 7:45 by who at the oak table?"
    assert rule_question(sentence, "oak table", "keyphrase") == "It was read at 7:45 by Ottilie Brandvold at what?"
    assert rule_question("Dues rise by twelve to fifteen.", "twelve to fifteen", "quantity") == "Dues rise by how many?"
    bell = rule_question("It goes out as The Tide Bell each month.", "The Tide Bell", "name")
    assert bell == "It goes out as what each month?"
    assert rule_question(sentence, "Skerrow", "name") == ""
    fines = "Dues rose by 1200 crowns; fines rose by 200 crowns."
    assert rule_question(fines, "200 crowns", "quantity") == "Fines rose by how many crowns?"  # whole words
    assert rule_question("At 9:00 the slip opens.", "9:00", "time") == "At what time the slip opens?"


def test_the_rule_method_writes_no_question_with_a_model(gen, embedder, chunks, monkeypatch):
    from ragft.synth.writing import rule_question

    def no_model(*args, **kwargs):
        raise AssertionError("the rule method ran the generator")

    monkeypatch.setattr(gen, "generate_batch", no_model)
    twice = [chunks[0], dataclasses.replace(chunks[0], id="copy", doc_id="copy")]  # every question repeated
    settings = SynthConfig(method="rule", per_chunk=6)  # the round trip unset: off for rule
    synthesis = pairs_from_chunks(twice, gen, embedder, settings, block=BLOCK)
    stats, rows = synthesis.stats, synthesis.rows
    assert rows and all(r["doc_id"] == chunks[0].doc_id for r in rows), "a repeat kept"
    assert stats["dropped"]["duplicate"] >= len(rows) and stats["generator"] == "-"
    assert stats["prompt_tokens"] == stats["completion_tokens"] == 0
    for row in rows:
        p = row["provenance"]
        assert p["method"] == "rule"
        assert row["question"] == rule_question(p["sentence"], row["answers"][0], p["answer_kind"])
    kinds = {r["provenance"]["answer_kind"] for r in rows}
    assert len(kinds) > 1, kinds


def test_an_unset_round_trip_is_off_for_rule_questions_and_keyed_as_what_it_resolves_to():
    from ragft.keys import synthesis_key

    assert SynthConfig(method="answer_first").asks_back and not SynthConfig().asks_back
    assert SynthConfig(roundtrip=True).asks_back and not SynthConfig(method="passage", roundtrip=False).asks_back

    def key(**settings):
        return synthesis_key("chunks", {"name": "g"}, [8, 48], ["e", "float32"], SynthConfig(**settings), 0)

    written = dict(method="answer_first")
    assert key(**written) == key(**written, roundtrip=True) != key(**written, roundtrip=False)  # earlier keys hold
    assert key() == key(roundtrip=False) != key(roundtrip=True)
