"""What sources a deployment may read: data roots, URL allow-list, timeouts and size limits."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["SourcePolicy", "fixed_kind"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class SourcePolicy(BaseModel):
    """Limits applied to every source; built from the settings when a run starts."""

    model_config = ConfigDict(frozen=True)

    data_roots: tuple[Path, ...]
    url_allowlist: tuple[str, ...] = ()
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    total_timeout: float = 300.0  # a whole download, however slowly the server trickles
    max_download_bytes: int = 512 * 1024 * 1024  # of the decoded body
    query_timeout: float = 600.0  # a DuckDB source query
    # Reads a Prefect Secret block by name; set by the task layer (tasks.secrets), absent in library use.
    secret_blocks: Callable[[str], Any] | None = Field(None, exclude=True, repr=False)

    def allowed_networks(self) -> list[IPNetwork]:
        """Allow-list entries that are addresses or networks (the others are host names)."""
        networks = []
        for entry in self.url_allowlist:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                continue
        return networks

    def allowed_hosts(self) -> set[str]:
        """Allow-list entries that are host names."""
        return {entry.lower() for entry in self.url_allowlist if not _is_network(entry)}


def _is_network(entry: str) -> bool:
    try:
        ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return False
    return True


def fixed_kind(schema: dict[str, Any]) -> None:
    """Shows a source's ``kind`` as a one-option choice in the Prefect UI form: its JSON schema says
    ``const``, which the form renders as an editable text box."""
    schema["enum"] = [schema["const"]]
