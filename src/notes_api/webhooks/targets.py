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

# Where local development is allowed what production refuses: named in every refusal that
# the setting would lift, so a newcomer's first local receiver is one step away.
ALLOW_PRIVATE_HINT = "WEBHOOK_ALLOW_PRIVATE=true allows it for local development"

# IPv6 ranges whose last 32 bits are an IPv4 address that a translator or the host's own
# stack reaches: NAT64's well-known prefix (RFC 6052), IPv4-translated (RFC 2765) and the
# deprecated IPv4-compatible form (RFC 4291). IPv4-mapped, 6to4 and Teredo have their own
# accessors on IPv6Address.
_LOW32 = tuple(ipaddress.ip_network(n) for n in ("64:ff9b::/96", "::ffff:0:0:0/96", "::/96"))
# NAT64's local-use prefix (RFC 8215): where the IPv4 sits depends on the prefix length
# each network picks (/48 to /96), and none of it is globally reachable: always refused.
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address] | None:
    """The IPv4 addresses an IPv6 address leads to, when it embeds any (Teredo: its server
    and its client); None for a plain IPv6 address."""
    if address.ipv4_mapped is not None:
        return [address.ipv4_mapped]
    if any(address in network for network in _LOW32):
        return [ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)]
    if address.sixtofour is not None:
        return [address.sixtofour]
    if address.teredo is not None:
        return list(address.teredo)
    return None


def is_public(address: IPAddress) -> bool:
    """Whether a delivery may connect to it. An IPv6 address that embeds an IPv4 one is
    judged by the IPv4 inside: `64:ff9b::a9fe:a9fe` is the cloud metadata service."""
    if isinstance(address, ipaddress.IPv6Address):
        if address in _NAT64_LOCAL:
            return False
        inner = embedded_ipv4(address)
        if inner is not None:
            return all(is_public(v4) for v4 in inner)
    return address.is_global and not (address.is_multicast or address.is_reserved)


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
        hint = f" ({ALLOW_PRIVATE_HINT})" if parsed.scheme == "http" else ""
        raise TargetRefused(f"must be an https:// URL{hint}")
    if not parsed.host:
        raise TargetRefused("must name a host")
    if parsed.userinfo:
        raise TargetRefused("must not carry credentials")
    if parsed.fragment:
        raise TargetRefused("must not have a #fragment")
    literal = _ip_literal(parsed.host)
    if literal is not None and not allow_private and not is_public(literal):
        raise TargetRefused(
            f"must not point at a private, loopback or reserved address ({ALLOW_PRIVATE_HINT})"
        )
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
                # Not which address: the delivery log would let an admin resolve names
                # inside the server's network.
                raise TargetRefused(
                    f"{host} resolves to a non-public address ({ALLOW_PRIVATE_HINT})"
                )
    chosen = addresses[0]
    default_port = parsed.port is None
    host_header = host if default_port else f"{host}:{port}"
    return Target(parsed.copy_with(host=str(chosen)), host_header, host)
