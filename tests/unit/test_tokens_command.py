"""`extauthz token` and `extauthz jwks`: keys, tokens and key sets that `check` accepts, driven
through the CLI's main() as a user would."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest

from extauthz.rig.rig import SAMPLES
from extauthz.rig.tokens import SAMPLE_ISSUER, sample_kid
from tests.support.commands import ISSUER, run
from tests.support.config import request_authentication


def claims_of(token: str) -> dict[str, Any]:
    payload: dict[str, Any] = pyjwt.decode(token, options={"verify_signature": False})
    return payload


def policies(jwks: str, principal: str = f"{ISSUER}/alice", extra_rule: str = "") -> str:
    """A RequestAuthentication trusting `jwks` and an ALLOW for one request principal."""
    return (
        request_authentication(jwks, ISSUER)
        + f"""---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: allow-alice, namespace: foo}}
spec:
  rules:
  - from:
    - source: {{requestPrincipals: [{json.dumps(principal)}]}}
{extra_rule}"""
    )


def _generate(capsys: pytest.CaptureFixture[str], alg: str, key: Path, *claims: str) -> str:
    code, out, err = run(capsys, "token", "--generate", alg, "--out-key", str(key), *claims)
    assert code == 0, err
    return out.strip()


def _jwks_of(capsys: pytest.CaptureFixture[str], key: Path, alg: str) -> str:
    hmac = ["--alg", alg] if alg.startswith("HS") else []
    code, out, err = run(capsys, "jwks", "--key", str(key), *hmac)
    assert code == 0, err
    return out.strip()


@pytest.mark.parametrize("alg", ["RS256", "PS384", "ES256", "ES384", "ES512", "EdDSA", "HS256", "HS512"])  # fmt: skip
def test_token_round_trip_through_jwks_and_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], alg: str
) -> None:
    key, other_key = tmp_path / "key", tmp_path / "other"
    token = _generate(capsys, alg, key, "--iss", ISSUER, "--sub", "alice")
    forged = _generate(capsys, alg, other_key, "--iss", ISSUER, "--sub", "alice", "--kid", "")
    jwks = _jwks_of(capsys, key, alg)
    assert pyjwt.get_unverified_header(token)["alg"] == alg
    assert pyjwt.get_unverified_header(token)["kid"] == json.loads(jwks)["keys"][0]["kid"]
    config = tmp_path / "p.yaml"
    config.write_text(policies(jwks))
    check = ["check", "--config", str(config), "--namespace", "foo"]
    code, out, _ = run(capsys, *check, "--token", token, "/x")
    assert code == 0, out
    assert f"request principal {ISSUER}/alice" in out
    # The same claims signed by another key of the same kind must not pass with this JWKS.
    code, out, _ = run(capsys, *check, "--token", forged, "/x")
    assert code == 1
    assert "JwtVerificationFail" in out


def test_token_from_an_existing_key_and_an_explicit_alg(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "rsa.pem"
    _generate(capsys, "RS256", key)
    code, token, _ = run(
        capsys, "token", "--key", str(key), "--alg", "PS512", "--iss", ISSUER, "--sub", "alice"
    )
    token = token.strip()
    assert code == 0 and pyjwt.get_unverified_header(token)["alg"] == "PS512"
    config = tmp_path / "p.yaml"
    config.write_text(policies(_jwks_of(capsys, key, "RS256")))
    assert (
        run(capsys, "check", "--config", str(config), "--namespace", "foo", "--token", token, "/x")[
            0
        ]
        == 0
    )


def test_hmac_secret_file_with_a_trailing_newline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("0123456789abcdef0123456789abcdef\n")
    code, out, err = run(capsys, "token", "--key", str(secret), "--alg", "HS256", "--iss", ISSUER)
    assert code == 0 and err == ""
    pyjwt.decode(out.strip(), b"0123456789abcdef0123456789abcdef", algorithms=["HS256"])
    jwk = json.loads(_jwks_of(capsys, secret, "HS256"))["keys"][0]
    assert (jwk["kty"], jwk["alg"]) == ("oct", "HS256")
    assert pyjwt.get_unverified_header(out.strip())["kid"] == jwk["kid"]


def test_jwks_of_istios_sample_key_is_istios_jwks(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "jwks", "--key", str(SAMPLES / "key.pem"))
    ours = json.loads(out)["keys"][0]
    istio = json.loads((SAMPLES / "jwks.json").read_text())["keys"][0]
    assert code == 0
    assert {k: ours[k] for k in ("kty", "n", "e", "kid")} == istio
    assert "alg" not in ours  # an RSA key verifies RS* and PS* unless --alg pins it
    token = run(capsys, "token", "--key", str(SAMPLES / "key.pem"), "--iss", SAMPLE_ISSUER)[1]
    assert pyjwt.get_unverified_header(token.strip())["kid"] == sample_kid()


def test_jwks_of_a_public_key_equals_that_of_its_private_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cryptography.hazmat.primitives import serialization

    private = tmp_path / "ed.pem"
    _generate(capsys, "EdDSA", private)
    key = serialization.load_pem_private_key(private.read_bytes(), password=None)
    public = tmp_path / "ed.pub"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    assert _jwks_of(capsys, public, "EdDSA") == _jwks_of(capsys, private, "EdDSA")
    assert json.loads(_jwks_of(capsys, public, "EdDSA"))["keys"][0]["alg"] == "EdDSA"


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        pytest.param("n=3", 3, id="number"),
        pytest.param('groups=["a","b"]', ["a", "b"], id="json-list"),
        pytest.param("admin=true", True, id="boolean"),
        pytest.param('org={"team":"blue"}', {"team": "blue"}, id="json-object"),
        pytest.param("team=dev", "dev", id="plain-string"),
        pytest.param('quoted="007"', "007", id="json-string"),
        pytest.param("url=https://a.test/?x=y", "https://a.test/?x=y", id="value-with-equals"),
        pytest.param("empty=", "", id="empty-string"),
    ],
)  # fmt: skip
def test_claims_are_json_when_they_parse(
    capsys: pytest.CaptureFixture[str], claim: str, value: Any
) -> None:
    name = claim.partition("=")[0]
    code, out, _ = run(capsys, "token", "--key", str(SAMPLES / "key.pem"), "--claim", claim)
    assert code == 0
    assert claims_of(out.strip())[name] == value


def test_claims_override_the_named_flags(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(
        capsys,
        "token",
        "--key",
        str(SAMPLES / "key.pem"),
        "--iss",
        "a",
        "--sub",
        "b",
        "--aud",
        "x",
        "--aud",
        "y",
        "--claim",
        "iss=c",
    )
    claims = claims_of(out.strip())
    assert (claims["iss"], claims["sub"], claims["aud"]) == ("c", "b", ["x", "y"])


@pytest.mark.parametrize(
    ("flags", "exp", "nbf"),
    [
        pytest.param([], 3600, None, id="default-one-hour-no-nbf"),
        pytest.param(["--exp", "30s"], 30, None, id="seconds"),
        pytest.param(["--exp", "10m"], 600, None, id="minutes"),
        pytest.param(["--exp", "2d"], 172800, None, id="days"),
        pytest.param(["--exp", "90"], 90, None, id="bare-seconds"),
        pytest.param(["--exp=-1h"], -3600, None, id="expired"),
        pytest.param(["--exp", "0"], None, None, id="no-exp"),
        pytest.param(["--nbf", "10m"], 3600, 600, id="not-yet-valid"),
    ],
)  # fmt: skip
def test_exp_and_nbf_are_relative_to_iat(
    capsys: pytest.CaptureFixture[str], flags: list[str], exp: int | None, nbf: int | None
) -> None:
    code, out, _ = run(capsys, "token", "--key", str(SAMPLES / "key.pem"), *flags)
    claims = claims_of(out.strip())
    assert code == 0
    assert (claims["exp"] - claims["iat"] if "exp" in claims else None) == exp
    assert (claims["nbf"] - claims["iat"] if "nbf" in claims else None) == nbf


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["token", "--key", "KEY", "--exp", "5y"], "--exp '5y': not a duration", id="bad-duration"),
        pytest.param(["token", "--key", "KEY", "--claim", "=x"], "--claim '=x': not name=value", id="bad-claim"),
        pytest.param(["token", "--generate", "ES256K"], "alg 'ES256K' is not one of", id="unsupported-alg"),
        pytest.param(["token", "--key", "KEY", "--alg", "ES256"], "this key signs RS256/RS384/RS512/PS256/PS384/PS512, not ES256", id="alg-of-another-key-type"),
        pytest.param(["token", "--key", "JWKS"], "not a PEM key (for an HMAC secret file add --alg HS256)", id="not-a-key"),
        pytest.param(["token", "--key", "MISSING"], "cannot read", id="missing-key"),
        pytest.param(["token", "--generate", "RS256", "--out-key", "KEY"], "exists; not overwriting a key", id="never-overwrites"),
        pytest.param(["token", "--generate", "RS256", "--alg", "ES256"], "--generate RS256 and --alg ES256 disagree", id="generate-and-alg-disagree"),
        pytest.param(["jwks", "--key", "KEY", "--alg", "EdDSA"], "not EdDSA", id="jwks-alg-of-another-key-type"),
    ],
)  # fmt: skip
def test_token_and_jwks_errors_are_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    files = {
        "KEY": str(SAMPLES / "key.pem"),
        "JWKS": str(SAMPLES / "jwks.json"),
        "MISSING": str(tmp_path / "nope.pem"),
    }
    code, out, err = run(capsys, *[files.get(arg, arg) for arg in argv])
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and message in err


def test_a_public_key_cannot_sign(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key((SAMPLES / "key.pem").read_bytes(), password=None)
    public = tmp_path / "pub.pem"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    code, _, err = run(capsys, "token", "--key", str(public))
    assert code == 2 and "a public key cannot sign" in err
