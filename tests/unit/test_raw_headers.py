"""Raw header maps (Envoy's `encode_raw_headers`) decoded lazily by envoy_api.to_attributes
(RawHeaderMap): whatever names are decoded up front, every read gives what a fully decoded
map gives."""

from __future__ import annotations

from typing import Any

from envoy.service.auth.v3 import external_auth_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from extauthz.server.envoy_api import decision_key, raw_header_map, to_attributes
from extauthz.snapshot.inputs import DecisionInputs

# Few names, so that entries repeat, names differ only in case, and probes hit and miss.
_NAMES = ["authorization", "Authorization", "x-foo", "X-FOO", "cookie", "x-request-id", "x-forwarded-for", "x-forwarded-proto", ":path", "te"]  # fmt: skip
_PROBES = [*_NAMES, "absent", "x-bar", ""]
_VALUES = st.one_of(
    st.text(max_size=8).map(lambda text: ("value", text)),
    st.binary(max_size=8).map(lambda data: ("raw_value", data)),  # also invalid UTF-8
)


def _request(entries: list[tuple[str, tuple[str, Any]]]) -> external_auth_pb2.CheckRequest:
    request = external_auth_pb2.CheckRequest()
    http = request.attributes.request.http
    http.method, http.path, http.host = "GET", "/p?q=1", "example.com"
    for name, (field, value) in entries:
        http.header_map.headers.add(key=name, **{field: value})
    return request


def _reads(attrs: Any, probes: list[str]) -> list[object]:
    """Every way a decision reads headers, for each probe in order, then the whole maps."""
    seen: list[object] = []
    for name in probes:
        seen += [
            attrs.headers.get(name),
            attrs.headers.get(name, "default"),
            name in attrs.headers,
            attrs.header_lists.get(name),
            name in attrs.header_lists,
            attrs.header_values(name),
        ]
        try:
            seen.append(attrs.headers[name])
        except KeyError:
            seen.append(KeyError)
    seen += [dict(attrs.headers), dict(attrs.header_lists), len(attrs.headers), attrs]
    return seen


@settings(max_examples=300, derandomize=True, deadline=None)
@given(
    entries=st.lists(st.tuples(st.sampled_from(_NAMES), _VALUES), min_size=1, max_size=12),
    first=st.lists(st.sampled_from(_PROBES), max_size=4),
    probes=st.lists(st.sampled_from(_PROBES), max_size=8),
    cookie_name=st.sampled_from(["a", "session"]),
)
def test_every_read_equals_that_of_a_fully_decoded_map(
    entries: list[tuple[str, tuple[str, Any]]],
    first: list[str],
    probes: list[str],
    cookie_name: str,
) -> None:
    eager = to_attributes(_request(entries))
    lazy = to_attributes(_request(entries), read_first=first)
    assert _reads(lazy, probes) == _reads(eager, probes)
    request = _request(entries)
    fresh = to_attributes(request, read_first=first)
    assert fresh.cookie(cookie_name) == eager.cookie(cookie_name)
    assert (fresh.remote_ip, fresh.request_id) == (eager.remote_ip, eager.request_id)
    # As `serve` does: one map serves the memo key first, then the attributes.
    request = _request(entries)
    inputs = DecisionInputs(headers=tuple(dict.fromkeys(name.lower() for name in first)))
    shared = raw_header_map(request.attributes.request.http, inputs.headers)
    key = decision_key(request.attributes, inputs, 1, shared)
    assert key == decision_key(_request(entries).attributes, inputs, 1)
    shared_attrs = to_attributes(request, read_first=inputs.headers, raw=shared)
    assert _reads(shared_attrs, probes) == _reads(eager, probes)
    assert (shared_attrs.remote_ip, shared_attrs.request_id) == (eager.remote_ip, eager.request_id)


def test_names_read_first_are_decoded_without_the_rest() -> None:
    """The point of it: a read of a name given up front does not decode other entries."""
    request = _request([("authorization", ("value", "Bearer t")), ("x-foo", ("raw_value", b"1"))])
    attrs = to_attributes(request, read_first=("authorization", "x-listed-absent"))
    raw_map = attrs.headers._map  # type: ignore[attr-defined]
    assert attrs.headers.get("authorization") == "Bearer t"
    assert attrs.header_values("x-listed-absent") == ()
    assert not raw_map._complete
    assert attrs.headers.get("x-foo") == "1"  # any other name: the whole map, once
    assert raw_map._complete


def test_the_request_id_is_found_in_the_pass_and_decoded_when_read() -> None:
    request = _request([("x-request-id", ("raw_value", b"id-1")), ("authorization", ("value", "Bearer t")), ("x-foo", ("value", "1"))])  # fmt: skip
    raw_map = raw_header_map(request.attributes.request.http, ("authorization",))
    assert raw_map is not None and raw_map.read == {"authorization": ("Bearer t",)}
    assert raw_map.entries("x-request-id") == ("id-1",)
    assert not raw_map._complete and "x-foo" not in raw_map.read


def test_a_plain_headers_map_is_read_as_it_is() -> None:
    request = external_auth_pb2.CheckRequest()
    request.attributes.request.http.headers.update({"authorization": "Bearer t", "x-foo": "1"})
    attrs = to_attributes(request, read_first=("authorization",))
    assert dict(attrs.headers) == {"authorization": "Bearer t", "x-foo": "1"}
    assert dict(attrs.header_lists) == {}
