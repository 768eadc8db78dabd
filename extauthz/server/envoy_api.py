"""The only protobuf code: Envoy's CheckRequest in, CheckResponse out (envoy.service.auth.v3)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple, TypeVar

from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2
from envoy.type.v3 import http_status_pb2
from google.protobuf import struct_pb2
from google.rpc import code_pb2, status_pb2

from extauthz.attributes import RequestAttributes, split_path, trusted_client_ip
from extauthz.bounded import BoundedCache
from extauthz.decision import Decision, Verdict
from extauthz.server.peer import PeerNames
from extauthz.snapshot.inputs import DecisionInputs
from extauthz.summary import DecisionSummary, summarize

_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
_APPEND = base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD


def _headers(
    http: Any, read_first: Iterable[str] = (), raw: RawHeaderMap | None = None
) -> tuple[Mapping[str, str], Mapping[str, tuple[str, ...]]]:
    """The request's headers joined as Envoy's matchers see them, and (from a raw header
    map, sent with `encode_raw_headers`) each header's entries one by one."""
    if raw is None:
        raw = raw_header_map(http, read_first)
    if raw is None:
        headers: Mapping[str, str] = http.headers  # a protobuf map: lookups, no copy
        return headers, _NO_LISTS
    return raw.views()


def raw_header_map(http: Any, read_first: Iterable[str] = ()) -> RawHeaderMap | None:
    """The request's raw header map (what Envoy sends with `encode_raw_headers`), decoded
    lazily; None when the request has a plain `headers` map or no headers at all. Built once
    per request, it serves both the memo key and to_attributes with one pass."""
    if http.headers:
        return None
    entries = http.header_map.headers
    return RawHeaderMap(entries, read_first, http) if entries else None


_NO_LISTS: Mapping[str, tuple[str, ...]] = MappingProxyType({})
V = TypeVar("V")
# Headers a decision not remembered reads whatever the policies: the request id (every
# one), and what a 401's WWW-Authenticate URL is built from. Decoded with the memo key's
# headers, each costs a remembered answer little (and nothing when absent); the rest of the
# map is decoded only when something else is read.
_READ_FIRST = ("x-request-id", "x-forwarded-proto", "x-envoy-original-path")


class RawHeaderMap:
    """A raw header map, decoded lazily. Envoy sends a dozen or more headers (a browser's
    request twenty) and a decision usually reads a few: the token's, those its policies
    name, the request id. One pass decodes the entries of the names given up front (the
    memo key's, all a remembered answer reads) and finds those of _READ_FIRST, decoded on
    their first read; the first read of any other name decodes the whole map. Every read
    answers what a fully decoded map would (tests/unit/test_raw_headers.py checks that over
    generated maps and names)."""

    __slots__ = ("_complete", "_first", "_found", "_raw", "http", "read")

    def __init__(
        self, raw: Iterable[Any], read_first: Iterable[str] = (), http: Any = None
    ) -> None:
        self._raw = raw
        self.http = http  # the HttpRequest it came from, when built by raw_header_map
        # name -> True: decoded in the pass (read_first); False: found, decoded when read.
        self._first = first = _first_names(tuple(read_first))
        read: dict[str, tuple[str, ...]] = {}
        found: list[tuple[str, Any]] = []
        for header in raw:
            key = header.key.lower()
            now = first.get(key)
            if now:
                raw_value = header.raw_value
                value = raw_value.decode("utf-8", "replace") if raw_value else header.value
                read[key] = (*read.get(key, ()), value)
            elif now is not None:
                found.append((key, header))
        self.read = read  # decoded entries by lower-case name; every name once complete
        self._found = found
        self._complete = False

    def views(self) -> tuple[Mapping[str, str], Mapping[str, tuple[str, ...]]]:
        """The headers joined with "," (what Envoy's matchers see), and their entries."""
        return _LazyJoined(self), _LazyLists(self)

    def entries(self, name: str) -> tuple[str, ...] | None:
        decoded_now = self._first.get(name)
        if self._complete or decoded_now:
            return self.read.get(name)
        if decoded_now is None:
            return self.everything().get(name)
        if self._found:  # a _READ_FIRST name: decode those found, once
            for key, header in self._found:
                self.read[key] = (*self.read.get(key, ()), _decoded(header))
            self._found = []
        return self.read.get(name)

    def everything(self) -> dict[str, tuple[str, ...]]:
        if not self._complete:
            self.read = _header_lists(self._raw)
            self._found = []
            self._complete = True
        return self.read


@functools.lru_cache(maxsize=64)
def _first_names(read_first: tuple[str, ...]) -> dict[str, bool]:
    """What a RawHeaderMap's pass does with each name: decode the names given (a
    snapshot's, a few per configuration, so few distinct tuples), find those of _READ_FIRST.
    Never changed once made (the cache shares it)."""
    return {**dict.fromkeys(_READ_FIRST, False), **dict.fromkeys(read_first, True)}


class _LazyView(Mapping[str, V]):
    """A read-only view of a RawHeaderMap: each name's entries, as `_value` shows them."""

    __slots__ = ("_map",)

    def __init__(self, raw: RawHeaderMap) -> None:
        self._map = raw

    def _value(self, entries: tuple[str, ...]) -> V:
        raise NotImplementedError

    def get(self, name: str, default: Any = None) -> Any:
        found = self._map.entries(name)
        return default if found is None else self._value(found)

    def __getitem__(self, name: str) -> V:
        found = self._map.entries(name)
        if found is None:
            raise KeyError(name)
        return self._value(found)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._map.entries(name) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self._map.everything())

    def __len__(self) -> int:
        return len(self._map.everything())


class _LazyLists(_LazyView[tuple[str, ...]]):
    """Each header's entries one by one."""

    __slots__ = ()

    def _value(self, entries: tuple[str, ...]) -> tuple[str, ...]:
        return entries


class _LazyJoined(_LazyView[str]):
    """Each header's entries joined with "," (what Envoy's header matchers see)."""

    __slots__ = ()

    def _value(self, entries: tuple[str, ...]) -> str:
        return ",".join(entries)


def to_attributes(
    request: external_auth_pb2.CheckRequest,
    xff_trusted_hops: int = 0,
    peer_names: PeerNames | None = None,
    read_first: Iterable[str] = (),
    raw: RawHeaderMap | None = None,
) -> RequestAttributes:
    """The request as decisions read it. From a raw header map, the entries of the headers
    named in `read_first` (those the snapshot's decisions read) are found up front and any
    other on first read: that changes what reading costs, never what is read. `raw` is this
    request's map when the caller built it already (raw_header_map, for the memo key)."""
    attributes = request.attributes
    http = attributes.request.http
    headers, header_lists = _headers(http, read_first, raw)
    path, query = split_path(http.path or headers.get(":path", "/"))
    # Each step into a protobuf message makes an object: each is taken once.
    source = attributes.source
    source_address = source.address.socket_address
    source_ip, principal = source_address.address, source.principal
    destination = attributes.destination.address.socket_address
    return RequestAttributes(
        method=http.method or headers.get(":method", ""),
        host=http.host or headers.get(":authority", ""),
        path=path,
        query=query,
        headers=headers,
        header_lists=header_lists,
        scheme=http.scheme or "http",
        source_ip=source_ip,
        source_port=source_address.port_value,
        # x-forwarded-for counts only with trusted hops: not read (decoded) otherwise.
        remote_ip=trusted_client_ip(headers.get("x-forwarded-for"), source_ip, xff_trusted_hops)
        if xff_trusted_hops > 0
        else source_ip,
        destination_ip=destination.address,
        destination_port=destination.port_value,
        source_principal=principal,
        peer_identities=(peer_names or PeerNames(0)).of(source.certificate, principal),
        # Envoy's TLS inspector lower-cases the SNI before RBAC sees it (measured).
        sni=attributes.tls_session.sni.lower(),
        request_id=headers.get("x-request-id", ""),
        context_extensions=attributes.context_extensions,
    )


# A remembered answer keeps its key: longer requests (a 60 KiB path or header a client can
# send, each one new) are decided every time, so the memo holds at most 4096 keys of 8 KiB.
MAX_KEY_CHARS = 8192


def decision_key(
    attributes: attribute_context_pb2.AttributeContext,
    inputs: DecisionInputs,
    scope: int,
    raw_map: RawHeaderMap | None = None,
) -> tuple[Any, ...] | None:
    """The values `inputs` names, raw as Envoy sent them in a CheckRequest's attributes,
    prefixed with `scope`: two requests with equal keys get equal decisions (see
    snapshot/inputs.py); from a raw header map, a header's value is the tuple of its entries.
    None when this request is not to be remembered: preflights (CORS bypass reads more
    headers), requests where to_attributes would fall back to pseudo-headers, and keys
    longer than MAX_KEY_CHARS."""
    if not inputs.rememberable:
        return None
    http = raw_map.http if raw_map is not None and raw_map.http is not None else None
    if http is None:
        http = attributes.request.http
    method, path, host = http.method, http.path, http.host
    if method == "OPTIONS" or not method or not path or not host:
        return None
    read: Callable[[str], Any]
    if raw_map is not None:
        read = raw_map.entries  # this request's raw map, built with inputs.headers read first
    else:
        headers: Mapping[str, Any] = http.headers
        raw = http.header_map.headers if not headers else None
        if not (headers or raw):
            return None
        # From a raw map, only the entries of the headers the key reads.
        read = (_header_lists(raw, inputs.headers) if raw else headers).get
    key = [scope, method, host, path]
    size = len(path) + len(host)
    for name in inputs.headers:
        value = read(name)
        if value is not None:
            size += len(value) if isinstance(value, str) else sum(map(len, value))
        key.append(value)
    if size > MAX_KEY_CHARS:
        return None
    if inputs.source_ip:
        key.append(attributes.source.address.socket_address.address)
    if inputs.destination:
        destination = attributes.destination.address.socket_address
        key.append(destination.address)
        key.append(destination.port_value)
    if inputs.source_principal:
        key.append(attributes.source.principal)
        key.append(attributes.source.certificate)  # its names are the peer's identities
    if inputs.sni:
        key.append(attributes.tls_session.sni)
    return tuple(key)


def _header_lists(
    raw: Iterable[Any], only: Collection[str] | None = None
) -> dict[str, tuple[str, ...]]:
    """A raw header map's entries by lower-case name, values as sent (bytes decoded); with
    `only`, just the entries of those (lower-case) names."""
    lists: dict[str, tuple[str, ...]] = {}
    for header in raw:
        key = header.key.lower()
        if only is not None and key not in only:
            continue
        lists[key] = (*lists.get(key, ()), _decoded(header))
    return lists


def _decoded(header: Any) -> str:
    """One entry's value as sent: its raw bytes decoded, else its string value."""
    raw_value: bytes = header.raw_value
    value: str = raw_value.decode("utf-8", "replace") if raw_value else header.value
    return value


def log_fields(
    attributes: attribute_context_pb2.AttributeContext,
) -> tuple[str, str, str, str, str]:
    """What a decision line says of a request (logs.RequestFields), read straight from a
    request that had a decision_key (so method, host and path are set), with the values
    to_attributes would give: request id, method, host, path without query, source ip."""
    http = attributes.request.http
    request_id = http.headers.get("x-request-id", "")
    if not request_id and http.header_map.headers:
        request_id = ",".join(_header_lists(http.header_map.headers).get("x-request-id", ()))
    return (
        request_id,
        http.method,
        http.host,
        split_path(http.path)[0],
        attributes.source.address.socket_address.address,
    )


def _header_options(pairs: Iterable[tuple[str, str]]) -> list[base_pb2.HeaderValueOption]:
    """The first value of a name replaces what the request had; later values of the same
    name are added beside it (jwt_authn adds one claim header per verified token)."""
    seen: set[str] = set()
    options = []
    for key, value in pairs:
        option = base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key=key, value=value))
        if key in seen:
            # ext_authz reads the older `append` flag for an allowed request's headers.
            option.append.value = True
            option.append_action = _APPEND
        else:
            option.append_action = _OVERWRITE
        seen.add(key)
        options.append(option)
    return options


_GRPC_CODE = {
    Verdict.ALLOW: code_pb2.OK,
    Verdict.DENY: code_pb2.PERMISSION_DENIED,
    Verdict.UNAUTHENTICATED: code_pb2.UNAUTHENTICATED,
}


class _Payloads:
    """Verified payloads by issuer, equal only to the very same objects: comparing whole JSON
    payloads would cost more than building the response again. Equal ids are the same
    objects, as both sides hold theirs alive (and a remembered response's key holds its
    own, so their ids cannot pass to other payloads while it is remembered)."""

    __slots__ = ("_ids", "items")

    def __init__(self, payloads: Mapping[str, Any]) -> None:
        self.items = tuple(payloads.items())
        self._ids = (*payloads, *map(id, payloads.values()))  # the issuers, then the ids

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Payloads) and self._ids == other._ids

    def __hash__(self) -> int:
        return hash(self._ids)


_NO_PAYLOADS = _Payloads({})


# A NamedTuple for the reason DecisionSummary is one: it is made for every decided request.
class ResponseFacts(NamedTuple):
    """Everything a CheckResponse is made of, taken from a Decision once. build_response reads
    nothing else, and built responses are found again by these facts, so a fact added to the
    response is part of that key by construction."""

    summary: DecisionSummary  # the gRPC code (by verdict), HTTP status and dynamic metadata
    body: str  # a denial's
    response_headers: tuple[tuple[str, str], ...]  # sent to the client with a denial
    # What an allowed request loses or gains on its way upstream.
    headers_to_set: tuple[tuple[str, str], ...]
    headers_to_remove: tuple[str, ...]
    params_to_remove: tuple[str, ...]
    payloads: _Payloads  # verified payloads, for the metadata (by identity)


def response_facts(decision: Decision, payloads: bool = False) -> ResponseFacts:
    """The facts of a decision's response; without `payloads`, the verified payloads are
    left out of its metadata (converting each new token's payload to protobuf costs about
    a tenth of a new token's Check, for a copy only Envoy's access log could read)."""
    authn = decision.authn
    return ResponseFacts(
        summarize(decision),
        decision.body,
        decision.response_headers,
        authn.headers_to_set,
        authn.headers_to_remove,
        authn.params_to_remove,
        _Payloads(authn.payloads) if authn.payloads and payloads else _NO_PAYLOADS,
    )


def dynamic_metadata(decision: Decision) -> dict[str, Any]:
    return metadata_fields(summarize(decision))


def metadata_fields(summary: DecisionSummary) -> dict[str, Any]:
    """What Envoy's access log can read under the ext_authz filter's namespace, e.g.
    %DYNAMIC_METADATA(envoy.filters.http.ext_authz:request_principal)%. Never the token."""
    metadata: dict[str, Any] = {
        "decision": summary.verdict.value,
        "reason": summary.reason,
        "generation": summary.generation,
    }
    if summary.principal:
        metadata["request_principal"] = summary.principal
    if summary.policy:
        metadata["policy"] = summary.policy
        metadata["rule"] = summary.rule
    if summary.detail:
        metadata["detail"] = summary.detail
    if summary.audits:
        metadata["audit"] = list(summary.audits)
    if summary.dry_run:
        metadata["dry_run"] = list(summary.dry_run)
    return metadata


def _metadata(facts: ResponseFacts) -> struct_pb2.Struct:
    metadata = struct_pb2.Struct()
    metadata.update(metadata_fields(facts.summary))
    if facts.payloads.items:
        # Shaped like jwt_authn's payload_in_metadata, which Istio keys by issuer.
        payloads = metadata.fields["jwt_payload"].struct_value
        for issuer, payload in facts.payloads.items:
            if _nesting(payload) <= MAX_METADATA_NESTING:
                payloads.fields[issuer].struct_value.update(payload)
    return metadata


# Each JSON level is two protobuf messages (Struct, Value), and Envoy parses a response only
# 100 messages deep: a payload nested deeper (a valid token may be) would turn the answer
# into an ext_authz error, a 403. Such a payload is left out of the metadata; the decision
# stands.
MAX_METADATA_NESTING = 32


def _nesting(value: Any, depth: int = 0) -> int:
    """How deep a JSON value nests (0 for a scalar), counting no further than the limit."""
    if depth > MAX_METADATA_NESTING:
        return depth
    if isinstance(value, dict):
        return max((_nesting(v, depth + 1) for v in value.values()), default=depth + 1)
    if isinstance(value, list):
        return max((_nesting(v, depth + 1) for v in value), default=depth + 1)
    return depth


class Responses:
    """Responses already built, by the facts they are built from. Most requests repeat a few
    outcomes (the same cached token, the same denial, the same 401 for one path whatever
    junk token came with it), so most answers are found here. Owned by the service (one per
    AuthorizationService). A 401 names the request's URL in its challenge, so one is kept
    only when its body and headers stay under MAX_KEPT_DENIAL_CHARS; refusals, which may
    quote the request, are never kept."""

    def __init__(self, max_entries: int = 4096, payload_metadata: bool = False) -> None:
        self._payloads = payload_metadata  # jwt_payload in the metadata (--payload-metadata)
        self._entries: BoundedCache[ResponseFacts, external_auth_pb2.CheckResponse] = BoundedCache(
            max_entries, max_entry_cost=MAX_KEPT_DENIAL_CHARS
        )

    def clear(self) -> None:
        self._entries.clear()

    def get(self, decision: Decision) -> external_auth_pb2.CheckResponse:
        """The CheckResponse for a decision (built once per distinct outcome; never mutate
        it)."""
        facts = response_facts(decision, self._payloads)
        unauthenticated = decision.verdict is Verdict.UNAUTHENTICATED
        if decision.authn.validity is None and not unauthenticated:
            return _build(facts)
        found = self._entries.get(facts)
        if found is None:
            found = _build(facts)
            self._entries.put(facts, found, _quoted_chars(facts) if unauthenticated else 0)
        return found


# A kept 401's client text (the challenge quotes the URL, the summary the unverified token's
# issuer, subject and kid): at most 4,096 x 2 KiB of it.
MAX_KEPT_DENIAL_CHARS = 2048


def _quoted_chars(facts: ResponseFacts) -> int:
    """How much of a client's text the facts of a denial hold: its key and its response."""
    summary = facts.summary
    return (
        sum(
            map(len, (summary.reason, summary.detail, summary.issuer, summary.subject, summary.kid))
        )
        + sum(len(value) for _, value in facts.response_headers)
        + len(facts.body)
    )


def build_response(
    decision: Decision, payload_metadata: bool = False
) -> external_auth_pb2.CheckResponse:
    """A new CheckResponse for a decision (Responses.get gives the one already built)."""
    return _build(response_facts(decision, payload_metadata))


def _build(facts: ResponseFacts) -> external_auth_pb2.CheckResponse:
    summary = facts.summary
    status = status_pb2.Status(code=_GRPC_CODE[summary.verdict])
    if summary.verdict is Verdict.ALLOW:
        return external_auth_pb2.CheckResponse(
            status=status,
            ok_response=external_auth_pb2.OkHttpResponse(
                headers=_header_options(facts.headers_to_set),
                headers_to_remove=list(facts.headers_to_remove),
                query_parameters_to_remove=list(facts.params_to_remove),
            ),
            dynamic_metadata=_metadata(facts),
        )
    return external_auth_pb2.CheckResponse(
        status=status,
        denied_response=external_auth_pb2.DeniedHttpResponse(
            status=http_status_pb2.HttpStatus(code=summary.status),
            headers=_header_options(facts.response_headers),
            body=facts.body,
        ),
        dynamic_metadata=_metadata(facts),
    )
