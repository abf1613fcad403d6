"""HyDE, multi-query expansion and reranking, with the real offline generator and embedder."""

import numpy as np
import pytest
from helpers import HANDBOOK

from ragft.corpus import chunk_documents, load_folder
from ragft.retrieval import DenseRetriever, build_index
from ragft.retrieval.query import HydeRetriever, MultiQueryRetriever, parse_queries
from ragft.retrieval.rerank import CrossEncoderScorer, GeneratorScorer, RerankingRetriever


@pytest.fixture(scope="module")
def dense(embedder):
    return DenseRetriever(embedder, build_index(chunk_documents(load_folder(HANDBOOK / "docs")), embedder))


def test_generator_judge_prefers_the_passage_that_answers(generator):
    scorer = GeneratorScorer(generator)
    scores = scorer.score(
        "What is the capital of France?",
        ["Bananas are a yellow fruit rich in potassium.", "Paris is the capital and largest city of France."],
    )
    assert scores[1] > scores[0]


def test_reranking_orders_the_first_stage_by_the_scorer(generator, dense):
    scorer = GeneratorScorer(generator)
    query = "How much are the annual dues?"
    first = dense.retrieve([query], 6)[0]
    (hits,) = RerankingRetriever(dense, scorer, depth=6).retrieve([query], 3)
    direct = dict(zip([h.chunk.id for h in first], scorer.score(query, [h.chunk.text for h in first])))
    assert [h.rank for h in hits] == [0, 1, 2]
    assert [h.chunk.id for h in hits] == sorted(direct, key=lambda c: -direct[c])[:3]
    assert [h.score for h in hits] == pytest.approx([direct[h.chunk.id] for h in hits], abs=1e-4)


def test_cross_encoder_scorer_runs_a_local_model(tmp_path, embedder):
    """Mechanics with a tiny random cross-encoder (no trained one ships offline)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    tokenizer = embedder.model.tokenizer
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, num_labels=1)  # fmt: skip
    BertForSequenceClassification(config).save_pretrained(tmp_path / "ce")
    tokenizer.save_pretrained(tmp_path / "ce")
    scorer = CrossEncoderScorer(str(tmp_path / "ce"))
    passages = ["tide gauges", "annual dues", "chart room"]
    scores = scorer.score("dues", passages)
    assert len(scores) == 3 and len(set(scores)) == 3
    assert scores == pytest.approx([float(s) for s in scorer.model.predict([("dues", p) for p in passages])])


def test_hyde_searches_with_the_query_plus_a_draft(generator, dense):
    hyde = HydeRetriever(dense, generator, max_new_tokens=48)
    query = "Who is the gauge warden?"
    (draft,) = hyde.drafts([query])
    assert draft.strip()
    embed = dense.embedder.embed
    expected = embed([query]) + embed([draft])
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    (hits,) = hyde.retrieve([query], 3)
    assert [h.chunk.id for h in hits] == [h.chunk.id for h in dense.search(expected, 3)[0]]
    assert float((embed([query]) @ expected.T)[0, 0]) < 0.99  # the draft moved the search vector
    assert hits[0].chunk.doc_id == "tide-gauges"


def test_multi_query_parses_rewrites_and_fuses_them(generator, dense):
    assert parse_queries("1. gauge warden\n- Gauge Warden\n* who reads tide gauges\n\n2) warden duties", 3) == [
        "gauge warden",
        "who reads tide gauges",
        "warden duties",
    ]
    multi = MultiQueryRetriever(dense, generator, n=2, depth=10)
    query = "Who is the gauge warden?"
    (rewrites,) = multi.rewrites([query])
    assert 1 <= len(rewrites) <= 2
    (hits,) = multi.retrieve([query], 3)
    assert len(hits) == 3 and hits[0].chunk.doc_id == "tide-gauges"
    assert hits[0].score >= hits[1].score >= hits[2].score
