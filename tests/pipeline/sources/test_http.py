"""URL sources against a real HTTP server on 127.0.0.1: formats, limits, retries, SSRF guard, redaction,
deadlines, content codings and bounded messages."""

from __future__ import annotations

import gzip
import io
import socket
import struct
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from pydantic import ValidationError

from pipeline.errors import InputDataError
from pipeline.sources import SourcePolicy, TransientSourceError, UrlSource, http, read_source, redact_url
from pipeline.sources.http import _Inflater, _same_origin, check_address
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
            "/trickle.csv": Route(body=csv[:60], trickle=0.1),  # 6 s in all, never 1 s without a byte
            "/trickled-head.csv": Route(body=csv[:60], trickle=0.05, trickle_headers=True),
            **{f"/hop{n}": Route(302, b"", headers={"Location": f"/hop{n + 1}"}, delay=0.3) for n in range(5)},
            "/hop5": Route(body=csv),
            "/loop": Route(302, b"", headers={"Location": "/loop"}),
            "/gzip.csv": Route(body=gzip.compress(csv), headers={"Content-Encoding": "gzip"}),
            "/x-gzip.csv": Route(body=gzip.compress(csv), headers={"Content-Encoding": "x-gzip"}),
            "/members.csv": Route(body=gzip.compress(csv[:1000]) + gzip.compress(csv[1000:]),
                                  headers={"Content-Encoding": "gzip"}),
            "/deflate.csv": Route(body=zlib.compress(csv), headers={"Content-Encoding": "deflate"}),
            "/raw-deflate.csv": Route(body=raw_deflate(csv), headers={"Content-Encoding": "deflate"}),
            "/identity.csv": Route(body=csv, headers={"Content-Encoding": "identity"}),
            "/brotli.csv": Route(body=csv, headers={"Content-Encoding": "br"}),
            # 1 GiB of zeros in about 2.6 kB: gzip of 1,024 gzip members of 1 MiB each.
            "/nested-bomb.csv": Route(body=gzip.compress(gzip.compress(bytes(1 << 20)) * 1024),
                                      headers={"Content-Encoding": "gzip, gzip"}),
            "/bomb.csv": Route(body=gzip_of_zeros(200), headers={"Content-Encoding": "gzip"}),
            "/not-gzip.csv": Route(body=b"unique_id,ds,y\n", headers={"Content-Encoding": "gzip"}),
            "/cut.csv": Route(body=gzip.compress(csv)[:-100], headers={"Content-Encoding": "gzip"}),
        })
        yield running


def raw_deflate(data: bytes) -> bytes:
    """Deflate without the zlib header, as some servers send for Content-Encoding: deflate."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


def gzip_of_zeros(megabytes: int) -> bytes:
    """One gzip member of ``megabytes`` MiB of zeros (about 1 kB each), built in a tenth of a second.

    After a full flush the compressor starts afresh, so every MiB compresses to the same bytes: one is
    compressed, the rest repeated, and the gzip frame written around them.
    """
    zeros = bytes(1 << 20)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    block = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(megabytes):
        crc = zlib.crc32(zeros, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    return header + block * megabytes + compressor.flush() + struct.pack("<II", crc, (megabytes << 20) & 0xFFFFFFFF)


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


def resolve_to(monkeypatch: pytest.MonkeyPatch, *addresses: str) -> list[str]:
    """Makes every name resolve to ``addresses``, in that order (there is no DNS here); returns the names asked."""
    asked: list[str] = []

    def getaddrinfo(host: str, port: int, *args: object, **kwargs: object) -> list[tuple]:
        asked.append(host)
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                for a in addresses]

    monkeypatch.setattr(http.socket, "getaddrinfo", getaddrinfo)
    return asked


@pytest.mark.parametrize("addresses", [("10.0.0.5", "192.168.1.1"), ("192.168.1.1", "10.0.0.5"),
                                       ("8.8.8.8", "192.168.1.1")])
def test_a_host_with_one_internal_address_among_others_is_refused(monkeypatch: pytest.MonkeyPatch,
                                                                  addresses: tuple[str, ...]) -> None:
    """Any address may be the one connected to: all must pass, not just the first allowed one."""
    resolve_to(monkeypatch, *addresses)
    with pytest.raises(InputDataError, match="resolves to 192.168.1.1"):
        check_address("http://data.example.com/x.csv", policy(url_allowlist=("10.0.0.0/8",)))


def test_a_host_whose_every_address_is_allowed_or_public_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = resolve_to(monkeypatch, "10.0.0.5", "8.8.8.8", "2001:4860:4860::8888")
    check_address("https://data.example.com/x.csv", policy(url_allowlist=("10.0.0.0/8",)))
    assert asked == [b"data.example.com"]  # the ASCII (IDNA) form


def test_allowed_host_names_match_whatever_their_case(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = resolve_to(monkeypatch, "10.9.9.9")
    check_address("http://MinIO.Internal:9000/x.csv", policy(url_allowlist=("minio.INTERNAL",)))
    assert asked == [], "an allow-listed host is trusted by name, not resolved"
    with pytest.raises(InputDataError, match="resolves to 10.9.9.9"):
        check_address("http://minio.internal.evil.example/x.csv", policy(url_allowlist=("minio.internal",)))


def test_ipv4_mapped_ipv6_addresses_are_judged_as_the_ipv4_address(monkeypatch: pytest.MonkeyPatch) -> None:
    resolve_to(monkeypatch, "::ffff:10.0.0.5")
    check_address("http://data.example.com/x.csv", policy(url_allowlist=("10.0.0.0/8",)))
    resolve_to(monkeypatch, "::ffff:192.168.0.1")
    with pytest.raises(InputDataError, match="resolves to 192.168.0.1,"):
        check_address("http://data.example.com/x.csv", policy(url_allowlist=("10.0.0.0/8",)))


def test_scoped_link_local_addresses_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    resolve_to(monkeypatch, "fe80::1%eth0")
    with pytest.raises(InputDataError, match="resolves to fe80::1,"):
        check_address("http://printer.local/x.csv", policy(url_allowlist=()))


def test_an_unresolvable_host_is_a_transient_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    def fails(*args: object, **kwargs: object) -> None:
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(http.socket, "getaddrinfo", fails)
    with pytest.raises(TransientSourceError, match="Cannot resolve host .data.example.com. .*Temporary failure"):
        check_address("http://data.example.com/x.csv", policy(url_allowlist=()))


def test_redirects_stop_after_five(server: LocalServer) -> None:
    before = len(server.seen.get("/loop", []))
    with pytest.raises(InputDataError, match=r"Too many redirects \(more than 5\)"):
        read_source(UrlSource(url=server.url("/loop")), policy())
    assert len(server.seen["/loop"]) - before == 6, "the first request and five redirects"


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


def assert_stops_in_time(started: float, budget: float) -> None:
    elapsed = time.monotonic() - started
    assert elapsed < budget, f"the download went on for {elapsed:.1f} s, past its deadline"


def test_total_deadline_stops_a_trickling_body(server: LocalServer) -> None:
    started = time.monotonic()
    with pytest.raises(TransientSourceError, match=r"took longer than the 1-second total limit.*"
                                                    r"FORECAST_URL_TOTAL_TIMEOUT.*fix the server") as caught:
        read_source(UrlSource(url=server.url("/trickle.csv")), policy(total_timeout=1))
    assert_stops_in_time(started, 1 + 1.5)  # the deadline, plus at most one read (read_timeout is 1 s)
    assert "/trickle.csv" in str(caught.value), "the message names the URL"


def test_total_deadline_stops_trickled_headers(server: LocalServer) -> None:
    # The headers alone take 5 s: no body chunk arrives to check the deadline against.
    started = time.monotonic()
    with pytest.raises(TransientSourceError, match="took longer than the 1-second total limit"):
        read_source(UrlSource(url=server.url("/trickled-head.csv")), policy(total_timeout=1))
    assert_stops_in_time(started, 1 + 1.5)


def test_total_deadline_covers_redirects(server: LocalServer) -> None:
    # Five hops of 0.3 s each: every answer is well within the read timeout, the whole is not.
    started = time.monotonic()
    with pytest.raises(TransientSourceError, match="took longer than the 1-second total limit"):
        read_source(UrlSource(url=server.url("/hop0")), policy(total_timeout=1))
    assert_stops_in_time(started, 1 + 1.5)
    assert len(read_source(UrlSource(url=server.url("/hop0")), policy(total_timeout=10))) == 2436


@pytest.mark.parametrize("path", ["/gzip.csv", "/x-gzip.csv", "/members.csv", "/deflate.csv", "/raw-deflate.csv",
                                  "/identity.csv"])
def test_gzip_and_deflate_bodies_are_decoded(server: LocalServer, path: str) -> None:
    assert len(read_source(UrlSource(url=server.url(path)), policy())) == 2436, path
    assert server.seen[path][-1].get("Accept-Encoding") == "gzip, deflate", "only the codings we decode are asked"


def test_a_compressed_body_is_limited_by_its_decoded_size(server: LocalServer) -> None:
    with pytest.raises(InputDataError, match="larger than the 1,000-byte download limit once decompressed"):
        read_source(UrlSource(url=server.url("/gzip.csv")), policy(max_download_bytes=1000))


def test_stacked_codings_are_refused_before_decoding(server: LocalServer) -> None:
    started = time.monotonic()
    with pytest.raises(InputDataError, match=r"several content codings stacked \('gzip, gzip'\).*one gzip or "
                                             "deflate coding"):
        read_source(UrlSource(url=server.url("/nested-bomb.csv")), policy(max_download_bytes=1 << 20))
    assert_stops_in_time(started, 3)


def test_unknown_codings_are_refused_by_name(server: LocalServer) -> None:
    with pytest.raises(InputDataError, match="content coding 'br', which is not supported"):
        read_source(UrlSource(url=server.url("/brotli.csv")), policy())


def test_gzip_bomb_stops_at_the_limit_in_bounded_memory(server: LocalServer) -> None:
    # 200 MiB of zeros in 200 kB: decoding a whole 64 kB network chunk at once would make about 64 MiB.
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(InputDataError, match="larger than the 1,048,576-byte download limit once decompressed"):
            read_source(UrlSource(url=server.url("/bomb.csv")), policy(max_download_bytes=1 << 20))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"decoding a bomb against a 1 MiB limit peaked at {peak / 2**20:.0f} MiB"
    assert_stops_in_time(started, 5)


def test_inflater_decodes_one_byte_at_a_time() -> None:
    data = SAMPLE.read_bytes()
    for coding, body in (("gzip", gzip.compress(data[:500]) + gzip.compress(data[500:])),
                         ("deflate", zlib.compress(data)), ("deflate", raw_deflate(data))):
        inflater = _Inflater(coding, "'test'")
        decoded = b"".join(piece for index in range(len(body)) for piece in inflater.decode(body[index:index + 1]))
        inflater.finish()
        assert decoded == data, coding
    inflater = _Inflater("gzip", "'test'")
    assert b"".join(inflater.decode(gzip.compress(data) + b"\n\n")) == data, "trailing bytes are ignored"
    inflater.finish()
    inflater = _Inflater("deflate", "'test'")
    list(inflater.decode(zlib.compress(data)[:-10]))
    with pytest.raises(InputDataError, match="'test' ends before the end of its deflate data"):
        inflater.finish()


def test_bad_compressed_bodies_name_the_url(server: LocalServer) -> None:
    with pytest.raises(InputDataError, match=r"not-gzip.csv' is sent as gzip \(Content-Encoding\) but is not valid "
                                             "gzip data"):
        read_source(UrlSource(url=server.url("/not-gzip.csv")), policy())
    with pytest.raises(InputDataError, match="cut.csv' ends before the end of its gzip data"):
        read_source(UrlSource(url=server.url("/cut.csv")), policy())


@pytest.mark.parametrize(("url", "problem"), [
    ("http://127.0.0.1:99999/x.csv", "port 99999 is out of range 1-65535"),
    ("http://127.0.0.1:0/x.csv", "port 0 is out of range 1-65535"),
    ("http://127.0.0.1:8o/x.csv", "Invalid port"),
    ("http://[::1/x.csv", "malformed"),
    ("http:///x.csv", "has no host"),
])
def test_malformed_urls_are_input_errors(url: str, problem: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InputDataError, match=problem) as caught:
        read_source(UrlSource(url=url), policy())
    assert f"'{url}'" in str(caught.value), "the message names the URL"
    monkeypatch.setenv("SALES_URL", url.replace("http://", "http://alice:s3cr3t@"))
    with pytest.raises(InputDataError, match=problem) as caught:
        read_source(UrlSource(url_secret="env:SALES_URL"), policy())
    assert "s3cr3t" not in str(caught.value) and "***@" in str(caught.value), "the URL is shown redacted"


def test_scheme_is_case_insensitive(server: LocalServer) -> None:
    url = server.url("/sample.csv").replace("http://", "HTTP://")
    assert len(read_source(UrlSource(url=url), policy())) == 2436


@pytest.mark.parametrize(("url", "problem"), [
    ("ftp://example.com/x.csv", "scheme 'ftp' is not supported: use http:// or https://"),
    ("FTP://example.com/x.csv", "scheme 'ftp' is not supported: use http:// or https://"),
    ("gopher://127.0.0.1/", "scheme 'gopher' is not supported"),
    ("file:///etc/passwd", "scheme 'file' is not supported: for a local file give its path"),
    ("example.com/x.csv", "not an http:// or https:// address"),
])
def test_other_schemes_are_refused_when_the_source_is_built(url: str, problem: str) -> None:
    with pytest.raises(ValidationError, match=problem) as caught:
        UrlSource(url=url)
    assert "url" in str(caught.value).splitlines()[1], "the error names the field"


@pytest.mark.parametrize(("value", "problem"), [
    ("ftp://alice:s3cr3t@example.com/x.csv", "scheme 'ftp' is not supported: use http:// or https://"),
    ("file:///srv/s3cr3t.csv", "scheme 'file' is not supported: for a local file give its path"),
    ("s3cr3t-token", "it is not an http:// or https:// address"),
])
def test_a_url_secret_with_another_scheme_is_refused(value: str, problem: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALES_URL", value)
    with pytest.raises(InputDataError, match=f"Secret 'env:SALES_URL' does not hold a usable URL: {problem}") as caught:
        read_source(UrlSource(url_secret="env:SALES_URL"), policy())
    assert "s3cr3t" not in str(caught.value), "no more of the secret than its scheme is shown"


def test_messages_quoting_input_are_bounded(server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    long_url = "http://127.0.0.1/" + "a" * 1_000_000 + ".csv"
    with pytest.raises(InputDataError) as caught:
        read_source(UrlSource(url=long_url), policy())
    assert len(str(caught.value)) < 1000, "a 1 MB URL makes a short message"
    with pytest.raises(ValidationError, match="carries credentials") as refused:
        UrlSource(url=long_url + "?token=t0k3n")
    assert len(str(refused.value)) < 2000 and "t0k3n" not in str(refused.value)
    server.routes["/odd-type"] = Route(body=b"x", content_type="application/" + "x" * 10_000)
    server.routes["/odd-coding"] = Route(body=b"x", headers={"Content-Encoding": "z" * 10_000})
    server.routes["/odd-codings"] = Route(body=b"x", headers={"Content-Encoding": ", ".join(["gzip"] * 2000)})
    server.routes["/odd-redirect"] = Route(302, b"", headers={"Location": "http://[" + "b" * 10_000})
    for path, problem in (("/odd-type", "Cannot tell what"), ("/odd-coding", "not supported"),
                          ("/odd-codings", "stacked"), ("/odd-redirect", "malformed")):
        with pytest.raises(InputDataError, match=problem) as caught:
            read_source(UrlSource(url=server.url(path)), policy())
        assert len(str(caught.value)) < 1000, f"{path}: the server's header is quoted cut short"


def test_redaction_leaves_urls_without_credentials_as_they_are() -> None:
    for url in ("https://example.com/data.csv?from=2024-01-01T00:00&q=a%20b+c&empty=#top",
                "https://example.com/x.csv?keyword=", "https://example.com/a@b/x.csv"):
        assert redact_url(url) == url, url
        assert UrlSource(url=url).url == url, "a harmless URL is not taken for one with credentials"
    assert redact_url("https://u:p@ss@example.com/x?api_key=k&page=2#token=t") == \
        "https://***@example.com/x?api_key=***&page=2#token=***"


def test_credentials_stay_with_their_origin() -> None:
    assert _same_origin("https://example.com/a", "https://EXAMPLE.com:443/b")
    assert _same_origin("http://example.com/a", "https://example.com/b"), "an upgrade to https keeps them"
    assert not _same_origin("https://example.com/a", "http://example.com/b"), "never sent in clear text"
    assert not _same_origin("https://example.com/a", "https://example.com:8443/b")
    assert not _same_origin("https://example.com/a", "https://example.org/a")


@pytest.mark.parametrize(("content_type", "path", "body", "kind"), [
    ("application/octet-stream", "/x", b"PAR1....", "parquet"),
    ("application/octet-stream", "/data.parquet", b"", "parquet"),
    ("application/octet-stream", "/DATA.PARQUET", b"", "parquet"),
    ("application/octet-stream", "/data.pq", b"", "parquet"),
    ("application/octet-stream", "/Data.PQ", b"", "parquet"),
    ("text/csv", "/x", b"", "csv"),
    ("Text/CSV; charset=utf-8", "/x", b"", "csv"),
    ("application/csv;header=present", "/x", b"", "csv"),
    ("text/plain", "/x", b"", "csv"),
    ("", "/export.csv", b"", "csv"),
    ("", "/EXPORT.CSV", b"", "csv"),
    ("text/html; charset=utf-8", "/login", b"<html>", "csv"),
])
def test_what_a_download_holds_is_told_by_its_bytes_type_or_name(content_type: str, path: str, body: bytes,
                                                                 kind: str) -> None:
    assert http._kind(UrlSource(url="https://example.com/x"), body, content_type, "https://example.com" + path) == kind


def test_a_download_of_unknown_content_names_its_type_and_the_fix() -> None:
    source = UrlSource(url="https://example.com/x")
    for content_type, shown in (("", "'missing'"), ("application/json; q=1", "'application/json'")):
        with pytest.raises(InputDataError) as caught:
            http._kind(source, b"{}", content_type, "https://example.com/blob")
        assert str(caught.value) == (f"Cannot tell what 'https://example.com/blob' holds (Content-Type {shown}). "
                                     "Fix: set the source's content to 'csv' or 'parquet'.")
    long_type = "application/" + "x" * 200
    with pytest.raises(InputDataError) as caught:
        http._kind(source, b"{}", long_type, "https://example.com/blob")
    assert f"(Content-Type {http.shorten(long_type, 100)})" in str(caught.value)
    assert http._kind(UrlSource(url="https://example.com/x", content="parquet"), b"a,b", "text/csv",
                      "https://example.com/x.csv") == "parquet", "a declared content wins"


@pytest.mark.parametrize(("header", "length"), [
    ("1234", 1234), (" 56 ", 56), ("", 0), ("abc", 0), ("-5", 0), ("9" * 5000, int("9" * 20)),
])
def test_a_declared_length_is_read_bounded(header: str, length: int) -> None:
    import httpx

    response = httpx.Response(200, headers={"Content-Length": header} if header else {})
    assert http._declared_length(response) == length


def test_the_download_limit_is_the_largest_size_allowed(server: LocalServer) -> None:
    size = len(SAMPLE.read_bytes())
    assert len(read_source(UrlSource(url=server.url("/sample.csv")), policy(max_download_bytes=size))) == 2436
    with pytest.raises(InputDataError) as caught:
        read_source(UrlSource(url=server.url("/sample.csv")), policy(max_download_bytes=size - 1))
    assert str(caught.value) == (f"'{server.url('/sample.csv')}' is larger than the {size - 1:,}-byte download "
                                 "limit. Fix: raise FORECAST_URL_MAX_BYTES, or split the data.")
    assert len(read_source(UrlSource(url=server.url("/gzip.csv")), policy(max_download_bytes=size))) == 2436
    with pytest.raises(InputDataError) as caught:
        read_source(UrlSource(url=server.url("/gzip.csv")), policy(max_download_bytes=size - 1))
    assert str(caught.value) == (f"'{server.url('/gzip.csv')}' is larger than the {size - 1:,}-byte download "
                                 "limit once decompressed (gzip). Fix: raise FORECAST_URL_MAX_BYTES, or split the "
                                 "data.")


def test_a_declared_length_over_the_limit_is_refused_before_the_body(server: LocalServer) -> None:
    """The server promises a terabyte and sends a few bytes: refused on the promise, not read."""
    server.routes["/promise.csv"] = Route(body=b"unique_id,ds,y\n", headers={"Content-Length": str(1 << 40)})
    with pytest.raises(InputDataError, match="is larger than the 1,000-byte download limit. Fix"):
        read_source(UrlSource(url=server.url("/promise.csv")), policy(max_download_bytes=1000))


def test_a_malformed_redirect_is_an_input_error_naming_the_fix(server: LocalServer) -> None:
    """Refused by urljoin here, or by httpx before that: not retried either way, as retrying cannot help."""
    server.routes["/bad-redirect"] = Route(302, b"", headers={"Location": "http://[::1"})
    server.routes["/bad-redirect-2"] = Route(302, b"", headers={"Location": "http://[" + "b" * 20})
    with pytest.raises(InputDataError) as caught:
        read_source(UrlSource(url=server.url("/bad-redirect")), policy())
    assert str(caught.value) == (f"'{server.url('/bad-redirect')}' redirects to a malformed address (\"Invalid "
                                 "URL in location header: Invalid port: ':1'.\"). Fix the server's redirect, or use "
                                 "the final address.")
    with pytest.raises(InputDataError) as caught:
        read_source(UrlSource(url=server.url("/bad-redirect-2")), policy())
    assert str(caught.value) == (f"'{server.url('/bad-redirect-2')}' redirects to a malformed address "
                                 f"'http://[{'b' * 20}' ('Invalid IPv6 URL'). Fix the server's redirect, or use the "
                                 "final address.")


def test_a_query_value_holding_an_equals_sign_is_masked_whole() -> None:
    assert redact_url("https://h/x?token=ab=cd&page=2") == "https://h/x?token=***&page=2"


def test_descriptions_and_name_hints() -> None:
    assert UrlSource(url="https://example.com/a/sales.csv").describe() == "url:https://example.com/a/sales.csv"
    assert UrlSource(url_secret="env:SALES_URL").describe() == "url:secret:env:SALES_URL"
    assert UrlSource(url="https://example.com/a/sales.csv?x=1").name_hint() == "sales"
    assert UrlSource(url_secret="env:SALES_URL").name_hint() == "SALES_URL"
    assert UrlSource.model_construct(url="http://[::1/x.csv").name_hint() == ""


@pytest.mark.parametrize(("coding", "body"), [("deflate", b"\x78"), ("gzip", gzip.compress(b"a,b\n1,2\n", mtime=0)[:5]),
                                              ("deflate", zlib.compress(b"a,b\n1,2\n")[:-3])],
                         ids=["deflate-header-byte", "gzip-header-start", "deflate-cut"])  # bytes make unstable ids
def test_a_body_cut_inside_its_compressed_data_is_refused(coding: str, body: bytes) -> None:
    inflater = _Inflater(coding, "'u'")
    b"".join(inflater.decode(body))
    with pytest.raises(InputDataError) as caught:
        inflater.finish()
    assert str(caught.value) == (f"'u' ends before the end of its {coding} data: the file on the server is cut "
                                 "short. Fix the file on the server.")


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
def test_bytes_after_the_compressed_data_are_ignored(coding: str) -> None:
    data = b"a,b\n" + b"1,2\n" * 50_000  # more than one 64 KiB piece
    packed = gzip.compress(data) if coding == "gzip" else zlib.compress(data)
    inflater = _Inflater(coding, "'u'")
    chunks = (packed[:10], packed[10:], b"trailing junk")
    decoded = b"".join(piece for chunk in chunks for piece in inflater.decode(chunk))
    inflater.finish()
    assert decoded == data
    assert all(len(piece) <= 64 * 1024 for piece in _Inflater(coding, "'u'").decode(packed))


def test_an_upgrade_to_https_on_the_default_ports_written_out_keeps_the_origin() -> None:
    assert _same_origin("http://example.com:80/a", "https://example.com:443/b")
    assert not _same_origin("http://example.com:8080/a", "https://example.com:443/b")


@pytest.mark.parametrize(("status", "error", "message"), [
    (400, InputDataError, "'u' answered HTTP 400. Fix the URL or its access rights; client errors are not retried."),
    (401, InputDataError, "'u' answered HTTP 401. Fix the URL or its access rights; client errors are not retried."),
    (499, InputDataError, "'u' answered HTTP 499. Fix the URL or its access rights; client errors are not retried."),
    (500, TransientSourceError, "'u' answered HTTP 500 (server error)."),
    (503, TransientSourceError, "'u' answered HTTP 503 (server error)."),
])
def test_http_errors_are_told_apart_by_who_can_fix_them(status: int, error: type, message: str) -> None:
    with pytest.raises(error) as caught:
        http._check_status(status, "u")
    assert type(caught.value) is error and str(caught.value) == message
    for fine in (200, 204, 304, 399):
        http._check_status(fine, "u")


def test_client_failures_are_named_and_sorted_into_input_errors_and_transient_ones() -> None:
    import httpx

    alive = http._Deadline(60)
    long_reason = "bad " * 100
    cases = [
        (httpx.InvalidURL(long_reason), InputDataError,
         f"URL 'u' cannot be requested ({http.shorten(long_reason, 100)}). Fix the address."),
        (httpx.ConnectTimeout("slow"), TransientSourceError, "Timed out fetching 'u' (ConnectTimeout)."),
        (httpx.ConnectError("refused"), TransientSourceError, "Cannot connect to 'u' (ConnectError)."),
        (httpx.DecodingError("odd"), TransientSourceError, "Fetching 'u' failed (DecodingError)."),
    ]
    for exc, kind, message in cases:
        failure = http._client_failure(exc, "u", alive)
        assert type(failure) is kind and str(failure) == message, type(exc).__name__
    late = http._client_failure(httpx.ReadError("closed"), "u", http._Deadline(0))
    assert type(late) is TransientSourceError and "took longer than the 0-second total limit" in str(late)


def test_the_deadline_names_the_download_and_the_fix() -> None:
    with pytest.raises(TransientSourceError) as caught:
        http._Deadline(0).check("https://example.com/x.csv?token=s3cr3t")
    assert str(caught.value) == (
        "Downloading 'https://example.com/x.csv?token=***' took longer than the 0-second total limit. Fix: raise "
        "FORECAST_URL_TOTAL_TIMEOUT if the file is large and the link slow, or fix the server, which sends the "
        "data too slowly.")
    assert not http._Deadline(0.5).expired() and http._Deadline(-0.001).expired()
    http._Deadline(60).check("u")


def test_each_wait_is_bounded_by_what_is_left_of_the_deadline() -> None:
    limits = policy(read_timeout=7.0, connect_timeout=3.0)
    roomy = http._Deadline(60).timeout(limits)
    assert (roomy.read, roomy.connect) == (7.0, 3.0)
    tight = http._Deadline(0.5).timeout(limits)
    assert 0.4 < tight.read <= 0.5 and 0.4 < tight.connect <= 0.5
    spent = http._Deadline(-5).timeout(limits)
    assert (spent.read, spent.connect) == (0.001, 0.001), "never 0 (no timeout) or negative"


def test_the_watchdog_fires_when_the_deadline_passes_and_never_keeps_the_process_alive() -> None:
    watchdog = http._Watchdog(http._Deadline(0.25))
    assert 0.2 < watchdog._timer.interval <= 0.25 and watchdog._timer.daemon is True
    assert http._Watchdog(http._Deadline(-3))._timer.interval == 0.0


def test_the_watchdog_shuts_the_sockets_it_was_told_of_even_after_tls(monkeypatch: pytest.MonkeyPatch) -> None:
    class Stream:
        def __init__(self, sock: socket.socket) -> None:
            self.sock = sock

        def get_extra_info(self, name: str) -> socket.socket | None:
            return self.sock if name == "socket" else None

    watchdog = http._Watchdog(http._Deadline(60))
    live, peer = socket.socketpair()
    closed, _ = socket.socketpair()
    closed.close()
    watchdog.trace("connection.start_tls.complete", {"return_value": Stream(live)})
    watchdog.trace("connection.connect_tcp.complete", {"return_value": Stream(closed)})
    watchdog.trace("http11.send_request_headers.complete", {"return_value": Stream(peer)})
    assert watchdog._sockets == [live, closed]
    watchdog._fire()  # the closed one raises OSError inside, which must not escape
    assert live.recv(1) == b"", "a shut-down socket reads end-of-stream at once"
    live.close()
    peer.close()


def test_client_log_records_are_redacted_and_never_dropped() -> None:
    import logging

    redact = http._RedactUrls()
    record = logging.LogRecord("httpx", logging.INFO, __file__, 1, 'HTTP Request: GET %s "%s"',
                               ("https://h/x.csv?token=s3cr3t&page=2", "HTTP/1.1 200 OK"), None)
    assert redact.filter(record) is True
    assert record.getMessage() == 'HTTP Request: GET https://h/x.csv?token=***&page=2 "HTTP/1.1 200 OK"'
    plain = logging.LogRecord("httpx", logging.INFO, __file__, 1, "GET %s", ("https://h/x.csv",), None)
    assert redact.filter(plain) is True and (plain.msg, plain.args) == ("GET %s", ("https://h/x.csv",))


def test_only_known_headers_are_sent(server: LocalServer) -> None:
    read_source(UrlSource(url=server.url("/sample.csv")), policy())
    sent = {name.lower() for name in server.seen["/sample.csv"][-1]}
    assert sent <= {"host", "accept", "accept-encoding", "connection", "user-agent"}, sent
    assert server.seen["/sample.csv"][-1]["Accept-Encoding"] == "gzip, deflate"


def test_a_body_of_many_chunks_is_joined_as_sent(server: LocalServer) -> None:
    rows = [f"s{i % 7},{pd.Timestamp('2000-01-01') + pd.Timedelta(days=i // 7):%Y-%m-%d},{i}" for i in range(30_000)]
    body = ("unique_id,ds,y\n" + "\n".join(rows) + "\n").encode()
    server.routes["/big.csv"] = Route(body=body)
    server.routes["/big-gzip.csv"] = Route(body=gzip.compress(body), headers={"Content-Encoding": "gzip"})
    for path in ("/big.csv", "/big-gzip.csv"):
        frame = read_source(UrlSource(url=server.url(path)), policy())
        assert len(frame) == 30_000 and frame["y"].sum() == sum(range(30_000)), path


@pytest.mark.parametrize(("header", "message"), [
    ("gzip, br", "is sent with several content codings stacked ('gzip, br'); one gzip or deflate coding is "
                 "accepted, no more (each layer can multiply the size a thousandfold). Fix: have the server compress "
                 "the file once, or not at all."),
    ("zstd", "is sent with content coding 'zstd', which is not supported (only gzip and deflate are, and they are "
             "all this client asks for). Fix: have the server send the file uncompressed, or compressed with gzip."),
])
def test_unsupported_codings_name_the_fix(header: str, message: str) -> None:
    import httpx

    with pytest.raises(InputDataError) as caught:
        http._inflater_for(httpx.Response(200, headers={"Content-Encoding": header}), "u")
    assert str(caught.value) == "'u' " + message


def test_empty_and_identity_codings_mean_no_decoding_and_long_names_are_cut() -> None:
    import httpx

    for header in ("identity", "identity, ", " , IDENTITY"):
        assert http._inflater_for(httpx.Response(200, headers={"Content-Encoding": header}), "u") is None, header
    long_coding = "x" * 100
    with pytest.raises(InputDataError) as caught:
        http._inflater_for(httpx.Response(200, headers={"Content-Encoding": long_coding}), "u")
    assert f"content coding {http.shorten(long_coding, 40)}, which" in str(caught.value)


def test_headers_from_a_secret_block_are_read_through_the_reader() -> None:
    blocks = {"api-headers": '{"Authorization": "Bearer t0k3n"}'}
    source = UrlSource(url="https://example.com/x.csv", headers_secret="api-headers")
    assert source.resolved_headers(blocks.__getitem__) == {"Authorization": "Bearer t0k3n"}
    assert UrlSource(url="https://example.com/x.csv").resolved_headers(blocks.__getitem__) == {}


def test_proxy_settings_of_the_environment_are_not_followed(server: LocalServer,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The address guard checks the host it resolves; a proxy from the environment would fetch another."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # the discard port: nothing listens there
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert len(read_source(UrlSource(url=server.url("/sample.csv")), policy())) == 2436


def test_a_download_without_a_content_type_is_told_by_its_name(server: LocalServer) -> None:
    csv = SAMPLE.read_bytes()
    server.routes["/untyped.csv"] = Route(body=csv, content_type=None)
    server.routes["/untyped"] = Route(body=csv, content_type=None)
    assert len(read_source(UrlSource(url=server.url("/untyped.csv")), policy())) == 2436
    with pytest.raises(InputDataError, match=r"holds \(Content-Type 'missing'\)\. Fix: set the source's content"):
        read_source(UrlSource(url=server.url("/untyped")), policy())


def test_a_location_header_on_a_success_is_not_followed(server: LocalServer) -> None:
    server.routes["/here.csv"] = Route(body=SAMPLE.read_bytes(), headers={"Location": "/page"})
    assert len(read_source(UrlSource(url=server.url("/here.csv")), policy())) == 2436


def test_the_deadline_between_redirects_names_the_address_reached(server: LocalServer) -> None:
    with pytest.raises(TransientSourceError, match=r"^Downloading 'http://127\.0\.0\.1:\d+/hop\d' took longer"):
        read_source(UrlSource(url=server.url("/hop0")), policy(total_timeout=0.5))


@pytest.mark.parametrize(("port", "ok"), [(1, True), (65535, True), (0, False), (65536, False)])
def test_ports_from_1_to_65535_are_valid(port: int, ok: bool) -> None:
    url = f"http://8.8.8.8:{port}/x.csv"
    if ok:
        check_address(url, policy(url_allowlist=()))
        return
    with pytest.raises(InputDataError, match=f"port {port} is out of range 1-65535"):
        check_address(url, policy(url_allowlist=()))


def test_a_malformed_url_is_named_with_the_reason_cut_short() -> None:
    import httpx

    url = "http://[" + "b" * 300 + "]/x.csv"
    with pytest.raises(httpx.InvalidURL) as reason:
        httpx.URL(url)
    with pytest.raises(InputDataError) as caught:
        check_address(url, policy())
    assert str(caught.value) == f"URL {http._shown(url)} is malformed ({http.shorten(str(reason.value), 100)}). " \
                                "Fix the address."


def test_a_url_and_its_headers_can_come_from_secret_blocks(server: LocalServer) -> None:
    server.routes["/private.csv"] = Route(body=SAMPLE.read_bytes(), require=("Authorization", "Bearer t0k3n"))
    blocks = {"sales-url": server.url("/private.csv"), "sales-headers": '{"Authorization": "Bearer t0k3n"}'}
    source = UrlSource(url_secret="sales-url", headers_secret="sales-headers")
    assert len(read_source(source, policy(secret_blocks=blocks.__getitem__))) == 2436


def test_ids_stay_text_and_parse_errors_name_the_address(server: LocalServer) -> None:
    server.routes["/zeros.csv"] = Route(body=b"unique_id,ds,y\n007,2024-01-01,1\n007,2024-01-02,2\n7,2024-01-01,3\n")
    frame = read_source(UrlSource(url=server.url("/zeros.csv")), policy())
    assert sorted(set(frame["unique_id"])) == ["007", "7"]
    server.routes["/ragged.csv"] = Route(body=b"unique_id,ds,y\n1,2024-01-01\n")
    with pytest.raises(InputDataError, match=r"^'http://127\.0\.0\.1:\d+/ragged\.csv': line 2 has 2 fields"):
        read_source(UrlSource(url=server.url("/ragged.csv")), policy())


def test_address_guard_messages_in_full(monkeypatch: pytest.MonkeyPatch) -> None:
    cases = [
        ("ftp://example.com/x.csv",
         "URL 'ftp://example.com/x.csv' uses scheme 'ftp'; only http and https are allowed."),
        ("http://example.com:0/x.csv",
         "URL 'http://example.com:0/x.csv' is malformed: port 0 is out of range 1-65535. Fix the address."),
    ]
    for url, message in cases:
        with pytest.raises(InputDataError) as caught:
            check_address(url, policy())
        assert str(caught.value) == message
    scheme = "s" * 50
    with pytest.raises(InputDataError) as caught:
        check_address(f"{scheme}://example.com/x", policy())
    assert f"uses scheme {http.shorten(scheme, 32)}; only" in str(caught.value)
    resolve_to(monkeypatch, "10.1.2.3")
    with pytest.raises(InputDataError) as caught:
        check_address("https://data.example.com/x.csv", policy(url_allowlist=()))
    assert str(caught.value) == (
        "URL 'https://data.example.com/x.csv' resolves to 10.1.2.3, a loopback, private, link-local or otherwise "
        "internal address; such addresses are refused. Fix: if this host is meant to be reachable, add it (or its "
        "network) to FORECAST_URL_ALLOWLIST.")


@pytest.mark.parametrize(("url", "problem"), [
    ("https://example.com/x.csv", None),
    ("HTTP://example.com/x.csv", None),
    ("file:///srv/x.csv", "scheme 'file' is not supported: for a local file give its path (a file source)"),
    ("FTP://example.com/x.csv", "scheme 'ftp' is not supported: use http:// or https://"),
    ("example.com/x.csv", "it is not an http:// or https:// address"),
    ("s" * 40 + "://example.com/x.csv", "it is not an http:// or https:// address"),  # no scheme is that long
])
def test_scheme_problems_are_named_without_quoting_more_than_the_scheme(url: str, problem: str | None) -> None:
    assert http._scheme_problem(url) == problem


def test_a_body_read_past_the_deadline_names_the_download() -> None:
    import httpx

    with pytest.raises(TransientSourceError, match=r"^Downloading 'http://u/x\.csv' took longer than the 0-second"):
        http._read_body(httpx.Response(200, stream=httpx.ByteStream(b"a,b\n1,2\n")), "http://u/x.csv", policy(),
                        http._Deadline(0))


def test_only_a_malformed_location_makes_a_protocol_error_an_input_error(server: LocalServer) -> None:
    import httpx

    failure = http._client_failure(httpx.RemoteProtocolError("peer closed connection"), "u", http._Deadline(60))
    assert type(failure) is TransientSourceError and str(failure) == "Cannot connect to 'u' (RemoteProtocolError)."
    location = "http://[::1" + "x" * 300  # httpx refuses it, and quotes all of it
    server.routes["/long-bad-redirect"] = Route(302, b"", headers={"Location": location})
    with pytest.raises(httpx.InvalidURL) as reason:
        httpx.URL(location)
    with pytest.raises(InputDataError) as caught:
        read_source(UrlSource(url=server.url("/long-bad-redirect")), policy())
    expected = http.shorten(f"Invalid URL in location header: {reason.value}.", 100)
    assert str(caught.value) == (f"'{server.url('/long-bad-redirect')}' redirects to a malformed address ({expected}). "
                                 "Fix the server's redirect, or use the final address.")


@pytest.mark.parametrize(("url", "redacted"), [
    ("https://h/x?a=1?token=s3cr3t", "https://h/x?a=1?token=***"),  # a second "?" starts no new URL part
    ("https://h/x?a=1;api_key=s3cr3t&b=2", "https://h/x?a=1;api_key=***&b=2"),
    ("https://h/x?token=a#b#token=c", "https://h/x?token=***#b#token=***"),
    ("https://h/x?page=2&&token=", "https://h/x?page=2&&token="),  # an empty value hides nothing
])
def test_secrets_are_masked_whatever_separates_the_pairs(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted


def test_a_spent_deadline_stops_before_the_first_request(server: LocalServer) -> None:
    before = len(server.seen.get("/sample.csv", []))
    with pytest.raises(TransientSourceError, match=r"^Downloading 'http://127\.0\.0\.1:\d+/sample\.csv' took longer"):
        read_source(UrlSource(url=server.url("/sample.csv")), policy(total_timeout=0))
    assert len(server.seen.get("/sample.csv", [])) == before, "no request is sent once the deadline has passed"
