#!/usr/bin/env bash
# Build a Go program of a pinned module version once into a cache dir and print the binary's path.
# Idempotent: if the cached binary runs (CHECK args), it only prints the path (about 0.1 s).
# Usage: tests/gobuild.sh CACHE_NAME BINARY MODULE@VERSION PACKAGE [CHECK_ARG...]
#   e.g. tests/gobuild.sh kubo-v0.42.0 ipfs github.com/ipfs/kubo@v0.42.0 ./cmd/ipfs version --number
# Env:   PINCLUSTER_CACHE (default ~/.cache/pincluster).
set -euo pipefail

NAME="$1"; BINARY="$2"; MODULE="$3"; PKG="$4"; shift 4
CACHE="${PINCLUSTER_CACHE:-$HOME/.cache/pincluster}"
DEST="$CACHE/$NAME"
BIN="$DEST/$BINARY"

if [[ -x "$BIN" ]] && "$BIN" "$@" >/dev/null 2>&1; then
    echo "$BIN"
    exit 0
fi

if ! command -v go >/dev/null 2>&1; then
    echo "gobuild.sh: 'go' not found in PATH; install Go >= 1.26 (or skip the tests that need $MODULE)" >&2
    exit 2
fi

mkdir -p "$DEST"
# Serialize concurrent builds (several test sessions may ask at once).
exec 9>"$DEST/.build.lock"
flock 9
if [[ -x "$BIN" ]] && "$BIN" "$@" >/dev/null 2>&1; then
    echo "$BIN"
    exit 0
fi

TMPBIN="$(mktemp -d "$DEST/.build.XXXXXX")"
trap 'rm -rf "$TMPBIN"' EXIT
start=$(date +%s)
echo "gobuild.sh: building $MODULE $PKG (may take several minutes)..." >&2
# Some modules' go.mod has `exclude` or `replace` directives, which `go install pkg@version` refuses; so fetch
# the module source through the Go module proxy and build it as the main module (the binary `go install`
# would give, with the module's own go.sum).
SRC="$(go mod download -json "$MODULE" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
if [[ -z "$SRC" || ! -d "$SRC" ]]; then
    echo "gobuild.sh: could not download $MODULE via the Go module proxy" >&2
    exit 3
fi
(cd "$SRC" && GOFLAGS="${GOFLAGS:--trimpath}" CGO_ENABLED="${CGO_ENABLED:-0}" go build -o "$TMPBIN/$BINARY" "$PKG") >&2
mv -f "$TMPBIN/$BINARY" "$BIN"
echo "gobuild.sh: built in $(( $(date +%s) - start ))s: $BIN" >&2
echo "$BIN"
