"""CSV or Parquet over HTTP(S), with timeouts, a size limit and a guard against request forgery.

Server-side request forgery: a flow run triggered through the API must not make the worker fetch
internal services. Every host (and every redirect target) is resolved first, and an address that is not
globally routable (loopback, private, link-local, cloud metadata, shared, reserved) is refused unless the
deployment allow-lists it. The check happens before connecting; a DNS answer that changes between the
check and the connection (DNS rebinding) is not covered: keep internal names out of public DNS.

Limits: one deadline (``total_timeout``) covers a whole download, redirects, headers and body included,
however slowly the server trickles; the size limit applies to the decoded body, while it is decoded, so a
compressed body cannot expand in memory beyond the limit (decompression bombs).
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import logging
import re
import socket
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Literal
from urllib.parse import unquote_plus, urljoin, urlsplit

import httpx
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from forecast_model.errors import shorten
from pipeline.canonical import ColumnMapping, FileKind, Layout, parse_bytes
from pipeline.errors import InputDataError
from pipeline.sources.policy import SourcePolicy, fixed_kind
from pipeline.sources.secrets import REFERENCE_PATTERN, BlockReader, check_reference, resolve_headers, resolve_secret

__all__ = ["TransientSourceError", "UrlSource", "check_address", "read_url", "redact_url"]

_SECRET_KEYS = ("token", "key", "secret", "password", "passwd", "signature", "sig", "auth", "credential")
_MAX_REDIRECTS = 5
# Greedy up to the last "@" before the path: a password may hold an unescaped "@".
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@")
_URL_IN_TEXT = re.compile(r"https?://[^\s\"'<>]+")
_PAIR_SEPARATORS = re.compile(r"([&;?])")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]{0,31})://")  # bounded: a scheme is named in messages
_ACCEPT_ENCODING = "gzip, deflate"  # what _Inflater decodes; httpx's default may add br and zstd
_PIECE = 64 * 1024  # the most decoded bytes one decompression step may produce


class TransientSourceError(RuntimeError):
    """A failure worth retrying: a timeout, a refused connection, a 5xx answer."""


class UrlSource(BaseModel):
    """A CSV or Parquet file served over HTTP(S). Credentials are never part of it: they are named (a Prefect
    Secret block, or env:VARIABLE) and resolved on the worker."""

    # hide_input_in_errors: a refused URL with a password in it must not be echoed into logs and states.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    kind: Literal["url"] = Field("url", description="Fixed: a URL source.", json_schema_extra=fixed_kind)
    url: str | None = Field(None, description="http:// or https:// address without credentials (no user:password@, "
                                              "no token in the query): parameters are stored and shown in Prefect.")
    url_secret: str | None = Field(None, min_length=1, description=(
        "Instead of url: the name of a Prefect Secret block (or env:VARIABLE) holding the whole address, for "
        "addresses that carry a token (pre-signed links, ?api_key=...). The name, never the address itself."),
        json_schema_extra={"pattern": REFERENCE_PATTERN})
    headers_secret: str | None = Field(None, min_length=1, description=(
        "Name of a Prefect Secret block (or env:VARIABLE) holding a JSON object of HTTP headers to send, e.g. "
        '{"Authorization": "Bearer <token>"}. The name, never the headers themselves.'),
        json_schema_extra={"pattern": REFERENCE_PATTERN})
    content: Literal["auto", "csv", "parquet"] = Field(
        "auto", description="File type; auto decides from the content, the Content-Type and the URL's extension.")
    format: Layout = Field("long", description="long or wide, as for files.")
    columns: ColumnMapping = Field(default_factory=ColumnMapping, description="Input column names.")

    @field_validator("url")
    @classmethod
    def _http_scheme(cls, url: str | None) -> str | None:
        problem = None if url is None else _scheme_problem(url)
        if problem:
            raise ValueError(f"url: {problem}.")  # the URL itself is not quoted: it may hold credentials
        return url

    @field_validator("url_secret", "headers_secret")
    @classmethod
    def _secret_name(cls, reference: str | None, info: ValidationInfo) -> str | None:
        # A value given in place of a name must not reach the Prefect database: refused, and never quoted.
        return None if reference is None else check_reference(reference, str(info.field_name))

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
                f"url {_shown(self.url)} carries credentials (user:password@ or a token-like query value); "
                "parameters are stored in the Prefect database and shown in the UI. Fix: put the whole URL in a "
                "Prefect Secret block and pass its name as url_secret, or send the credential as a header "
                "through headers_secret.")
        return self

    def describe(self) -> str:
        """A loggable description: the address, or the name of the secret holding it."""
        return f"url:{self.url}" if self.url else f"url:secret:{self.url_secret}"

    def resolved_url(self, blocks: BlockReader | None = None) -> str:
        """The address to fetch (reads the secret if the address is one; never log the result unredacted)."""
        if self.url is not None:
            return self.url
        url = str(resolve_secret(str(self.url_secret), blocks))
        problem = _scheme_problem(url)
        if problem:
            raise InputDataError(f"Secret {self.url_secret!r} does not hold a usable URL: {problem}.")
        return url

    def resolved_headers(self, blocks: BlockReader | None = None) -> dict[str, str]:
        """The headers to send (read from ``headers_secret``; none without it)."""
        return resolve_headers(self.headers_secret, blocks) if self.headers_secret else {}

    def name_hint(self) -> str:
        """The file name part of the address (or the secret's name), for naming the job."""
        if not self.url:
            return str(self.url_secret).removeprefix("env:")
        try:
            return Path(urlsplit(self.url).path).stem
        except ValueError:  # a malformed address: read_url names the problem, a job name need not
            return ""


def _scheme_problem(url: str) -> str | None:
    """Why ``url`` is not an http(s) address, naming its scheme (never more of it); None if it is one."""
    match = _SCHEME.match(url)
    if match is None:
        return "it is not an http:// or https:// address"
    scheme = match.group(1).lower()  # schemes are case-insensitive: HTTP://host is http
    if scheme in ("http", "https"):
        return None
    if scheme == "file":
        return "scheme 'file' is not supported: for a local file give its path (a file source)"
    return f"scheme {scheme!r} is not supported: use http:// or https://"


def redact_url(url: str) -> str:
    """The URL with ``user:password@`` and secret-looking query values replaced by ``***``.

    Works on any scheme (``postgresql://u:p@h/db``, ``sqlite:////abs/path``) and changes nothing else: a URL
    without credentials comes back as it was, character for character.
    """
    url = _USERINFO.sub(r"\1***@", url)
    base, question, rest = url.partition("?")
    if not question:
        return url
    query, hash_, fragment = rest.partition("#")
    return f"{base}?{_mask_pairs(query)}{hash_}{_mask_pairs(fragment)}"


def _mask_pairs(text: str) -> str:
    # Pair by pair, leaving every other character as written (re-encoding would change harmless URLs). A
    # "?" or ";" inside the query separates pairs too: "?a=1?token=x" must not hide the token in a's value.
    parts = _PAIR_SEPARATORS.split(text)
    for index in range(0, len(parts), 2):  # the odd entries are the separators themselves
        key, _, value = parts[index].partition("=")
        if value and any(word in unquote_plus(key).lower() for word in _SECRET_KEYS):
            parts[index] = f"{key}=***"
    return "".join(parts)


def _shown(url: str) -> str:
    """The URL as messages show it: redacted, then quoted and cut to a bounded size."""
    return shorten(redact_url(url))


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


def _parse(url: str) -> httpx.URL:
    """The URL as httpx will request it; an InputDataError naming the problem if it is malformed."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise InputDataError(f"URL {_shown(url)} is malformed ({shorten(str(exc), 100)}). Fix the address.") from exc
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        raise InputDataError(f"URL {_shown(url)} is malformed: port {parsed.port} is out of range 1-65535. "
                             "Fix the address.")
    return parsed


def check_address(url: str, policy: SourcePolicy) -> None:
    """Refuses malformed URLs, non-HTTP schemes and hosts that resolve to non-public addresses not on the
    allow-list."""
    parts = _parse(url)
    shown = _shown(url)
    if parts.scheme not in ("http", "https"):
        raise InputDataError(f"URL {shown} uses scheme {shorten(parts.scheme, 32)}; only http and https are "
                             "allowed.")
    if not parts.raw_host:
        raise InputDataError(f"URL {shown} has no host.")
    if parts.host.lower() in policy.allowed_hosts():
        return
    try:  # the ASCII (IDNA) form: getaddrinfo's own IDNA encoding raises a bare UnicodeError
        infos = socket.getaddrinfo(parts.raw_host, None, type=socket.SOCK_STREAM)  # the addresses; no port
    except socket.gaierror as exc:
        raise TransientSourceError(f"Cannot resolve host {shorten(parts.host)} of {shown}: {exc.strerror}.") from exc
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
    url = source.resolved_url(policy.secret_blocks)
    body, content_type, final_url = _download(url, policy, source.resolved_headers(policy.secret_blocks))
    return parse_bytes(body, _kind(source, body, content_type, final_url), _shown(url),
                       source.columns.text_columns(source.format))


class _Deadline:
    """One monotonic deadline for a whole download: every redirect, header and body byte counts."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds

    def left(self) -> float:
        return self._end - time.monotonic()

    def expired(self) -> bool:
        return self.left() <= 0

    def check(self, url: str) -> None:
        if self.expired():
            raise self.error(url)

    def error(self, url: str) -> TransientSourceError:
        return TransientSourceError(
            f"Downloading {_shown(url)} took longer than the {self.seconds:g}-second total limit. Fix: raise "
            "FORECAST_URL_TOTAL_TIMEOUT if the file is large and the link slow, or fix the server, which sends "
            "the data too slowly.")

    def timeout(self, policy: SourcePolicy) -> httpx.Timeout:
        """Per-operation timeouts, none longer than what is left."""
        left = max(self.left(), 0.001)
        return httpx.Timeout(min(policy.read_timeout, left), connect=min(policy.connect_timeout, left))


class _Watchdog:
    """Shuts the download's sockets down when the deadline passes.

    A server that trickles its status line and headers one byte at a time keeps every read short, and
    httpx returns nothing before the headers are complete, so no check between body chunks can stop it;
    a shut-down socket ends whatever read is waiting, at once.
    """

    def __init__(self, deadline: _Deadline) -> None:
        self._sockets: list[socket.socket] = []
        self._timer = threading.Timer(max(deadline.left(), 0.0), self._fire)
        self._timer.daemon = True

    def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpcore's ``trace`` request extension: keeps the socket of every connection opened."""
        if event in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            sock = info["return_value"].get_extra_info("socket")
            if isinstance(sock, socket.socket):
                self._sockets.append(sock)

    def _fire(self) -> None:
        for sock in list(self._sockets):
            with contextlib.suppress(OSError):  # already closed: nothing left to stop
                # The plain socket call, also on a TLS socket, whose own shutdown would unwrap it under
                # the reading thread.
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._timer.cancel()


def _download(url: str, policy: SourcePolicy, headers: dict[str, str]) -> tuple[bytes, str, str]:
    _redact_client_logs()
    deadline, origin = _Deadline(policy.total_timeout), url
    with _Watchdog(deadline) as watchdog, httpx.Client(follow_redirects=False, trust_env=False) as client:
        for _ in range(_MAX_REDIRECTS + 1):
            check_address(url, policy)
            deadline.check(url)
            try:
                with client.stream("GET", url, headers=_request_headers(url, origin, headers),
                                   timeout=deadline.timeout(policy), extensions={"trace": watchdog.trace}) as response:
                    if response.is_redirect and "location" in response.headers:
                        url = _redirect_target(url, response.headers["location"])
                        continue
                    _check_status(response.status_code, url)
                    return _read_body(response, url, policy, deadline), response.headers.get("content-type", ""), url
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                raise _client_failure(exc, url, deadline) from exc
    raise InputDataError(f"Too many redirects (more than {_MAX_REDIRECTS}) from {_shown(url)}.")


def _request_headers(url: str, origin: str, headers: dict[str, str]) -> httpx.Headers:
    # Credentials go to the origin they were meant for only, never along a redirect to another host, port
    # or to plain http.
    sent = httpx.Headers(headers if _same_origin(origin, url) else {})
    sent["Accept-Encoding"] = _ACCEPT_ENCODING  # only what _Inflater decodes, whatever the secret says
    return sent


def _same_origin(first: str, target: str) -> bool:
    """Whether a redirect from ``first`` to ``target`` stays with the same server (an upgrade from
    http to https on the default ports included, as browsers and requests allow)."""
    a, b = httpx.URL(first), httpx.URL(target)
    if a.host != b.host:
        return False
    if (a.scheme, a.port) == (b.scheme, b.port):
        return True
    # httpx drops default ports (":80" of http, ":443" of https): an upgrade on them compares as None.
    return (a.scheme, a.port, b.scheme, b.port) == ("http", None, "https", None)


def _redirect_target(url: str, location: str) -> str:
    try:
        return urljoin(url, location)
    except ValueError as exc:
        raise InputDataError(f"{_shown(url)} redirects to a malformed address {_shown(location)} "
                             f"({shorten(str(exc), 100)}). Fix the server's redirect, or use the final "
                             "address.") from exc


def _client_failure(exc: Exception, url: str, deadline: _Deadline) -> Exception:
    """The error to raise for an httpx exception: transient unless the URL itself is wrong."""
    if deadline.expired():  # the watchdog closed the socket, or a read ran into the deadline
        return deadline.error(url)
    if isinstance(exc, httpx.InvalidURL):
        return InputDataError(f"URL {_shown(url)} cannot be requested ({shorten(str(exc), 100)}). Fix the address.")
    if isinstance(exc, httpx.RemoteProtocolError) and "location header" in str(exc):  # httpx parses it first
        return InputDataError(f"{_shown(url)} redirects to a malformed address ({shorten(str(exc), 100)}). Fix the "
                              "server's redirect, or use the final address.")
    if isinstance(exc, httpx.TimeoutException):
        return TransientSourceError(f"Timed out fetching {_shown(url)} ({type(exc).__name__}).")
    if isinstance(exc, httpx.TransportError):
        return TransientSourceError(f"Cannot connect to {_shown(url)} ({type(exc).__name__}).")
    return TransientSourceError(f"Fetching {_shown(url)} failed ({type(exc).__name__}).")


def _check_status(status: int, url: str) -> None:
    if status >= 500:
        raise TransientSourceError(f"{_shown(url)} answered HTTP {status} (server error).")
    if status >= 400:
        raise InputDataError(f"{_shown(url)} answered HTTP {status}. Fix the URL or its access rights; "
                             "client errors are not retried.")


def _read_body(response: httpx.Response, url: str, policy: SourcePolicy, deadline: _Deadline) -> bytes:
    """The decoded body, read raw and decoded here, so that the size limit bounds the decoded bytes
    while they are decoded (httpx decodes each chunk whole: a small chunk may expand a thousandfold)."""
    inflater = _inflater_for(response, url)
    limit = policy.max_download_bytes
    if inflater is None and _declared_length(response) > limit:
        raise _too_big(url, limit, None)
    chunks, size = [], 0
    for raw in response.iter_raw():
        deadline.check(url)
        for piece in inflater.decode(raw) if inflater else (raw,):
            size += len(piece)
            if size > limit:
                raise _too_big(url, limit, inflater)
            chunks.append(piece)
    if inflater:
        inflater.finish()
    return b"".join(chunks)


def _declared_length(response: httpx.Response) -> int:
    length = response.headers.get("content-length", "").strip()
    # Cut before int(): a number of thousands of digits is refused by int() with a bare ValueError.
    return int(length[:20]) if length.isdigit() else 0


def _too_big(url: str, limit: int, inflater: _Inflater | None) -> InputDataError:
    decoded = f" once decompressed ({inflater.coding})" if inflater else ""
    return InputDataError(f"{_shown(url)} is larger than the {limit:,}-byte download limit{decoded}. Fix: raise "
                          "FORECAST_URL_MAX_BYTES, or split the data.")


def _inflater_for(response: httpx.Response, url: str) -> _Inflater | None:
    """The decoder the Content-Encoding asks for: None for identity, one gzip or deflate, nothing else."""
    codings = [coding.strip().lower() for coding in response.headers.get_list("content-encoding", split_commas=True)]
    codings = [coding for coding in codings if coding not in ("", "identity")]
    if not codings:
        return None
    if len(codings) > 1:
        raise InputDataError(
            f"{_shown(url)} is sent with several content codings stacked ({shorten(', '.join(codings))}); one "
            "gzip or deflate coding is accepted, no more (each layer can multiply the size a thousandfold). "
            "Fix: have the server compress the file once, or not at all.")
    if codings[0] not in ("gzip", "x-gzip", "deflate"):
        raise InputDataError(
            f"{_shown(url)} is sent with content coding {shorten(codings[0], 40)}, which is not supported (only "
            "gzip and deflate are, and they are all this client asks for). Fix: have the server send the file "
            "uncompressed, or compressed with gzip.")
    return _Inflater(codings[0], _shown(url))


class _Inflater:
    """Decodes a gzip or deflate body chunk by chunk, in pieces of at most ``_PIECE`` bytes.

    ``zlib.decompressobj`` with ``max_length`` keeps what it could not decode yet in ``unconsumed_tail``:
    whatever the compression ratio, no step materialises more than one piece. A gzip body may hold several
    members (concatenated files); bytes after the end of the data are ignored, as zlib and httpx do.
    """

    def __init__(self, coding: str, shown: str) -> None:
        self.coding, self._shown = coding, shown
        self._gzip = coding in ("gzip", "x-gzip")
        self._zlib: Any = None  # the stream being decoded; None before it starts and after it ends
        self._head = b""  # bytes not decoded yet, until they tell what follows
        self._complete = self._ignoring = False

    def decode(self, data: bytes) -> Iterator[bytes]:
        """The decoded pieces of the next raw chunk."""
        self._head += data
        while self._head and not self._ignoring:
            if self._zlib is None and not self._start():
                break
            data, self._head = self._head, b""
            yield from self._inflate(data)
        if self._ignoring:
            self._head = b""

    def finish(self) -> None:
        """Refuses a body that ended inside its compressed data."""
        if self._zlib is not None or (self._head and not self._ignoring):
            raise InputDataError(f"{self._shown} ends before the end of its {self.coding} data: the file on the "
                                 "server is cut short. Fix the file on the server.")

    def _start(self) -> bool:
        """Opens the next stream when its first bytes say how; False to wait for more (or ignore the rest)."""
        if self._gzip:
            if self._complete and self._head[:1] != b"\x1f":  # after a member: no other member follows
                self._ignoring = True
                return False
            self._zlib = zlib.decompressobj(zlib.MAX_WBITS | 16)
        elif self._complete:
            self._ignoring = True
            return False
        elif len(self._head) < 2:
            return False
        else:  # "deflate" is meant to be a zlib stream, yet some servers send raw deflate: the header tells
            zlib_header = self._head[0] & 0x0F == 8 and int.from_bytes(self._head[:2], "big") % 31 == 0
            self._zlib = zlib.decompressobj(zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS)
        self._complete = False
        return True

    def _inflate(self, data: bytes) -> Iterator[bytes]:
        decoder = self._zlib
        try:
            while True:
                piece = decoder.decompress(data, _PIECE)
                if piece:
                    yield piece
                if decoder.eof:
                    self._zlib, self._complete, self._head = None, True, decoder.unused_data
                    return
                data = decoder.unconsumed_tail
                if not data and len(piece) < _PIECE:  # a full piece may have left output inside zlib
                    return
        except zlib.error as exc:
            raise InputDataError(f"{self._shown} is sent as {self.coding} (Content-Encoding) but is not valid "
                                 f"{self.coding} data ({shorten(str(exc), 100)}). Fix: correct the server's "
                                 "Content-Encoding header, or its file.") from exc


def _kind(source: UrlSource, body: bytes, content_type: str, url: str) -> FileKind:
    if source.content != "auto":
        return source.content
    media = content_type.split(";")[0].strip().lower()
    path = httpx.URL(url).path.lower()  # url was parsed by check_address: no ValueError here
    if body[:4] == b"PAR1" or path.endswith((".parquet", ".pq")):
        return "parquet"
    if media in ("text/csv", "application/csv", "text/plain") or path.endswith(".csv"):
        return "csv"
    if media == "text/html":
        return "csv"  # parse_bytes recognises the page and names the problem
    raise InputDataError(f"Cannot tell what {_shown(url)} holds (Content-Type {shorten(media or 'missing', 100)}). "
                         "Fix: set the source's content to 'csv' or 'parquet'.")
