"""The CI dependency audit's judgement of a pip-audit report (scripts/audit.py)."""

from __future__ import annotations

import importlib.util

from tests.conftest import REPO

spec = importlib.util.spec_from_file_location("audit", REPO / "scripts" / "audit.py")
assert spec and spec.loader
audit = importlib.util.module_from_spec(spec)
spec.loader.exec_module(audit)

CLEAN = {"name": "duckdb", "version": "2.0.1", "vulns": []}
SKIPPED = {"name": "torch", "skip_reason": "Dependency not found on PyPI and could not be audited: torch (2.13.0)"}
VULNERABLE = {"name": "jinja2", "version": "3.1.2", "vulns": [
    {"id": "GHSA-h5c8-rqwp-cp95", "fix_versions": ["3.1.3"], "aliases": ["CVE-2024-22195"]}]}


def test_a_known_vulnerability_fails_and_names_the_fix() -> None:
    code, lines = audit.judge([CLEAN, VULNERABLE, SKIPPED], strict=False)
    assert code == 1
    assert lines[0] == "VULNERABLE jinja2 3.1.2: GHSA-h5c8-rqwp-cp95 ['CVE-2024-22195'] (fixed in: 3.1.3)"


def test_an_audit_that_checked_nothing_says_so_and_fails_only_when_strict() -> None:
    code, lines = audit.judge([SKIPPED, SKIPPED], strict=False)
    assert code == 0 and lines[-1].startswith("AUDIT NOT PERFORMED")
    assert audit.judge([SKIPPED], strict=True)[0] == 1


def test_a_clean_audit_passes() -> None:
    code, lines = audit.judge([CLEAN, SKIPPED], strict=True)
    assert code == 0 and "2 distributions, 1 checked, 1 not checked, 0 known vulnerabilities" in lines[0]
