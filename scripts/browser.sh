#!/usr/bin/env bash
# Makes sure Debian's Chromium (and its driver) are installed for the browser tests (tests/browser/), which
# drive it through Playwright with executable_path=/usr/bin/chromium; Playwright's own browser downloads are
# never used. Used by `make test` through `make browser`. Idempotent: does nothing when both are present.
# GPUCLOUD_CHROMIUM names another binary. Under CI=true any failure is fatal (it always is: set -e).
set -euo pipefail

CHROMIUM="${GPUCLOUD_CHROMIUM:-/usr/bin/chromium}"

log() { printf '[browser] %s\n' "$*"; }
fail() { printf '[browser] ERROR: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    fail "need root (or sudo) to run: $*"; fi
}

if [ -x "$CHROMIUM" ] && command -v chromedriver >/dev/null; then
  log "Chromium present: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
  exit 0
fi

if [ "$CHROMIUM" != /usr/bin/chromium ]; then
  [ -x "$CHROMIUM" ] || fail "GPUCLOUD_CHROMIUM=$CHROMIUM is not an executable"
  exit 0
fi

log "apt-get update"
as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
log "installing chromium chromium-driver"
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  chromium chromium-driver fonts-liberation >/dev/null
[ -x "$CHROMIUM" ] || fail "chromium was installed but $CHROMIUM is missing"
log "Chromium ready: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
