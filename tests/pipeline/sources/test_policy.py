"""The source policy: an allow-list splits into networks and host names; the secret reader never travels."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from pydantic import ValidationError

from pipeline.sources import SourcePolicy

ALLOWLIST = ("127.0.0.1/32", "10.0.0.0/8", "::1", "Minio.Internal")


def policy(*allowlist: str) -> SourcePolicy:
    return SourcePolicy(data_roots=(Path("/data"),), url_allowlist=allowlist)


def test_the_allowlist_splits_into_networks_and_hosts() -> None:
    mixed = policy(*ALLOWLIST)
    assert mixed.allowed_networks() == [ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("10.0.0.0/8"),
                                        ipaddress.ip_network("::1/128")]
    assert mixed.allowed_hosts() == {"minio.internal"}, "host names are compared lower-cased"
    assert ipaddress.ip_address("10.20.30.40") in mixed.allowed_networks()[1]


def test_a_network_with_host_bits_is_accepted_and_no_entry_is_in_both_lists() -> None:
    loose = policy("10.1.2.3/8", "fd00::/8", "localhost", "S3.EXAMPLE.com")
    assert loose.allowed_networks() == [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8")]
    assert loose.allowed_hosts() == {"localhost", "s3.example.com"}
    assert policy().allowed_networks() == [] and policy().allowed_hosts() == set()


def test_secret_blocks_default_to_none_and_are_never_dumped() -> None:
    plain = policy(*ALLOWLIST)
    assert plain.secret_blocks is None
    reader = policy(*ALLOWLIST).model_copy(update={"secret_blocks": lambda name: f"value of {name}"})
    assert reader.secret_blocks is not None and reader.secret_blocks("k") == "value of k"
    for dumped in (reader.model_dump(), reader.model_dump(mode="json")):
        assert "secret_blocks" not in dumped, "the secret reader must not be serialized with the policy"
    assert reader.model_dump() == plain.model_dump()
    assert "secret_blocks" not in repr(reader)


def test_the_policy_is_frozen() -> None:
    with pytest.raises(ValidationError, match="frozen"):
        policy().read_timeout = 1.0  # type: ignore[misc]


def test_host_names_anywhere_in_the_allowlist_do_not_hide_the_networks_after_them() -> None:
    mixed = policy("minio.internal", "10.0.0.0/8", "data.example.com", "192.168.1.0/24")
    assert mixed.allowed_networks() == [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("192.168.1.0/24")]
    assert mixed.allowed_hosts() == {"minio.internal", "data.example.com"}


def test_each_source_kind_is_a_one_option_choice_in_the_form() -> None:
    from pipeline.sources import DuckDBSource, FileSource, UrlSource

    for source, kind in ((FileSource, "file"), (UrlSource, "url"), (DuckDBSource, "duckdb")):
        field = source.model_json_schema()["properties"]["kind"]
        assert (field["const"], field["enum"]) == (kind, [kind]), source.__name__
