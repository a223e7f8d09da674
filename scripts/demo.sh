#!/usr/bin/env bash
# The main job: the gateway on the demo lab with real traffic, example policy and the API.
# Installs what is missing, builds, brings the lab up (daemon attached in the gateway
# namespace, API on 127.0.0.1:9440), runs real BitTorrent and HTTP traffic through it and
# prints the traffic mix as it grows. The lab stays up afterwards; `peerwarden lab down`
# (or `scripts/demo.sh down`) removes it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --locked --release -p peerwarden
PW=target/release/peerwarden
if [ "${1:-}" = down ]; then exec "$PW" lab down; fi
"$PW" lab down >/dev/null 2>&1 || true
"$PW" lab up --swarms
echo "API: http://127.0.0.1:9440/api/v1/mix   (flows: /api/v1/flows)"
# --loop: a fresh torrent each round, so the mix keeps growing for the whole run.
"$PW" lab traffic --loop --seconds "${DEMO_SECONDS:-120}" &
traffic=$!
show_mix() { /usr/bin/python3 scripts/show-mix.py; }
while kill -0 "$traffic" 2>/dev/null; do
  sleep 5; echo "--- mix since start, $(date +%T)"; show_mix || true
done
wait "$traffic"
echo "--- final mix"; show_mix
echo "The lab is still up: curl -s 127.0.0.1:9440/api/v1/flows | head; scripts/demo.sh down removes it."
