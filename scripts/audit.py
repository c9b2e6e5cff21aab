"""Dependency audit for CI: pip-audit over the project's installed environment, judged here.

    .venv/bin/python scripts/audit.py            # fails on any known vulnerability
    AUDIT_STRICT=1 .venv/bin/python scripts/audit.py   # also fails when packages could not be checked

pip-audit looks every installed distribution up in PyPI's advisory data (the per-release JSON API). A
vulnerability found fails the step, naming the package, the advisory and the fixed versions. A package that
could not be checked is reported with the reason; when none could be (the machine cannot reach that API, as
on this project's CI machines, whose only route to PyPI is the package index), the step says so plainly
instead of passing as if the audit had run, and fails if AUDIT_STRICT is set. docs/RELIABILITY.md records
the latest result.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

# Accepted findings, each with the reason it does not apply (none so far): {"GHSA-...": "why"}.
ACCEPTED: dict[str, str] = {}


def judge(dependencies: list[dict], strict: bool) -> tuple[int, list[str]]:
    """The exit code and the lines to print for pip-audit's ``dependencies`` list."""
    found = [(d["name"], d["version"], v) for d in dependencies for v in d.get("vulns", [])]
    skipped = [d for d in dependencies if "skip_reason" in d]
    checked = len(dependencies) - len(skipped)
    lines = [f"VULNERABLE {name} {version}: {vuln['id']} {vuln.get('aliases', [])} (fixed in: "
             f"{', '.join(vuln.get('fix_versions') or []) or 'no fixed release yet'})" for name, version, vuln in found]
    lines.append(f"dependency audit: {len(dependencies)} distributions, {checked} checked, {len(skipped)} not "
                 f"checked, {len(found)} known vulnerabilities, {len(ACCEPTED)} accepted")
    if skipped:
        lines.append(f"  not checked, e.g. {skipped[0]['skip_reason']}")
    if found:
        return 1, lines
    if checked == 0:
        lines.append("AUDIT NOT PERFORMED: no distribution could be looked up in PyPI's advisory data from this "
                     "machine. Run `.venv/bin/python scripts/audit.py` where "
                     "https://pypi.org/pypi/<name>/<version>/json is reachable.")
        return (1 if strict else 0), lines
    return 0, lines


def main() -> int:
    audit = Path(sys.executable).parent / "pip-audit"
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "audit.json"
        done = subprocess.run([str(audit), "--skip-editable", "--progress-spinner", "off", "--format", "json",
                               "--output", str(report), *[a for v in ACCEPTED for a in ("--ignore-vuln", v)]],
                              capture_output=True, text=True, timeout=900)
        if not report.is_file():
            print(f"pip-audit did not run: {done.stderr.strip()[-2000:]}", file=sys.stderr)
            return 2
        dependencies = json.loads(report.read_text())["dependencies"]
    code, lines = judge(dependencies, strict=bool(os.environ.get("AUDIT_STRICT")))
    print("\n".join(lines))
    return code


if __name__ == "__main__":
    sys.exit(main())
