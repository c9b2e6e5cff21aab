"""The docs stay true to the code: every test they cite exists, and every module path they name is there."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import REPO

DOCS = sorted([*(REPO / "docs").glob("*.md"), REPO / "README.md"])
# `tests/x.py::name` cites a test; a following `::other` cites another test of the same file.
_CITATION = re.compile(r"`(tests/[\w/]+\.py)?(?:::(\w+))?[\w\[\] .-]*`")
_MODULE = re.compile(r"`((?:flows|tasks|pipeline|forecast_model|scripts|benchmarks|deployments)/[\w/]+\.py)")


def citations(text: str) -> list[tuple[str, str | None]]:
    """(file, test name or None) of every citation, bare ``::name`` ones resolved against the file before."""
    found, current = [], None
    for match in _CITATION.finditer(text):
        path, name = match.groups()
        if path:
            current = path
        if path or (name and current):
            found.append((path or current, name))
    return found  # type: ignore[return-value]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_cited_tests_exist(doc: Path) -> None:
    missing = []
    for path, name in citations(doc.read_text()):
        source = REPO / path
        if not source.is_file():
            missing.append(path)
        elif name and not re.search(rf"^(?:async )?def {name}\(", source.read_text(), re.M):
            missing.append(f"{path}::{name}")
    assert missing == [], f"{doc.name} cites tests that do not exist: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_named_modules_exist(doc: Path) -> None:
    missing = sorted({path for path in _MODULE.findall(doc.read_text()) if not (REPO / path).is_file()})
    assert missing == [], f"{doc.name} names modules that do not exist: {missing}"


def test_citations_are_read_as_the_docs_write_them() -> None:
    text = "| row | `tests/a.py::test_x`, `::test_y[case]`, `tests/b.py` | `flows/c.py:flow` |"
    assert citations(text) == [("tests/a.py", "test_x"), ("tests/a.py", "test_y"), ("tests/b.py", None)]
    assert len(citations((REPO / "docs" / "RELIABILITY.md").read_text())) > 50, "the reliability table cites tests"


def settings_variables() -> set[str]:
    from pipeline.settings import variable_names

    return set(variable_names())


def readme_variables() -> set[str]:
    text = (REPO / "README.md").read_text()
    table = text[text.index("## Configuration"):text.index("Checkpoint `config.json` keys")]
    return {name for row in re.findall(r"^\| (`[A-Z0-9_]+`(?:, `[A-Z0-9_]+`)*) \|", table, re.M)
            for name in re.findall(r"`([A-Z0-9_]+)`", row)}


def test_the_readme_table_documents_every_setting_and_no_other_of_ours() -> None:
    settings, documented = settings_variables(), readme_variables()
    assert settings - documented == set(), f"settings missing from the README's table: {settings - documented}"
    ours = {v for v in documented if v.startswith(("FORECAST_", "TIMESFM20_"))}
    assert ours <= settings, f"the README documents variables the settings do not read: {ours - settings}"


def test_the_env_template_names_every_setting() -> None:
    template = (REPO / ".env.template").read_text()
    named = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", template, re.M))
    assert settings_variables() <= named, f".env.template lacks {settings_variables() - named}"
