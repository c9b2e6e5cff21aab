"""Credentials for sources, referenced by name so that no secret is ever a flow parameter.

Flow parameters are stored in the Prefect database, shown in the UI and copied into run manifests and
MLflow; a credential in one would be readable by everyone who can read those. A source therefore names
where its credential lives, and the worker resolves it at run time:

- ``<name>``: a Prefect ``Secret`` block (``Secret(value=...).save("<name>")``, or the UI's Blocks page);
- ``env:<VARIABLE>``: an environment variable of the worker (e.g. injected by Kubernetes from a Secret).

A reference must look like one of these. Anything else is most likely the secret's value given by mistake
(``--headers-secret '{"Authorization": "Bearer ..."}'``), so it is refused without quoting any of it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from typing import Any

from forecast_model.errors import shorten
from pipeline.errors import InputDataError

__all__ = ["REFERENCE_HELP", "REFERENCE_PATTERN", "BlockReader", "check_reference", "resolve_headers", "resolve_secret"]

BlockReader = Callable[[str], Any]  # the value of the Secret block of that name

# Prefect 3 block document names: lower-case letters, digits and dashes (prefect.types.names,
# BlockDocumentName). Stricter here: a letter or digit first, at most 100 characters.
_BLOCK_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,99}")
_ENV_REFERENCE = re.compile(r"env:[A-Za-z_][A-Za-z0-9_]{0,254}")
# Both forms, for JSON schemas: a Prefect server enforcing a deployment's parameter schema refuses a run
# whose reference breaks it before anything is stored.
REFERENCE_PATTERN = rf"^(?:{_BLOCK_NAME.pattern}|{_ENV_REFERENCE.pattern})$"
# A lower-case hex or base-36 API key also fits the block name rule; names have words, keys have none.
_KEY_LIKE = re.compile(r"(?=[a-z0-9]*[0-9])[a-z0-9]{32,}")
# RFC 9110 field names, and values httpx can send (ASCII; no CR, LF or NUL that would split a header).
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]*")

REFERENCE_HELP = ("a secret reference is the NAME of a Prefect Secret block (lower-case letters, digits and "
                  "dashes, starting with a letter or digit, at most 100 characters, e.g. sales-api-headers) "
                  "or env: and the name of an environment variable of the worker (e.g. env:SALES_HEADERS). "
                  "Never give the secret's value itself: parameters are stored in the Prefect database and "
                  "shown in the UI, and the value given here is not repeated in this message for that reason")


def check_reference(reference: str, field: str = "secret reference") -> str:
    """``reference`` if it names a Secret block or an environment variable; InputDataError otherwise.

    The error never quotes the reference, not even cut short: a refused reference is most likely a
    credential given in its place.
    """
    if _ENV_REFERENCE.fullmatch(reference):
        return reference
    if not _BLOCK_NAME.fullmatch(reference):
        raise InputDataError(f"{field} is not a valid secret reference: {REFERENCE_HELP}.")
    if _KEY_LIKE.search(reference):
        raise InputDataError(f"{field} looks like a key, not a name (it holds 32 or more letters and digits in a "
                             f"row): {REFERENCE_HELP}.")
    return reference


def resolve_secret(reference: str, blocks: BlockReader | None = None) -> Any:
    """The value the reference points to (a string, or for a JSON ``Secret`` block a dict or list).

    ``blocks`` reads a Secret block by name; the orchestration layer passes Prefect's (``tasks.secrets``), so
    this package never imports Prefect.
    """
    check_reference(reference)
    if reference.startswith("env:"):
        variable = reference.removeprefix("env:")
        if variable not in os.environ:
            raise InputDataError(f"Secret {reference!r}: environment variable {variable} is not set on this worker. "
                                 "Fix: set it in the worker's environment (or the work pool's job variables).")
        return os.environ[variable]
    if blocks is None:
        raise InputDataError(f"Secret {reference!r} names a Prefect Secret block, and blocks are read only by the "
                             "pipeline's Prefect tasks. Fix: read the source through a flow, or reference an "
                             "environment variable as env:<VARIABLE>.")
    return blocks(reference)


def resolve_headers(reference: str, blocks: BlockReader | None = None) -> dict[str, str]:
    """HTTP headers from a secret holding a JSON object, e.g. ``{"Authorization": "Bearer ..."}``."""
    value = resolve_secret(reference, blocks)
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            value = None
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise InputDataError(f"Secret {reference!r} must hold a JSON object of header names to string values, "
                             'e.g. {"Authorization": "Bearer <token>"}.')
    for name, header in value.items():
        _check_header(reference, name, header)
    return value


def _check_header(reference: str, name: str, value: str) -> None:
    # Checked here, where the message can name the header: httpx would raise a bare UnicodeEncodeError or
    # a protocol error (taken for a network fault) instead. The value is a credential: never quoted.
    if not _HEADER_NAME.fullmatch(name):
        raise InputDataError(f"Secret {reference!r}: header name {shorten(name, 60)} is not a valid HTTP header "
                             "name (letters, digits and !#$%&'*+.^_`|~- only). Fix the JSON object in the secret.")
    if not _HEADER_VALUE.fullmatch(value):
        raise InputDataError(f"Secret {reference!r}: the value of header {shorten(name, 60)} holds a character that "
                             "cannot be sent (a line break, a control character or a non-ASCII character; the value "
                             "is not shown). Fix the JSON object in the secret.")
