#!/usr/bin/env bash
# Install the Debian packages Vie needs to build, test and benchmark, only
# those that are missing. Uses sudo when not root.
set -euo pipefail

# build: compiler, cmake, libuv, libfyaml (config), hiredis (shared rate
# limits); tests: cmocka, python3, curl, redis-server, clang's libFuzzer and
# sanitizer runtimes; bench: wrk and nginx.
PKGS=(build-essential cmake pkg-config libuv1-dev libfyaml-dev libhiredis-dev
      libcmocka-dev python3 curl redis-server clang libclang-rt-14-dev clang-format
      wrk nginx valgrind procps util-linux)

missing=()
for p in "${PKGS[@]}"; do
  [ -z "$p" ] && continue
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
# Debian starts nginx on install; the bench runs its own.
# Debian starts nginx and redis on install; the bench and the tests run
# their own, on ports of their choosing.
for svc in nginx redis-server; do
  if printf '%s\n' "${missing[@]}" | grep -qx "$svc"; then
    $SUDO service "$svc" stop >/dev/null 2>&1 || true
  fi
done
