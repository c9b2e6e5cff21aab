"""CSV or Parquet over HTTP(S), with timeouts, a size limit and a guard against request forgery.

Server-side request forgery: a flow run triggered through the API must not make the worker fetch
internal services. Every host (and every redirect target) is resolved first, and an address that is not
globally routable (loopback, private, link-local, cloud metadata, shared, reserved) is refused unless the
deployment allow-lists it. The check happens before connecting; a DNS answer that changes between the
check and the connection (DNS rebinding) is not covered: keep internal names out of public DNS.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import re
import socket
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit

import httpx
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tasks.canonical import ColumnMapping, FileKind, Layout, parse_bytes
from tasks.errors import InputDataError
from tasks.sources.policy import SourcePolicy
from tasks.sources.secrets import resolve_headers, resolve_secret

__all__ = ["TransientSourceError", "UrlSource", "check_address", "read_url", "redact_url"]

_SECRET_KEYS = ("token", "key", "secret", "password", "passwd", "signature", "sig", "auth", "credential")
_MAX_REDIRECTS = 5
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/@?#]*@")
_URL_IN_TEXT = re.compile(r"https?://[^\s\"'<>]+")


class TransientSourceError(RuntimeError):
    """A failure worth retrying: a timeout, a refused connection, a 5xx answer."""


class UrlSource(BaseModel):
    """A CSV or Parquet file served over HTTP(S). Credentials are never part of it: they are named, and
    resolved on the worker (``tasks/sources/secrets.py``)."""

    # hide_input_in_errors: a refused URL with a password in it must not be echoed into logs and states.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    kind: Literal["url"] = "url"
    url: str | None = Field(None, pattern=r"^[A-Za-z][A-Za-z0-9+.-]*://",
                            description="http:// or https:// address without credentials (no user:password@, "
                                        "no token in the query): parameters are stored and shown in Prefect.")
    url_secret: str | None = Field(None, min_length=1, description=(
        "Instead of url: the name of a Prefect Secret block (or env:VARIABLE) holding the whole address, for "
        "addresses that carry a token (pre-signed links, ?api_key=...)."))
    headers_secret: str | None = Field(None, min_length=1, description=(
        "Name of a Prefect Secret block (or env:VARIABLE) holding a JSON object of HTTP headers to send, e.g. "
        '{"Authorization": "Bearer <token>"}.'))
    content: Literal["auto", "csv", "parquet"] = Field(
        "auto", description="File type; auto decides from the content, the Content-Type and the URL's extension.")
    format: Layout = Field("long", description="long or wide, as for files.")
    columns: ColumnMapping = Field(default_factory=ColumnMapping, description="Input column names.")

    @model_validator(mode="after")
    def _columns_fit_layout(self) -> UrlSource:
        self.columns.check_for(self.format)
        return self

    @model_validator(mode="after")
    def _one_address_without_credentials(self) -> UrlSource:
        if (self.url is None) == (self.url_secret is None):
            raise ValueError("give exactly one of `url` or `url_secret`")
        if self.url is not None and redact_url(self.url) != self.url:
            raise ValueError(
                f"url {redact_url(self.url)} carries credentials (user:password@ or a token-like query value); "
                "parameters are stored in the Prefect database and shown in the UI. Fix: put the whole URL in a "
                "Prefect Secret block and pass its name as url_secret, or send the credential as a header "
                "through headers_secret.")
        return self

    def describe(self) -> str:
        """A loggable description: the address, or the name of the secret holding it."""
        return f"url:{self.url}" if self.url else f"url:secret:{self.url_secret}"

    def resolved_url(self) -> str:
        """The address to fetch (reads the secret if the address is one; never log the result unredacted)."""
        if self.url is not None:
            return self.url
        url = str(resolve_secret(str(self.url_secret)))
        if not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", url):
            raise InputDataError(f"Secret {self.url_secret!r} does not hold a URL (it must start with https://).")
        return url

    def resolved_headers(self) -> dict[str, str]:
        """The headers to send (read from ``headers_secret``; none without it)."""
        return resolve_headers(self.headers_secret) if self.headers_secret else {}

    def name_hint(self) -> str:
        """The file name part of the address (or the secret's name), for naming the job."""
        return Path(urlsplit(self.url).path).stem if self.url else str(self.url_secret).removeprefix("env:")


def redact_url(url: str) -> str:
    """The URL with ``user:password@`` and secret-looking query values replaced by ``***``.

    Works on any scheme (``postgresql://u:p@h/db``, ``sqlite:////abs/path``) and changes nothing else.
    """
    url = _USERINFO.sub(r"\1***@", url)
    base, question, query = url.partition("?")
    if not question:
        return url
    query = query.split("#", 1)[0]
    masked = urlencode([(k, "***" if any(s in k.lower() for s in _SECRET_KEYS) else v)
                        for k, v in parse_qsl(query, keep_blank_values=True)], safe="*")
    return f"{base}?{masked}"


class _RedactUrls(logging.Filter):
    """Masks credentials in URLs that HTTP client libraries write into their log records."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _URL_IN_TEXT.sub(lambda match: redact_url(match.group(0)), message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


@functools.cache
def _redact_client_logs() -> None:
    """httpx logs every request's full URL at INFO; credentials in it must not reach any handler."""
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).addFilter(_RedactUrls())


def check_address(url: str, policy: SourcePolicy) -> None:
    """Refuses non-HTTP schemes and hosts that resolve to non-public addresses not on the allow-list."""
    parts = urlsplit(url)
    shown = redact_url(url)
    if parts.scheme not in ("http", "https"):
        raise InputDataError(f"URL {shown} uses scheme {parts.scheme!r}; only http and https are allowed.")
    host = parts.hostname
    if not host:
        raise InputDataError(f"URL {shown} has no host.")
    if host.lower() in policy.allowed_hosts():
        return
    try:
        infos = socket.getaddrinfo(host, parts.port or (443 if parts.scheme == "https" else 80),
                                   type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise TransientSourceError(f"Cannot resolve host {host!r} of {shown}: {exc.strerror}.") from exc
    allowed = policy.allowed_networks()
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        mapped = getattr(address, "ipv4_mapped", None) or address
        if any(mapped in net for net in allowed):
            continue
        if not mapped.is_global:
            raise InputDataError(
                f"URL {shown} resolves to {mapped}, a loopback, private, link-local or otherwise internal "
                "address; such addresses are refused. Fix: if this host is meant to be reachable, add it "
                "(or its network) to FORECAST_URL_ALLOWLIST."
            )


def read_url(source: UrlSource, policy: SourcePolicy) -> pd.DataFrame:
    """Downloads the source (bounded in time and size) and parses it as CSV or Parquet."""
    url = source.resolved_url()
    body, content_type, final_url = _download(url, policy, source.resolved_headers())
    return parse_bytes(body, _kind(source, body, content_type, final_url), redact_url(url),
                       source.columns.text_columns(source.format))


def _download(url: str, policy: SourcePolicy, headers: dict[str, str]) -> tuple[bytes, str, str]:
    _redact_client_logs()
    timeout = httpx.Timeout(policy.read_timeout, connect=policy.connect_timeout)
    origin = urlsplit(url).netloc
    with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
        for _ in range(_MAX_REDIRECTS + 1):
            check_address(url, policy)
            # Credentials go to the host they were meant for only, never along a redirect to another host.
            sent = headers if urlsplit(url).netloc == origin else {}
            try:
                with client.stream("GET", url, headers=sent) as response:
                    if response.is_redirect and "location" in response.headers:
                        url = urljoin(url, response.headers["location"])
                        continue
                    _check_status(response.status_code, url)
                    return _read_limited(response, url, policy), response.headers.get("content-type", ""), url
            except httpx.TimeoutException as exc:
                raise TransientSourceError(f"Timed out fetching {redact_url(url)} ({type(exc).__name__}).") from exc
            except httpx.TransportError as exc:
                raise TransientSourceError(f"Cannot connect to {redact_url(url)} ({type(exc).__name__}).") from exc
    raise InputDataError(f"Too many redirects (more than {_MAX_REDIRECTS}) from {redact_url(url)}.")


def _check_status(status: int, url: str) -> None:
    if status >= 500:
        raise TransientSourceError(f"{redact_url(url)} answered HTTP {status} (server error).")
    if status >= 400:
        raise InputDataError(f"{redact_url(url)} answered HTTP {status}. Fix the URL or its access rights; "
                             "client errors are not retried.")


def _read_limited(response: httpx.Response, url: str, policy: SourcePolicy) -> bytes:
    limit = policy.max_download_bytes
    too_big = InputDataError(f"{redact_url(url)} is larger than the {limit:,}-byte download limit. Fix: raise "
                             "FORECAST_URL_MAX_BYTES, or split the data.")
    if int(response.headers.get("content-length") or 0) > limit:
        raise too_big
    chunks, size = [], 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > limit:
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)


def _kind(source: UrlSource, body: bytes, content_type: str, url: str) -> FileKind:
    if source.content != "auto":
        return source.content
    media = content_type.split(";")[0].strip().lower()
    path = urlsplit(url).path.lower()
    if body[:4] == b"PAR1" or path.endswith((".parquet", ".pq")):
        return "parquet"
    if media in ("text/csv", "application/csv", "text/plain") or path.endswith(".csv"):
        return "csv"
    if media == "text/html":
        return "csv"  # parse_bytes recognises the page and names the problem
    raise InputDataError(f"Cannot tell what {redact_url(url)} holds (Content-Type {media or 'missing'!r}). "
                         "Fix: set the source's content to 'csv' or 'parquet'.")
