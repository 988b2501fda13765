// Package monitoring holds the operator's monitoring material and its
// tests; it has no code of its own. prometheus/alerts.yml are the alerting
// rules (with promtool unit tests in prometheus/alerts_test.yml) and
// grafana/stella-mirror.json the Grafana dashboard. The tests check the
// rules with promtool, parse every PromQL expression of the rules and the
// dashboard with the Prometheus parser, and start the real origin, gateway
// and sync to check that every metric they name is exported; they render
// the admin /status page in headless Chromium. docs/operations.md,
// "Monitoring", says how to load them and what each alert means.
package monitoring
