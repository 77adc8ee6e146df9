"""The client's address of a request, for rate limits and the session record.

It is the direct peer (``REMOTE_ADDR``) unless that peer is one of ``NIMBUS_TRUSTED_PROXIES``
(IP addresses or networks, default none): then ``X-Forwarded-For`` is read from the right, past
the trusted proxies, and the first address that is not one is the client. Entries left of it
were sent by the client and are never believed; without trusted proxies the header is ignored,
so a client cannot choose its own address.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest

__all__ = ["client_address", "trusted_proxies"]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def trusted_proxies() -> tuple[Network, ...]:
    """``settings.NIMBUS_TRUSTED_PROXIES`` as networks (``ImproperlyConfigured`` if invalid)."""
    configured = getattr(settings, "NIMBUS_TRUSTED_PROXIES", ())
    if isinstance(configured, str) or not isinstance(configured, Iterable):
        raise ImproperlyConfigured(
            f"NIMBUS_TRUSTED_PROXIES must be a list of IP addresses or networks, not {configured!r}"
        )
    return _networks(tuple(configured))


@functools.lru_cache(maxsize=16)
def _networks(entries: tuple[Any, ...]) -> tuple[Network, ...]:
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(str(entry).strip(), strict=False))
        except ValueError:
            raise ImproperlyConfigured(
                f"NIMBUS_TRUSTED_PROXIES: {entry!r} is not an IP address or network "
                "(like '10.0.0.1' or '10.0.0.0/8')"
            ) from None
    return tuple(networks)


def _parse(text: str) -> Address | None:
    """An address as peers and proxies write it (``[v6]:port`` and ``v4:port`` too)."""
    text = text.strip()
    if text.startswith("[") and "]" in text:
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: Address, proxies: tuple[Network, ...]) -> bool:
    return any(address in network for network in proxies)


def client_address(request: HttpRequest) -> str | None:
    """The client's IP address (normalized, ``2001:db8::1``), or ``None`` if unknown.

    A ``REMOTE_ADDR`` that is not an IP address (a Unix socket) is returned as it is."""
    remote = request.META.get("REMOTE_ADDR") or ""
    peer = _parse(remote)
    if peer is None:
        return remote or None
    proxies = trusted_proxies()
    if not _trusted(peer, proxies):
        return str(peer)
    hop = peer
    for entry in reversed(request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")):
        if not entry.strip():
            continue
        address = _parse(entry)
        if address is None:
            return str(hop)  # garbage: the proxy that passed it on is all we know
        hop = address
        if not _trusted(address, proxies):
            return str(address)
    return str(hop)  # every hop is a proxy: the farthest one


@register(Tags.security, "nimbus")
def check_trusted_proxies(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """nimbus.E008: ``NIMBUS_TRUSTED_PROXIES`` is a list of addresses or networks."""
    try:
        trusted_proxies()
    except ImproperlyConfigured as exc:
        return [Error(str(exc), id="nimbus.E008")]
    return []
