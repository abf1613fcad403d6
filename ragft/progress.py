"""Progress bars for long stages (tqdm; hidden when RAGFT_PROGRESS=0)."""

from __future__ import annotations

import os
from typing import Any


def progress(**kwargs: Any) -> Any:
    """A tqdm bar (notebook-aware) on stderr; disabled when RAGFT_PROGRESS=0."""
    from tqdm.auto import tqdm

    disable = kwargs.pop("disable", False) or os.environ.get("RAGFT_PROGRESS", "1") == "0"
    return tqdm(disable=disable, dynamic_ncols=True, leave=False, **kwargs)
