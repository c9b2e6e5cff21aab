"""``timesfm`` is imported without its stdout banners, so the CLI's output stays clean."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def test_the_decoder_module_imports_without_writing_to_stdout() -> None:
    code = ("from forecast_model._timesfm import decoder_module\n"
            "module = decoder_module()\n"
            "assert module is decoder_module(), 'imported once'\n"
            "import sys; sys.stderr.write(module.__name__)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True,
                          cwd=REPO)
    assert done.stdout == "", f"timesfm wrote to stdout: {done.stdout[:200]!r}"
    assert done.stderr.endswith("timesfm.pytorch_patched_decoder")
