#!/usr/bin/env bash
# Build the pinned kubo (go-ipfs) once into a cache dir and print the binary path (see gobuild.sh).
# Usage: tests/kubo.sh            -> prints /path/to/ipfs
# Env:   PINCLUSTER_CACHE (default ~/.cache/pincluster), KUBO_VERSION (default pinned below).
# Pinned v0.42.0, not the newer v0.43.1: v0.43.1's go.mod replaces go-libp2p with a fork that the Go module
# proxy does not serve (403).
set -euo pipefail
KUBO_VERSION="${KUBO_VERSION:-v0.42.0}"
exec bash "$(dirname "$0")/gobuild.sh" "kubo-${KUBO_VERSION}" ipfs "github.com/ipfs/kubo@${KUBO_VERSION}" ./cmd/ipfs \
    version --number
