#!/usr/bin/env bash
# System dependencies of the local stack (deploy/stack.py), idempotent and quick when all is there:
#   prometheus-alertmanager, mosquitto, docker-compose (Debian packages), Java 17, Maven, python3.11 with venv
#   and headers (and gcc: setup.py compiles with mypyc),
#   the Kafka jars from Maven Central (deploy/kafka/pom.xml) in the jar cache, and influxd built from the Go
#   module proxy by deploy/build-influxd.sh into its cache (needs Go and, for Flux's libflux, Rust's cargo).
# The packages' own services are never started: the stack runs the binaries itself.
#   deploy/install-system-deps.sh                    install what is missing, fetch the Kafka jars
#   deploy/install-system-deps.sh --print-kafka-lib  print the Kafka jar cache directory and exit
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
pom="$here/kafka/pom.xml"

# Keep in step with deploy/kafka.py lib_dir() (tests/integration/test_stack.py checks it).
kafka_lib_dir() {
  if [[ -n "${OPSMON_KAFKA_LIB_DIR:-}" ]]; then echo "$OPSMON_KAFKA_LIB_DIR"; return; fi
  local version hash
  version="$(sed -n 's:.*<kafka\.version>\([^<]*\)</kafka\.version>.*:\1:p' "$pom")"
  hash="$(sha256sum "$pom" | cut -c1-12)"
  echo "${XDG_CACHE_HOME:-$HOME/.cache}/opsmon/kafka-$version-$hash/lib"
}

if [[ "${1:-}" == "--print-kafka-lib" ]]; then kafka_lib_dir; exit 0; fi

log() { echo "install-system-deps: $*" >&2; }

sudo_=()
if [[ "$(id -u)" != 0 ]]; then
  command -v sudo >/dev/null || { log "not root and no sudo: cannot install packages"; exit 1; }
  sudo_=(sudo)
fi

have() { command -v "$1" >/dev/null 2>&1 || [[ -x "/usr/sbin/$1" || -x "/usr/bin/$1" ]]; }

java_ok() {
  have java || return 1
  local major
  major="$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)"
  [[ -n "$major" && "$major" -ge 17 ]]
}

packages=()
have prometheus-alertmanager || packages+=(prometheus-alertmanager)
have mosquitto || packages+=(mosquitto)
have docker-compose || packages+=(docker-compose)
java_ok || packages+=(openjdk-17-jre-headless)
have mvn || packages+=(maven)
have openssl || packages+=(openssl)  # the stack generates its TLS CA and certificates with it
# The Makefile builds .venv with Debian 12's python3.11 (an optimised build; a python3.11 on the PATH may not be).
/usr/bin/python3.11 -c 'import ensurepip' >/dev/null 2>&1 || packages+=(python3.11 python3.11-venv)
# setup.py compiles the detector's per-value helpers with mypyc: a C compiler and Python's headers
have gcc || packages+=(gcc)
[[ -e /usr/include/python3.11/Python.h ]] || packages+=(python3.11-dev)

if ((${#packages[@]})); then
  log "installing ${packages[*]}"
  # policy-rc.d exit 101 = "action forbidden": no package starts its daemon (invoke-rc.d and
  # deb-systemd-invoke honour it). Only ours is removed afterwards.
  policy=/usr/sbin/policy-rc.d
  added_policy=0
  if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo_[@]}" tee "$policy" >/dev/null
    "${sudo_[@]}" chmod 755 "$policy"
    added_policy=1
  fi
  cleanup() { if ((added_policy)); then "${sudo_[@]}" rm -f "$policy"; fi; }
  trap cleanup EXIT
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo_[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${packages[@]}" >/dev/null
  cleanup
  trap - EXIT
  # Where systemd does run, keep the packaged units from starting at boot and taking their ports.
  if [[ -d /run/systemd/system ]]; then
    for unit in "${packages[@]}"; do
      case "$unit" in
        prometheus-alertmanager|mosquitto)
          "${sudo_[@]}" systemctl disable --now "$unit" >/dev/null 2>&1 || true ;;
      esac
    done
  fi
else
  log "system packages present"
fi

lib="$(kafka_lib_dir)"
if [[ -e "$lib/.complete" ]]; then
  log "Kafka jars present in $lib"
else
  log "fetching Kafka jars into $lib"
  mkdir -p "$(dirname "$lib")"
  # Same lock as deploy/kafka.py ensure_jars(), so a stack starting meanwhile does not collide.
  exec 9>"$(dirname "$lib")/.lock"
  flock 9
  if [[ ! -e "$lib/.complete" ]]; then
    staging="$(dirname "$lib")/lib.partial"
    rm -rf "$staging"
    mvn -q -B -f "$pom" dependency:copy-dependencies -DoutputDirectory="$staging"
    rm -rf "$lib"
    mv "$staging" "$lib"
    touch "$lib/.complete"
  fi
  exec 9>&-
fi

# --- InfluxDB: influxd built from source, cached per version (deploy/build-influxd.sh) --------------------
bash "$here/build-influxd.sh"

# --- Browser for the end-to-end test of the alert feedback page (tests/integration/test_feedback_page.py) ---
# Debian's Chromium and its driver; Playwright drives this binary (executable_path=/usr/bin/chromium)
# because `playwright install` downloads a browser, which fails without general internet access.
browser=()
have chromium || browser+=(chromium)
have chromedriver || browser+=(chromium-driver)
if ((${#browser[@]})); then
  log "installing ${browser[*]}"
  "${sudo_[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo_[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${browser[@]}" >/dev/null
fi
