//go:build tools

// Package tools pins metrics-server (sigs.k8s.io/metrics-server) for the demo and the
// resource-metrics end-to-end test; the build script runs
// `go build sigs.k8s.io/metrics-server/cmd/metrics-server` in this module.
package tools

import _ "sigs.k8s.io/metrics-server/cmd/metrics-server"
