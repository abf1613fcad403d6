"""The models a run shares, loaded on first use: a re-run with everything cached loads none.

Pipelines may differ in base model; generators are held one at a time, so the previous
one's memory is released before the next loads. Models passed in (tests, notebooks) are
used for the pipelines whose settings name them, and never loaded again.
"""

from __future__ import annotations

import gc
from typing import TYPE_CHECKING, Any

from ragft.generation import Generator, generator_identity
from ragft.models import model_id

if TYPE_CHECKING:
    from ragft.config import Config, ModelsConfig
    from ragft.retrieval import Embedder


class Resources:
    """Generators and embedders for a run's pipelines, by the settings that name them."""

    def __init__(self, generator: Generator | None = None, embedder: Embedder | None = None):
        self._given_generator = generator
        self._given_embedder = embedder
        self._generator: tuple[tuple[str, str, str], Generator] | None = None
        self._embedders: dict[tuple[str, str, str], Embedder] = {}

    def _given(self, models: ModelsConfig) -> Generator | None:
        g = self._given_generator
        return g if g is not None and model_id(g.name) == model_id(models.generator) else None

    def generator(self, config: Config) -> Generator:
        """The generator `config.models` names, with `config.generation`'s decoding settings."""
        models, gen = config.models, config.generation
        base = self._given(models)
        if base is None:
            wanted = (models.generator, models.dtype, models.device)
            if self._generator is None or self._generator[0] != wanted:
                self._generator = None
                gc.collect()  # the previous base model's memory goes before the next loads
                self._generator = (wanted, Generator.load(models.generator, models.dtype, models.device))
            base = self._generator[1]
        return base.with_decoding(gen.batch_size, gen.max_new_tokens, config.experiment.seed)

    def generator_identity(self, models: ModelsConfig) -> dict[str, Any]:
        """What the generator's outputs depend on (name, weights, dtype, device), without loading it."""
        given = self._given(models)
        if given is not None:
            return given.identity()
        return generator_identity(models.generator, models.dtype, models.device)

    def embedder(self, models: ModelsConfig) -> Embedder:
        """The embedder `models` names, in its dtype, on `models.device`."""
        from ragft.models import resolve_device

        given = self._given_embedder
        if given is not None and given.name == model_id(models.embedder) and given.dtype == models.embedder_dtype:
            return given
        key = (models.embedder, models.embedder_dtype, models.device)
        if key not in self._embedders:
            from ragft.retrieval import Embedder

            device = resolve_device(models.device)
            self._embedders[key] = Embedder(models.embedder, dtype=models.embedder_dtype, device=device)
        return self._embedders[key]
