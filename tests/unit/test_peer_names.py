"""The TLS peer's names as Envoy's RBAC matches principals against them, and istiod's
matchers on them (measured against Envoy 1.40 by the conformance suite's TLS cases)."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest

from extauthz.authz.fields import peer_namespace_pattern, peer_principal_matcher
from extauthz.server.peer import PeerNames, certificate_names
from tests.conformance.certs import ClientCert, _client

TWO_URIS = ClientCert(
    uris=("spiffe://other.mesh/ns/default/sa/default", "spiffe://cluster.local/ns/prod/sa/sleep"),
    dns=("client.example",),
    common_name="peer",
)


def _pem(cert: ClientCert) -> str:
    return quote(_client(cert).cert_pem.decode())  # Envoy sends it URL-encoded


def test_every_uri_san_then_dns_sans_then_the_subject() -> None:
    assert certificate_names(_pem(TWO_URIS)) == (
        "spiffe://other.mesh/ns/default/sa/default",
        "spiffe://cluster.local/ns/prod/sa/sleep",
        "client.example",
        "CN=peer",
    )


def test_a_certificate_without_san_is_its_subject() -> None:
    no_san = ClientCert(common_name="cluster.local/ns/prod/sa/sleep")
    assert certificate_names(_pem(no_san)) == ("CN=cluster.local/ns/prod/sa/sleep",)


def test_names_are_remembered_per_certificate_and_fall_back_to_the_principal() -> None:
    names = PeerNames(max_entries=4)
    pem = _pem(TWO_URIS)
    first = names.of(pem, "spiffe://other.mesh/ns/default/sa/default")
    assert names.of(pem, "ignored") is first  # parsed once
    assert names.of("", "spiffe://td/ns/a/sa/b") == ("spiffe://td/ns/a/sa/b",)
    assert names.of("", "") == ()
    assert names.of("not a certificate", "spiffe://td/ns/a/sa/b") == ("spiffe://td/ns/a/sa/b",)


@pytest.mark.parametrize(
    ("value", "name", "matches"),
    [
        ("cluster.local/ns/prod/sa/sleep", "spiffe://cluster.local/ns/prod/sa/sleep", True),
        ("cluster.local/ns/prod/*", "spiffe://cluster.local/ns/prod/sa/sleep", True),
        # `*x` is the regex spiffe://.*x: a name without spiffe:// never matches it.
        ("*/sa/sleep", "spiffe://cluster.local/ns/prod/sa/sleep", True),
        ("*/sa/sleep", "https://cluster.local/ns/prod/sa/sleep", False),
        ("*/sa/sleep", "CN=cluster.local/ns/prod/sa/sleep", False),
        ("*", "CN=anything", True),
        ("cluster.local/ns/prod/sa/sleep", "cluster.local/ns/prod/sa/sleep", False),
    ],
)  # fmt: skip
def test_principal_matchers_are_istiods(value: str, name: str, matches: bool) -> None:
    assert peer_principal_matcher(value)(name) is matches


@pytest.mark.parametrize(
    ("value", "name", "matches"),
    [
        ("prod", "spiffe://cluster.local/ns/prod/sa/sleep", True),
        # istiod's .*/ns/<v>/.* matches any /ns/ segment, and a * may span slashes.
        ("default", "spiffe://cluster.local/ns/prod/sa/sleep/ns/default/x", True),
        ("*ult", "spiffe://cluster.local/ns/prod/sa/default/x", True),
        ("prod", "spiffe://cluster.local/ns/production/sa/sleep", False),
    ],
)  # fmt: skip
def test_namespace_matchers_are_istiods(value: str, name: str, matches: bool) -> None:
    assert bool(re.fullmatch(peer_namespace_pattern(value), name)) is matches
