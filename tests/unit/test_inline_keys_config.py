"""Inline `jwks` in a RequestAuthentication, read within the configuration's limits: too
many keys, weak keys (warnings, or errors with --strict-keys) and keys that never verify."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from extauthz.cli import main
from extauthz.config.limits import ConfigLimits
from extauthz.config.parse import ConfigError, parse_documents
from tests.support.config import request_authentication
from tests.support.tokens import jwks_of, rsa_key

GOOD = rsa_key(kid="good")


def oct_jwks(secret: bytes, kid: str = "short") -> str:
    k = base64.urlsafe_b64encode(secret).rstrip(b"=").decode()
    return json.dumps({"keys": [{"kty": "oct", "kid": kid, "alg": "HS256", "k": k}]})


def with_good_key(extra: dict[str, object]) -> str:
    return json.dumps({"keys": [json.loads(jwks_of(GOOD))["keys"][0], extra]})


def test_an_inline_set_over_the_key_limit_is_a_configuration_error() -> None:
    many = json.dumps({"keys": [json.loads(jwks_of(GOOD))["keys"][0]] * 101})
    with pytest.raises(ConfigError) as error:
        parse_documents(request_authentication(many, "i"), "ra.yaml")
    assert "field spec.jwtRules[0].jwks: Jwks has 101 keys, more than the limit of 100" in str(
        error.value
    )
    assert "--max-jwks-keys" in str(error.value)
    raised = ConfigLimits(max_jwks_keys=200)
    [authn] = parse_documents(
        request_authentication(many, "i"), "ra.yaml", limits=raised
    ).request_authentications
    assert authn.jwt_rules[0].keys is not None and len(authn.jwt_rules[0].keys) == 101


def test_a_short_hmac_secret_is_a_warning_or_with_strict_keys_an_error() -> None:
    text = request_authentication(oct_jwks(b"\x00"), "i")
    config = parse_documents(text, "ra.yaml")
    [warning] = config.warnings
    assert warning.startswith(
        "ra.yaml (document 1): RequestAuthentication foo/jwt: field spec.jwtRules[0].jwks: weak key: kid 'short'"
    )
    with pytest.raises(ConfigError, match=r"kid 'short'.*\(refused with --strict-keys\)"):
        parse_documents(text, "ra.yaml", limits=ConfigLimits(strict_keys=True))


def test_a_key_that_never_verifies_is_not_used_and_said() -> None:
    even = {
        "kty": "RSA",
        "kid": "even",
        "e": "AQAB",
        "n": base64.urlsafe_b64encode((2**2047 * 2).to_bytes(257, "big")).rstrip(b"=").decode(),
    }
    config = parse_documents(request_authentication(with_good_key(even), "i"), "ra.yaml")
    [authn] = config.request_authentications
    keys = authn.jwt_rules[0].keys
    assert keys is not None and [k.kid for k in keys.keys] == ["good"]
    [warning] = config.warnings
    assert "a key is not used: keys[1]" in warning


def test_the_inline_keys_are_parsed_once_and_compiled_as_read() -> None:
    from extauthz.snapshot.compile import compile_generation

    config = parse_documents(request_authentication(jwks_of(GOOD), "i"), "ra.yaml")
    [(_, [provider])] = compile_generation(config, "istio-system").authns
    assert provider.inline_keys is config.request_authentications[0].jwt_rules[0].keys


def test_validate_warns_and_strict_keys_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "ra.yaml"
    path.write_text(request_authentication(oct_jwks(b"0123456789"), "i"))
    assert main(["validate", str(path)]) == 0
    assert "weak key: kid 'short': HMAC secret of 10 bytes" in capsys.readouterr().err
    assert main(["validate", "--strict-keys", str(path)]) == 1
    assert "refused with --strict-keys" in capsys.readouterr().err
