"""Quiet access to the ``timesfm`` package.

``import timesfm`` prints two banners to stdout and tries to import JAX first; both would pollute a CLI's
output, so the import happens once, here, with stdout captured and sent to the debug log.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
from types import ModuleType

logger = logging.getLogger(__name__)


@functools.cache
def decoder_module() -> ModuleType:
    """Returns ``timesfm.pytorch_patched_decoder``, importing ``timesfm`` without its stdout banners."""
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        from timesfm import pytorch_patched_decoder
    if captured.getvalue().strip():
        logger.debug("timesfm import said: %s", captured.getvalue().strip())
    return pytorch_patched_decoder
