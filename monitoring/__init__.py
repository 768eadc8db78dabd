"""Prometheus rules, the Grafana dashboard and the live run both the e2e test and the
pictures use (monitoring/live.py)."""
