#!/usr/bin/env bash
# The API under load: wrk against /api/v1/mix and /metrics on loopback while the lab
# carries traffic (`lab traffic --loop`), every run bounded in time.
#
#   scripts/bench-api.sh              (as root: the lab needs namespaces and XDP)
#
# Environment: PREFIX (lab namespace prefix, default pwh), PORT (API port, default 9461),
# DURATION (seconds per wrk run, default 10, at most 15), RATE (requests/s of the paced
# runs, default 2000); PEERWARDEN_LOG reaches the lab's daemon (e.g.
# `info,peerwarden::access=warn` to measure without the request log).
#
# Runs, per path: (1) saturating: 2 threads, 16 connections, as fast as the API answers;
# (2) paced at RATE: Debian's wrk 4.1 has no -R, so a Lua `delay()` hands out send times
# on a fixed schedule per wrk thread (RATE/2 each, clock_gettime through LuaJIT's ffi),
# shared by that thread's 8 connections. A slow answer holds back only its connection;
# the schedule does not wait for it, but a request can only go out on a free connection,
# and wrk 4.1 times a request from when it was sent, not from when it was due (no
# coordinated-omission correction, unlike wrk2's -R). The achieved rate is printed.
#
# Everything it starts it stops (the traffic by pid, the lab with `lab down`), also on
# failure or Ctrl-C.
set -euo pipefail

PREFIX=${PREFIX:-pwh}
PORT=${PORT:-9461}
DURATION=${DURATION:-10}
RATE=${RATE:-2000}
CONNECTIONS=16
THREADS=2

[ "$(id -u)" = 0 ] || { echo "bench-api: run as root (the lab makes namespaces and attaches XDP)" >&2; exit 1; }
command -v wrk >/dev/null || { echo "bench-api: wrk is missing (scripts/setup.sh installs it)" >&2; exit 1; }
[ "$DURATION" -le 15 ] || { echo "bench-api: DURATION is at most 15 s" >&2; exit 1; }

cd "$(dirname "$0")/.."
log() { printf 'bench-api: %s\n' "$*" >&2; }

log "building the release binary"
cargo build --release -q -p peerwarden
BIN=$PWD/target/release/peerwarden
BASE=http://127.0.0.1:$PORT

WORK=$(mktemp -d /tmp/peerwarden-bench-api.XXXXXX)
TRAFFIC_PID=
cleanup() {
  if [ -n "$TRAFFIC_PID" ] && kill -0 "$TRAFFIC_PID" 2>/dev/null; then
    kill -TERM "$TRAFFIC_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$TRAFFIC_PID" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$TRAFFIC_PID" 2>/dev/null || true
  fi
  "$BIN" lab down --prefix "$PREFIX" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

"$BIN" lab down --prefix "$PREFIX" >/dev/null 2>&1 || true
"$BIN" lab up --prefix "$PREFIX" --api-port "$PORT" >&2

# Traffic for longer than all wrk runs together (4 runs + warm-up), then it stops itself.
TRAFFIC_SECS=$((4 * DURATION + 60))
"$BIN" lab traffic --prefix "$PREFIX" --loop --seconds "$TRAFFIC_SECS" >"$WORK/traffic.log" 2>&1 &
TRAFFIC_PID=$!
log "lab traffic running (pid $TRAFFIC_PID, at most ${TRAFFIC_SECS} s); waiting for it to reach the gateway"
for _ in $(seq 1 120); do
  bytes=$(curl -s "$BASE/api/v1/mix" | python3 -c 'import json,sys; m=json.load(sys.stdin); print(sum(sum(c["bytes"]) for c in m["classes"].values()))' 2>/dev/null || echo 0)
  [ "${bytes:-0}" -gt 20000000 ] && break
  sleep 0.5
done
log "gateway has counted ${bytes:-0} bytes; starting wrk"

# Pacing (see the header): send times a fixed period apart per wrk thread. wrk truncates
# the delay to whole milliseconds; the schedule itself is exact, so the rate holds.
cat >"$WORK/paced.lua" <<EOF
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } pw_timespec;
int clock_gettime(int clock, pw_timespec *tp);
]]
local ts = ffi.new("pw_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end
local period = 1000 * $THREADS / $RATE
local due = nil
function delay()
  local now = now_ms()
  -- Behind by more than a second (a stall): start the schedule again rather than burst.
  if due == nil or due < now - 1000 then due = now end
  local wait = due - now
  due = due + period
  if wait < 0 then return 0 end
  return wait
end
EOF

run() { # label, extra wrk args..., url
  local label=$1; shift
  echo
  echo "== $label"
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "$@"
}

echo "host: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r)"
echo "wrk: $(wrk -v 2>&1 | head -1)"
echo "daemon: $BIN (release), lab $PREFIX, API $BASE, PEERWARDEN_LOG=${PEERWARDEN_LOG:-info} (the request log is on at info)"
for path in /api/v1/mix /metrics; do
  run "$path saturating (${THREADS} threads, ${CONNECTIONS} connections, ${DURATION} s)" "$BASE$path"
  run "$path paced at ${RATE} req/s (${THREADS} threads, ${CONNECTIONS} connections, ${DURATION} s)" -s "$WORK/paced.lua" "$BASE$path"
done
echo
echo "== traffic during the runs"
curl -s "$BASE/api/v1/mix?window=60s" | python3 -c 'import json,sys; m=json.load(sys.stdin); print("last 60 s:", {k: round(sum(v["bytes"])*8/60/1e6, 1) for k, v in m["classes"].items()}, "Mbit/s by class")'
