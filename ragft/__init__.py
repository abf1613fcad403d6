"""ragft: what prompting, retrieval and LoRA fine-tuning each buy on your task.

Importing ragft loads no heavy library; torch, transformers and faiss load where used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ragft.config import Config, load_config
from ragft.types import Chunk, Document, Example, Generation, Hit, Prediction

__version__ = "0.1.0"

__all__ = [
    "Chunk",
    "Config",
    "Document",
    "Example",
    "Generation",
    "Hit",
    "Prediction",
    "compare",
    "load_config",
]

if TYPE_CHECKING:
    from ragft.experiment import compare


def __getattr__(name: str) -> Any:
    if name == "compare":
        from ragft.experiment import compare

        return compare
    raise AttributeError(f"module 'ragft' has no attribute {name!r}")
