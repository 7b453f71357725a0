#!/usr/bin/env bash
# stripe-mock (Stripe's official API mock, built by sandbox/build.sh) on 127.0.0.1, for the contract tests
# of apps/billing/stripe. Usage: scripts/stripe_mock.sh start|stop|status|url
#   start   build it when missing (needs Go; `make sandbox-build` does the same), start it unless an instance
#           already answers on the port, wait until it answers; idempotent
#   stop    stop the process this script started (by the PID in its pid file), never anything else
#   status  exit 0 when stripe-mock answers on the port
#   url     print the base URL to put in STRIPE_API_BASE
# GPUCLOUD_STRIPE_MOCK_PORT (default 12111) picks the port. Under CI=true any failure is fatal (it is anyway).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=../sandbox/common.sh
. "$ROOT/sandbox/common.sh"

PORT="${GPUCLOUD_STRIPE_MOCK_PORT:-12111}"
ADDR="127.0.0.1:$PORT"
VAR_DIR="${GPUCLOUD_VAR_DIR:-$ROOT/var}"
PID_FILE="$VAR_DIR/stripe-mock-$PORT.pid"
LOG_FILE="$VAR_DIR/stripe-mock-$PORT.log"
BIN="$STRIPE_MOCK_BIN/stripe-mock"

say() { printf '[stripe-mock] %s\n' "$*" >&2; }
fail() { say "ERROR: $*"; exit 1; }

answers() {
  # stripe-mock accepts any sk_test_ key; a 200 on a list call proves it is stripe-mock and ready.
  curl -fsS -o /dev/null --max-time 2 -H "Authorization: Bearer sk_test_123" "http://$ADDR/v1/customers" 2>/dev/null
}

start() {
  if answers; then say "already answering on $ADDR"; return; fi
  if [[ ! -x $BIN ]]; then
    say "$BIN missing: building it (sandbox/build.sh stripe-mock)"
    bash "$ROOT/sandbox/build.sh" stripe-mock || fail "could not build stripe-mock; run make sandbox-build"
  fi
  mkdir -p "$VAR_DIR"
  say "starting $BIN on $ADDR (log $LOG_FILE)"
  nohup "$BIN" -http-addr "$ADDR" -https-addr 127.0.0.1:0 >"$LOG_FILE" 2>&1 </dev/null &
  echo $! >"$PID_FILE"
  for _ in $(seq 1 100); do
    answers && { say "ready on http://$ADDR"; return; }
    kill -0 "$(cat "$PID_FILE")" 2>/dev/null || fail "stripe-mock exited; see $LOG_FILE"
    sleep 0.1
  done
  fail "stripe-mock did not answer on $ADDR within 10 s; see $LOG_FILE"
}

stop() {
  if [[ -f $PID_FILE ]]; then
    local pid
    pid=$(cat "$PID_FILE")
    # Only our own process: the PID must still be a stripe-mock.
    if [[ "$(ps -o comm= -p "$pid" 2>/dev/null)" == stripe-mock* ]]; then
      kill "$pid" && say "stopped (pid $pid)"
    fi
    rm -f "$PID_FILE"
  else
    say "not started by this script on port $PORT"
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) answers && say "answering on http://$ADDR" || { say "not answering on $ADDR"; exit 1; } ;;
  url) echo "http://$ADDR" ;;
  *) echo "usage: $0 start|stop|status|url" >&2; exit 2 ;;
esac
