"""URL sources against a real HTTP server on 127.0.0.1: formats, limits, retries, SSRF guard, redaction."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from pydantic import ValidationError

from tasks.errors import InputDataError
from tasks.sources import SourcePolicy, TransientSourceError, UrlSource, read_source, redact_url
from tasks.sources.http import check_address
from tests.conftest import SAMPLE
from tests.http_server import LocalServer, Route, http_server


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with http_server() as running:
        csv = SAMPLE.read_bytes()
        parquet = io.BytesIO()
        pd.read_csv(SAMPLE).to_parquet(parquet)
        running.routes.update({
            "/sample.csv": Route(body=csv),
            "/download": Route(body=parquet.getvalue(), content_type="application/octet-stream"),
            "/blob": Route(body=csv, content_type="application/octet-stream"),
            "/page": Route(body=b"<!doctype html><html><body>Sign in</body></html>", content_type="text/html"),
            "/broken": Route(500, b"oops", "text/plain"),
            "/slow": Route(body=csv, delay=3),
            "/huge": Route(body=csv),
            "/moved": Route(302, b"", headers={"Location": "/sample.csv"}),
            "/to-private": Route(302, b"", headers={"Location": "http://10.0.0.1/data.csv"}),
        })
        yield running


def policy(**overrides: object) -> SourcePolicy:
    values: dict[str, object] = {"data_roots": (Path.cwd(),), "url_allowlist": ("127.0.0.1/32",),
                                 "read_timeout": 1.0, "connect_timeout": 1.0}
    return SourcePolicy(**{**values, **overrides})  # type: ignore[arg-type]


def test_csv_and_parquet_and_redirect(server: LocalServer) -> None:
    for path in ("/sample.csv", "/download", "/moved"):
        frame = read_source(UrlSource(url=server.url(path)), policy())
        assert len(frame) == 2436, path


def test_unknown_content_needs_a_declared_type(server: LocalServer) -> None:
    with pytest.raises(InputDataError, match="Cannot tell what .* holds.*set the source's content"):
        read_source(UrlSource(url=server.url("/blob")), policy())
    assert len(read_source(UrlSource(url=server.url("/blob"), content="csv"), policy())) == 2436


def test_html_page_is_refused(server: LocalServer) -> None:
    with pytest.raises(InputDataError, match="is an HTML page"):
        read_source(UrlSource(url=server.url("/page")), policy())


def test_404_is_final_and_names_the_status(server: LocalServer) -> None:
    with pytest.raises(InputDataError, match="answered HTTP 404.*not retried"):
        read_source(UrlSource(url=server.url("/missing.csv")), policy())


def test_500_and_timeouts_are_transient(server: LocalServer) -> None:
    with pytest.raises(TransientSourceError, match="HTTP 500"):
        read_source(UrlSource(url=server.url("/broken")), policy())
    with pytest.raises(TransientSourceError, match="Timed out"):
        read_source(UrlSource(url=server.url("/slow")), policy())


def test_download_limit(server: LocalServer) -> None:
    with pytest.raises(InputDataError, match="larger than the 1,000-byte download limit"):
        read_source(UrlSource(url=server.url("/huge")), policy(max_download_bytes=1000))


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:9/x.csv", "http://localhost/x.csv", "http://10.1.2.3/x.csv", "http://192.168.0.5/x.csv",
    "http://169.254.169.254/latest/meta-data/", "http://[::1]/x.csv", "http://[::ffff:127.0.0.1]/x.csv",
    "http://100.100.100.200/x.csv", "http://0.0.0.0/x.csv",
])
def test_internal_addresses_are_refused(url: str) -> None:
    with pytest.raises(InputDataError, match="internal address; such addresses are refused.*FORECAST_URL_ALLOWLIST"):
        check_address(url, policy(url_allowlist=()))


@pytest.mark.parametrize("url", ["ftp://example.com/x.csv", "file:///etc/passwd", "gopher://127.0.0.1/"])
def test_other_schemes_are_refused(url: str) -> None:
    with pytest.raises(InputDataError, match="only http and https"):
        check_address(url, policy())


def test_allow_list_and_public_addresses_pass() -> None:
    check_address("http://127.0.0.1:8080/x.csv", policy())
    check_address("http://8.8.8.8/x.csv", policy(url_allowlist=()))
    check_address("http://minio.internal/x.csv", policy(url_allowlist=("minio.internal",)))


def test_redirect_to_a_private_address_is_refused(server: LocalServer) -> None:
    with pytest.raises(InputDataError, match="resolves to 10.0.0.1"):
        read_source(UrlSource(url=server.url("/to-private")), policy())


def test_credentials_in_the_url_parameter_are_refused_with_the_fix() -> None:
    for url in ("https://alice:s3cr3t@example.com/x.csv", "https://example.com/x.csv?api_key=s3cr3t"):
        with pytest.raises(ValidationError, match="url_secret") as caught:
            UrlSource(url=url)
        assert "s3cr3t" not in str(caught.value), "the refusal must not echo the credential"
    with pytest.raises(ValidationError, match="exactly one of `url` or `url_secret`"):
        UrlSource(url="https://example.com/x.csv", url_secret="both")


def test_credentials_never_appear_in_errors(server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    url = server.url("/missing.csv").replace("http://", "http://alice:s3cr3t@") + "?token=t0k3n&page=2"
    monkeypatch.setenv("SALES_URL", url)
    source = UrlSource(url_secret="env:SALES_URL")
    with pytest.raises(InputDataError) as caught:
        read_source(source, policy())
    assert "s3cr3t" not in str(caught.value) and "t0k3n" not in str(caught.value)
    assert redact_url(url).endswith("/missing.csv?token=***&page=2") and "***@127.0.0.1" in redact_url(url)
    assert source.describe() == "url:secret:env:SALES_URL"
    with pytest.raises(InputDataError, match="SALES_URL is not set"):
        monkeypatch.delenv("SALES_URL")
        read_source(source, policy())


def test_headers_from_a_secret_go_to_their_host_only(server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    server.routes["/private.csv"] = Route(body=SAMPLE.read_bytes(), require=("Authorization", "Bearer t0k3n"))
    server.routes["/away"] = Route(302, b"", headers={"Location": server.url("/private.csv").replace(
        "127.0.0.1", "localhost")})
    monkeypatch.setenv("SALES_HEADERS", '{"Authorization": "Bearer t0k3n"}')
    assert len(read_source(UrlSource(url=server.url("/private.csv"), headers_secret="env:SALES_HEADERS"),
                           policy())) == 2436
    with pytest.raises(InputDataError, match="HTTP 401"):
        read_source(UrlSource(url=server.url("/private.csv")), policy())
    with pytest.raises(InputDataError, match="HTTP 401"):  # the redirect goes to another host name
        read_source(UrlSource(url=server.url("/away"), headers_secret="env:SALES_HEADERS"),
                    policy(url_allowlist=("127.0.0.1/32", "localhost")))
    assert server.seen["/private.csv"][-1].get("Authorization") is None
    monkeypatch.setenv("SALES_HEADERS", "Bearer t0k3n")
    with pytest.raises(InputDataError, match="JSON object of header names"):
        read_source(UrlSource(url=server.url("/private.csv"), headers_secret="env:SALES_HEADERS"), policy())
