"""The Envoy-native twin: the same compiled policies written as Envoy's own filters
(jwt_authn and RBAC), laid out as istiod lays them out for a standard Envoy."""
