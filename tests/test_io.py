import json

import pytest

from ragft.errors import ArtifactError, InputError
from ragft.io import atomic_dir, read_jsonl, read_manifest, write_manifest


def test_malformed_jsonl_line_is_named(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2,}\n')
    with pytest.raises(InputError) as err:
        list(read_jsonl(path))
    assert f"{path}:3:" in str(err.value)


def test_non_utf8_jsonl_names_file_and_line(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"a": 1}\n{"a": "caf\xe9"}\n')
    with pytest.raises(InputError, match="not valid UTF-8") as err:
        list(read_jsonl(path))
    assert f"{path}:2:" in str(err.value)


def test_interrupted_atomic_dir_keeps_previous_artifact(tmp_path):
    final = tmp_path / "artifact"
    with atomic_dir(final) as tmp:
        (tmp / "data").write_text("old")
        write_manifest(tmp, {"kind": "thing"})
    with pytest.raises(RuntimeError):
        with atomic_dir(final) as tmp:
            (tmp / "data").write_text("new, half written")
            raise RuntimeError("killed")
    assert (final / "data").read_text() == "old"
    assert read_manifest(final, "thing")["kind"] == "thing"
    assert [p.name for p in tmp_path.iterdir()] == ["artifact"]


def test_folder_without_manifest_is_not_an_artifact(tmp_path):
    with pytest.raises(ArtifactError, match="no manifest.json"):
        read_manifest(tmp_path, "vector-index")


def test_append_after_a_torn_line_cuts_it_off_and_keeps_every_finished_row(tmp_path):
    from ragft.io import append_jsonl

    path = tmp_path / "rows.jsonl"
    append_jsonl(path, [{"i": 0}, {"i": 1}])
    with open(path, "ab") as f:  # a kill in the middle of the next append
        f.write(b'{"i": 2, "text": "cut sh')
    assert [row["i"] for _, row in read_jsonl(path, torn_tail_ok=True)] == [0, 1]
    append_jsonl(path, [{"i": 2}])
    assert [row["i"] for _, row in read_jsonl(path)] == [0, 1, 2]
    path.write_bytes(b'{"only": "torn')  # a file that is nothing but a torn line
    append_jsonl(path, [{"i": 3}])
    assert path.read_text() == '{"i": 3}\n'


def test_a_refused_write_names_the_file_and_leaves_the_previous_content(tmp_path, monkeypatch):
    import errno

    import ragft.io
    from ragft.errors import WriteError, explain
    from ragft.io import append_jsonl, write_json_atomic

    path = tmp_path / "report.json"
    write_json_atomic(path, {"v": 1})

    def disk_full(target):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ragft.io, "_before_write", disk_full)
    for write in (lambda: write_json_atomic(path, {"v": 2}), lambda: append_jsonl(tmp_path / "p.jsonl", [{}])):
        with pytest.raises(WriteError) as err:
            write()
        message, code = explain(err.value)
        assert "could not write" in message and "No space left on device" in message and code == 3
    with pytest.raises(WriteError, match=f"could not write {tmp_path / 'artifact'}"):
        with atomic_dir(tmp_path / "artifact") as tmp:
            (tmp / "data").write_text("x")
    assert json.loads(path.read_text()) == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]  # no temporary file left
