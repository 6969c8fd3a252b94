"""SSRF guard for provider URLs given by users.

A `url` setting could point the server at itself, at a cloud metadata service or at the private
network behind it. Unless it matches one of the operator's trusted patterns
(`INFERD_TRUSTED_URL_PATTERNS`), a URL whose host resolves to a loopback, private, link-local,
multicast, reserved or unspecified address is refused. The check runs at PUT and again before each
call (results cached briefly), so a name that later resolves elsewhere is caught too, short of
a rebinding inside the cache window.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import time
from collections.abc import Sequence

import httpx

from inferd.core.errors import StatusError

_CACHE_SECONDS = 30.0


def _forbidden(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


class UrlGuard:
    def __init__(self, trusted_patterns: Sequence[str]) -> None:
        self._trusted = [re.compile(p) for p in trusted_patterns]
        self._verdicts: dict[str, tuple[float, str | None]] = {}

    def trusted(self, url: str) -> bool:
        # A base URL without a path is the same as one ending in "/", so `http://host:1/.*` covers it.
        candidates = {url, url + "/"} if httpx.URL(url).path in ("", "/") else {url}
        return any(p.fullmatch(c) for p in self._trusted for c in candidates)

    async def check(self, url: str) -> None:
        """Raise a 400 if the URL must not be called."""
        if self.trusted(url):
            return
        host = httpx.URL(url).host
        cached = self._verdicts.get(host)
        if cached is not None and cached[0] > time.monotonic():
            refused = cached[1]
        else:
            refused = await self._resolve_refused(host)
            self._verdicts[host] = (time.monotonic() + _CACHE_SECONDS, refused)
        if refused is not None:
            raise StatusError(
                f"The url [{url}] resolves to the non-public address [{refused}], which inferd does not call; "
                "an operator can allow it with a matching pattern in INFERD_TRUSTED_URL_PATTERNS"
            )

    async def _resolve_refused(self, host: str) -> str | None:
        try:
            return str(host) if _forbidden(ipaddress.ip_address(host)) else None
        except ValueError:
            pass  # a name, not an address literal
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except OSError:
            return None  # unresolvable: the call itself will fail with a connection error
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]).split("%")[0])  # drop an IPv6 zone
            if _forbidden(address):
                return str(address)
        return None
