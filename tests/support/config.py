"""Build snapshots from YAML text, as the service would from files."""

from __future__ import annotations

import json

from extauthz.config.parse import parse_documents
from extauthz.config.workload import Workload, parse_labels
from extauthz.snapshot.compile import Generation, Snapshot, compile_generation, compile_snapshot


def snapshot_from(
    yaml_text: str, namespace: str = "foo", labels: str = "app=httpbin", root: str = "istio-system"
) -> Snapshot:
    config = parse_documents(yaml_text, "test.yaml", default_namespace=namespace)
    return compile_snapshot(config, Workload(namespace, parse_labels(labels)), root)


def generation_from(
    yaml_text: str, namespace: str = "foo", root: str = "istio-system"
) -> Generation:
    config = parse_documents(yaml_text, "test.yaml", default_namespace=namespace)
    return compile_generation(config, root)


def request_authentication(jwks: str, issuer: str, extra: str = "", namespace: str = "foo") -> str:
    indented = extra.replace("\n", "\n    ")
    return f"""
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt, namespace: {namespace}}}
spec:
  jwtRules:
  - issuer: {json.dumps(issuer)}
    jwks: {json.dumps(jwks)}
    {indented}
"""
