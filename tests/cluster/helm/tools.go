//go:build tools

// Package tools pins helm v3 (helm.sh/helm/v3) for MOM's chart tests;
// the build script runs `go build helm.sh/helm/v3/cmd/helm` in this module.
package tools

import _ "helm.sh/helm/v3/cmd/helm"
