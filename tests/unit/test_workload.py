from __future__ import annotations

import pytest

from extauthz.config.parse import parse_documents
from extauthz.config.workload import Workload, applies_to, parse_labels


def _policy(namespace: str, extra: str = "") -> object:
    text = (
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
        f"metadata: {{name: p, namespace: {namespace}}}\nspec:\n  action: DENY\n{extra}"
    )
    return parse_documents(text, "f.yaml").authorization_policies[0]


WORKLOAD = Workload("foo", parse_labels("app=httpbin,version=v1"))


@pytest.mark.parametrize(
    ("namespace", "extra", "applies"),
    [
        pytest.param("foo", "", True, id="same-namespace-no-selector"),
        pytest.param("bar", "", False, id="other-namespace"),
        pytest.param("istio-system", "", True, id="root-namespace-whole-mesh"),
        pytest.param("foo", "  selector: {matchLabels: {app: httpbin}}\n", True, id="selector-matches"),
        pytest.param("foo", "  selector: {matchLabels: {app: other}}\n", False, id="selector-differs"),
        pytest.param("istio-system", "  selector: {matchLabels: {version: v1}}\n", True, id="root-selector-matches"),
        pytest.param("foo", "  targetRef: {kind: Gateway, group: gateway.networking.k8s.io, name: gw}\n", False, id="targetref-other-workload"),
    ],
)  # fmt: skip
def test_applies_to(namespace: str, extra: str, applies: bool) -> None:
    assert applies_to(_policy(namespace, extra), WORKLOAD, "istio-system") is applies  # type: ignore[arg-type]


def test_targetref_gateway_binds_to_gateway_pods() -> None:
    gateway = Workload("foo", parse_labels("gateway.networking.k8s.io/gateway-name=gw"))
    policy = _policy(
        "foo", "  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: gw}]\n"
    )
    assert applies_to(policy, gateway, "istio-system")  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["app", "=x", "a=b,c"])
def test_bad_labels(text: str) -> None:
    with pytest.raises(ValueError, match="is not key=value"):
        parse_labels(text)
