"""Secret blocks reach the core only through the reader the tasks hand it."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect.blocks.system import Secret
from prefect.settings import PREFECT_API_URL, temporary_settings

from pipeline.errors import InputDataError
from pipeline.sources import SourcePolicy, TransientSourceError, UrlSource, read_source
from pipeline.sources.secrets import resolve_headers, resolve_secret
from tasks.secrets import read_secret_block, with_secret_blocks


def policy() -> SourcePolicy:
    return SourcePolicy(data_roots=(Path.cwd(),), url_allowlist=("127.0.0.1/32",), read_timeout=1.0,
                        connect_timeout=1.0)


def test_without_a_reader_a_block_reference_names_the_fix() -> None:
    with pytest.raises(InputDataError, match=r"Secret 'sales-url' names a Prefect Secret block.*env:<VARIABLE>"):
        resolve_secret("sales-url")
    with pytest.raises(InputDataError, match="names a Prefect Secret block"):
        read_source(UrlSource(url_secret="sales-url"), policy())


def test_the_reader_is_what_resolves_a_block_and_never_travels_in_a_dump() -> None:
    seen: list[str] = []
    reader = {"sales-headers": '{"X-Api-Token": "t0k3n"}'}

    def blocks(name: str) -> str:
        seen.append(name)
        return reader[name]

    assert resolve_headers("sales-headers", blocks) == {"X-Api-Token": "t0k3n"} and seen == ["sales-headers"]
    wired = with_secret_blocks(policy())
    assert wired.secret_blocks is read_secret_block and policy().secret_blocks is None
    assert "secret_blocks" not in wired.model_dump(), "the reader is not data: never in a dump or a manifest"


@pytest.mark.usefixtures("prefect_api")
def test_blocks_are_read_from_the_prefect_api_and_a_missing_one_names_the_fix() -> None:
    Secret(value="https://127.0.0.1:9/x.csv").save("test-secrets-url", overwrite=True)
    assert read_secret_block("test-secrets-url") == "https://127.0.0.1:9/x.csv"
    with pytest.raises(InputDataError, match=r"no Prefect Secret block has that name.*Fix: create it"):
        read_secret_block("no-such-block-here")


def test_an_unreachable_prefect_api_is_a_transient_failure() -> None:
    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}), \
            pytest.raises(TransientSourceError, match="Cannot read secret 'sales-url' from the Prefect API"):
        read_source(UrlSource(url_secret="sales-url"), with_secret_blocks(policy()))
