"""Taking an adapter off a model: what leaves a base model as it was before training."""

from __future__ import annotations

from typing import Any


def is_prompt_learning(model: Any) -> bool:
    """True for a peft model whose adapter is trained input embeddings (prompt tuning)."""
    config = getattr(model, "active_peft_config", None)
    return bool(getattr(config, "is_prompt_learning", False))


BASE_STASH = "_ragft_base_weights"
"""Attribute of a fully fine-tuned model holding the base weights it replaced."""


def stash_base_weights(model: Any) -> None:
    """Keep a CPU copy of the weights, so `detach_adapter` can put the base back."""
    if not hasattr(model, BASE_STASH):
        setattr(model, BASE_STASH, {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()})


def detach_adapter(peft_model: Any) -> Any:
    """The base model with the adapter taken off (not merged), in eval mode; a fully
    fine-tuned model gets its stashed base weights back."""
    if hasattr(peft_model, BASE_STASH):
        peft_model.load_state_dict(getattr(peft_model, BASE_STASH))
        delattr(peft_model, BASE_STASH)
        base = peft_model
    elif is_prompt_learning(peft_model):
        base = peft_model.get_base_model()
    else:
        base = peft_model.unload()
    base.eval()
    return base
