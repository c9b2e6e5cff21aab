"""Credentials for sources, referenced by name so that no secret is ever a flow parameter.

Flow parameters are stored in the Prefect database, shown in the UI and copied into run manifests and
MLflow; a credential in one would be readable by everyone who can read those. A source therefore names
where its credential lives, and the worker resolves it at run time:

- ``<name>``: a Prefect ``Secret`` block (``Secret(value=...).save("<name>")``, or the UI's Blocks page);
- ``env:<VARIABLE>``: an environment variable of the worker (e.g. injected by Kubernetes from a Secret).
"""

from __future__ import annotations

import json
import os
from typing import Any

from tasks.errors import InputDataError

__all__ = ["resolve_headers", "resolve_secret"]


def resolve_secret(reference: str) -> Any:
    """The value the reference points to (a string, or for a JSON ``Secret`` block a dict or list)."""
    if reference.startswith("env:"):
        variable = reference.removeprefix("env:")
        if variable not in os.environ:
            raise InputDataError(f"Secret {reference!r}: environment variable {variable} is not set on this worker. "
                                 "Fix: set it in the worker's environment (or the work pool's job variables).")
        return os.environ[variable]
    from prefect.blocks.system import Secret  # Prefect only where a block is named: keeps imports light

    try:
        block: Any = Secret.load(reference)  # a sync call from sync code: the block itself
        return block.get()
    except ValueError as exc:
        raise InputDataError(f"Secret {reference!r}: no Prefect Secret block has that name ({exc}). Fix: create it "
                             f"(Prefect UI > Blocks > Secret, or Secret(value=...).save({reference!r})), or "
                             "reference an environment variable as env:<VARIABLE>.") from exc


def resolve_headers(reference: str) -> dict[str, str]:
    """HTTP headers from a secret holding a JSON object, e.g. ``{"Authorization": "Bearer ..."}``."""
    value = resolve_secret(reference)
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            value = None
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise InputDataError(f"Secret {reference!r} must hold a JSON object of header names to string values, "
                             'e.g. {"Authorization": "Bearer <token>"}.')
    return value
