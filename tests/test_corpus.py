import gzip
import json
import logging

import pytest
from helpers import HANDBOOK, data_dir

from ragft.corpus import chunk_documents, load_corpus, load_folder
from ragft.corpus.loaders import JsonlFields
from ragft.errors import InputError
from ragft.tasks.qa import load_examples


def test_empty_corpus_folder_is_an_error_naming_it(tmp_path):
    with pytest.raises(InputError, match="no documents found") as err:
        load_folder(tmp_path)
    assert str(tmp_path) in str(err.value)


def test_missing_corpus_folder_is_named(tmp_path):
    with pytest.raises(InputError, match="not found") as err:
        load_folder(tmp_path / "nope")
    assert "nope" in str(err.value)


def test_non_utf8_file_is_named_with_line(tmp_path):
    (tmp_path / "good.md").write_text("fine\n")
    (tmp_path / "bad.txt").write_bytes(b"line one\nline two \xff\xfe\n")
    with pytest.raises(InputError, match="not valid UTF-8") as err:
        load_folder(tmp_path)
    assert f"{tmp_path / 'bad.txt'}:2:" in str(err.value)


def test_empty_files_are_skipped_with_a_warning(tmp_path, caplog):
    (tmp_path / "a.md").write_text("Alpha text.")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "empty.txt").write_text("  \n")
    with caplog.at_level(logging.WARNING):
        docs = load_folder(tmp_path)
    assert [d.id for d in docs] == ["a"]
    assert docs.empty == [str(tmp_path / "sub" / "empty.txt")]
    assert "empty.txt" in caplog.text and "1 empty skipped" in docs.summary()


def test_chunks_map_back_to_their_documents():
    docs = load_folder(HANDBOOK / "docs")
    chunks = chunk_documents(docs, chunk_size=300, chunk_overlap=40)
    by_id = {d.id: d for d in docs}
    assert len(chunks) > len(docs)
    assert len({c.id for c in chunks}) == len(chunks)
    for c in chunks:
        assert len(c.text) <= 300
        assert by_id[c.doc_id].text[c.start : c.start + len(c.text)] == c.text


def test_token_chunks_fit_the_embedder_and_oversize_is_refused():
    from ragft.corpus.chunking import chunk_for_embedder
    from ragft.errors import ConfigError
    from ragft.retrieval.embedder import embedder_tokenizer

    tokenizer, limit = embedder_tokenizer("all-minilm-l6-v2")
    assert limit == 254
    docs = load_folder(HANDBOOK / "docs")
    long_doc = type(docs[0])("long", " ".join(d.text for d in docs), "joined")
    chunks = chunk_for_embedder([long_doc], "all-minilm-l6-v2", "tokens", 254, 20)
    counts = [len(tokenizer(c.text, add_special_tokens=False)["input_ids"]) for c in chunks]
    assert len(chunks) > 10 and max(counts) <= 254 and sum(counts) / len(counts) > 150
    assert all(long_doc.text[c.start : c.start + len(c.text)] == c.text for c in chunks)
    with pytest.raises(ConfigError, match="limit of 254"):
        chunk_for_embedder(docs, "all-minilm-l6-v2", "tokens", 300, 20)


def test_bundled_handbook_is_complete_and_split_by_document():
    docs = {d.id: d.text for d in load_folder(HANDBOOK / "docs")}
    examples = load_examples(HANDBOOK / "qa.jsonl")
    assert len(docs) >= 30 and len(examples) >= 300
    for e in examples:
        assert any(a in docs[e.doc_id] for a in e.answers), e.id
    train_docs = {e.doc_id for e in examples if e.split == "train"}
    test_docs = {e.doc_id for e in examples if e.split == "test"}
    assert test_docs and not train_docs & test_docs


def test_bad_example_lines_are_named(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text('{"id": "1", "question": "q", "answers": ["a"], "split": "test"}\n{"id": "2", "question": "q"}\n')
    with pytest.raises(InputError, match="missing key 'answers'") as err:
        load_examples(path)
    assert f"{path}:2:" in str(err.value)


def test_unreadable_files_are_skipped_and_counted_with_skip_bad(tmp_path):
    (tmp_path / "good.md").write_text("fine")
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe binary")
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 truncated")
    corpus = load_folder(tmp_path, skip_bad=True)
    assert [d.id for d in corpus] == ["good"]
    assert len(corpus.skipped) == 2 and any("bad.txt:1: not valid UTF-8" in s for s in corpus.skipped)
    pytest.importorskip("pypdf", reason="the pdf extra is not installed")
    with pytest.raises(InputError, match="broken.pdf: unreadable PDF"):
        load_folder(tmp_path, suffixes=(".pdf",))


def test_same_id_from_two_files_names_both(tmp_path):
    (tmp_path / "guide.md").write_text("one")
    (tmp_path / "guide.txt").write_text("two")
    with pytest.raises(InputError) as err:
        load_folder(tmp_path)
    assert "'guide'" in str(err.value) and "guide.md" in str(err.value) and "guide.txt" in str(err.value)


def test_html_keeps_visible_text_in_blocks(tmp_path):
    (tmp_path / "page.html").write_text(
        "<html><head><title>Tide  gauges</title><style>p {color: red}</style></head><body>"
        "<script>var hidden = 1;</script><h1>Gauges</h1><p>The warden reads the gauge &amp; logs it.</p>"
        "<table><tr><td>Pier</td><td>3 m</td></tr></table></body></html>"
    )
    (doc,) = load_folder(tmp_path)
    assert doc.id == "page" and doc.metadata == {"title": "Tide gauges"}
    assert doc.text == "Gauges\n\nThe warden reads the gauge & logs it.\n\nPier 3 m"


def tiny_pdf(lines):
    """A valid one-page PDF showing `lines` in Helvetica, built byte by byte."""
    content = "BT /F1 12 Tf 72 720 Td 14 TL " + " ".join(f"({line}) Tj T*" for line in lines) + " ET"
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        "/Resources << /Font << /F1 5 0 R >> >> >>",
        f"<< /Length {len(content)} >>\nstream\n{content}\nendstream",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out, offsets = b"%PDF-1.4\n", []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    return out + f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()


def test_pdf_text_is_extracted(tmp_path):
    pytest.importorskip("pypdf", reason="the pdf extra is not installed")
    (tmp_path / "manual.pdf").write_bytes(tiny_pdf(["Dues are 40 crowns a year.", "Pay the treasurer."]))
    (doc,) = load_folder(tmp_path)
    assert doc.id == "manual"
    assert "Dues are 40 crowns a year." in doc.text and "Pay the treasurer." in doc.text


def test_jsonl_corpus_with_chosen_fields_and_line_numbered_errors(tmp_path):
    path = tmp_path / "docs.jsonl"
    rows = [{"doc": "a", "body": "Alpha.", "heading": "First"}, {"doc": "b", "body": "Beta."}, {"body": "Gamma."}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    corpus = load_corpus(path, fields=JsonlFields(text="body", id="doc", title="heading"))
    assert [(d.id, d.text) for d in corpus] == [("a", "First Alpha."), ("b", "Beta."), (f"{path}:3", "Gamma.")]
    with pytest.raises(InputError, match=r"docs.jsonl:1: row has no string field 'text'"):
        load_corpus(path)
    path.write_text(json.dumps({"id": "x", "text": "1"}) + "\n\n" + json.dumps({"id": "x", "text": "2"}) + "\n")
    with pytest.raises(InputError, match=r"'x' is used by both \S*docs.jsonl:1 and \S*docs.jsonl:3"):
        load_corpus(path)


def test_squad_paragraphs_become_documents(tmp_path):
    squad = {"data": [{"title": "Tides", "paragraphs": [{"context": "Tides rise.", "qas": []}, {"context": "Fall."}]}]}
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(squad))
    assert [(d.id, d.text) for d in load_corpus(path)] == [("Tides/0", "Tides rise."), ("Tides/1", "Fall.")]


@pytest.mark.data
def test_squad_dev_corpus_loads_with_stable_ids():
    path = data_dir() / "squad-v1.1" / "dev-v1.1.json.gz"
    corpus = load_corpus(path)
    raw = json.loads(gzip.decompress(path.read_bytes()))
    assert len(corpus) == sum(len(a["paragraphs"]) for a in raw["data"])
    assert [d.id for d in corpus] == [d.id for d in load_corpus(path)]
    assert corpus[0].id == f"{raw['data'][0]['title']}/0"


def test_squad_questions_split_by_article_and_point_at_their_paragraph(tmp_path):
    from ragft.tasks.qa import squad_split

    titles = [f"Article_{i}" for i in range(12)]
    squad = {
        "data": [
            {
                "title": t,
                "paragraphs": [
                    {
                        "context": f"{t} text {n}",
                        "qas": [{"id": f"{t}-{n}", "question": "q?", "answers": [{"text": "x"}]}],
                    }
                    for n in range(2)
                ],
            }
            for t in titles
        ]
    }
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(squad))
    examples = load_examples(path)
    assert [e.id for e in examples[:12]] == [f"{t}-0" for t in titles]  # round-robin over articles
    assert all(e.split == squad_split(e.doc_id.split("/")[0]) for e in examples)
    assert {e.split for e in examples} == {"train", "test"}
    corpus_ids = {d.id for d in load_corpus(path)}
    assert {e.doc_id for e in examples} == corpus_ids


@pytest.mark.data
def test_squad_dev_questions_split_into_train_and_test_articles():
    examples = load_examples(data_dir() / "squad-v1.1" / "dev-v1.1.json.gz")
    assert len(examples) == 10570
    test_articles = {e.doc_id.split("/")[0] for e in examples if e.split == "test"}
    train_articles = {e.doc_id.split("/")[0] for e in examples if e.split == "train"}
    assert len(test_articles) == 11 and not test_articles & train_articles
    first_test = [e for e in examples if e.split == "test"][:300]
    assert len({e.doc_id.split("/")[0] for e in first_test}) == 11  # a test_limit slice covers every article
