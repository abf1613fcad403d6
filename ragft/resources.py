"""The models a run shares, loaded on first use: a re-run with everything cached loads none.

Pipelines may differ in base model; generators are held one at a time, so the previous
one's memory is released before the next loads. Models and indexes passed in (built in
Python, or by tests) are used for the pipelines whose settings name them, never loaded
or built again.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ragft.generation import Generator, generator_identity
from ragft.models import model_id, resolve_device

if TYPE_CHECKING:
    from ragft.config import GenerationConfig, ModelsConfig
    from ragft.retrieval import Embedder, VectorIndex


class Resources:
    """Generators, embedders and indexes for a run's pipelines, by the settings that name them."""

    def __init__(
        self,
        generators: Sequence[Generator] = (),
        embedders: Sequence[Embedder] = (),
        indexes: Sequence[VectorIndex] = (),
    ):
        self._given_generators = list(generators)
        self._given_embedders = list(embedders)
        self._given_indexes = list(indexes)
        self._generator: tuple[tuple[str, str, str], Generator] | None = None
        self._embedders: dict[tuple[str, str, str], Embedder] = {}
        self._identities: dict[tuple[str, str, str], dict[str, Any]] = {}

    def _given(self, models: ModelsConfig) -> Generator | None:
        """A generator passed in for this model: the one in the named dtype if there are several."""
        local = [g for g in self._given_generators if g.model is not None]  # not one behind an endpoint
        named = [g for g in local if model_id(g.name) == model_id(models.generator)]
        exact = [g for g in named if g.identity()["dtype"] == models.dtype]
        return (exact or named or [None])[0]

    def generator(self, models: ModelsConfig, generation: GenerationConfig, seed: int = 0) -> Generator:
        """The generator `models` names, with these decoding settings (behind `models.endpoint`
        when one is set)."""
        gen = generation
        if models.endpoint:
            from ragft.endpoint import EndpointGenerator

            m = models
            endpoint = EndpointGenerator(
                m.endpoint, m.generator, m.endpoint_key_env, m.endpoint_timeout_s, m.endpoint_retries
            )
            return endpoint.with_decoding(gen.batch_size, gen.max_new_tokens, seed)  # type: ignore[return-value]
        base = self._given(models)
        if base is None:
            wanted = (models.generator, models.dtype, models.device)
            if self._generator is None or self._generator[0] != wanted:
                self._generator = None
                gc.collect()  # the previous base model's memory goes before the next loads
                self._generator = (wanted, Generator.load(models.generator, models.dtype, models.device))
            base = self._generator[1]
        return base.with_decoding(gen.batch_size, gen.max_new_tokens, seed)

    def generator_once(self, models: ModelsConfig, generation: GenerationConfig, seed: int = 0) -> Generator:
        """The local generator `models` names for one job (a given one where passed in), loaded
        outside the held slot: the pipeline's model stays held, and this one is freed when the
        caller drops it (a synthetic-pairs writer)."""
        base = self._given(models) or Generator.load(models.generator, models.dtype, models.device)
        return base.with_decoding(generation.batch_size, generation.max_new_tokens, seed)

    def generator_identity(self, models: ModelsConfig) -> dict[str, Any]:
        """What the generator's outputs depend on (name, weights, dtype, device), without loading it."""
        if models.endpoint:
            from ragft.endpoint import endpoint_identity

            return endpoint_identity(models.endpoint, models.generator)
        key = (models.generator, models.dtype, models.device)
        if key not in self._identities:  # asked for every stage key: hash the weight files once
            given = self._given(models)
            identity = given.identity() if given is not None else generator_identity(*key)
            self._identities[key] = identity
        return self._identities[key]

    def embedder(self, models: ModelsConfig) -> Embedder:
        """The embedder `models` names, in its dtype, on `models.device`."""
        for given in self._given_embedders:
            if given.name == model_id(models.embedder) and given.dtype == models.embedder_dtype:
                return given
        key = (models.embedder, models.embedder_dtype, models.device)
        if key not in self._embedders:
            from ragft.retrieval import Embedder

            device = resolve_device(models.device)
            self._embedders[key] = Embedder(models.embedder, dtype=models.embedder_dtype, device=device)
        return self._embedders[key]

    def index(self, corpus_sha256: str, embedder: str, embedder_dtype: str, kind: str) -> VectorIndex | None:
        """An index passed in that holds exactly these chunks, embedded so, of this kind (else None)."""
        for index in self._given_indexes:
            same = (index.corpus_sha256, index.embedder, index.meta.get("embedder_dtype"), index.kind)
            if same == (corpus_sha256, embedder, embedder_dtype, kind):
                return index
        return None


@dataclass(frozen=True)
class Models:
    """The models one pipeline's settings name, for the parts that use them: a task's
    retriever embeds with `embedder()`, drafts HyDE passages with `generator()`."""

    resources: Resources
    settings: ModelsConfig
    generation: GenerationConfig
    seed: int = 0

    def embedder(self) -> Embedder:
        return self.resources.embedder(self.settings)

    def generator(self) -> Generator:
        return self.resources.generator(self.settings, self.generation, self.seed)

    def generator_identity(self) -> dict[str, Any]:
        return self.resources.generator_identity(self.settings)

    def generator_once(self) -> Generator:
        return self.resources.generator_once(self.settings, self.generation, self.seed)

    def index(self, corpus_sha256: str, embedder_dtype: str, kind: str) -> VectorIndex | None:
        return self.resources.index(corpus_sha256, model_id(self.settings.embedder), embedder_dtype, kind)
