import logging

import pytest
from conftest import HANDBOOK

from ragft.corpus import chunk_documents, load_folder
from ragft.errors import InputError
from ragft.tasks.qa import load_examples


def test_empty_corpus_folder_is_an_error_naming_it(tmp_path):
    with pytest.raises(InputError, match="no documents") as err:
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
    assert "empty.txt" in caplog.text


def test_chunks_map_back_to_their_documents():
    docs = load_folder(HANDBOOK / "docs")
    chunks = chunk_documents(docs, chunk_size=300, chunk_overlap=40)
    by_id = {d.id: d for d in docs}
    assert len(chunks) > len(docs)
    assert len({c.id for c in chunks}) == len(chunks)
    for c in chunks:
        assert len(c.text) <= 300
        assert by_id[c.doc_id].text[c.start : c.start + len(c.text)] == c.text


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
