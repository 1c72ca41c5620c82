"""The egress policy: public addresses are allowed, every other kind is refused with its name,
``security.egress_allow`` lets hosts, patterns, addresses and networks through, and the older
``security.web_get_allow`` is read into it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from promptline.config import load_settings
from promptline.core.errors import ConfigError, InvalidInputError
from promptline.security.egress import EgressPolicy, EgressRefused, address_kind, parse_address

DOC = Path(__file__).parents[2] / "docs" / "security.md"


@pytest.mark.parametrize(
    ("host", "addresses", "why"),
    [
        ("127.0.0.1", [], "127.0.0.1 is a loopback address (this machine)"),
        ("[::1]", [], "::1 is a loopback address (this machine)"),
        (
            "169.254.169.254",
            [],
            "169.254.169.254 is a link-local address (the cloud metadata service)",
        ),
        (
            "::ffff:127.0.0.1",
            [],
            "::ffff:127.0.0.1 is a loopback address (this machine), carried in an IPv6 address",
        ),
        (
            "docs.test",
            ["93.184.216.34", "127.0.0.1"],
            "docs.test resolves to 127.0.0.1, a loopback address (this machine)",
        ),
        (
            "meta.test",
            ["::ffff:169.254.169.254"],
            "meta.test resolves to ::ffff:169.254.169.254, a link-local address (the cloud "
            "metadata service), carried in an IPv6 address",
        ),
        ("10.2.0.1", [], "10.2.0.1 is a private address (the local network)"),
        ("nothing.test", [], "nothing.test has no address"),
    ],
)
def test_a_destination_that_is_not_public_is_refused_with_its_kind(
    host: str, addresses: list[str], why: str
) -> None:
    assert EgressPolicy().refusal(host, addresses) == why


def test_public_destinations_are_allowed() -> None:
    policy = EgressPolicy()

    assert policy.refusal("93.184.216.34", []) is None
    assert policy.refusal("example.com", ["93.184.216.34", "2606:2800:220:1::1"]) is None


def test_a_rule_naming_a_network_allows_it_in_ipv4_and_ipv4_mapped_ipv6() -> None:
    policy = EgressPolicy(["10.1.0.0/16", "fd00::/8"])

    assert policy.refusal("10.1.2.3", []) is None
    assert policy.refusal("::ffff:10.1.2.3", []) is None
    assert policy.refusal("db.test", ["10.1.9.9", "fd00::5"]) is None
    assert policy.refusal("10.2.0.1", []) == "10.2.0.1 is a private address (the local network)"


def test_a_rule_naming_a_host_allows_whatever_it_resolves_to() -> None:
    policy = EgressPolicy(["docs.test", "*.corp.test"])

    assert policy.refusal("docs.test", ["127.0.0.1"]) is None
    assert policy.refusal("wiki.corp.test", ["10.0.0.1"]) is None
    assert policy.refusal("other.test", ["127.0.0.1"]) is not None
    # A host rule does not let the address through when it is written as an address.
    assert policy.refusal("127.0.0.1", []) is not None


async def test_checked_resolves_once_and_names_the_entry_that_would_allow_it() -> None:
    asked: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        return ["127.0.0.1"]

    with pytest.raises(EgressRefused) as caught:
        await EgressPolicy().checked("Docs.Test", 443, resolve)
    allowed = await EgressPolicy(["127.0.0.0/8"]).checked("docs.test", 443, resolve)

    assert (
        caught.value.message == "Docs.Test resolves to 127.0.0.1, a loopback address (this machine)"
    )
    assert (
        caught.value.hint == 'add "docs.test" (or its network) to security.egress_allow to allow it'
    )
    assert caught.value.details["entry"] == "docs.test"
    assert allowed == ["127.0.0.1"]
    assert asked == ["Docs.Test", "docs.test"]


def test_an_entry_that_is_neither_a_host_nor_a_network_is_refused() -> None:
    with pytest.raises(InvalidInputError, match=r"egress_allow\[0\]: 'not a host!' is neither"):
        EgressPolicy(["not a host!"])
    with pytest.raises(ConfigError, match=r"security\.egress_allow\[1\]: 'http://x/' is neither"):
        load_settings(environ={"PROMPTLINE__SECURITY__EGRESS_ALLOW": "[10.0.0.0/8, http://x/]"})


def test_the_older_web_get_allow_is_read_into_egress_allow(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "security:\n  egress_allow: [docs.test]\n  web_get_allow: [10.0.0.0/8, docs.test]\n",
        encoding="utf-8",
    )

    assert load_settings(path, environ={}).security.egress_allow == ["docs.test", "10.0.0.0/8"]


def test_a_bad_entry_of_the_older_name_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("security:\n  web_get_allow: [10.0.0.0/8, 'bad one']\n", encoding="utf-8")

    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})

    assert "web_get_allow[1]: 'bad one' is neither an address" in caught.value.message
    assert "(web_get_allow is the older name of egress_allow)" in caught.value.message


def test_the_documented_example_loads_and_allows_what_it_names(tmp_path: Path) -> None:
    text = DOC.read_text(encoding="utf-8")
    section = text.split("\n## Network egress\n", 1)[1].split("\n## ", 1)[0]
    [example] = re.findall(r"^```yaml\n(.*?)^```", section, flags=re.S | re.M)
    path = tmp_path / "config.yaml"
    path.write_text(example, encoding="utf-8")

    policy = EgressPolicy(load_settings(path, environ={}).security.egress_allow)

    assert policy.refusal("wiki.corp.example", ["10.9.9.9"]) is None
    assert policy.refusal("10.20.3.4", []) is None
    assert policy.refusal("127.0.0.1", []) is None
    assert policy.refusal("10.21.0.1", []) is not None


@pytest.mark.parametrize(
    ("address", "words"),
    [
        ("169.254.169.254", "(the cloud metadata service)"),
        ("127.0.0.1", "loopback"),
        ("fe80::1", "link-local"),
        ("10.0.0.1", "private"),
        ("fc00::1", "unique-local"),
        ("100.64.0.1", "shared"),
        ("64:ff9b::a9fe:a9fe", "(the cloud metadata service), carried in an IPv6 address"),
        ("2002:c0a8:0101::1", "private address (the local network), carried in"),
    ],
)
def test_the_kinds_the_doc_lists_are_refused(address: str, words: str) -> None:
    ip = parse_address(address)
    assert ip is not None
    kind = address_kind(ip)

    assert kind is not None
    assert words in kind
