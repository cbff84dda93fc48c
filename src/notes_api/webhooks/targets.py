"""Where a delivery may go. A URL is checked when it is registered (https, no credentials, no
non-public IP literal) and again at every delivery, when its host is resolved: every address
it resolves to must be public, and the connection goes to the address that was checked (the
host name still goes in the Host header and in TLS SNI, and the certificate is verified for
it), so a DNS answer that changes between the check and the connect cannot redirect it."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass

import httpx


class TargetRefused(Exception):
    """The URL may not be delivered to."""


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def check_url(url: str, *, allow_private: bool) -> str:
    """The URL as it will be stored, or TargetRefused saying why not."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as exc:
        raise TargetRefused(f"not a valid URL: {exc}") from None
    schemes = {"https", "http"} if allow_private else {"https"}
    if parsed.scheme not in schemes:
        raise TargetRefused("must be an https:// URL")
    if not parsed.host:
        raise TargetRefused("must name a host")
    if parsed.userinfo:
        raise TargetRefused("must not carry credentials")
    if parsed.fragment:
        raise TargetRefused("must not have a #fragment")
    literal = _ip_literal(parsed.host)
    if literal is not None and not allow_private and not is_public(literal):
        raise TargetRefused("must not point at a private, loopback or reserved address")
    return str(parsed)


@dataclass(frozen=True)
class Target:
    url: httpx.URL  # with the checked address in place of the host name
    host_header: str
    sni_hostname: str


async def resolve(url: str, *, allow_private: bool) -> Target:
    parsed = httpx.URL(check_url(url, allow_private=allow_private))
    host = parsed.host
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    literal = _ip_literal(host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except OSError as exc:
            raise TargetRefused(f"cannot resolve {host}: {exc}") from None
        addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
        if not addresses:
            raise TargetRefused(f"{host} has no address")
    if not allow_private:
        for address in addresses:
            if not is_public(address):
                raise TargetRefused(f"{host} resolves to a non-public address ({address})")
    chosen = addresses[0]
    default_port = parsed.port is None
    host_header = host if default_port else f"{host}:{port}"
    return Target(parsed.copy_with(host=str(chosen)), host_header, host)
