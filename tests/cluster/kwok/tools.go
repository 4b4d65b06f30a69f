//go:build tools

// Package tools pins kwok (sigs.k8s.io/kwok) for MOM's local control plane;
// the build script runs `go build sigs.k8s.io/kwok/cmd/kwok` in this module.
package tools

import _ "sigs.k8s.io/kwok/cmd/kwok"
