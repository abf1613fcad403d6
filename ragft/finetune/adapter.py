"""LoRA adapters on disk: peft's safetensors files plus a ragft manifest checked on load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ragft.errors import ArtifactError
from ragft.io import atomic_dir, library_versions, read_manifest, write_manifest

KIND = "lora-adapter"


def save_adapter(peft_model: Any, folder: str | Path, base_model: str, extra: dict[str, Any] | None = None) -> Path:
    """Save the adapter weights (safetensors) and a manifest naming the base model, atomically."""
    folder = Path(folder)
    with atomic_dir(folder) as tmp:
        peft_model.save_pretrained(tmp, safe_serialization=True)
        write_manifest(
            tmp,
            {
                "kind": KIND,
                "base_model": base_model,
                **(extra or {}),
                "versions": library_versions("torch", "transformers", "peft"),
            },
        )
    return folder


def adapter_manifest(folder: str | Path) -> dict[str, Any]:
    return read_manifest(folder, KIND)


def load_adapter(model: Any, folder: str | Path, base_model: str) -> Any:
    """Attach a saved adapter to `model`; refuse one trained on another base model."""
    from peft import PeftModel

    manifest = adapter_manifest(folder)
    if manifest["base_model"] != base_model:
        raise ArtifactError(
            f"{folder}: adapter was trained on base model {manifest['base_model']!r}, not on {base_model!r}"
        )
    peft_model = PeftModel.from_pretrained(model, str(folder))
    peft_model.eval()
    return peft_model
