"""`extauthz token` and `extauthz jwks`: test keys, tokens and key sets."""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import secrets
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import jwt as pyjwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from extauthz.authn.keys import EC_CURVES
from extauthz.commands.common import UsageError, read_file

# -- durations and claims -------------------------------------------------------------------

_DURATION = re.compile(r"^(-?)(\d+)([smhd]?)$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str | int, what: str) -> int:
    """`30s`, `10m`, `1h`, `2d`, `90` (seconds), `-1h` (in the past) -> seconds."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    found = _DURATION.match(str(text).strip())
    if found is None:
        raise UsageError(f"{what} {text!r}: not a duration like 30s, 10m, 1h, 2d, -1h or 0")
    sign, number, unit = found.groups()
    seconds = int(number) * _UNIT_SECONDS[unit]
    return -seconds if sign else seconds


def parse_claim(text: str) -> tuple[str, Any]:
    """`name=value`; the value is JSON when it parses as JSON (3, true, ["a","b"]), else a
    string, so `--claim groups='["a","b"]'` is a list and `--claim team=dev` a string."""
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise UsageError(f"--claim {text!r}: not name=value")
    try:
        return name, json.loads(raw)
    except ValueError:
        return name, raw


def token_claims(
    now: int,
    *,
    issuer: str = "",
    subject: str = "",
    audiences: Sequence[str] = (),
    expires_in: int = 3600,
    not_before_in: int = 0,
    extra: Mapping[str, Any] = MappingProxyType({}),
) -> dict[str, Any]:
    """The payload of a test token. A zero duration leaves its claim out; `extra` wins."""
    claims: dict[str, Any] = {"iat": now}
    if issuer:
        claims["iss"] = issuer
    if subject:
        claims["sub"] = subject
    if audiences:
        claims["aud"] = audiences[0] if len(audiences) == 1 else list(audiences)
    if expires_in:
        claims["exp"] = now + expires_in
    if not_before_in:
        claims["nbf"] = now + not_before_in
    claims.update(extra)
    return claims


# -- keys -------------------------------------------------------------------------------------

# The algorithms Envoy's jwt_authn verifies (and so do we); Ed448 and ES256K are not among them.
ALGORITHMS = (
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
    "ES256", "ES384", "ES512", "EdDSA", "HS256", "HS384", "HS512",
)  # fmt: skip
_CURVES: dict[str, ec.EllipticCurve] = {alg: curve for alg, curve in EC_CURVES.values()}
_EC_ALG_OF_CURVE = {curve.name: alg for alg, curve in _CURVES.items()}
_HMAC_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}  # RFC 7518 3.2: at least the hash size
_RSA_BITS = 2048
# RFC 7638: the members of each key type that its thumbprint covers.
_THUMBPRINT_MEMBERS = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"),
                       "OKP": ("crv", "kty", "x"), "oct": ("k", "kty")}  # fmt: skip

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


@dataclass(frozen=True, slots=True)
class SigningKey:
    key: PrivateKey | bytes  # bytes: an HMAC secret
    alg: str

    def public_jwk(self) -> dict[str, Any]:
        if isinstance(self.key, bytes):
            return public_jwk(self.key)
        return public_jwk(self.key.public_key())


def _check_alg(alg: str) -> str:
    if alg not in ALGORITHMS:
        raise UsageError(f"alg {alg!r} is not one of {', '.join(ALGORITHMS)}")
    return alg


def _algorithms_for(public: PublicKey, path: Path) -> tuple[str, ...]:
    """What a key can sign or verify; the first is its default."""
    if isinstance(public, rsa.RSAPublicKey):
        return ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
    if isinstance(public, ec.EllipticCurvePublicKey):
        alg = _EC_ALG_OF_CURVE.get(public.curve.name)
        if alg is None:
            raise UsageError(f"{path}: EC curve {public.curve.name} is not P-256, P-384, P-521")
        return (alg,)
    return ("EdDSA",)


def _require_fit(public: PublicKey, alg: str, path: Path) -> None:
    fitting = _algorithms_for(public, path)
    if alg not in fitting:
        raise UsageError(f"{path}: this key signs {'/'.join(fitting)}, not {alg}")


def _secret(data: bytes, path: Path) -> bytes:
    # A trailing newline is what `echo secret > file` adds, not part of the secret.
    secret = data.rstrip(b"\r\n")
    if not secret:
        raise UsageError(f"{path}: the HMAC secret is empty")
    return secret


def _load_pem(data: bytes, path: Path) -> PrivateKey | PublicKey:
    """A PEM private or public key of a type Envoy verifies."""
    if b"-----BEGIN" not in data:
        raise UsageError(f"{path}: not a PEM key (for an HMAC secret file add --alg HS256)")
    try:
        key: Any = (
            serialization.load_pem_private_key(data, password=None)
            if b"PRIVATE KEY-----" in data
            else serialization.load_pem_public_key(data)
        )
    except TypeError as exc:  # cryptography's way of saying "this key has a password"
        raise UsageError(f"{path}: encrypted keys are not supported ({exc})") from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise UsageError(f"{path}: not a usable PEM key: {exc}") from exc
    if not isinstance(key, PrivateKey | PublicKey):
        raise UsageError(f"{path}: {type(key).__name__}: Envoy verifies RSA, EC, Ed25519 only")
    return key


def load_signing_key(path: Path, alg: str | None) -> SigningKey:
    """A PEM private key (alg defaulting from its type), or a raw secret file with HS*."""
    data = read_file(path)
    if alg is not None and alg.startswith("HS"):
        return SigningKey(_secret(data, path), alg)
    key = _load_pem(data, path)
    if not isinstance(key, PrivateKey):
        raise UsageError(f"{path}: a public key cannot sign; pass the private key")
    chosen = alg or _algorithms_for(key.public_key(), path)[0]
    _require_fit(key.public_key(), chosen, path)
    return SigningKey(key, chosen)


def generate_key(alg: str) -> SigningKey:
    key: PrivateKey | bytes
    if alg.startswith(("RS", "PS")):
        key = rsa.generate_private_key(public_exponent=65537, key_size=_RSA_BITS)
    elif alg in _CURVES:
        key = ec.generate_private_key(_CURVES[alg])
    elif alg == "EdDSA":
        key = ed25519.Ed25519PrivateKey.generate()
    else:  # printable, so the secret file can be read, pasted and passed around as text
        key = secrets.token_urlsafe(_HMAC_BYTES[alg]).encode()
    return SigningKey(key, alg)


def save_key(key: PrivateKey | bytes, path: Path) -> None:
    """PKCS#8 PEM (or the raw secret), readable by its owner only; never overwrites."""
    data = (
        key
        if isinstance(key, bytes)
        else key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise UsageError(f"{path}: exists; not overwriting a key") from exc
    except OSError as exc:
        raise UsageError(f"{path}: cannot write: {exc.strerror or exc}") from exc
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def public_jwk(key: PublicKey | bytes) -> dict[str, Any]:
    """The RFC 7638 members of a public key's JWK (an HMAC secret is an `oct` key)."""
    if isinstance(key, bytes):
        return {"kty": "oct", "k": _b64url(key)}
    if isinstance(key, rsa.RSAPublicKey):
        jwk = RSAAlgorithm.to_jwk(key, as_dict=True)
    elif isinstance(key, ec.EllipticCurvePublicKey):
        jwk = ECAlgorithm.to_jwk(key, as_dict=True)
    else:
        jwk = OKPAlgorithm.to_jwk(key, as_dict=True)
    return {name: jwk[name] for name in _THUMBPRINT_MEMBERS[str(jwk["kty"])]}


def thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256), the default kid of `token` and `jwks`."""
    members = {name: jwk[name] for name in _THUMBPRINT_MEMBERS[str(jwk["kty"])]}
    canonical = json.dumps(members, sort_keys=True, separators=(",", ":"))
    return _b64url(hashlib.sha256(canonical.encode("utf-8")).digest())


def mint(
    key: SigningKey,
    claims: Mapping[str, Any],
    kid: str | None = None,
    headers: Mapping[str, Any] | None = None,
) -> str:
    """A signed token; kid defaults to the key's thumbprint, and "" leaves it out. `headers`
    are set last, over kid, typ and alg (the tests' odd headers)."""
    kid = thumbprint(key.public_jwk()) if kid is None else kid
    header = {"kid": kid} if kid else {}
    header.update(headers or {})
    with warnings.catch_warnings():
        # A short HMAC secret is legal in a test; `token` says so in one line of its own.
        warnings.filterwarnings("ignore", message="The HMAC key is")
        try:
            return pyjwt.encode(dict(claims), key.key, algorithm=key.alg, headers=header or None)
        except TypeError as exc:  # e.g. a YAML date among the claims
            raise UsageError(f"claims must be JSON values: {exc}") from exc


# -- extauthz token / jwks ------------------------------------------------------------------

TOKEN_EXAMPLES = """
examples:
  # a token from Istio's sample key, accepted by extauthz/samples/gateway-policies.yaml
  extauthz token --key extauthz/samples/key.pem --iss testing@secure.istio.io \\
      --sub testing@secure.istio.io --claim groups='["group1","group2"]'
  # an expired one (a negative duration needs the = form)
  extauthz token --key extauthz/samples/key.pem --iss testing@secure.istio.io --exp=-1h
  # a fresh EC key, saved, then its JWKS for the RequestAuthentication
  extauthz token --generate ES256 --out-key ec.pem --iss https://issuer.test --sub alice
  extauthz jwks --key ec.pem
  # an HMAC secret in a file
  extauthz token --key secret.txt --alg HS256 --iss https://issuer.test --aud api

--claim values are JSON when they parse as JSON (n=3, ok=true, groups='["a"]'), else strings;
they are applied last, so they override --iss, --sub, --aud, --exp and --nbf.
Durations: 30s, 10m, 1h, 2d, or seconds; 0 leaves the claim out. The kid defaults to the
RFC 7638 thumbprint of the public key, which `extauthz jwks` uses too; --kid '' leaves it out.
"""

JWKS_EXAMPLES = """
examples:
  extauthz jwks --key extauthz/samples/key.pem
  extauthz jwks --key ec-public.pem --kid my-key
  extauthz jwks --key secret.txt --alg HS256        # an `oct` key: it contains the secret

Paste the output into a RequestAuthentication: jwtRules: - {issuer: ..., jwks: '<output>'}
"""


def add_token(commands: Any) -> None:
    token = commands.add_parser(
        "token",
        help="mint a test JWT",
        description="Mint a signed JWT for tests. Prints the token only.",
        epilog=TOKEN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = token.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--key",
        metavar="FILE",
        help="PEM private key (RSA, EC, Ed25519), or a secret file with --alg HS*",
    )
    source.add_argument(
        "--generate", metavar="ALG", help=f"a fresh key for ALG: {', '.join(ALGORITHMS)}"
    )
    token.add_argument(
        "--out-key", metavar="FILE", help="with --generate: save the key (PEM or raw secret)"
    )
    token.add_argument("--alg", help="signing algorithm (default: from the key type)")
    token.add_argument("--kid", default=None, help="key id (default: the key's JWK thumbprint)")
    token.add_argument("--iss", default="", help="issuer claim")
    token.add_argument("--sub", default="", help="subject claim")
    token.add_argument("--aud", action="append", default=[], help="audience (repeatable)")
    token.add_argument(
        "--claim",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="another claim (repeatable)",
    )
    token.add_argument(
        "--exp", default="1h", metavar="DURATION", help="expiry from now (default 1h; 0: none)"
    )
    token.add_argument(
        "--nbf", default="0", metavar="DURATION", help="not-before from now (default 0: none)"
    )


def _signing_key(args: argparse.Namespace) -> SigningKey:
    alg = _check_alg(args.alg) if args.alg else None
    if args.key:
        if args.out_key:
            raise UsageError("--out-key goes with --generate, not --key")
        return load_signing_key(Path(args.key), alg)
    generated = _check_alg(args.generate)
    if alg and alg != generated:
        raise UsageError(f"--generate {generated} and --alg {alg} disagree")
    key = generate_key(generated)
    if args.out_key:
        save_key(key.key, Path(args.out_key))
    else:
        print("note: the generated key is not saved (add --out-key FILE)", file=sys.stderr)
    return key


def run_token(args: argparse.Namespace) -> int:
    key = _signing_key(args)
    if isinstance(key.key, bytes) and len(key.key) < _HMAC_BYTES[key.alg]:
        print(
            f"warning: the HMAC secret is {len(key.key)} bytes, below the "
            f"{_HMAC_BYTES[key.alg]} RFC 7518 asks for {key.alg}",
            file=sys.stderr,
        )
    claims = token_claims(
        int(time.time()),
        issuer=args.iss,
        subject=args.sub,
        audiences=args.aud,
        expires_in=parse_duration(args.exp, "--exp"),
        not_before_in=parse_duration(args.nbf, "--nbf"),
        extra=dict(parse_claim(c) for c in args.claim),
    )
    print(mint(key, claims, args.kid))
    return 0


def add_jwks(commands: Any) -> None:
    jwks = commands.add_parser(
        "jwks",
        help="print the JWKS of a key",
        description='Print the JWKS ({"keys": [...]}) of the public half of a key.',
        epilog=JWKS_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    jwks.add_argument(
        "--key",
        required=True,
        metavar="FILE",
        help="PEM private or public key, or a secret file with --alg HS*",
    )
    jwks.add_argument("--kid", default=None, help="key id (default: the JWK thumbprint)")
    jwks.add_argument("--alg", help="pin the key to one algorithm (EC and Ed25519 always are)")


def jwks_document(path: Path, alg: str | None = None, kid: str | None = None) -> dict[str, Any]:
    data = read_file(path)
    if alg is not None and alg.startswith("HS"):
        jwk = public_jwk(_secret(data, path))
    else:
        key = _load_pem(data, path)
        public = key.public_key() if isinstance(key, PrivateKey) else key
        fitting = _algorithms_for(public, path)
        if alg is not None:
            _require_fit(public, alg, path)
        # An RSA key without `alg` verifies RS* and PS* tokens alike; the others have one alg.
        alg = alg or (fitting[0] if len(fitting) == 1 else None)
        jwk = public_jwk(public)
    kid = thumbprint(jwk) if kid is None else kid
    entry = {"kty": jwk["kty"], "use": "sig", **({"kid": kid} if kid else {})}
    entry.update({**({"alg": alg} if alg else {}), **jwk})
    return {"keys": [entry]}


def run_jwks(args: argparse.Namespace) -> int:
    alg = _check_alg(args.alg) if args.alg else None
    print(json.dumps(jwks_document(Path(args.key), alg, args.kid)))
    return 0
