"""A generator behind an OpenAI-compatible chat completions endpoint: a hosted model, a
vLLM or llama.cpp server, or `ragft serve` itself, as the generator of an untrained pipeline.

The pipeline builds the same chat messages it would show a local model and sends them as they
are; the endpoint applies its own chat template. Requests of a batch go out in parallel
(`generation.batch_size` at a time) through the official `openai` client, which retries
connection errors, 408/409/429 and 5xx answers with exponential backoff and gives up after
`models.endpoint_timeout_s` seconds a try. Decoding asks for temperature 0.

The endpoint owns its weights: ragft keys an endpoint pipeline's predictions by the URL and the
model name, and cannot see the weights behind them change.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ragft.errors import EndpointError
from ragft.progress import progress
from ragft.types import Generation


class EndpointGenerator:
    """Chat completions from `url` (the API's base, e.g. http://127.0.0.1:8000/v1) with
    model `name`; the API key, if any, from the environment variable `key_env`."""

    tokenizer = None
    model = None

    def __init__(
        self,
        url: str,
        name: str,
        key_env: str = "OPENAI_API_KEY",
        timeout_s: float = 60.0,
        retries: int = 3,
        batch_size: int = 8,
        max_new_tokens: int = 32,
        seed: int = 0,
        client: Any = None,
    ):
        self.url = url.rstrip("/")
        self.name = name
        self.key_env = key_env
        self.timeout_s = timeout_s
        self.retries = retries
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.seed = seed
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            from openai import OpenAI

            key = os.environ.get(self.key_env, "") if self.key_env else ""
            self._client = OpenAI(
                base_url=self.url, api_key=key or "none", timeout=self.timeout_s, max_retries=self.retries
            )
        return self._client

    def identity(self) -> dict[str, Any]:
        return endpoint_identity(self.url, self.name)

    def with_decoding(self, batch_size: int, max_new_tokens: int, seed: int) -> EndpointGenerator:
        """The same endpoint (and client) with other decoding settings."""
        return EndpointGenerator(
            self.url,
            self.name,
            self.key_env,
            self.timeout_s,
            self.retries,
            batch_size,
            max_new_tokens,
            seed,
            self._client,
        )

    def render(self, messages: list[dict[str, str]]) -> str:
        """An endpoint pipeline's prompt: the chat messages themselves, as JSON (what is sent)."""
        return json.dumps(messages, ensure_ascii=False)

    def plan(self, prompts: Sequence[str]) -> list[list[int]]:
        """Batches of prompt indices in order (no padding to save: each request stands alone)."""
        return [list(range(i, min(i + self.batch_size, len(prompts)))) for i in range(0, len(prompts), self.batch_size)]

    def generate_batch(self, prompts: Sequence[str], max_new_tokens: int | None = None) -> list[Generation]:
        """One answer per prompt, the requests in parallel; in input order."""
        budget = max_new_tokens or self.max_new_tokens
        with ThreadPoolExecutor(max(1, min(self.batch_size, len(prompts)))) as pool:
            return list(pool.map(lambda p: self._complete(p, budget), prompts))

    def generate(
        self, prompts: Sequence[str], desc: str = "generating", max_new_tokens: int | None = None
    ) -> list[Generation]:
        """Answers for any number of prompts, in input order, with a progress bar."""
        out: list[Generation] = []
        bar = progress(total=len(prompts), desc=desc, unit="q")
        for batch in self.plan(prompts):
            out.extend(self.generate_batch([prompts[i] for i in batch], max_new_tokens))
            bar.update(len(batch))
        bar.close()
        return out

    def _complete(self, prompt: str, max_new_tokens: int) -> Generation:
        import openai

        start = time.perf_counter()
        try:
            reply = self.client.chat.completions.create(
                model=self.name,
                messages=json.loads(prompt),
                max_tokens=max_new_tokens,
                temperature=0,
                seed=self.seed,
            )
        except openai.APIStatusError as e:
            raise EndpointError(f"{self.where}: HTTP {e.status_code}: {_message(e)}") from None
        except openai.APIConnectionError as e:
            tries = self.retries + 1
            raise EndpointError(f"{self.where}: no answer after {tries} tries ({e.__cause__ or e})") from None
        seconds = time.perf_counter() - start
        text = (reply.choices[0].message.content or "").strip() if reply.choices else ""
        usage = reply.usage
        prompt_tokens = usage.prompt_tokens if usage else 0
        completion_tokens = usage.completion_tokens if usage else 0
        return Generation(text, prompt_tokens, completion_tokens, seconds)

    @property
    def where(self) -> str:
        return f"endpoint {self.url} (model {self.name!r})"


def endpoint_identity(url: str, name: str) -> dict[str, Any]:
    """What an endpoint pipeline's outputs are keyed by: the endpoint and the model it names."""
    return {"endpoint": url.rstrip("/"), "model": name}


def _message(error: Any) -> str:
    body = getattr(error, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    return str(error)
