import json

import pytest
from helpers import HANDBOOK

from ragft.corpus import chunk_documents, load_folder
from ragft.errors import ArtifactError
from ragft.retrieval import DenseRetriever, VectorIndex, build_index


@pytest.fixture(scope="module")
def handbook_index(embedder):
    chunks = chunk_documents(load_folder(HANDBOOK / "docs"))
    return build_index(chunks, embedder)


def test_retriever_finds_the_document_that_answers(embedder, handbook_index):
    hits = DenseRetriever(embedder, handbook_index).retrieve(
        ["Who is the gauge warden?", "What is the chart room computer called?"], k=3
    )
    assert hits[0][0].chunk.doc_id == "tide-gauges"
    assert hits[1][0].chunk.doc_id == "chart-room"
    assert [h.rank for h in hits[0]] == [0, 1, 2]
    assert hits[0][0].score >= hits[0][1].score >= hits[0][2].score


def test_index_round_trips(tmp_path, embedder, handbook_index):
    handbook_index.save(tmp_path / "idx")
    loaded = VectorIndex.load(tmp_path / "idx", embedder.name)
    assert loaded.chunks == handbook_index.chunks
    query = embedder.embed(["How much are the annual dues?"])
    before = [(c.id, round(s, 5)) for c, s in handbook_index.search(query, 5)[0]]
    after = [(c.id, round(s, 5)) for c, s in loaded.search(query, 5)[0]]
    assert before == after


def test_index_from_another_embedder_is_refused_naming_both(tmp_path, handbook_index):
    handbook_index.save(tmp_path / "idx")
    with pytest.raises(ArtifactError) as err:
        VectorIndex.load(tmp_path / "idx", "some-other-embedder")
    assert "all-minilm-l6-v2" in str(err.value) and "some-other-embedder" in str(err.value)


def test_tampered_index_is_refused(tmp_path, handbook_index):
    folder = handbook_index.save(tmp_path / "idx")
    lines = (folder / "chunks.jsonl").read_text().splitlines()
    row = json.loads(lines[0])
    row["text"] = "changed"
    (folder / "chunks.jsonl").write_text("\n".join([json.dumps(row)] + lines[1:]) + "\n")
    with pytest.raises(ArtifactError, match="corpus hash"):
        VectorIndex.load(folder)


def test_bf16_embedding_agrees_with_fp32(embedder):
    from ragft.retrieval import Embedder

    texts = [c.text for c in chunk_documents(load_folder(HANDBOOK / "docs"))[:24]]
    fast = Embedder("all-minilm-l6-v2", model=embedder.model, dtype="bfloat16")
    a, b = embedder.embed(texts), fast.embed(texts)
    assert b.dtype == a.dtype and abs(float((b * b).sum(axis=1).mean()) - 1.0) < 1e-5
    assert float((a * b).sum(axis=1).min()) >= 0.999
    assert not (a == b).all()  # really another path
