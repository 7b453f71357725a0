#!/usr/bin/env bash
# Makes sure the Debian libraries WeasyPrint draws invoice PDFs with are installed (Pango and its FreeType
# backend, and a font): apps/billing/invoices/pdf.py. Used by the Makefile when it sets up the virtualenv.
# Idempotent: does nothing when they are present. Under CI=true any failure is fatal (it always is: set -e).
set -euo pipefail

log() { printf '[pdf-libs] %s\n' "$*"; }
fail() { printf '[pdf-libs] ERROR: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    fail "need root (or sudo) to run: $*"; fi
}

present() {
  ldconfig -p | grep -q 'libpango-1.0.so.0' && ldconfig -p | grep -q 'libpangoft2-1.0.so.0' \
    && fc-list 2>/dev/null | grep -qi 'dejavu'
}

if present; then
  log "Pango and fonts present"
  exit 0
fi

log "apt-get update"
as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
log "installing libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core"
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  libpango-1.0-0 libpangoft2-1.0-0 fontconfig fonts-dejavu-core >/dev/null
present || fail "Pango was installed but is not found by the dynamic linker"
log "Pango and fonts ready"
