"""How much a configuration may hold, and what it may leave out: the bounds `load_config`
enforces, so a file (hostile or mistaken) can cost neither unbounded memory nor CPU, and a
configuration that lost its resources never loads as "no policy, allow everything"."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MAX_CONFIG_BYTES = 8 << 20
DEFAULT_MAX_DOCUMENTS = 5000
DEFAULT_MAX_DEPTH = 50
DEFAULT_MAX_NODES = 250_000
DEFAULT_MAX_JWKS_KEYS = 100  # the same as extauthz.authn.keys.DEFAULT_MAX_KEYS
DEFAULT_LOAD_TIMEOUT_SECONDS = 20.0


@dataclass(frozen=True, slots=True)
class ConfigLimits:
    # All files together: a few Istio resources are a few KiB; 8 MiB is thousands of them.
    max_bytes: int = DEFAULT_MAX_CONFIG_BYTES
    # YAML documents, all files together (an empty `---` document counts too).
    max_documents: int = DEFAULT_MAX_DOCUMENTS
    # Nesting of YAML collections; an Istio resource needs about 10.
    max_depth: int = DEFAULT_MAX_DEPTH
    # YAML values (scalars and collections), all files together: what reading and compiling
    # cost grows with it (a resource is 20 to 50; 250,000 read in a few seconds), and a few
    # MiB of dense lists can hold millions.
    max_nodes: int = DEFAULT_MAX_NODES
    # Keys in one inline `jwks` (a fetched jwksUri is bounded by the fetcher's own copy).
    max_jwks_keys: int = DEFAULT_MAX_JWKS_KEYS
    # Weak keys (short RSA moduli, short HMAC secrets) are errors rather than warnings.
    strict_keys: bool = False
    # Stricter than Envoy, on request: refuse tokens whose header has `crit` (RFC 7515
    # §4.1.11); Envoy ignores it, and so does extauthz by default.
    refuse_crit: bool = False
    # A configuration without any RequestAuthentication or AuthorizationPolicy allows every
    # request; it loads only when asked for, never because files went missing or empty.
    allow_empty: bool = False
    # Reading, parsing and compiling together; a reload is abandoned past it.
    load_timeout_seconds: float = DEFAULT_LOAD_TIMEOUT_SECONDS
