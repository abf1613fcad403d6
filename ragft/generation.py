"""Batched, greedy, seeded generation with a causal LM and an optional LoRA adapter."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ragft.errors import InputError
from ragft.models import resolve, resolve_device
from ragft.progress import progress
from ragft.types import Generation

if TYPE_CHECKING:
    import torch


def pick_dtype(name: str = "auto", device: str = "auto") -> torch.dtype:
    """bf16 where the device runs it natively (on CPUs it decodes ~2x faster), else fp32."""
    import torch

    if name == "float32":
        return torch.float32
    if name == "bfloat16":
        return torch.bfloat16
    if resolve_device(device).startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else torch.float32


def load_causal_lm(name: str, dtype: str = "auto", device: str = "auto") -> tuple[Any, Any]:
    """Load (model, tokenizer) for a generator name, offline where it is an alias."""
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(name)
    path = resolve(name, "generator")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=pick_dtype(dtype, device)).to(resolve_device(device))
    model.eval()
    return model, tokenizer


def load_tokenizer(name: str) -> Any:
    """A generator's tokenizer alone (no weights), with a pad token."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve(name, "generator"))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def generator_identity(name: str, dtype: str = "auto", device: str = "auto") -> dict[str, Any]:
    """What a generator's outputs depend on, known without loading it: the model, the hash
    of its weight files, and the dtype and device `auto` resolves to on this machine."""
    from ragft.models import model_id, weights_digest

    resolved = str(pick_dtype(dtype, device)).removeprefix("torch.")
    return {
        "model": model_id(name),
        "weights": weights_digest(name),
        "dtype": resolved,
        "device": resolve_device(device),
    }


def _device_name(device: Any) -> str:
    """`cpu`, `cuda` for the first GPU, `cuda:N` for another (as `models.device` spells them)."""
    if device.type == "cuda" and device.index not in (None, 0):
        return f"cuda:{device.index}"
    return device.type


class Generator:
    """Renders chat prompts and generates answers in left-padded batches.

    Greedy decoding, so outputs depend only on the prompts and weights; the batch order is
    by length to waste little padding, and results come back in input order.
    """

    def __init__(
        self, model: Any, tokenizer: Any, name: str, batch_size: int = 8, max_new_tokens: int = 32, seed: int = 0
    ):
        self.model = model
        self.seed = seed
        self.tokenizer = tokenizer
        self.name = name
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens

    @classmethod
    def load(cls, name: str, dtype: str = "auto", device: str = "auto", **kwargs: Any) -> Generator:
        model, tokenizer = load_causal_lm(name, dtype, device)
        return cls(model, tokenizer, name, **kwargs)

    def identity(self) -> dict[str, Any]:
        """`generator_identity` of the loaded model: its name, weights, dtype and device."""
        from ragft.models import model_id, weights_digest

        param = next(self.model.parameters())
        dtype = str(param.dtype).removeprefix("torch.")
        return {
            "model": model_id(self.name),
            "weights": weights_digest(self.name),
            "dtype": dtype,
            "device": _device_name(param.device),
        }

    def with_decoding(self, batch_size: int, max_new_tokens: int, seed: int) -> Generator:
        """A generator sharing this one's model and tokenizer, with other decoding settings."""
        return Generator(self.model, self.tokenizer, self.name, batch_size, max_new_tokens, seed)

    def render(self, messages: list[dict[str, str]]) -> str:
        """The prompt text the model sees, through the tokenizer's own chat template."""
        if not getattr(self.tokenizer, "chat_template", None):
            raise InputError(
                f"models.generator {self.name!r} has no chat template (a base model rather than an instruct "
                "one?): ragft prompts through the tokenizer's chat template; pick an instruct or chat model"
            )
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def plan(self, prompts: Sequence[str]) -> list[list[int]]:
        """Batches of prompt indices, grouped by length to waste little padding.

        The plan depends only on the prompts, so a resumed run regenerates exactly the
        batches an uninterrupted run would have, and padding cannot change an answer.
        """
        lengths = [len(self.encode(p)) for p in prompts]
        order = sorted(range(len(prompts)), key=lambda i: (lengths[i], i))
        return [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]

    def generate_batch(self, prompts: Sequence[str], max_new_tokens: int | None = None) -> list[Generation]:
        """Greedy answers for one left-padded batch, in input order."""
        import torch

        torch.manual_seed(self.seed)
        encoded = [self.encode(p) for p in prompts]
        pad = self.tokenizer.pad_token_id
        eos = self.tokenizer.eos_token_id
        ids, mask = self.left_padded(encoded)
        width = ids.shape[1]
        dev = next(self.model.parameters()).device
        start = time.perf_counter()
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=ids.to(dev),
                attention_mask=mask.to(dev),
                max_new_tokens=max_new_tokens or self.max_new_tokens,
                do_sample=False,
                pad_token_id=pad,
                eos_token_id=eos,
            )
        seconds = (time.perf_counter() - start) / len(encoded)
        results = []
        for row, e in enumerate(encoded):
            new = out[row, width:].tolist()
            if eos in new:
                new = new[: new.index(eos) + 1]
            elif pad in new and pad != eos:
                new = new[: new.index(pad)]
            text = self.tokenizer.decode(new, skip_special_tokens=True).strip()
            results.append(Generation(text, len(e), len(new), seconds))
        return results

    def left_padded(self, encoded: Sequence[Sequence[int]]) -> tuple[Any, Any]:
        """(input_ids, attention_mask) tensors of token lists padded on the left."""
        import torch

        width = max(len(e) for e in encoded)
        ids = torch.full((len(encoded), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(encoded), width), dtype=torch.long)
        for row, e in enumerate(encoded):
            ids[row, width - len(e) :] = torch.tensor(e)
            mask[row, width - len(e) :] = 1
        return ids, mask

    def generate(
        self, prompts: Sequence[str], desc: str = "generating", max_new_tokens: int | None = None
    ) -> list[Generation]:
        """Greedy answers for any number of prompts, in input order, with a progress bar."""
        results: dict[int, Generation] = {}
        bar = progress(total=len(prompts), desc=desc, unit="q")
        for batch in self.plan(prompts):
            results.update(zip(batch, self.generate_batch([prompts[i] for i in batch], max_new_tokens)))
            bar.update(len(batch))
        bar.close()
        return [results[i] for i in range(len(prompts))]
