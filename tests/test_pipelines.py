"""Pipelines in TOML: `[[pipelines]]` tables beside the ladder presets, compared with paired
tests; bad tables get errors naming the pipeline, the file and the line."""

from __future__ import annotations

import json

import pytest
from helpers import HANDBOOK, ROOT, TINY

from ragft.config import load_config
from ragft.errors import ConfigError
from ragft.experiment import compare
from ragft.render.markdown import markdown
from ragft.settings import resolve_pipelines

HEAD = f"""
[experiment]
name = "pipelines"
general_examples = ""
context_views = false

[data]
corpus = "{HANDBOOK / "docs"}"
examples = "{HANDBOOK / "qa.jsonl"}"
"""


def _config(tmp_path, body: str, overrides=()):
    path = tmp_path / "pipelines.toml"
    path.write_text(HEAD + body)
    return load_config(path, list(overrides))


def test_two_pipelines_that_differ_in_retrieval_are_compared_pairwise(tmp_path, generator, embedder):
    body = """
[[pipelines]]
name = "rag-dense"
base = "rag"

[[pipelines]]
name = "rag-hybrid"
base = "rag"
retrieval = { method = "hybrid" }
"""
    config = _config(tmp_path, body, [o for o in TINY if not o.startswith("experiment.general")])
    assert config.experiment.presets == []  # a file with pipelines runs only those
    report = compare(config, tmp_path / "run", generator=generator, embedder=embedder).data
    assert list(report["pipelines"]) == ["rag-dense", "rag-hybrid"]
    pair = [c for c in report["comparisons"] if (c["from"], c["to"]) == ("rag-dense", "rag-hybrid")]
    assert {c["metric"] for c in pair} == {"f1", "em", "acc"}
    assert report["pipelines"]["rag-hybrid"]["settings"]["retrieval"] == "hybrid"

    def retrieved(name):
        lines = (tmp_path / "run" / "predictions" / f"{name}.jsonl").read_text().splitlines()
        return [json.loads(line)["retrieved"] for line in lines]

    assert retrieved("rag-dense") != retrieved("rag-hybrid")  # BM25 changed some passages
    assert "| rag-dense | rag-hybrid |" in markdown(report)


def test_pipelines_join_the_ladder_presets_and_take_user_templates(tmp_path):
    body = """
[[pipelines]]
name = "terse"
base = "rag+ft"
template = { system = "Reply in three words at most.", user = "Notes:\\n{context}\\n\\nAsk: {question}" }
finetune = { rank = 4, records = "sft" }
generation = { max_new_tokens = 8 }
prices = { million_input_tokens = 2.5 }
"""
    pipelines = resolve_pipelines(
        _config(tmp_path, body, ['experiment.presets=["prompt","rag"]', "prices.cpu_hour=0.1"])
    )
    assert [p.name for p in pipelines] == ["prompt", "rag", "terse"]
    terse = pipelines[2]
    assert terse.template.name == "terse" and terse.template.system == "Reply in three words at most."
    assert terse.trained and terse.context and not terse.raft
    assert terse.finetune.rank == 4 and terse.finetune.alpha == 32  # the rest is the experiment's
    assert terse.generation.max_new_tokens == 8 and pipelines[0].generation.max_new_tokens == 32
    assert (terse.prices.million_input_tokens, terse.prices.cpu_hour) == (2.5, 0.1)
    assert pipelines[0].prices.million_input_tokens == 0.0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            '[[pipelines]]\nname = "a"\nbase = "rag"\n[[pipelines]]\nname = "a"\nbase = "prompt"\n',
            "two pipelines are named 'a'",
        ),
        (
            '[[pipelines]]\nname = "mine"\nbase = "rag"\ntemplate = "qa-contxt"\n',
            r"pipelines.toml:\d+: pipeline 'mine': unknown prompt template 'qa-contxt'; did you mean 'qa-context'\?",
        ),
        (
            '[[pipelines]]\nname = "tuned"\nbase = "ft"\nfinetune = { records = "raft" }\n',
            r"pipeline 'tuned': finetune.records = 'raft' trains on retrieved passages, but base 'ft' has no retriever",
        ),
        (
            '[[pipelines]]\nname = "fast"\nbase = "rag"\nretrieval = { methd = "bm25" }\n',
            r"pipelines.toml:\d+: pipeline 'fast': unknown key 'retrieval.methd'; did you mean 'retrieval.method'\?",
        ),
        (
            '[[pipelines]]\nname = "fast"\nbase = "rag"\nretreival = { method = "bm25" }\n',
            r"pipeline 'fast': unknown key 'retreival'; did you mean 'retrieval'\?",
        ),
        (
            '[[pipelines]]\nname = "fast"\nbase = "rag"\ndata = { test_limit = 3 }\n',
            r"pipeline 'fast': unknown key 'data'",
        ),
        (
            '[[pipelines]]\nname = "fast"\nbase = "rag"\nretrieval = { method = "bm52" }\n',
            r"pipeline 'fast': retrieval.method: unknown value 'bm52'; did you mean 'bm25'\?",
        ),
        (
            '[[pipelines]]\nname = "x"\nbase = "rag-ft"\n',
            r"pipeline 'x': unknown base 'rag-ft'; did you mean 'rag\+ft'\?",
        ),
        (
            '[[pipelines]]\nname = "x"\nbase = "rag"\ntemplate = { user = "Q: {question}" }\n',
            r"pipeline 'x': template 'x' has no \{context\}, but base 'rag' retrieves",
        ),
    ],
)
def test_bad_pipelines_are_named_in_the_error(tmp_path, body, message):
    with pytest.raises(ConfigError, match=message):
        resolve_pipelines(_config(tmp_path, body))


def test_the_error_gives_the_line_of_the_pipelines_table(tmp_path):
    body = '[[pipelines]]\nname = "ok"\nbase = "rag"\n\n'
    body += '[[pipelines]]\nname = "bad"\nbase = "rag"\nretrieval = { k = "3" }\n'
    with pytest.raises(ConfigError) as error:
        resolve_pipelines(_config(tmp_path, body))
    headers = [n for n, line in enumerate((HEAD + body).splitlines(), start=1) if line == "[[pipelines]]"]
    header = headers[1]
    assert error.value.line == header and "pipeline 'bad': retrieval.k must be int" in str(error.value)


def test_handbook_config_keeps_its_three_arms():
    pipelines = resolve_pipelines(load_config(ROOT / "configs" / "handbook.toml"))
    assert [(p.name, p.context, p.trained, p.raft) for p in pipelines] == [
        ("prompt", False, False, False),
        ("rag", True, False, False),
        ("rag+ft", True, True, True),
    ]


def test_pipelines_may_differ_in_base_model(tmp_path, generator, embedder, tokenizer):
    from helpers import tiny_llama

    folder = tmp_path / "tiny-generator"
    tiny_llama(len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    body = f"""
[[pipelines]]
name = "prompt"
base = "prompt"

[[pipelines]]
name = "tiny-ft"
base = "ft"
models = {{ generator = "{folder}" }}
"""
    config = _config(tmp_path, body, [*TINY, "experiment.context_views=true", "generation.max_new_tokens=4"])
    report = compare(config, tmp_path / "run", generator=generator, embedder=embedder).data
    assert list(report["pipelines"]) == ["prompt", "tiny-ft"]
    assert report["pipelines"]["tiny-ft"]["settings"]["generator"] == str(folder)
    manifest = json.loads((tmp_path / "run" / "adapters" / "tiny-ft" / "manifest.json").read_text())
    assert manifest["base_model"] == str(folder.resolve())  # trained on its own base model
    assert list(report["context_views"]["models"]) == ["base (tiny-generator)", "tiny-ft"]
    settings = json.loads((tmp_path / "run" / "pipelines.json").read_text())
    assert settings["prompt"]["models"]["generator"] == "smollm2-135m-instruct"
