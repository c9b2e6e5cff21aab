"""Secret references: names only (a Prefect Secret block or env:VARIABLE), never a value, never echoed."""

from __future__ import annotations

import json

import pytest
from prefect.types.names import raise_on_name_alphanumeric_dashes_only
from pydantic import ValidationError

from pipeline.errors import InputDataError
from pipeline.sources import UrlSource
from pipeline.sources.secrets import check_reference, resolve_headers, resolve_secret

NAMES = ["sales-url", "macro-headers", "a", "0day-feed", "sales-2024-q1", "a" * 100, "e3b0c442-98fc-1c14-9afb"]
ENV_REFERENCES = ["env:SALES_URL", "env:_PRIVATE", "env:lower_case1"]
# What users give by mistake: the secret itself. The refusal must not quote any of it.
VALUES = [
    '{"Authorization": "Bearer t0k3nXYZ-9f8e7d"}',
    "Bearer t0k3nXYZ-9f8e7d",
    "ghp_T0k3nXYZ9f8e7dAbCdEf",
    "sftp://alice:pa55w0rd@example.com/x.csv",
    "0123456789abcdef0123456789abcdef01234567",  # a lower-case hex key fits Prefect's name rule
    "Qzv-Feed-Name",
    "-qzv-feed-name",
    "q" * 101,
    "env:9LIVES_TOKEN",
    "env:MY-VARIABLE-NAME",
    "qzv feed name",
]
WINDOW = 8


def assert_not_echoed(value: str, message: str) -> None:
    for start in range(max(len(value) - WINDOW + 1, 1)):
        part = value[start:start + WINDOW]
        assert part not in message, f"the refusal quotes {part!r} of the refused value"


@pytest.mark.parametrize("reference", NAMES + ENV_REFERENCES)
def test_names_and_environment_references_are_accepted(reference: str) -> None:
    assert check_reference(reference) == reference
    source = UrlSource(url_secret=reference, headers_secret=reference)
    assert (source.url_secret, source.headers_secret) == (reference, reference)


@pytest.mark.parametrize("name", NAMES)
def test_accepted_names_are_prefect_block_names(name: str) -> None:
    assert raise_on_name_alphanumeric_dashes_only(name, "Block document name") == name


@pytest.mark.parametrize("name", ["Sales-Url", "sales_url", "sales/url", "sales.url", ""])
def test_what_prefect_refuses_as_a_block_name_is_refused(name: str) -> None:
    prefect_refuses = not name or not name.replace("-", "").isalnum() or name != name.lower()
    assert prefect_refuses, name
    with pytest.raises(InputDataError, match="not a valid secret reference"):
        check_reference(name)


@pytest.mark.parametrize("field", ["url_secret", "headers_secret"])
@pytest.mark.parametrize("value", VALUES)
def test_a_value_given_as_a_reference_is_refused_without_echo(field: str, value: str) -> None:
    address = {} if field == "url_secret" else {"url": "https://example.com/x.csv"}
    with pytest.raises(ValidationError) as caught:
        UrlSource(**address, **{field: value})  # type: ignore[arg-type]
    message = str(caught.value)
    assert f"{field}\n" in message, "the error names the field"
    assert "Prefect Secret block" in message and "env:" in message, "the error says what a reference looks like"
    assert "input_value" not in message
    assert_not_echoed(value, message)
    assert "t0k3n" not in message and "pa55w0rd" not in message


@pytest.mark.parametrize("value", VALUES)
def test_resolving_a_value_instead_of_a_name_is_refused_without_echo(value: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    for resolve in (resolve_secret, resolve_headers):
        with pytest.raises(InputDataError, match="not a valid secret reference|looks like a key") as caught:
            resolve(value)
        assert_not_echoed(value, str(caught.value))


def test_a_key_like_name_is_refused_as_a_key() -> None:
    with pytest.raises(InputDataError, match="headers_secret looks like a key, not a name"):
        check_reference("0123456789abcdef0123456789abcdef", "headers_secret")
    assert check_reference("sales-api-headers-for-the-quarterly-report") == "sales-api-headers-for-the-quarterly-report"


def test_environment_references_resolve(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALES_HEADERS", json.dumps({"Authorization": "Bearer t0k3n"}))
    assert resolve_headers("env:SALES_HEADERS") == {"Authorization": "Bearer t0k3n"}
    monkeypatch.delenv("SALES_HEADERS")
    with pytest.raises(InputDataError, match="environment variable SALES_HEADERS is not set on this worker"):
        resolve_secret("env:SALES_HEADERS")


@pytest.mark.parametrize(("headers", "problem"), [
    ({"Authorization": "Bearer t0k3n\r\nX-Injected: 1"}, "the value of header .Authorization. holds a character"),
    ({"Authorization": "Bearer t0k3né"}, "the value of header .Authorization. holds a character"),
    ({"Bad Name": "t0k3n"}, "header name 'Bad Name' is not a valid HTTP header name"),
])
def test_headers_that_cannot_be_sent_are_refused_without_their_values(headers: dict[str, str], problem: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALES_HEADERS", json.dumps(headers))
    with pytest.raises(InputDataError, match=problem) as caught:
        resolve_headers("env:SALES_HEADERS")
    assert "t0k3n" not in str(caught.value), "a header value is a credential: never shown"
