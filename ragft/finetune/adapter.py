"""LoRA adapters on disk: peft's safetensors files plus a ragft manifest checked on load."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragft.errors import ArtifactError
from ragft.finetune.detach import detach_adapter, is_prompt_learning, stash_base_weights
from ragft.io import atomic_dir, library_versions, read_manifest, write_manifest

if TYPE_CHECKING:
    from ragft.generation import Generator

KIND = "lora-adapter"


def save_adapter(peft_model: Any, folder: str | Path, base_model: str, extra: dict[str, Any] | None = None) -> Path:
    """Save the adapter weights (safetensors) and a manifest naming the base model and the
    hash of its weight files, atomically."""
    from ragft.models import weights_digest

    folder = Path(folder)
    with atomic_dir(folder) as tmp:
        peft_model.save_pretrained(tmp, safe_serialization=True)
        write_manifest(
            tmp,
            {
                "kind": KIND,
                "base_model": base_model,
                "base_model_sha256": weights_digest(base_model),
                **(extra or {}),
                "versions": library_versions("torch", "transformers", "peft"),
            },
        )
    return folder


def adapter_manifest(folder: str | Path) -> dict[str, Any]:
    return read_manifest(folder, KIND)


@contextmanager
def attached(generator: Generator, folder: str | Path, base_model: str, key: str | None = None) -> Iterator[Generator]:
    """`generator` with the saved adapter in `folder` on inside the block (refused unless it was
    trained with `key`, where one is given); its base model is back after the block, whatever
    happens inside."""
    if key is not None and adapter_manifest(folder).get("fingerprint") != key:
        raise ArtifactError(f"{folder}: holds no adapter trained with the key this run asks for (train it first)")
    generator.model = load_adapter(generator.model, folder, base_model)
    try:
        yield generator
    finally:
        generator.model = detach_adapter(generator.model)


def load_adapter(model: Any, folder: str | Path, base_model: str) -> Any:
    """Attach a saved adapter to `model`; refuse one trained on another base model."""
    from peft import PeftModel

    from ragft.models import weights_digest

    manifest = adapter_manifest(folder)
    if manifest["base_model"] != base_model:
        raise ArtifactError(
            f"{folder}: adapter was trained on base model {manifest['base_model']!r}, not on {base_model!r}"
        )
    trained_on, here = manifest.get("base_model_sha256"), weights_digest(base_model)
    if trained_on and here and trained_on != here:
        raise ArtifactError(
            f"{folder}: adapter was trained on other weights of {base_model!r} "
            f"(sha256 {trained_on[:12]}, these are {here[:12]})"
        )
    if manifest.get("method") == "full":
        from safetensors.torch import load_file

        stash_base_weights(model)
        state = {}
        for f in sorted(Path(folder).glob("*.safetensors")):
            state.update(load_file(str(f)))
        missing, unexpected = model.load_state_dict(state, strict=False)
        loaded = model.state_dict()
        shared = {loaded[k].data_ptr() for k in state if k in loaded}
        missing = [k for k in missing if loaded[k].data_ptr() not in shared]  # tied weights are saved once
        if missing or unexpected:
            raise ArtifactError(f"{folder}: saved weights do not fit the model: {(missing or unexpected)[:3]}")
        model.eval()
        return model
    peft_model = PeftModel.from_pretrained(model, str(folder))
    peft_model.eval()
    return peft_model


def list_adapters(root: str | Path) -> list[dict[str, Any]]:
    """Every adapter folder under `root` (an adapter folder, a run folder or any tree), with
    what its manifest says; folders without a valid manifest are not adapters."""
    root = Path(root)
    rows = []
    for manifest_file in sorted(root.rglob("manifest.json")):
        folder = manifest_file.parent
        try:
            manifest = adapter_manifest(folder)
        except ArtifactError:
            continue
        training = manifest.get("training", {})
        rows.append(
            {
                "folder": str(folder),
                "base_model": manifest["base_model"],
                "records": training.get("records"),
                "steps": training.get("steps"),
                "bytes": sum(f.stat().st_size for f in folder.iterdir() if f.is_file()),
            }
        )
    return rows


def is_quantized(model: Any) -> bool:
    """True for a base whose weights are stored quantized (bitsandbytes, GPTQ, int8 ...)."""
    import torch

    if getattr(model, "is_quantized", False) or getattr(getattr(model, "config", None), "quantization_config", None):
        return True
    return any(p.dtype in (torch.int8, torch.uint8) or not p.dtype.is_floating_point for p in model.parameters())


def merge_adapter(peft_model: Any, input_ids: Any) -> tuple[Any, float]:
    """Fold the adapter into the base weights; return (plain model, max abs logit difference
    between the adapter and the merged model on `input_ids`). A quantized base is refused:
    merging into rounded weights would silently change the model."""
    import torch

    if is_prompt_learning(peft_model):
        raise ArtifactError("a prompt-tuning adapter adds input embeddings; there are no weights to merge it into")
    if not hasattr(peft_model, "get_base_model"):
        raise ArtifactError("a fully fine-tuned model is already whole; there is no adapter to merge")
    base = peft_model.get_base_model()
    if is_quantized(base):
        raise ArtifactError("refusing to merge an adapter into a quantized base model; load the base in bf16/fp32")
    with torch.no_grad():
        before = peft_model(input_ids=input_ids).logits.float()
        merged = peft_model.merge_and_unload()
        after = merged(input_ids=input_ids).logits.float()
    return merged, float((before - after).abs().max())


MERGE_PROBE = "Question: Who keeps the boat book?\nAnswer with a short phrase taken from the context."
"""Text whose logits are compared before and after a merge."""


def merge_into_base(adapter: str | Path, out: str | Path, dtype: str = "float32") -> float:
    """Load an adapter's base model (named by its manifest), merge, check and save the merged
    model with its tokenizer and a manifest; return the max abs logit difference."""
    from ragft.generation import load_causal_lm

    manifest = adapter_manifest(adapter)
    model, tokenizer = load_causal_lm(manifest["base_model"], dtype)
    peft_model = load_adapter(model, adapter, manifest["base_model"])
    ids = tokenizer(MERGE_PROBE, return_tensors="pt")["input_ids"].to(model.device)
    merged, difference = merge_adapter(peft_model, ids)
    with atomic_dir(out) as tmp:
        merged.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        write_manifest(
            tmp,
            {
                "kind": "merged-model",
                "base_model": manifest["base_model"],
                "adapter": str(Path(adapter).resolve()),
                "dtype": dtype,
                "max_abs_logit_difference": difference,
                "versions": library_versions("torch", "transformers", "peft"),
            },
        )
    return difference
