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
