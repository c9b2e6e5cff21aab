"""Prefect Secret blocks for sources: the one place the pipeline reads a block, handed to the core as a function."""

from __future__ import annotations

from typing import Any

import httpx

from forecast_model.errors import shorten
from pipeline.errors import InputDataError
from pipeline.sources import SourcePolicy, TransientSourceError

__all__ = ["read_secret_block", "with_secret_blocks"]


def read_secret_block(name: str) -> Any:
    """The value of the Prefect Secret block ``name``: a string, or for a JSON block a dict or list."""
    from prefect.blocks.system import Secret  # Prefect only where a block is named: keeps imports light

    try:
        block: Any = Secret.load(name)  # a sync call from sync code: the block itself
        return block.get()
    except ValueError as exc:
        # Prefect's message is about the name only; it is cut all the same, as it comes from a server.
        raise InputDataError(f"Secret {name!r}: no Prefect Secret block has that name ({shorten(str(exc))}). "
                             "Fix: create it (Prefect UI > Blocks > Secret, or "
                             f"Secret(value=...).save({name!r})), or reference an environment variable as "
                             "env:<VARIABLE>.") from exc
    except httpx.HTTPError as exc:  # Prefect's client raises these when its API cannot be reached
        raise TransientSourceError(f"Cannot read secret {name!r} from the Prefect API ({type(exc).__name__}). "
                                   "Fix: check PREFECT_API_URL and that the Prefect server is up.") from exc


def with_secret_blocks(policy: SourcePolicy) -> SourcePolicy:
    """``policy`` able to read the Secret blocks a source names."""
    return policy.model_copy(update={"secret_blocks": read_secret_block})
