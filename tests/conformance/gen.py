"""Seeded generators for the differential suite: keys and JWKS, RequestAuthentications,
AuthorizationPolicies, tokens (valid, tampered, malformed) and requests.

Everything comes from one `random.Random(seed)`, so a seed names a whole run. Values are
drawn from small pools on purpose: collisions (two rules with one issuer, a policy naming
the issuer a token carries) are where Envoy's and extauthz's answers part.

Peer identity: after a case is drawn as before, a second generator (seeded from the first's
state, which it does not advance) makes some cases TLS cases, adds policies on the peer
(principals, namespaces, serviceAccounts, trustDomains and `when` on source.principal,
source.namespace, connection.sni) and gives each request a client certificate and an SNI.
So a seed's other cases are what they were before peers were generated."""

from __future__ import annotations

import base64
import json
import random
import time
from dataclasses import dataclass, replace
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from tests.conformance.certs import ClientCert
from tests.conformance.harness import Case, Request

NOW = int(time.time())  # for tokens made once per process (regression cases)


def _now() -> int:
    """Generated tokens' times are relative to when they are made (a batch is sent within
    seconds of being generated), and stay a minute or more away from Envoy's 60 s skew."""
    return int(time.time())


ISSUERS = ("iss-a", "iss-b", "https://issuer.example/c", "testing@secure.istio.io")
AUDIENCES = ("aud-1", "aud-2", "bookstore", "")
SUBJECTS = ("alice", "bob", "svc/x", "")
ALGORITHMS = (
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
    "ES256", "ES384", "ES512", "EdDSA", "HS256", "HS384", "HS512",
)  # fmt: skip
PATHS = (
    "/", "/productpage", "/api/v1/products/0", "/api/v1/products/1", "/admin", "/admin/x",
    "/public/a", "/Public/a", "/a/b/c", "/a//b", "/a/./b", "/a/../admin", "/a%2Fb", "/%61dmin",
    "/x?access_token=1", "/healthz", "/api/v1/items/7/edit",
)  # fmt: skip
HOSTS = ("example.com", "EXAMPLE.com", "example.com:8080", "other.org", "api.example.com")
ALG_NONE = b'{"alg":"none"}'
METHODS = ("GET", "GET", "POST", "PUT", "DELETE", "OPTIONS", "HEAD", "PATCH")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class Key:
    alg: str
    kid: str  # "" when the JWK has none
    private: Any
    jwk: dict[str, Any]

    def sign(self, signing_input: bytes) -> bytes:
        algorithm = jwt.algorithms.get_default_algorithms()[self.alg]
        signature: bytes = algorithm.sign(signing_input, self.private)  # type: ignore[no-untyped-call]
        return signature


_RSA_POOL: list[Any] = []


def _rsa(rng: random.Random) -> Any:
    # RSA keys are slow to make: a small pool, drawn from by the seed.
    while len(_RSA_POOL) < 4:
        _RSA_POOL.append(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    return rng.choice(_RSA_POOL)


def make_key(rng: random.Random, alg: str, kid: str, with_alg: bool) -> Key:
    family = alg[:2]
    algorithm = jwt.algorithms.get_default_algorithms()[alg]
    if family in ("RS", "PS"):
        private = _rsa(rng)
        public = private.public_key()
    elif family == "ES":
        curve = {"ES256": ec.SECP256R1(), "ES384": ec.SECP384R1(), "ES512": ec.SECP521R1()}[alg]
        private = ec.generate_private_key(curve)
        public = private.public_key()
    elif alg == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
        public = private.public_key()
    else:
        private = rng.randbytes({"HS256": 32, "HS384": 48, "HS512": 64}[alg])
        public = private
    jwk = json.loads(algorithm.to_jwk(public))  # type: ignore[no-untyped-call]
    if family == "HS":
        jwk = {"kty": "oct", "k": b64(private)}
    if kid:
        jwk["kid"] = kid
    if with_alg:
        jwk["alg"] = alg
    return Key(alg, kid, private, jwk)


# -- tokens ------------------------------------------------------------------------------------


def encode(header: dict[str, Any] | str, payload: dict[str, Any] | str, key: Key) -> str:
    h = header if isinstance(header, str) else json.dumps(header, separators=(",", ":"))
    p = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    signing_input = f"{b64(h.encode())}.{b64(p.encode())}".encode()
    return f"{signing_input.decode()}.{b64(key.sign(signing_input))}"


def claims_for(rng: random.Random, issuer: str) -> dict[str, Any]:
    now = _now()
    claims: dict[str, Any] = {"iss": issuer, "exp": now + 3600}
    sub = rng.choice((*SUBJECTS, "alice"))
    if rng.random() < 0.9:
        claims["sub"] = sub
    aud = rng.random()
    if aud < 0.35:
        claims["aud"] = rng.choice(AUDIENCES)
    elif aud < 0.6:
        claims["aud"] = rng.sample(AUDIENCES[:3], rng.randint(1, 2))
    if rng.random() < 0.5:
        claims["groups"] = rng.sample(["admin", "dev", "ops"], rng.randint(0, 2))
    if rng.random() < 0.4:
        claims["scope"] = rng.choice(["read", "read write", "write admin", ""])
    if rng.random() < 0.3:
        claims["foo"] = rng.choice(["bar", "baz", 7, True, ["bar", "x"], {"n": "v"}])
    if rng.random() < 0.2:
        claims["iat"] = now - rng.randint(0, 100)
    if rng.random() < 0.15:
        claims["nbf"] = now + rng.choice([-600, -200, -30, 200, 600])
    return claims


def token_variant(rng: random.Random, key: Key, issuer: str) -> tuple[str, str]:
    """(label, token): mostly valid tokens, the rest broken in one way each."""
    header: dict[str, Any] = {"alg": key.alg}
    if key.kid and rng.random() < 0.85:
        header["kid"] = key.kid
    if rng.random() < 0.5:
        header["typ"] = "JWT"
    claims = claims_for(rng, issuer)
    kind = rng.choices(
        ["valid", "expired", "future-nbf", "no-exp", "tampered-sig", "tampered-payload",
         "other-issuer", "alg-none", "bad-b64", "bad-json", "two-parts", "padding",
         "wrong-kid", "exp-string", "aud-number"],
        weights=[30, 5, 3, 3, 4, 4, 4, 2, 2, 2, 2, 2, 3, 2, 2],
    )[0]  # fmt: skip
    if kind == "expired":
        claims["exp"] = _now() - rng.choice([15, 120, 3600])
    elif kind == "future-nbf":
        claims["nbf"] = _now() + rng.choice([30, 120, 3600])
    elif kind == "no-exp":
        claims.pop("exp")
    elif kind == "other-issuer":
        claims["iss"] = rng.choice([i for i in ISSUERS if i != issuer])
    elif kind == "wrong-kid":
        header["kid"] = "no-such-kid"
    elif kind == "exp-string":
        claims["exp"] = str(claims["exp"])
    elif kind == "aud-number":
        claims["aud"] = 7
    token = encode(header, claims, key)
    head, payload, signature = token.split(".")
    if kind == "tampered-sig":
        token = f"{head}.{payload}.{signature[:-4]}AAAA"
    elif kind == "tampered-payload":
        claims["sub"] = "mallory"
        token = f"{head}.{b64(json.dumps(claims).encode())}.{signature}"
    elif kind == "alg-none":
        token = f"{b64(ALG_NONE)}.{payload}."
    elif kind == "bad-b64":
        token = f"{head}.{payload[:5]}*{payload[6:]}.{signature}"
    elif kind == "bad-json":
        token = encode(header, json.dumps(claims)[:-1], key)
    elif kind == "two-parts":
        token = f"{head}.{payload}"
    elif kind == "padding":
        token = f"{head}.{payload}==.{signature}"
    return kind, token


# -- configurations ----------------------------------------------------------------------------


@dataclass
class RuleSpec:
    issuer: str
    keys: list[Key]
    rule: dict[str, Any]  # the JWTRule as YAML

    @property
    def locations(self) -> list[tuple[str, str, str]]:
        """(kind, name, prefix) where this rule reads tokens."""
        found = [
            ("header", h["name"], h.get("prefix", "")) for h in self.rule.get("fromHeaders", [])
        ]
        found += [("param", p, "") for p in self.rule.get("fromParams", [])]
        found += [("cookie", c, "") for c in self.rule.get("fromCookies", [])]
        return found or [("header", "authorization", "Bearer "), ("param", "access_token", "")]


def jwt_rule(rng: random.Random, index: int) -> RuleSpec:
    issuer = rng.choice(ISSUERS)
    keys = []
    for k in range(rng.choice([1, 1, 2, 3])):
        alg = rng.choice(ALGORITHMS)
        kid = f"k{index}-{k}" if rng.random() < 0.8 else ""
        keys.append(make_key(rng, alg, kid, with_alg=rng.random() < 0.7))
    rule: dict[str, Any] = {"issuer": issuer, "jwks": json.dumps({"keys": [k.jwk for k in keys]})}
    if rng.random() < 0.4:
        rule["audiences"] = rng.sample(AUDIENCES[:3], rng.randint(1, 2))
    where = rng.random()
    if where < 0.2:
        rule["fromHeaders"] = [{"name": "x-jwt"}]
    elif where < 0.3:
        rule["fromHeaders"] = [{"name": "authorization", "prefix": "Bearer "}, {"name": "x-token"}]
    elif where < 0.38:
        rule["fromParams"] = ["token"]
    elif where < 0.45:
        rule["fromCookies"] = ["session"]
    if rng.random() < 0.3:
        rule["forwardOriginalToken"] = True
    if rng.random() < 0.3:
        rule["outputClaimToHeaders"] = [
            {"header": "x-jwt-sub", "claim": "sub"},
            {"header": "x-jwt-groups", "claim": rng.choice(["groups", "foo", "scope"])},
        ][: rng.randint(1, 2)]
    if rng.random() < 0.2:
        rule["outputPayloadToHeader"] = "x-jwt-payload"
    return RuleSpec(issuer, keys, rule)


def _strings(rng: random.Random, pool: tuple[str, ...], most: int = 2) -> list[str]:
    return rng.sample(pool, rng.randint(1, min(most, len(pool))))


PRINCIPAL_PATTERNS = (
    "*", "iss-a/alice", "iss-a/*", "*/alice", "testing@secure.istio.io/testing@secure.istio.io",
    "https://issuer.example/c/bob", "iss-b/", "iss-*", "*alice",
)  # fmt: skip
PATH_PATTERNS = ("/productpage", "/admin*", "/api/*", "*/edit", "/public/*", "*", "/a/b/c")
HOST_PATTERNS = ("example.com", "*.example.com", "EXAMPLE.COM", "other.*", "*")


def source(rng: random.Random) -> dict[str, Any]:
    field = rng.choice(["requestPrincipals", "notRequestPrincipals", "ipBlocks",
                        "notIpBlocks", "remoteIpBlocks"])  # fmt: skip
    if "Principals" in field:
        return {field: _strings(rng, PRINCIPAL_PATTERNS)}
    return {field: _strings(rng, ("127.0.0.1", "127.0.0.0/8", "10.0.0.0/8", "::1"))}


def operation(rng: random.Random) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field, pool in (
        ("paths", PATH_PATTERNS), ("notPaths", PATH_PATTERNS), ("methods", METHODS[:6]),
        ("notMethods", METHODS[:6]), ("hosts", HOST_PATTERNS), ("notHosts", HOST_PATTERNS),
    ):  # fmt: skip
        if rng.random() < 0.25:
            out[field] = _strings(rng, pool)
    return out or {"paths": _strings(rng, PATH_PATTERNS)}


def condition(rng: random.Random) -> dict[str, Any]:
    key = rng.choice([
        "request.auth.claims[groups]", "request.auth.claims[scope]", "request.auth.claims[foo]",
        "request.auth.claims[iss]", "request.auth.audiences", "request.auth.principal",
        "request.auth.presenter", "request.headers[x-team]", "source.ip", "remote.ip",
        "destination.port", "request.auth.claims[foo][n]",
    ])  # fmt: skip
    pools = {
        "request.auth.principal": PRINCIPAL_PATTERNS,
        "request.auth.audiences": AUDIENCES[:3],
        "source.ip": ("127.0.0.1", "10.0.0.0/8"),
        "remote.ip": ("127.0.0.1", "10.0.0.0/8"),
        "destination.port": ("80", "8080", "9999"),
        "request.headers[x-team]": ("blue", "red*", "*"),
    }
    values = _strings(rng, pools.get(key, ("admin", "read", "bar", "v", "iss-a", "*", "dev")))
    return {"key": key, rng.choice(["values", "values", "notValues"]): values}


def authorization_policy(rng: random.Random, namespace: str, index: int) -> dict[str, Any]:
    action = rng.choice(["ALLOW", "ALLOW", "DENY", "DENY", "AUDIT"])
    rules = []
    for _ in range(rng.choice([0, 1, 1, 2, 3]) if action == "ALLOW" else rng.randint(1, 2)):
        rule: dict[str, Any] = {}
        if rng.random() < 0.6:
            rule["from"] = [{"source": source(rng)} for _ in range(rng.randint(1, 2))]
        if rng.random() < 0.6:
            rule["to"] = [{"operation": operation(rng)} for _ in range(rng.randint(1, 2))]
        if rng.random() < 0.4:
            rule["when"] = [condition(rng) for _ in range(rng.randint(1, 2))]
        rules.append(rule)
    spec: dict[str, Any] = {"action": action, "rules": rules}
    if not rules and rng.random() < 0.5:
        spec.pop("rules")
    metadata: dict[str, Any] = {"name": f"ap-{index}", "namespace": namespace}
    return {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": metadata, "spec": spec}  # fmt: skip


def request_authentication(namespace: str, index: int, rules: list[RuleSpec]) -> dict[str, Any]:
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": "RequestAuthentication",
        "metadata": {"name": f"ra-{index}", "namespace": namespace},
        "spec": {"jwtRules": [r.rule for r in rules]},
    }


# -- requests ----------------------------------------------------------------------------------


def _place(
    location: tuple[str, str, str], token: str, path: str
) -> tuple[str, tuple[str, str] | None]:
    kind, name, prefix = location
    if kind == "header":
        return path, (name, f"{prefix}{token}")
    if kind == "cookie":
        return path, ("cookie", f"other=1; {name}={token}")
    joiner = "&" if "?" in path else "?"
    return f"{path}{joiner}{name}={token}", None


def request(rng: random.Random, rules: list[RuleSpec]) -> Request:
    method = rng.choice(METHODS)
    path = rng.choice(PATHS)
    headers: list[tuple[str, str]] = []
    labels = []
    if rng.random() < 0.3:
        headers.append(("x-team", rng.choice(["blue", "red-1", "", "green"])))
    if method == "OPTIONS" and rng.random() < 0.6:
        headers += [("origin", "https://app.example"), ("access-control-request-method", "GET")]
        labels.append("cors")
    if rng.random() < 0.15:
        headers.append(("x-jwt-sub", "spoofed"))
    for _ in range(rng.choices([0, 1, 2], weights=[2, 6, 1])[0]):
        if not rules:
            break
        spec = rng.choice(rules)
        if rng.random() < 0.1:
            spec = rng.choice(rules)
            kind, token = (
                "foreign-key",
                encode(
                    {"alg": "HS256"},
                    claims_for(rng, spec.issuer),
                    make_key(rng, "HS256", "", False),
                ),
            )
        else:
            kind, token = token_variant(rng, rng.choice(spec.keys), spec.issuer)
        path, header = _place(rng.choice(spec.locations), token, path)
        if header:
            headers.append(header)
        labels.append(kind)
    return Request(method, path, rng.choice(HOSTS), tuple(headers), "+".join(labels) or "no-token")


# -- peers (TLS cases) -------------------------------------------------------------------------

# "{ns}" is the case's own namespace (a bare serviceAccount names one there).
TRUST_DOMAINS = ("cluster.local", "td-b.example", "other.mesh")
PEER_NAMESPACES = ("default", "prod", "{ns}")
ACCOUNTS = ("sleep", "default", "productpage")
# Certificates a mesh never issues but a client can present, by the label they get.
ODD_PEERS = {
    "segments": ClientCert(uris=("spiffe://cluster.local/ns/prod/x/sa/sleep",)),
    "sa-suffix": ClientCert(uris=("spiffe://cluster.local/ns/prod/sa/sleep/extra",)),
    "no-san": ClientCert(common_name="cluster.local/ns/prod/sa/sleep"),
    "dns-san": ClientCert(dns=("client.example.com",), common_name="sleep"),
    "two-uris": ClientCert(
        uris=(
            "spiffe://other.mesh/ns/default/sa/default",
            "spiffe://cluster.local/ns/prod/sa/sleep",
        )
    ),
    "not-spiffe": ClientCert(uris=("https://cluster.local/ns/prod/sa/sleep",)),
    "ns-twice": ClientCert(uris=("spiffe://cluster.local/ns/prod/sa/sleep/ns/default/x",)),
}
SNIS = (None, "example.com", "example.com", "api.example.com", "other.org", "API.Example.com")

PEER_PRINCIPALS = (
    "cluster.local/ns/prod/sa/sleep", "cluster.local/ns/{ns}/sa/default", "cluster.local/ns/prod/*",
    "td-b.example/*", "*/sa/sleep", "*sleep", "*", "cluster.local/ns/prod/sa/sleep/extra",
    "spiffe://cluster.local/ns/prod/sa/sleep", "other.mesh/ns/default/sa/default",
)  # fmt: skip
NAMESPACE_PATTERNS = ("prod", "default", "{ns}", "pro*", "*ult", "*", "x")
SERVICE_ACCOUNTS = (
    "sleep",
    "default",
    "prod/sleep",
    "default/default",
    "{ns}/productpage",
    "prod/x",
)
TRUST_DOMAIN_PATTERNS = (
    "cluster.local", "td-b.example", "td-*", "*.mesh", "*", "other.*", "*.local", "cluster",
)  # fmt: skip
SNI_PATTERNS = ("example.com", "*.example.com", "api.*", "*", "other.org", "API.example.com")


def _in(namespace: str, values: list[str]) -> list[str]:
    return [value.replace("{ns}", namespace) for value in values]


_ACCOUNT_FIELDS = {"serviceAccounts", "notServiceAccounts"}
_NAMED_PEER_FIELDS = {"principals", "notPrincipals", "namespaces", "notNamespaces"}
_CLASHES = {
    **{name: _NAMED_PEER_FIELDS for name in _ACCOUNT_FIELDS},
    **{name: _ACCOUNT_FIELDS for name in _NAMED_PEER_FIELDS},
}


def peer_source(rng: random.Random, namespace: str) -> dict[str, Any]:
    """One to two peer fields; serviceAccounts never beside principals or namespaces (the
    CRD forbids it), sometimes beside a request principal or an IP block."""
    pools = {
        "principals": PEER_PRINCIPALS, "notPrincipals": PEER_PRINCIPALS,
        "namespaces": NAMESPACE_PATTERNS, "notNamespaces": NAMESPACE_PATTERNS,
        "serviceAccounts": SERVICE_ACCOUNTS, "notServiceAccounts": SERVICE_ACCOUNTS,
        "trustDomains": TRUST_DOMAIN_PATTERNS, "notTrustDomains": TRUST_DOMAIN_PATTERNS,
    }  # fmt: skip
    out: dict[str, Any] = {}
    for name in rng.sample(sorted(pools), rng.choice([1, 1, 2])):
        if _CLASHES.get(name, set()) & out.keys():
            continue
        out[name] = _in(namespace, _strings(rng, pools[name]))
    if rng.random() < 0.2:
        out.update(source(rng))
    return out


def peer_condition(rng: random.Random, namespace: str) -> dict[str, Any]:
    key, pool = rng.choice([
        ("source.principal", PEER_PRINCIPALS), ("source.namespace", NAMESPACE_PATTERNS),
        ("connection.sni", SNI_PATTERNS),
    ])  # fmt: skip
    return {
        "key": key,
        rng.choice(["values", "values", "notValues"]): _in(namespace, _strings(rng, pool)),
    }


def peer_policy(rng: random.Random, namespace: str, index: int) -> dict[str, Any]:
    action = rng.choice(["ALLOW", "ALLOW", "DENY", "AUDIT"])
    rules = []
    for _ in range(rng.choice([1, 1, 2])):
        rule: dict[str, Any] = {}
        if rng.random() < 0.8:
            rule["from"] = [
                {"source": peer_source(rng, namespace)} for _ in range(rng.randint(1, 2))
            ]
        if rng.random() < 0.4 or not rule:
            rule["when"] = [peer_condition(rng, namespace) for _ in range(rng.randint(1, 2))]
        if rng.random() < 0.2:
            rule["to"] = [{"operation": operation(rng)}]
        rules.append(rule)
    return {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": f"ap-peer-{index}", "namespace": namespace},
            "spec": {"action": action, "rules": rules}}  # fmt: skip


def peer(rng: random.Random, namespace: str) -> tuple[str, ClientCert]:
    """(label, certificate): mostly SPIFFE identities from the pools, some odd shapes."""
    if rng.random() < 0.2:
        label = rng.choice(sorted(ODD_PEERS))
        return label, ODD_PEERS[label]
    trust_domain = rng.choice(TRUST_DOMAINS)
    peer_namespace = rng.choice(PEER_NAMESPACES).replace("{ns}", namespace)
    label = "own-ns" if peer_namespace == namespace else "spiffe"
    return label, ClientCert.spiffe(trust_domain, peer_namespace, rng.choice(ACCOUNTS))


def with_peers(built: Case, side: random.Random) -> Case:
    """Some cases made TLS cases with peer policies; some plaintext ones get peer policies
    too (no peer: principals absent). The rest are left exactly as drawn."""
    kind = side.random()
    if kind >= 0.45:
        return built
    namespace = built.namespace
    count = side.choice([1, 1, 2])
    built.documents += [peer_policy(side, namespace, index) for index in range(count)]
    if kind >= 0.35:
        return built
    built.tls = True
    requests = []
    for request in built.requests:
        label, cert = peer(side, namespace)
        sni = side.choice(SNIS)
        requests.append(replace(request, peer=cert, sni=sni, label=f"{request.label}+tls:{label}"))
    built.requests = requests
    return built


def case(rng: random.Random, number: int, requests: int) -> Case:
    namespace = f"c{number}"
    documents: list[dict[str, Any]] = []
    rules: list[RuleSpec] = []
    for ra in range(rng.choice([0, 1, 1, 1, 2])):
        specs = [jwt_rule(rng, ra * 10 + i) for i in range(rng.choice([1, 1, 2]))]
        rules += specs
        documents.append(request_authentication(namespace, ra, specs))
    for ap in range(rng.choice([0, 1, 1, 2, 3])):
        documents.append(authorization_policy(rng, namespace, ap))
    if not documents:
        documents.append(authorization_policy(rng, namespace, 0))
    built = Case(namespace, documents)
    built.requests = [request(rng, rules) for _ in range(requests)]
    # Seeded from the state without advancing it: the next case is drawn as it always was.
    state = hash(rng.getstate()[1])
    return with_more_fields(with_peers(built, random.Random(state)), random.Random(state + 1))


TEMPLATE_PATHS = ("/api/{*}/products/{*}", "/api/{**}", "/{*}/admin", "/a/{**}/c")
HOSTS_WITH_PORTS = ("example.com:8080", "*.example.com:8080", "EXAMPLE.COM:8080", "*:8080")


def more_fields_policy(rng: random.Random, namespace: str) -> dict[str, Any]:
    """A policy on the fields the main draw leaves out: ports (never the listener's, which
    differs between the two Envoys), path templates, hosts with ports, notRemoteIpBlocks,
    destination.ip and port conditions; dry-run half the time."""
    operation: dict[str, Any] = {rng.choice(["paths", "notPaths"]): _strings(rng, TEMPLATE_PATHS)}
    if rng.random() < 0.5:
        operation[rng.choice(["hosts", "notHosts"])] = _strings(rng, HOSTS_WITH_PORTS)
    if rng.random() < 0.4:
        operation["notPorts"] = [str(rng.choice([1, 81, 9999]))]
    source = {rng.choice(["remoteIpBlocks", "notRemoteIpBlocks", "notIpBlocks"]): _strings(
        rng, ("127.0.0.1", "127.0.0.0/8", "10.0.0.0/8", "::1/128"))}  # fmt: skip
    rule: dict[str, Any] = {"to": [{"operation": operation}]}
    if rng.random() < 0.5:
        rule["from"] = [{"source": source}]
    if rng.random() < 0.4:
        key = rng.choice(["destination.ip", "destination.port"])
        values = ["127.0.0.1", "10.0.0.0/8"] if key == "destination.ip" else ["1", "81"]
        rule["when"] = [{"key": key, rng.choice(["values", "notValues"]): values}]
    metadata: dict[str, Any] = {"name": "ap-more", "namespace": namespace}
    if rng.random() < 0.5:
        metadata["annotations"] = {"istio.io/dry-run": "true"}
    action = rng.choice(["ALLOW", "DENY", "AUDIT"])
    return {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": metadata, "spec": {"action": action, "rules": [rule]}}  # fmt: skip


def with_more_fields(built: Case, rng: random.Random) -> Case:
    """A quarter of the cases get one policy more, on fields the main draw does not use, and
    a few requests on the paths those templates name."""
    if rng.random() >= 0.25:
        return built
    built.documents.append(more_fields_policy(rng, built.namespace))
    for index in rng.sample(range(len(built.requests)), min(5, len(built.requests))):
        path = rng.choice(["/api/v1/products/7", "/api/", "/x/admin", "/a//c", "/a/b/b/c"])
        built.requests[index] = replace(built.requests[index], path=path)
    return built
