"""Check a parsed JWT's signature against a key set, as jwt_verify_lib's key loop does."""

from __future__ import annotations

from typing import Any

from jwt.algorithms import Algorithm, get_default_algorithms

from extauthz.authn.jwt import Jwt
from extauthz.authn.keys import KeySet
from extauthz.authn.status import JwtStatus

# One PyJWT algorithm object per JWS alg name, built once. `none` is never among them.
_ALGORITHMS: dict[str, Algorithm] = {
    name: algorithm for name, algorithm in get_default_algorithms().items() if name != "none"
}
_ED25519_SIGNATURE_LENGTH = 64


def _signature_is_valid(algorithm: Algorithm, jwt: Jwt, key: Any) -> bool:
    try:
        return bool(algorithm.verify(jwt.signing_input, key, jwt.signature))
    except Exception:  # a malformed signature or a key of the wrong curve is just "invalid"
        return False


def verify_signature(jwt: Jwt, keys: KeySet, *, refuse_crit: bool = False) -> JwtStatus:
    """Ok, JwtVerificationFail, or JwksKidAlgMismatch when no key fits the token's kid/alg.

    Like `verifyJwtWithoutTimeChecking`: a key is a candidate unless both it and the token name
    a kid and they differ, or the key names an alg other than the token's. Unlike Envoy, a key
    is only tried with algorithms of its own type, so an HS256 token is never checked against
    an RSA or EC key (the algorithm-confusion attack), nor an RS256 token against an HMAC key.
    The key set's index finds those keys without looking at the others: a token costs one
    check per key that could verify it, however many keys the set has besides.

    A `crit` header is ignored, as Envoy 1.40 ignores it (measured: a well-signed token with
    `"crit": ["exp"]`, `[]` or `5` is accepted). RFC 7515 asks
    a recipient to refuse extensions it does not understand; `refuse_crit` does so, as an
    opt-in stricter than Envoy.
    """
    algorithm = _ALGORITHMS.get(jwt.alg)
    if algorithm is None:
        return JwtStatus.JwtHeaderNotImplementedAlg
    if refuse_crit and "crit" in jwt.header:
        return JwtStatus.JwtVerificationFail
    # jwt_verify_lib tries the fitting keys in the set's order, and an Ed25519 key among them
    # ends the loop at once when the signature is not 64 bytes long, whatever the token's alg.
    okp_stop = (
        keys.first_fitting_okp(jwt.alg, jwt.kid)
        if len(jwt.signature) != _ED25519_SIGNATURE_LENGTH
        else None
    )
    candidates = keys.candidates(jwt.alg, jwt.kid)
    if okp_stop is not None and len(candidates) > 1:
        candidates = tuple(sorted(candidates, key=keys.position))
    for jwk in candidates:
        if okp_stop is not None and keys.position(jwk) >= okp_stop:
            return JwtStatus.JwtEd25519SignatureWrongLength
        if _signature_is_valid(algorithm, jwt, jwk.key):
            return JwtStatus.Ok
    if okp_stop is not None:
        return JwtStatus.JwtEd25519SignatureWrongLength
    # A key whose kid and alg fit but whose type cannot verify the alg still makes this a
    # failed verification rather than a kid/alg mismatch, as in jwt_verify_lib's loop.
    if keys.has_kid_alg_match(jwt.alg, jwt.kid):
        return JwtStatus.JwtVerificationFail
    return JwtStatus.JwksKidAlgMismatch
