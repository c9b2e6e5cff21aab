"""Checks the layers: flows -> tasks -> pipeline -> forecast_model, and no orchestration or tracking below tasks.

Run ``python -m scripts.layering`` from the repository root; it prints each broken rule with the file and
line of the import, and exits 1 if there is any. Every import counts, including those inside functions:
a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

__all__ = ["ALLOWED", "FORBIDDEN", "Violation", "check", "imports", "main"]

REPO = Path(__file__).resolve().parents[1]
# The project's layers, each with the layers it may import (itself always included).
ALLOWED: dict[str, set[str]] = {
    "flows": {"tasks", "pipeline", "forecast_model"},
    "tasks": {"pipeline", "forecast_model"},
    "pipeline": {"forecast_model"},
    "forecast_model": set(),
}
# Third-party packages a layer must never import: the core runs in a notebook, with neither installed. JAX and
# scikit-learn are in the dev extra only, for the covariate reference test (the `timesfm` API's xreg_lib): the
# engine's own covariate regression must never need them.
FORBIDDEN: dict[str, set[str]] = {
    "pipeline": {"prefect", "mlflow"},
    "forecast_model": {"prefect", "mlflow", "duckdb", "great_expectations", "jax", "jaxlib", "sklearn", "pipeline",
                       "tasks", "flows"},
}

Violation = tuple[Path, int, str]


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, top-level module) of every absolute import in ``path``."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module.split(".")[0]


def check(root: Path = REPO) -> list[Violation]:
    """Every import that breaks a rule, as (file, line, what is wrong)."""
    problems: list[Violation] = []
    for layer, allowed in ALLOWED.items():
        for path in sorted((root / layer).rglob("*.py")):
            for line, module in imports(path):
                if module in FORBIDDEN.get(layer, set()):
                    problems.append((path, line, f"{layer} must not import {module}"))
                elif module in ALLOWED and module != layer and module not in allowed:
                    problems.append((path, line, f"{layer} may import only {sorted(allowed) or 'nothing of ours'}, "
                                                 f"not {module}"))
    return problems


def main() -> int:
    """Prints the violations; 0 when there are none."""
    problems = check()
    for path, line, what in problems:
        print(f"{path.relative_to(REPO)}:{line}: {what}")
    print(f"layering: {len(problems)} violation(s) in {', '.join(ALLOWED)}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
