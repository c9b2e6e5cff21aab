"""Quiet access to the ``timesfm`` package.

``import timesfm`` prints two banners to stdout and tries to import JAX first; both would pollute a CLI's
output, so the import happens once, here, with stdout captured and sent to the debug log. JAX is kept out of
that import: where it is installed (the dev extra has it, for the covariate reference test), ``timesfm``
would import it (seconds, hundreds of MB) only to fail on its other JAX dependencies and fall back to torch.
The library never uses JAX, with or without it installed.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import sys
from collections.abc import Iterator
from types import ModuleType

logger = logging.getLogger(__name__)


@functools.cache
def decoder_module() -> ModuleType:
    """Returns ``timesfm.pytorch_patched_decoder``, importing ``timesfm`` without its stdout banners."""
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured), _without_jax():
        from timesfm import pytorch_patched_decoder
    if captured.getvalue().strip():
        logger.debug("timesfm import said: %s", captured.getvalue().strip())
    return pytorch_patched_decoder


@contextlib.contextmanager
def _without_jax() -> Iterator[None]:
    """``import jax`` raises ImportError inside the block (unless JAX was imported before it)."""
    if "jax" in sys.modules:
        yield
        return
    sys.modules["jax"] = None  # type: ignore[assignment]  # the documented way to make an import fail
    try:
        yield
    finally:
        if sys.modules.get("jax", 0) is None:
            del sys.modules["jax"]
