"""Where PromptLine may connect on the network: public addresses, and what
``security.egress_allow`` names (hosts, ``*.`` host patterns, addresses, networks).

Loopback, link-local (the cloud metadata service at 169.254.169.254 among them), private,
unique-local, shared (carrier-grade NAT), multicast and reserved addresses are refused, in IPv4
and IPv6, and inside IPv6 forms that carry an IPv4 address (``::ffff:127.0.0.1``, NAT64,
6to4). ``web_get`` and MCP servers over HTTP ask it before every connection they open; its
one question, `EgressPolicy.refusal`, needs nothing but a host and its addresses.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence

from promptline.core.errors import InvalidInputError, PromptLineError

__all__ = [
    "EGRESS_SETTING",
    "EgressPolicy",
    "EgressRefused",
    "IPAddress",
    "Resolver",
    "address_kind",
    "allow_entry",
    "parse_address",
    "system_resolver",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

Resolver = Callable[[str, int], Awaitable[list[str]]]
"""``resolve(host, port)``: the addresses ``host`` has, as text."""

EGRESS_SETTING = "security.egress_allow"
"""The setting that lists what may be reached although it is not public."""

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_SHARED = ipaddress.IPv4Network("100.64.0.0/10")
_UNIQUE_LOCAL = ipaddress.IPv6Network("fc00::/7")
_METADATA = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)


class EgressRefused(PromptLineError):
    """A destination the egress policy does not allow."""

    code = "egress_refused"


async def system_resolver(host: str, port: int) -> list[str]:
    """The addresses the system's resolver gives ``host``, in its order, without repeats."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def address_kind(ip: IPAddress) -> str | None:
    """What makes ``ip`` not a public address, in words, or None when it is one."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            inner = address_kind(embedded)
            return None if inner is None else f"{inner}, carried in an IPv6 address"
    if ip in _METADATA:
        return "a link-local address (the cloud metadata service)"
    if ip.is_loopback:
        return "a loopback address (this machine)"
    if ip.is_unspecified:
        return "the unspecified address (this machine)"
    if ip.is_link_local:
        return "a link-local address"
    if isinstance(ip, ipaddress.IPv6Address) and ip in _UNIQUE_LOCAL:
        return "a unique-local address (the local network)"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED:
        return "a shared address (carrier-grade NAT)"
    if ip.is_private:
        return "a private address (the local network)"
    if ip.is_multicast:
        return "a multicast address"
    if not ip.is_global:
        return "a reserved address, not a public one"
    return None


def parse_address(text: str) -> IPAddress | None:
    """``text`` as an address (an IPv6 zone, ``%eth0``, dropped), or None if it is a name."""
    try:
        return ipaddress.ip_address(text.strip("[]").partition("%")[0])
    except ValueError:
        return None


def allow_entry(host: str) -> str:
    """The entry of ``security.egress_allow`` that allows ``host``: the name in lower case,
    or the address (the IPv4 one for an IPv4-mapped IPv6 address, which it also allows)."""
    literal = parse_address(host)
    if literal is None:
        return host.lower().rstrip(".")
    mapped = literal.ipv4_mapped if isinstance(literal, ipaddress.IPv6Address) else None
    return str(mapped or literal)


class EgressPolicy:
    """Which destinations may be reached: public addresses, and the hosts, ``*.`` host
    patterns, addresses and networks ``allow`` lists (the entries of
    ``security.egress_allow``; a malformed one is `InvalidInputError`).

    The one question is `refusal`: given a host and every address it resolved to, why it may
    not be reached, or None. A caller connects only to addresses it asked about, so a second
    DNS answer cannot move the connection elsewhere (DNS rebinding).
    """

    def __init__(self, allow: Iterable[str] = ()) -> None:
        self.networks: list[IPNetwork] = []
        self.hosts: list[str] = []
        entries = list(allow)
        if entries:
            # One parser for the setting and the policy; the config package is not imported
            # unless there is something to parse.
            from promptline.config.settings import parse_egress_entry
        for index, entry in enumerate(entries):
            try:
                parsed = parse_egress_entry(entry)
            except ValueError as exc:
                raise InvalidInputError(
                    f"{EGRESS_SETTING}[{index}]: {exc}",
                    hint="see Network egress in docs/security.md",
                ) from None
            if isinstance(parsed, str):
                self.hosts.append(parsed)
            else:
                self.networks.append(parsed)

    def refusal(self, host: str, addresses: Sequence[str]) -> str | None:
        """Why ``host`` (a name, or an address as written in a URL), which resolved to
        ``addresses``, may not be reached; None when it may.

        The reason names the address and its kind: ``"127.0.0.1 is a loopback address (this
        machine)"``, ``"db.test resolves to 10.0.0.7, a private address (the local
        network)"``. A host listed by name (itself or under a ``*.`` pattern) is allowed
        whatever it resolves to; otherwise one refused address refuses the host, since which
        address a connection takes is not for the name's owner to choose. A host with no
        address is refused.
        """
        literal = parse_address(host)
        if literal is not None:
            kind = self.address_refusal(literal)
            return None if kind is None else f"{host.strip('[]')} is {kind}"
        if self.host_allowed(host):
            return None
        if not addresses:
            return f"{host} has no address"
        for text in addresses:
            ip = parse_address(text)
            if ip is None:
                return f"{host} resolves to {text!r}, which is not an address"
            kind = self.address_refusal(ip)
            if kind is not None:
                return f"{host} resolves to {text}, {kind}"
        return None

    def host_allowed(self, host: str) -> bool:
        """True when ``host`` (a name) is listed, itself or under a ``*.`` pattern."""
        name = host.lower().rstrip(".")
        for entry in self.hosts:
            if entry.startswith("*."):
                if name.endswith(entry[1:]):
                    return True
            elif name == entry:
                return True
        return False

    def address_refusal(self, ip: IPAddress) -> str | None:
        """Why ``ip`` may not be reached (its kind in words), or None when it may: it is
        public or inside a listed network."""
        if any(ip.version == net.version and ip in net for net in self.networks):
            return None
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            mapped = ip.ipv4_mapped
            if any(net.version == 4 and mapped in net for net in self.networks):
                return None
        return address_kind(ip)

    async def checked(self, host: str, port: int, resolver: Resolver | None = None) -> list[str]:
        """The addresses ``host`` may be reached at on ``port`` (resolved once, with
        ``resolver``, by default the system's); `EgressRefused` saying why not, with the
        entry of ``security.egress_allow`` that would allow it as ``details["entry"]``.
        A name that cannot be resolved is the resolver's `OSError`."""
        literal = parse_address(host)
        if literal is not None:
            found = [str(literal)]
        else:
            found = await (resolver or system_resolver)(host, port)
        why = self.refusal(host, found)
        if why is not None:
            entry = allow_entry(host)
            raise EgressRefused(
                why,
                hint=f'add "{entry}" (or its network) to {EGRESS_SETTING} to allow it',
                entry=entry,
            )
        return found
