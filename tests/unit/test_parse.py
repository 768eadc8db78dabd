from __future__ import annotations

from pathlib import Path

import pytest

from extauthz.config.parse import ConfigError, config_files, load_config, parse_documents
from extauthz.rig.rig import SAMPLES

AP = """
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {{name: p, namespace: foo}}
spec:
{spec}
"""


def test_samples_parse_into_frozen_resources() -> None:
    config = load_config([SAMPLES / "gateway-policies.yaml", SAMPLES / "sidecar-policies.yaml"])
    [gateway, sidecar] = config.request_authentications
    [policy] = config.authorization_policies
    assert gateway.meta.ref == "istio-system/jwt-example"
    assert gateway.jwt_rules[0].issuer == "testing@secure.istio.io"
    assert sidecar.jwt_rules[0].jwks_uri == "http://nginx-proxy/get_jwks"
    assert policy.action == "DENY"
    assert policy.rules[0].sources[0].not_request_principals == ("*",)
    assert policy.rules[0].operations[0].not_paths == ("/productpage",)
    with pytest.raises(AttributeError):
        policy.action = "ALLOW"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        pytest.param("  action: ALLOWED", "field spec.action: 'ALLOWED' is not one of", id="bad-action"),
        pytest.param("  rules:\n  - to:\n    - operation: {notPath: [/x]}", "field spec.rules[0].to[0].operation.notPath: unknown field", id="typo-field"),
        pytest.param("  rules:\n  - when:\n    - key: request.headers[x]", "field spec.rules[0].when[0]: a condition needs values", id="condition-without-values"),
        pytest.param("  rules:\n  - to:\n    - operation: {paths: /x}", "field spec.rules[0].to[0].operation.paths: must be a list", id="string-not-list"),
        pytest.param("  action: CUSTOM", "needs provider.name", id="custom-without-provider"),
        pytest.param("  selector: {matchLabels: {app: a}}\n  targetRef: {kind: Gateway, name: g}", "mutually exclusive", id="selector-and-targetref"),
    ],
)  # fmt: skip
def test_errors_name_file_document_resource_and_field(spec: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_documents("---\n" + AP.format(spec=spec), "policies.yaml")
    text = str(error.value)
    assert text.startswith("policies.yaml (document 1): AuthorizationPolicy foo/p:")
    assert message in text


def test_request_authentication_errors() -> None:
    text = "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: r}\n"
    with pytest.raises(
        ConfigError, match=r"jwtRules\[0\]\.issuer: issuer or jwksUri must be non-empty"
    ):
        parse_documents(text + "spec:\n  jwtRules:\n  - jwks: '{}'\n", "f.yaml")
    with pytest.raises(ConfigError, match=r"jwtRules\[0\]\.jwks: Jwks does not have \[keys\]"):
        parse_documents(text + "spec:\n  jwtRules:\n  - {issuer: i, jwks: '{}'}\n", "f.yaml")
    with pytest.raises(ConfigError, match=r"jwksUri: 'ftp://x' is not an http\(s\) URL"):
        parse_documents(
            text + "spec:\n  jwtRules:\n  - {issuer: i, jwksUri: 'ftp://x'}\n", "f.yaml"
        )


def test_unknown_kinds_are_skipped_with_a_warning() -> None:
    config = parse_documents(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n---\n"
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: y}\n",
        "mixed.yaml",
    )
    assert config.authorization_policies == ()
    assert len(config.warnings) == 2
    assert (
        "mixed.yaml (document 2): skipped security.istio.io/v1/PeerAuthentication"
        in config.warnings[1]
    )


def test_malformed_yaml_is_one_line_error() -> None:
    with pytest.raises(ConfigError, match=r"^bad.yaml: invalid YAML") as error:
        parse_documents("a: [1, 2\nb: c", "bad.yaml")
    assert "\n" not in str(error.value)


def test_namespace_defaults_and_spec_empty_allow() -> None:
    config = parse_documents(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: deny-all}\nspec: {}\n",
        "f.yaml",
        default_namespace="foo",
    )
    [policy] = config.authorization_policies
    assert (policy.meta.namespace, policy.action, policy.rules) == ("foo", "ALLOW", ())


def test_directory_loading_skips_hidden_entries(tmp_path: Path) -> None:
    data = tmp_path / "..2026_11_29"
    data.mkdir()
    (data / "policy.yaml").write_text(AP.format(spec="  action: DENY"))
    (tmp_path / "..data").symlink_to(data.name)
    (tmp_path / "policy.yaml").symlink_to("..data/policy.yaml")
    (tmp_path / "notes.txt").write_text("ignored")
    assert [p.name for p in config_files([tmp_path])] == ["policy.yaml"]
    assert len(load_config([tmp_path]).authorization_policies) == 1


def test_missing_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config([tmp_path / "absent.yaml"])


HEAD = "metadata: {name: p, namespace: foo}\nspec: {action: DENY, rules: [{}]}\n"


@pytest.mark.parametrize(
    ("head", "message"),
    [
        pytest.param("apiVersion: security.istio.io/v1\nkind: Authorizationpolicy\n", "unknown kind 'Authorizationpolicy' in security.istio.io: did you mean AuthorizationPolicy?", id="kind-case-typo"),
        pytest.param("apiVersion: security.istio.io/v1\nkind: AuthorisationPolicy\n", "did you mean AuthorizationPolicy?", id="kind-spelling"),
        pytest.param("apiVersion: security.istio.io/v1\nkind: RequestAuthn\n", "unknown kind 'RequestAuthn' in security.istio.io", id="unknown-kind-in-group"),
        pytest.param("apiVersion: security.istio.io/v1beta2\nkind: AuthorizationPolicy\n", "AuthorizationPolicy 'security.istio.io/v1beta2' is not a version extauthz reads", id="unknown-version"),
        pytest.param("apiVersion: security.istio.io/v1alpha1\nkind: RequestAuthentication\n", "is not a version extauthz reads", id="old-version"),
        pytest.param("apiVersion: security.isito.io/v1\nkind: AuthorizationPolicy\n", "did you mean security.istio.io?", id="group-typo"),
        pytest.param("apiVersion: networking.istio.io/v1\nkind: AuthorizationPolicy\n", "kind 'AuthorizationPolicy' with apiVersion 'networking.istio.io/v1'", id="wrong-group"),
        pytest.param("apiVersion: v1\nkind: AuthorizationPolicies\n", "did you mean AuthorizationPolicy?", id="plural-elsewhere"),
        pytest.param("apiVersion: v1\nkind: List\nitems: []\n", "kind 'List'", id="list"),
        pytest.param("apiVersion: security.istio.io/v1\n", "needs a string apiVersion and kind", id="no-kind"),
        pytest.param("kind: AuthorizationPolicy\n", "needs a string apiVersion and kind", id="no-api-version"),
    ],
)  # fmt: skip
def test_documents_meant_for_extauthz_but_wrong_are_errors(head: str, message: str) -> None:
    # Skipped, any of these would drop a policy silently: a DENY lost is access granted.
    with pytest.raises(ConfigError) as error:
        parse_documents(head + HEAD, "typo.yaml")
    assert str(error.value).startswith("typo.yaml (document 1): ")
    assert message in str(error.value)


@pytest.mark.parametrize(
    "head",
    [
        pytest.param("apiVersion: v1\nkind: ConfigMap\n", id="configmap"),
        pytest.param("apiVersion: apps/v1\nkind: Deployment\n", id="deployment"),
        pytest.param("apiVersion: security.istio.io/v1beta1\nkind: PeerAuthentication\n", id="peer-authentication"),
        pytest.param("apiVersion: networking.istio.io/v1\nkind: VirtualService\n", id="virtual-service"),
    ],
)  # fmt: skip
def test_other_resources_are_skipped_with_a_warning(head: str) -> None:
    config = parse_documents(head + HEAD, "mixed.yaml")
    assert config.authorization_policies == ()
    [warning] = config.warnings
    assert warning.startswith("mixed.yaml (document 1): skipped ")
