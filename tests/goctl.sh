#!/usr/bin/env bash
# Build IPFS Cluster's own ipfs-cluster-ctl (the Go original, the version pincluster is compatible with) once
# into a cache dir and print the binary path (see gobuild.sh). About 30 s with a warm Go module cache.
# Usage: tests/goctl.sh           -> prints /path/to/ipfs-cluster-ctl
# Env:   PINCLUSTER_CACHE (default ~/.cache/pincluster).
set -euo pipefail
exec bash "$(dirname "$0")/gobuild.sh" ipfs-cluster-v1.1.6 ipfs-cluster-ctl \
    github.com/ipfs-cluster/ipfs-cluster@v1.1.6 ./cmd/ipfs-cluster-ctl --version
