"""What the experiment runner needs from a task, whatever its kind (QA over a corpus, text-to-SQL).

A task run holds its train and test examples and whatever retrieval it does; the runner
asks it for prompts, scores, training records and the identity its predictions depend on.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ragft.arms import Arm
    from ragft.config import Config
    from ragft.finetune.data import SFTRecord
    from ragft.generation import Generator


class TaskRun(Protocol):
    metrics: tuple[str, ...]
    """Metric names, primary first; each prediction gets a score for every one."""
    test_ids: list[str]
    oracle: str
    """What an arm with oracle context is shown, in words for the report."""

    def identity(self, arm: Arm) -> Any:
        """What an arm's predictions depend on besides the model and decoding (examples, retrieval)."""
        ...

    def training_identity(self, arm: Arm) -> Any:
        """What an arm's training records depend on besides the fine-tuning settings."""
        ...

    def prompts(self, arm: Arm, generator: Generator) -> list[str]:
        """The rendered prompt of every test example for this arm."""
        ...

    def answers(self, i: int) -> tuple[str, ...]: ...

    def retrieved(self, arm: Arm, i: int) -> tuple[str, ...]:
        """Ids of what retrieval put into test example i's prompt (empty without context)."""
        ...

    def score(self, i: int, output: str) -> tuple[dict[str, float], str]:
        """(a score per metric, the kind of failure or '') for test example i's output."""
        ...

    def train_records(self, arm: Arm, generator: Generator, config: Config) -> list[SFTRecord]: ...

    def summary(self, run: Path) -> dict[str, Any]:
        """The report's retrieval block."""
        ...

    def passages(self) -> dict[str, str]:
        """Retrieved item id to its text, for the HTML report."""
        ...
