#!/usr/bin/env bash
# Build a pinned kubo (go-ipfs) once into a cache dir and print the binary path.
# Idempotent: if the cached binary for this version runs, it only prints the path (about 0.1 s).
# Usage: tests/kubo.sh            -> prints /path/to/ipfs
# Env:   PINCLUSTER_CACHE (default ~/.cache/pincluster), KUBO_VERSION (default pinned below).
set -euo pipefail

KUBO_VERSION="${KUBO_VERSION:-v0.42.0}"
CACHE="${PINCLUSTER_CACHE:-$HOME/.cache/pincluster}"
DEST="$CACHE/kubo-${KUBO_VERSION}"
BIN="$DEST/ipfs"

if [[ -x "$BIN" ]] && "$BIN" version --number >/dev/null 2>&1; then
    echo "$BIN"
    exit 0
fi

if ! command -v go >/dev/null 2>&1; then
    echo "kubo.sh: 'go' not found in PATH; install Go >= 1.26 or set PINCLUSTER_NO_KUBO=1 to skip kubo tests" >&2
    exit 2
fi

mkdir -p "$DEST"
LOCK="$DEST/.build.lock"
# Serialize concurrent builds (several test sessions may ask at once).
exec 9>"$LOCK"
flock 9
if [[ -x "$BIN" ]] && "$BIN" version --number >/dev/null 2>&1; then
    echo "$BIN"
    exit 0
fi

TMPBIN="$(mktemp -d "$DEST/.build.XXXXXX")"
trap 'rm -rf "$TMPBIN"' EXIT
start=$(date +%s)
echo "kubo.sh: building github.com/ipfs/kubo/cmd/ipfs@${KUBO_VERSION} (may take several minutes)..." >&2
# kubo's go.mod has `exclude` directives, which `go install pkg@version` refuses; so fetch the module source
# through the Go module proxy and build it as the main module (the same binary `go install` would give).
# Pinned v0.42.0, not the newer v0.43.1: v0.43.1's go.mod also replaces go-libp2p with a fork that the Go
# module proxy does not serve (403).
SRC="$(go mod download -json "github.com/ipfs/kubo@${KUBO_VERSION}" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
if [[ -z "$SRC" || ! -d "$SRC" ]]; then
    echo "kubo.sh: could not download github.com/ipfs/kubo@${KUBO_VERSION} via the Go module proxy" >&2
    exit 3
fi
(cd "$SRC" && GOFLAGS="${GOFLAGS:--trimpath}" CGO_ENABLED="${CGO_ENABLED:-0}" \
    go build -o "$TMPBIN/ipfs" ./cmd/ipfs) >&2
mv -f "$TMPBIN/ipfs" "$BIN"
echo "kubo.sh: built in $(( $(date +%s) - start ))s: $BIN" >&2
echo "$BIN"
