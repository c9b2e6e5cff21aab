"""Mutation scores per module from mutmut's results, against the targets of docs/RELIABILITY.md.

Run by ``./setup.sh mutation`` after ``mutmut run``. A mutant counts as detected when a test failed
(``killed``) or the tests ran past mutmut's time limit (``timeout``: the mutant made the code hang, which
a user would notice as surely as a failure). Survivors listed in ``tests/mutation_equivalents.txt`` (one
``mutant-name  # reason`` per line) are left out of the score; the others, and mutants no test reaches,
count against it. Writes every undetected mutant, with its diff, to ``mutants/mutation-report.md``;
exits 1 when a module or the whole falls below its target.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EQUIVALENTS = REPO / "tests" / "mutation_equivalents.txt"
REPORT = REPO / "mutants" / "mutation-report.md"
MUTMUT = Path(sys.executable).parent / "mutmut"

# The safety-critical modules of the mutation issue, as groups of files; each must reach MODULE_TARGET.
MODULES = {
    "forecast_model (preprocess, decoder, engine)": ("forecast_model.preprocess", "forecast_model.decoder",
                                                     "forecast_model.engine"),
    "pipeline/series_checks.py": ("pipeline.series_checks",),
    "pipeline/publish.py": ("pipeline.publish",),
    "pipeline/sources (http, policy)": ("pipeline.sources.http", "pipeline.sources.policy"),
    "pipeline/frequency.py": ("pipeline.frequency",),
}
MODULE_TARGET, OVERALL_TARGET = 0.85, 0.90
DETECTED = {"killed", "timeout", "caught by type check"}
_NAME = re.compile(r"^\s*(?P<name>[\w.ǁ]+__mutmut_\d+): (?P<status>.+)$")


@dataclass
class Score:
    counts: Counter[str] = field(default_factory=Counter)
    equivalent: int = 0

    @property
    def detected(self) -> int:
        return sum(self.counts[status] for status in DETECTED)

    @property
    def scored(self) -> int:
        return sum(self.counts.values()) - self.counts["skipped"]

    @property
    def ratio(self) -> float:
        return self.detected / self.scored if self.scored else 1.0


def module_of(mutant: str) -> str:
    """``pipeline.sources.http.x__download__mutmut_3`` -> ``pipeline.sources.http``."""
    return re.split(r"\.x(?:_|ǁ)", mutant, maxsplit=1)[0]


def load_results() -> dict[str, str]:
    out = subprocess.run([str(MUTMUT), "results", "--all", "true"], cwd=REPO, check=True, capture_output=True,
                         text=True).stdout
    return {m["name"]: m["status"].strip() for m in map(_NAME.match, out.splitlines()) if m}


def load_equivalents(path: Path = EQUIVALENTS) -> dict[str, str]:
    """Mutant name -> reason; a line without a reason is an error (an exemption must say why)."""
    equivalents = {}
    for number, line in enumerate(path.read_text().splitlines() if path.exists() else [], 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, reason = line.partition("#")
        if not reason.strip():
            raise SystemExit(f"{path}:{number}: give the reason the mutant is equivalent after a '#'")
        equivalents[name.strip()] = reason.strip()
    return equivalents


def score(results: dict[str, str], equivalents: dict[str, str]) -> dict[str, Score]:
    scores = {module: Score() for module in MODULES}
    for name, status in results.items():
        module = next((m for m, files in MODULES.items() if module_of(name) in files), None)
        if module is None:
            continue
        if status not in DETECTED and name in equivalents:
            scores[module].equivalent += 1
            continue
        scores[module].counts[status] += 1
    return scores


def diff_of(mutant: str) -> str:
    shown = subprocess.run([str(MUTMUT), "show", mutant], cwd=REPO, capture_output=True, text=True).stdout
    return "\n".join(line for line in shown.splitlines() if line[:1] in "+-@" and line[:3] not in ("---", "+++"))


def main() -> int:
    results = load_results()
    if not results:
        print("No mutmut results: run `mutmut run` first (./setup.sh mutation does both).", file=sys.stderr)
        return 1
    equivalents = load_equivalents()
    scores = score(results, equivalents)
    stale = sorted(name for name in equivalents if results.get(name) in DETECTED | {None})
    total = Score()
    print(f"{'module':48} {'detected':>9} {'scored':>7} {'equiv.':>7} {'score':>7}  target")
    failed = False
    for module, s in scores.items():
        total.counts.update(s.counts)
        total.equivalent += s.equivalent
        failed |= s.ratio < MODULE_TARGET
        print(f"{module:48} {s.detected:9d} {s.scored:7d} {s.equivalent:7d} {s.ratio:7.1%}  "
              f"{'ok' if s.ratio >= MODULE_TARGET else 'BELOW'} {MODULE_TARGET:.0%}")
    failed |= total.ratio < OVERALL_TARGET
    print(f"{'overall':48} {total.detected:9d} {total.scored:7d} {total.equivalent:7d} {total.ratio:7.1%}  "
          f"{'ok' if total.ratio >= OVERALL_TARGET else 'BELOW'} {OVERALL_TARGET:.0%}")
    undetected = sorted(name for name, status in results.items()
                        if status not in DETECTED | {"skipped"} and name not in equivalents
                        and any(module_of(name) in files for files in MODULES.values()))
    lines = ["# Undetected mutants", "", f"{len(undetected)} mutants no test detects (status, then the diff).", ""]
    for name in undetected:
        lines += [f"## {name} ({results[name]})", "", "```diff", diff_of(name), "```", ""]
    if stale:
        lines += ["# Stale exemptions", "", "Listed as equivalent but now detected or gone (remove them from "
                  f"{EQUIVALENTS.relative_to(REPO)}):", "", *[f"- {name}" for name in stale], ""]
    REPORT.write_text("\n".join(lines))
    print(f"\n{len(undetected)} undetected mutants, with their diffs: {REPORT.relative_to(REPO)}"
          + (f"; {len(stale)} stale exemptions listed there too" if stale else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
