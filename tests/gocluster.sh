#!/usr/bin/env bash
# Build one of IPFS Cluster's own Go programs (the original that pincluster is compatible with, v1.1.6) once
# into a cache dir and print the binary path (see gobuild.sh). About 30 s for the ctl and 1 min for the
# service with a warm Go module cache.
# Usage: tests/gocluster.sh ipfs-cluster-ctl|ipfs-cluster-service   -> prints /path/to/the/binary
# Env:   PINCLUSTER_CACHE (default ~/.cache/pincluster).
set -euo pipefail
case "${1:-}" in
    ipfs-cluster-ctl|ipfs-cluster-service) ;;
    *) echo "usage: tests/gocluster.sh ipfs-cluster-ctl|ipfs-cluster-service" >&2; exit 2 ;;
esac
exec bash "$(dirname "$0")/gobuild.sh" ipfs-cluster-v1.1.6 "$1" github.com/ipfs-cluster/ipfs-cluster@v1.1.6 \
    "./cmd/$1" --version
