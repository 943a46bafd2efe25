#!/usr/bin/env bash
# Build InfluxDB OSS 1.x's influxd from the Go module proxy into the opsmon cache, once per version:
#   ${XDG_CACHE_HOME:-$HOME/.cache}/opsmon/influxdb-<version>/bin/influxd   (+ .complete when whole)
# Flux's libflux is Rust: influxdata's pkg-config wrapper builds it with cargo (crates from crates.io).
#   deploy/build-influxd.sh               build unless cached
#   deploy/build-influxd.sh --print-dir   print the cache directory and exit
# OPSMON_INFLUXDB_VERSION picks the version; OPSMON_INFLUXDB_DIR overrides the directory.
set -euo pipefail

# Keep in step with deploy/influxdb.py VERSION and home() (tests/integration/test_stack.py checks it).
version="${OPSMON_INFLUXDB_VERSION:-1.13.2}"
dir="${OPSMON_INFLUXDB_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/opsmon/influxdb-$version}"

if [[ "${1:-}" == "--print-dir" ]]; then echo "$dir"; exit 0; fi

log() { echo "build-influxd: $*" >&2; }

if [[ -e "$dir/.complete" ]]; then log "influxd $version present in $dir"; exit 0; fi
command -v go >/dev/null || { log "go is needed to build influxd (https://go.dev/dl)"; exit 1; }

mkdir -p "$dir"
# Same lock as deploy/influxdb.py, so two setups (or a stack starting) never build into each other.
exec 9>"$dir/.lock"
flock 9
if [[ -e "$dir/.complete" ]]; then log "influxd $version present in $dir"; exit 0; fi

started=$SECONDS
work="$dir/build"
rm -rf "$work"
mkdir -p "$work"
log "building influxd $version (Go module proxy; libflux with cargo): a few minutes on a cold cache"
src="$(cd "$work" && go mod download -json "github.com/influxdata/influxdb@v$version" \
  | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[[ -d "$src" ]] || { log "go mod download gave no source directory for v$version"; exit 1; }
# The module cache is read-only and its zip drops the execute bit of the source's pkg-config.sh:
# build a writable copy, and build influxdata's pkg-config wrapper ourselves instead of through that script.
cp -r "$src" "$work/src"
chmod -R u+w "$work/src"
cd "$work/src"
go build -o "$work/pkg-config" github.com/influxdata/pkg-config
major_minor="${version%.*}"
if [[ "${major_minor%%.*}" == 1 && "${major_minor#*.}" -lt 9 ]]; then
  # Before 1.9 flux had no libflux: pure Go.
  unset PKG_CONFIG
else
  export PKG_CONFIG="$work/pkg-config"
fi
# libflux pins a Rust release in rust-toolchain.toml that is not installed: use the installed stable one.
export RUSTUP_TOOLCHAIN="${RUSTUP_TOOLCHAIN:-stable}"
export CGO_ENABLED=1
go build -trimpath -ldflags "-s -w -X main.version=$version -X main.branch=v$version" \
  -o "$work/influxd" ./cmd/influxd
mkdir -p "$dir/bin"
mv "$work/influxd" "$dir/bin/influxd"
cd "$dir"
rm -rf "$work"
"$dir/bin/influxd" version >&2
touch "$dir/.complete"
log "influxd $version built in $((SECONDS - started)) s into $dir"
