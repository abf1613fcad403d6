"""File helpers: atomic writes, JSONL with line-numbered errors, content hashes, manifests."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ragft.errors import ArtifactError, InputError, WriteError

MANIFEST = "manifest.json"


def _before_write(path: Path) -> None:
    """Called before every write ragft makes (a file, an append, a folder's rename into place):
    the one seam fault-injection tests replace to fail a write at any site."""


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[None]:
    """A write to `path`: a refusal of the machine (disk full, no permission) becomes a
    WriteError naming the file; whatever the write replaces stays as it was."""
    try:
        _before_write(path)
        yield
    except OSError as e:
        raise WriteError(f"could not write {path}: {e.strerror or e}") from e


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same folder, then rename."""
    path = Path(path)
    with _writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise


def write_json_atomic(path: str | Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def write_jsonl_atomic(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    """Write rows as JSON lines, all at once (temporary file, then rename)."""
    write_text_atomic(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def read_json(path: str | Path) -> Any:
    """Parse a JSON file; a malformed one is an error naming it."""
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise InputError(f"malformed JSON: {e.msg}", path, e.lineno) from None


@contextlib.contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside `final`; on success it replaces `final` in one rename.

    An interrupted or failed build leaves `final` as it was (the previous artifact stays usable).
    """
    final = Path(final)
    with _writing(final):
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        yield tmp
        with _writing(final):
            if final.exists():
                old = final.with_name(f".{final.name}.old-{os.getpid()}")
                os.replace(final, old)
                os.replace(tmp, final)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_text(path: str | Path) -> str:
    """Read a UTF-8 text file (gunzipped when it ends in .gz); another encoding is an error naming it."""
    path = Path(path)
    data = path.read_bytes()
    if path.suffix == ".gz":
        import gzip

        data = gzip.decompress(data)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise InputError(f"not valid UTF-8 (byte {e.start}); convert the file to UTF-8", path, line) from None


def read_jsonl(path: str | Path, torn_tail_ok: bool = False) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line; a bad line is an error naming it.

    With `torn_tail_ok`, a last line without its newline that does not parse (a write cut
    short by a kill) is skipped instead: for files this project appends to itself.
    """
    path = Path(path)
    text = read_text(path)
    lines = text.splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            if torn_tail_ok and number == len(lines) and not text.endswith("\n"):
                return
            raise InputError(f"malformed JSON: {e.msg} (column {e.colno})", path, number) from None
        if not isinstance(obj, dict):
            raise InputError(f"expected a JSON object, got {type(obj).__name__}", path, number)
        yield number, obj


def append_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    """Append rows and flush to disk, so a killed run keeps every finished row. A last line
    cut short by an earlier kill or a full disk is cut off first, so no row is glued to it."""
    path = Path(path)
    data = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")
    with _writing(path), open(path, "a+b") as f:
        end = f.seek(0, os.SEEK_END)
        if end and (f.seek(end - 1), f.read(1))[1] != b"\n":
            f.seek(0)
            f.truncate(f.read().rfind(b"\n") + 1)
        f.write(data)  # append mode: always at the end
        f.flush()
        os.fsync(f.fileno())


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_json(obj: Any) -> str:
    """Hash of a JSON-serialisable value, independent of key order."""
    return sha256_bytes(json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str).encode())


def write_manifest(folder: str | Path, manifest: dict[str, Any]) -> None:
    """Write the manifest last: a folder without one is not an artifact."""
    write_json_atomic(Path(folder) / MANIFEST, manifest)


def read_manifest(folder: str | Path, kind: str) -> dict[str, Any]:
    """Read and check the manifest of an artifact folder of the given kind."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"{folder}: not a ragft {kind} (no {MANIFEST}; was it built completely?)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{path}: corrupt manifest ({e})") from None
    if manifest.get("kind") != kind:
        raise ArtifactError(f"{folder}: is a {manifest.get('kind')!r} artifact, expected a {kind!r}")
    return manifest


def library_versions(*names: str) -> dict[str, str]:
    """Installed versions of the named distributions (missing ones omitted)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in names:
        with contextlib.suppress(PackageNotFoundError):
            out[name] = version(name)
    return out
