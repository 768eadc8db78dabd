"""What we know about one request: plain, immutable values taken from Envoy's CheckRequest."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field
from types import MappingProxyType
from urllib.parse import unquote

from extauthz.records import record

_EMPTY: Mapping[str, str] = MappingProxyType({})
_NO_LISTS: Mapping[str, tuple[str, ...]] = MappingProxyType({})


@record
class RequestAttributes:
    method: str = "GET"
    host: str = ""
    path: str = "/"  # without query or fragment
    query: str = ""  # raw query string, without the '?'
    headers: Mapping[str, str] = field(default_factory=lambda: _EMPTY)  # lower-case names
    # Each header's entries one by one, as Envoy holds them, when Envoy sent them so
    # (`encode_raw_headers`); `headers` then joins them with "," as Envoy's matchers do.
    header_lists: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: _NO_LISTS)
    scheme: str = "http"
    source_ip: str = ""  # the direct peer of Envoy's downstream connection (Istio's source.ip)
    source_port: int = 0
    remote_ip: str = ""  # the client address Envoy trusts after XFF (Istio's remote.ip)
    destination_ip: str = ""
    destination_port: int = 0
    source_principal: str = ""  # the peer certificate's URI SAN, e.g. spiffe://td/ns/foo/sa/bar
    # Every name Envoy's RBAC matches a principal against (its URI SANs, DNS SANs, then its
    # subject), when Envoy sent the certificate; otherwise just `source_principal`.
    peer_identities: tuple[str, ...] = ()
    sni: str = ""
    request_id: str = ""
    context_extensions: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    _params: list[tuple[str, str]] | None = field(default=None, repr=False, compare=False)

    @property
    def peer_names(self) -> tuple[str, ...]:
        if self.peer_identities:
            return self.peer_identities
        return (self.source_principal,) if self.source_principal else ()

    @property
    def original_path(self) -> str:
        """The path as the client sent it, query included (Envoy's buildOriginalUri uses it)."""
        return f"{self.path}?{self.query}" if self.query else self.path

    def query_params(self) -> list[tuple[str, str]]:
        """Percent-decoded query parameters in order ('+' stays '+', as in Envoy's
        parseAndDecodeQueryString); parsed on first use only."""
        if self._params is None:
            object.__setattr__(self, "_params", _parse_query(self.query))
        assert self._params is not None
        return self._params

    def query_param(self, name: str) -> str | None:
        """The first value of a query parameter; None when absent."""
        if not self.query:
            return None
        for key, value in self.query_params():
            if key == name:
                return value
        return None

    def header_values(self, name: str) -> tuple[str, ...]:
        """Every entry of a header in order: one per header line Envoy keeps apart (a header
        Envoy folds itself, such as authorization, is one entry), or the joined value."""
        entries = self.header_lists.get(name)
        if entries is not None:
            return entries
        value = self.headers.get(name)
        return () if value is None else (value,)

    def cookie(self, name: str) -> str | None:
        """The first cookie of that name, over every cookie header in order (Envoy's
        parseCookies), without surrounding double quotes."""
        for raw in self.header_values("cookie"):
            for part in raw.split(";"):
                key, sep, value = part.strip().partition("=")
                if sep and key == name:
                    return value.strip('"')
        return None


def trusted_client_ip(xff: str | None, peer: str, trusted_hops: int = 0) -> str:
    """Envoy's remote address for a request. Without trusted hops it is the address Envoy
    reports as the request's source (measured against Envoy 1.40 with `use_remote_address:
    true`: the peer, whatever x-forwarded-for says — for a loopback peer Envoy even appends
    another address to it); with trusted hops, the (trusted_hops + 1)-th address from the
    right of x-forwarded-for, or the peer when there are fewer."""
    if xff and trusted_hops > 0:
        addresses = [part.strip() for part in xff.split(",") if part.strip()]
        if len(addresses) > trusted_hops:
            return addresses[-1 - trusted_hops]
    return peer


def _parse_query(query: str) -> list[tuple[str, str]]:
    params = []
    for part in query.split("&"):
        if part:
            key, _, value = part.partition("=")
            params.append((unquote(key), unquote(value)))
    return params


def split_path(raw_path: str) -> tuple[str, str]:
    """`/a/b?x=1#f` -> (`/a/b`, `x=1`): Istio matches paths without query and fragment."""
    path, _, rest = raw_path.partition("?")
    path = path.partition("#")[0]
    query = rest.partition("#")[0]
    return path or "/", query
