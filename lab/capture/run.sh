#!/usr/bin/env bash
# One capture scenario with ground truth by construction.
#
#   lab/capture/run.sh SCENARIO OUTDIR
#
# writes OUTDIR/SCENARIO.pcap (tcpdump on the subscriber's link, whole frames) and
# OUTDIR/SCENARIO.truth.csv: which endpoints (protocol, address, port) carry which class of
# traffic, known because this script started the servers and clients on them. A flow
# belongs to the first row matching either of its endpoints.
#
# Scenarios (each also runs the background traffic: DNS, HTTP, TLS, iperf3):
#   bt-encrypted  libtorrent swarm, MSE/PE forced (rc4), TCP only, HTTP + UDP tracker
#   bt-utp        libtorrent swarm over uTP only, HTTP + UDP tracker
#   bt-dht        trackerless torrent, peers found through lab DHT nodes only
#   hls           ffmpeg players on an HLS clip served by nginx
#   dash          ffmpeg players on a DASH clip served by nginx
#   rtmp          ffmpeg publishes to nginx-rtmp and plays the stream back
#   edonkey-obfuscated  aMule clients (amuled) with protocol obfuscation, Kad only (lab
#                 nodes from a nodes.dat; Kad's UDP obfuscated), a file shared on the
#                 internet side and downloaded from both sides over eDonkey TCP
#   background    the background traffic alone
#
# Two namespaces, "$PWC_PREFIX-sub" (subscribers, 100.64.7.0/24, 2001:db8:7::/64) and
# "$PWC_PREFIX-net" (servers and remote peers, 198.51.100.0/24, 2001:db8:100::/64), joined
# by one veth created inside them; each side routes only the other's lab prefixes, no
# default route anywhere. Every process is started here, remembered by PID and stopped by
# PID; the namespaces and the work directory go in an EXIT trap, on success and failure.
# Root needed. PWC_PREFIX (default pwc) keeps concurrent runs apart; PWC_KEEP=1 leaves
# the work directory for inspection.
set -euo pipefail

SCENARIO=${1:?usage: run.sh SCENARIO OUTDIR}
OUT=${2:?usage: run.sh SCENARIO OUTDIR}
P=${PWC_PREFIX:-pwc}
HERE=$(cd "$(dirname "$0")" && pwd)
NS_SUB="$P-sub"
NS_NET="$P-net"
IF_SUB="${P}s0"
IF_NET="${P}n0"
PY=/usr/bin/python3 # python3-libtorrent is Debian's, for Debian's python

# The subscriber that browses, resolves names and runs iperf3 is also the first BitTorrent
# peer of the swarm scenarios, as at home: its other traffic must not be taken for P2P
# because the host is a P2P node.
SUB_V4=100.64.7.11
SUB_V6=2001:db8:7::10
TRACKER=198.51.100.2
DNS=198.51.100.53
WEB=198.51.100.80
WEB_V6=2001:db8:100::80
HLS=198.51.100.81
DASH=198.51.100.82
RTMP=198.51.100.83
TLS=198.51.100.84
IPERF=198.51.100.85
NET_PEERS=(198.51.100.11 198.51.100.12 198.51.100.13 198.51.100.14 198.51.100.15)
SUB_PEERS=(100.64.7.11 100.64.7.12 100.64.7.13 100.64.7.14 100.64.7.15)
BT_PORT=6881

log() { printf 'capture[%s]: %s\n' "$SCENARIO" "$*" >&2; }
die() { log "$*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (namespaces, tcpdump)"
case "$SCENARIO" in
  bt-encrypted | bt-utp | bt-dht | hls | dash | rtmp | edonkey-obfuscated | background) ;;
  *) die "unknown scenario $SCENARIO" ;;
esac
for c in ip tcpdump ethtool ffmpeg nginx dnsmasq dig openssl iperf3 curl opentracker; do
  command -v "$c" >/dev/null || die "$c is missing: run scripts/setup.sh"
done

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
W=$(mktemp -d "/tmp/$P-capture-XXXXXX")
# nginx workers and opentracker run as nobody and read files under here.
chmod 755 "$W"
PCAP="$OUT/$SCENARIO.pcap"
TRUTH="$OUT/$SCENARIO.truth.csv"
PIDS=()
PLAYERS=()
TCPDUMP_PID=
MADE_NETNS=0

cleanup() {
  local rc=$?
  set +e
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    kill -TERM "${PIDS[i]}" 2>/dev/null
  done
  if [ -n "$TCPDUMP_PID" ]; then kill -INT "$TCPDUMP_PID" 2>/dev/null; fi
  sleep 0.3
  for pid in "${PIDS[@]}" $TCPDUMP_PID; do
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  done
  wait 2>/dev/null
  # Only what this run made: namespaces of the same name may be another run's.
  if [ "$MADE_NETNS" = 1 ]; then
    ip netns del "$NS_SUB" 2>/dev/null
    ip netns del "$NS_NET" 2>/dev/null
    rm -rf "/etc/netns/$NS_SUB"
  fi
  if [ "${PWC_KEEP:-0}" = 1 ]; then log "work directory kept: $W"; else rm -rf "$W"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# For foreground commands only: `in_sub x &` would leave $! naming a subshell, not x.
in_sub() { ip netns exec "$NS_SUB" "$@"; }
in_net() { ip netns exec "$NS_NET" "$@"; }

# Starts "$@" in the background inside namespace $1, output to $W/$2.log; remembers the PID.
start() {
  local ns=$1 name=$2
  shift 2
  ip netns exec "$ns" "$@" >"$W/$name.log" 2>&1 &
  PIDS+=($!)
  LAST_PID=$!
}

# Stops one process started with `start`, by PID, and reaps it.
stop() {
  local pid=$1
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# Waits until `ss $2` in namespace $1 lists local address $3 (a listening socket).
wait_listen() {
  local ns=$1 flags=$2 addr=$3
  for _ in $(seq 100); do
    ip netns exec "$ns" ss "$flags" | awk '{print $4, $5}' | grep -qF -- "$addr" && return 0
    sleep 0.1
  done
  die "nothing listens on $addr in $ns (see $W)"
}

truth() { printf '%s\n' "$*" >>"$TRUTH"; }

topology() {
  local ns
  for ns in "$NS_SUB" "$NS_NET"; do
    [ ! -e "/run/netns/$ns" ] ||
      die "namespace $ns exists: another run with PWC_PREFIX=$P, or a leftover to remove"
  done
  MADE_NETNS=1
  ip netns add "$NS_SUB"
  ip netns add "$NS_NET"
  ip link add "$IF_SUB" netns "$NS_SUB" type veth peer name "$IF_NET" netns "$NS_NET"
  for ns in "$NS_SUB" "$NS_NET"; do
    ip -n "$ns" link set lo up
  done
  # Whole frames on the capture: no segmentation or checksum offloads (LAB-NOTES.md).
  in_sub ethtool -K "$IF_SUB" tso off gso off gro off tx off rx off >/dev/null 2>&1
  in_net ethtool -K "$IF_NET" tso off gso off gro off tx off rx off >/dev/null 2>&1
  ip -n "$NS_SUB" link set "$IF_SUB" up
  ip -n "$NS_NET" link set "$IF_NET" up
  local a
  for a in "${SUB_PEERS[@]}"; do
    ip -n "$NS_SUB" addr add "$a/32" dev "$IF_SUB"
  done
  ip -n "$NS_SUB" addr add "$SUB_V6/128" dev "$IF_SUB" nodad
  for a in "$TRACKER" "$DNS" "$WEB" "$HLS" "$DASH" "$RTMP" "$TLS" "$IPERF" "${NET_PEERS[@]}"; do
    ip -n "$NS_NET" addr add "$a/32" dev "$IF_NET"
  done
  ip -n "$NS_NET" addr add "$WEB_V6/128" dev "$IF_NET" nodad
  # On-link routes to the other side's lab prefixes only.
  ip -n "$NS_SUB" route add 198.51.100.0/24 dev "$IF_SUB" src "$SUB_V4"
  ip -n "$NS_SUB" route add 203.0.113.0/24 dev "$IF_SUB" src "$SUB_V4"
  ip -n "$NS_SUB" -6 route add 2001:db8:100::/64 dev "$IF_SUB" src "$SUB_V6"
  ip -n "$NS_NET" route add 100.64.7.0/24 dev "$IF_NET" src "$WEB"
  ip -n "$NS_NET" -6 route add 2001:db8:7::/64 dev "$IF_NET" src "$WEB_V6"
  mkdir -p "/etc/netns/$NS_SUB"
  printf 'nameserver %s\n' "$DNS" >"/etc/netns/$NS_SUB/resolv.conf"
}

capture_start() {
  rm -f "$PCAP"
  # -Z root: write the file as root (tcpdump otherwise drops to its own user first).
  ip netns exec "$NS_SUB" tcpdump -i "$IF_SUB" -s 0 -U -n -Z root -w "$PCAP" 'ip or ip6' \
    2>"$W/tcpdump.log" &
  TCPDUMP_PID=$!
  for _ in $(seq 100); do
    grep -q 'listening on' "$W/tcpdump.log" 2>/dev/null && return 0
    sleep 0.05
  done
  die "tcpdump did not start: $(cat "$W/tcpdump.log")"
}

capture_stop() {
  sleep 0.5 # the last FINs and ACKs
  kill -INT "$TCPDUMP_PID"
  wait "$TCPDUMP_PID" 2>/dev/null || true
  log "$(tail -n 3 "$W/tcpdump.log" | tr '\n' ' ')"
  TCPDUMP_PID=
}

# ---- background traffic: DNS, HTTP (v4 and v6), TLS with a made-up SNI, iperf3 ----

background_servers() {
  start "$NS_NET" dnsmasq dnsmasq --keep-in-foreground --no-resolv --no-hosts \
    --listen-address="$DNS" --bind-interfaces --user=root --pid-file="$W/dnsmasq.pid" \
    --address=/example/"$WEB" --address=/video.example/"$TLS" --log-facility="$W/dnsmasq.q.log"
  wait_listen "$NS_NET" -lnu "$DNS:53"
  mkdir -p "$W/www/static" "$W/www/media"
  printf '<!doctype html><title>lab</title><p>peerwarden lab page</p>\n' >"$W/www/index.html"
  printf 'console.log("lab");\n' >"$W/www/static/app.js"
  printf 'body { color: #333 }\n' >"$W/www/static/site.css"
  # TypeScript source, `.ts` like an MPEG-TS segment: must stay web traffic.
  printf 'export const lab: number = 1;\n' >"$W/www/static/main.ts"
  head -c 65536 /dev/urandom >"$W/www/static/archive.bin"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=video.example \
    -keyout "$W/tls.key" -out "$W/tls.crt" >/dev/null 2>&1
  start "$NS_NET" tls openssl s_server -accept "$TLS:443" -cert "$W/tls.crt" -key "$W/tls.key" \
    -www -quiet
  wait_listen "$NS_NET" -lnt "$TLS:443"
  start "$NS_NET" iperf3 iperf3 -s -B "$IPERF" -p 5201
  wait_listen "$NS_NET" -lnt "$IPERF:5201"
  truth "udp,$DNS,53,other,dns"
  truth "tcp,$DNS,53,other,dns"
  truth "tcp,$WEB,80,other,http"
  truth "tcp,$WEB_V6,80,other,http"
  truth "tcp,$TLS,443,other,tls"
  truth "tcp,$IPERF,5201,other,iperf3"
  truth "udp,$IPERF,5201,other,iperf3"
}

background_clients() {
  local i
  for i in $(seq 1 16); do
    in_sub timeout 5 dig +tries=1 +time=2 "@$DNS" "host$i.example" A >/dev/null
  done
  in_sub timeout 5 dig +tries=1 +time=2 "@$DNS" www.example AAAA >/dev/null
  in_sub timeout 5 dig +tcp +tries=1 +time=2 "@$DNS" tcp.example A >/dev/null
  for path in / /static/app.js /static/site.css /static/main.ts /static/archive.bin; do
    in_sub timeout 10 curl -sS -o /dev/null "http://www.example$path"
    in_sub timeout 10 curl -sS -o /dev/null -g "http://[$WEB_V6]$path"
  done
  for i in 1 2 3; do
    in_sub timeout 10 curl -sSk -o /dev/null "https://video.example/"
  done
  # Small segments and datagrams keep the fixtures small; the flows are bulk all the same.
  in_sub timeout 10 iperf3 -c "$IPERF" -p 5201 -t 1 -b 10M -M 536 >/dev/null
  in_sub timeout 10 iperf3 -c "$IPERF" -p 5201 -u -t 1 -b 2M -l 400 >/dev/null
  in_sub timeout 10 iperf3 -c "$IPERF" -p 5201 -t 1 -b 5M -M 536 -R >/dev/null
}

# nginx for the web pages and the media scenarios: its own prefix and config under $W, so
# nothing touches /etc/nginx or /var; the RTMP module is loaded only when asked for.
nginx_start() {
  local rtmp=${1:-}
  mkdir -p "$W/nginx/tmp" "$W/www/media"
  {
    [ -n "$rtmp" ] && printf 'load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;\n'
    cat <<EOF
worker_processes 1;
daemon off;
pid $W/nginx/nginx.pid;
error_log $W/nginx/error.log;
events { worker_connections 256; }
http {
  access_log $W/nginx/access.log;
  client_body_temp_path $W/nginx/tmp/body;
  proxy_temp_path $W/nginx/tmp/proxy;
  fastcgi_temp_path $W/nginx/tmp/fastcgi;
  uwsgi_temp_path $W/nginx/tmp/uwsgi;
  scgi_temp_path $W/nginx/tmp/scgi;
  default_type application/octet-stream;
  # The web site serves TypeScript sources as a development server does. (nginx's stock
  # mime.types says video/mp2t for every .ts, which would make them MPEG-TS to anyone.)
  server {
    listen $WEB:80;
    listen [$WEB_V6]:80;
    root $W/www;
    types { text/html html; text/css css; application/javascript js; application/typescript ts; }
  }
  server {
    listen $HLS:80;
    listen $DASH:80;
    root $W/www/media;
    types {
      application/vnd.apple.mpegurl m3u8;
      video/mp2t ts;
      application/dash+xml mpd;
      video/iso.segment m4s;
    }
  }
}
EOF
    if [ -n "$rtmp" ]; then
      cat <<EOF
rtmp {
  server {
    listen $RTMP:1935;
    application live { live on; record off; }
  }
}
EOF
    fi
  } >"$W/nginx.conf"
  start "$NS_NET" nginx nginx -p "$W/nginx" -c "$W/nginx.conf"
  wait_listen "$NS_NET" -lnt "$WEB:80"
  [ -z "$rtmp" ] || wait_listen "$NS_NET" -lnt "$RTMP:1935"
}

# A short test clip: 320x240 test pattern and a tone, H.264 and AAC, keyframe every second.
make_clip() {
  ffmpeg -nostdin -loglevel error -f lavfi -i testsrc=size=320x240:rate=25 \
    -f lavfi -i sine=frequency=440:sample_rate=44100 -t "${1:-6}" \
    -c:v libx264 -preset ultrafast -pix_fmt yuv420p -g 25 -b:v 100k \
    -c:a aac -b:a 32k "$W/clip.mp4"
}

# ---- BitTorrent swarms ----

# $1 = mode (encrypted|utp|dht). Seeders and a leecher on the internet side, leechers on
# the subscriber side: peer connections cross the capture link in both directions.
swarm() {
  local mode=$1 trackers=() peer_args_net=() leech_args_net=() peer_args_sub=() dht=() a
  if [ "$mode" != dht ]; then
    trackers=(--tracker "http://$TRACKER:6969/announce" --tracker "udp://$TRACKER:6969/announce")
  fi
  in_net "$PY" "$HERE/swarm.py" make --out "$W/bt" --name lab.bin --size-kb 1024 \
    "${trackers[@]}" >"$W/make.log"
  local torrent="$W/bt/lab.bin.torrent"
  local infohash
  infohash=$(sed -n 's/.*"infohash": "\([0-9a-f]*\)".*/\1/p' "$W/make.log")
  [ -n "$infohash" ] || die "no torrent made: $(cat "$W/make.log")"
  if [ "$mode" != dht ]; then
    # Debian's opentracker tracks only whitelisted info-hashes; it chroots to its directory.
    mkdir -p "$W/tracker"
    printf '%s\n' "$infohash" >"$W/tracker/whitelist"
    start "$NS_NET" tracker opentracker -i "$TRACKER" -p 6969 -P 6969 -d "$W/tracker" \
      -u nobody -w /whitelist
    wait_listen "$NS_NET" -lnt "$TRACKER:6969"
    truth "tcp,$TRACKER,6969,p2p,bittorrent.tracker"
    truth "udp,$TRACKER,6969,p2p,bittorrent.tracker"
  fi
  # What each peer endpoint carries: the peer wire on TCP or uTP; on UDP also the UDP
  # tracker's announces (matched by the tracker's rows first) and, with the DHT, KRPC.
  local tcp_what=bittorrent udp_what=bittorrent
  case "$mode" in
    encrypted) tcp_what=bittorrent.encrypted ;;
    utp) udp_what=bittorrent.utp ;;
    dht) udp_what=bittorrent.dht ;;
  esac
  for a in "${NET_PEERS[@]:0:3}"; do peer_args_net+=(--peer "$a:$BT_PORT"); done
  for a in "${NET_PEERS[@]:3}"; do leech_args_net+=(--peer "$a:$BT_PORT"); done
  for a in "${SUB_PEERS[@]}"; do peer_args_sub+=(--peer "$a:$BT_PORT"); done
  for a in "${NET_PEERS[@]}" "${SUB_PEERS[@]}"; do
    truth "tcp,$a,$BT_PORT,p2p,$tcp_what"
    truth "udp,$a,$BT_PORT,p2p,$udp_what"
  done
  if [ "$mode" = dht ]; then
    dht=(--dht-node "${NET_PEERS[0]}:$BT_PORT" --dht-node "${NET_PEERS[1]}:$BT_PORT")
  fi
  # The seeders upload slowly enough that every leecher meets every peer before it is done.
  start "$NS_NET" seeders "$PY" "$HERE/swarm.py" run --torrent "$torrent" --dir "$W/bt" \
    --mode "$mode" --seed "${peer_args_net[@]}" "${dht[@]}" --upload-limit 100000 --duration 60
  local seeders=$LAST_PID
  start "$NS_NET" net-leechers "$PY" "$HERE/swarm.py" run --torrent "$torrent" \
    --dir "$W/bt-net" --mode "$mode" "${leech_args_net[@]}" "${dht[@]}" \
    --upload-limit 100000 --duration 60
  local net_leechers=$LAST_PID
  sleep 0.5
  start "$NS_SUB" sub-leechers "$PY" "$HERE/swarm.py" run --torrent "$torrent" \
    --dir "$W/bt-sub" --mode "$mode" "${peer_args_sub[@]}" "${dht[@]}" \
    --upload-limit 100000 --duration "${SWARM_SECONDS:-25}"
  local sub_leechers=$LAST_PID
  background_clients
  wait "$sub_leechers" || die "the subscriber-side peers failed: $(tail -n 5 "$W/sub-leechers.log")"
  log "subscriber side: $(grep '"stopped"' "$W/sub-leechers.log" || echo 'no stop line')"
  stop "$net_leechers"
  stop "$seeders"
}

# ---- media ----

# Starts a player of $1 (options for the demuxer after it) in the subscriber namespace.
player() {
  local url=$1
  shift
  ip netns exec "$NS_SUB" timeout 30 ffmpeg -nostdin -loglevel error "$@" -re -i "$url" \
    -f null - 2>>"$W/players.log" &
  PIDS+=($!)
  PLAYERS+=($!)
}

players_wait() {
  local p
  for p in "${PLAYERS[@]}"; do wait "$p" || log "a player failed: $(tail -n 2 "$W/players.log")"; done
  PLAYERS=()
}

hls() {
  make_clip 6
  mkdir -p "$W/www/media/hls"
  ffmpeg -nostdin -loglevel error -i "$W/clip.mp4" -c copy -f hls -hls_time 1 \
    -hls_playlist_type vod -hls_segment_filename "$W/www/media/hls/seg%03d.ts" \
    "$W/www/media/hls/index.m3u8"
  nginx_start
  truth "tcp,$HLS,80,video,hls"
  background_clients &
  local bg=$!
  PIDS+=($bg)
  # Two players keep one connection, two open one per segment.
  player "http://$HLS/hls/index.m3u8"
  player "http://$HLS/hls/index.m3u8"
  player "http://$HLS/hls/index.m3u8" -http_persistent 0
  player "http://$HLS/hls/index.m3u8" -http_persistent 0
  players_wait
  wait "$bg" || true
}

dash() {
  make_clip 6
  mkdir -p "$W/www/media/dash"
  ffmpeg -nostdin -loglevel error -i "$W/clip.mp4" -c copy -f dash -seg_duration 1 \
    -use_template 1 -use_timeline 1 "$W/www/media/dash/manifest.mpd"
  nginx_start
  truth "tcp,$DASH,80,video,dash"
  background_clients &
  local bg=$!
  PIDS+=($bg)
  local i
  for i in 1 2 3 4; do player "http://$DASH/dash/manifest.mpd"; done
  players_wait
  wait "$bg" || true
}

rtmp() {
  make_clip 8
  nginx_start rtmp
  truth "tcp,$RTMP,1935,video,rtmp"
  background_clients &
  local bg=$!
  PIDS+=($bg)
  # A streamer publishes from the subscriber side; five viewers play it back.
  ip netns exec "$NS_SUB" timeout 30 ffmpeg -nostdin -loglevel error -re -i "$W/clip.mp4" \
    -c copy -f flv "rtmp://$RTMP/live/lab" 2>>"$W/players.log" &
  local pub=$!
  PIDS+=($pub)
  sleep 2
  local viewers=() i
  for i in 1 2 3 4 5; do
    ip netns exec "$NS_SUB" timeout 20 ffmpeg -nostdin -loglevel error \
      -i "rtmp://$RTMP/live/lab" -t 3 -f null - 2>>"$W/players.log" &
    viewers+=($!)
    PIDS+=($!)
  done
  for p in "${viewers[@]}"; do wait "$p" || log "an RTMP viewer failed"; done
  wait "$pub" || log "the RTMP publisher failed"
  wait "$bg" || true
}

# ---- eDonkey/Kad: aMule with protocol obfuscation ----

AMULE_TCP=4662
AMULE_UDP=4672
AMULE_EC_PASS=lab

# Obfuscation is supported and requested everywhere; it is required only with
# AMULE_REQUIRED=1. A client cannot obfuscate a TCP connection to a peer whose user hash
# it does not know (the hash keys it), and in the lab the peers learn hashes only from each
# other: Kad stays firewalled (no Kad-found sources), so the downloads start from the
# link's sources in plain eDonkey (with obfuscation required nothing connects at all), and
# only a seeder calling back a downloader it queued, whose hello it has read, obfuscates.
# Kad's UDP is obfuscated either way: the nodes.dat gives every node's id.
# Writes the configuration of one aMule client: $1 name, $2 address, $3 EC port, $4 upload
# limit in kB/s (0: none).
amule_conf() {
  local name=$1 addr=$2 ec=$3 up=${4:-0} dir="$W/amule-$1"
  mkdir -p "$dir/Incoming" "$dir/Temp"
  cat >"$dir/amule.conf" <<EOF
[eMule]
Nick=lab-$name
Port=$AMULE_TCP
UDPPort=$AMULE_UDP
UDPEnable=1
Address=$addr
Autoconnect=1
Reconnect=1
ConnectToKad=1
ConnectToED2K=0
UPnPEnabled=0
TempDir=$dir/Temp
IncomingDir=$dir/Incoming
OSDirectory=$dir/
FilterLanIPs=0
ParanoidFiltering=0
IPFilterAutoLoad=0
FilterLevel=0
IPFilterURL=
NewVersionCheck=0
KadNodesUrl=
Ed2kServersUrl=
GeoIPEnabled=0
MaxUpload=$up
SlotAllocation=$((up > 0 ? up : 2))
MaxDownload=0
[ExternalConnect]
AcceptExternalConnections=1
ECAddress=127.0.0.1
ECPort=$ec
ECPassword=$(printf '%s' "$AMULE_EC_PASS" | md5sum | cut -d' ' -f1)
[WebServer]
Enabled=0
[Obfuscation]
IsClientCryptLayerSupported=1
IsCryptLayerRequested=1
IsClientCryptLayerRequired=${AMULE_REQUIRED:-0}
EOF
}

# Each client's Kad identity (preferencesKad.dat: address, two unused bytes, the 16-byte
# node id, a flag byte) and a Kad nodes.dat (version 2: a zero, the version, a count, then
# 34 bytes a contact: id, address, UDP and TCP ports, contact version 8, UDP key, verified)
# listing every lab node by its real id, as a client that has met them would hold it.
# Arguments: the work directory's client directories' prefix, then the addresses in order.
amule_kad_files() {
  "$PY" - "$@" <<'EOF'
import os, socket, struct, sys
prefix, addrs = sys.argv[1], sys.argv[2:]
ids = [os.urandom(16) for _ in addrs]
le = lambda a: struct.unpack("!I", socket.inet_aton(a))[0]
for i, a in enumerate(addrs):
    d = f"{prefix}{i + 1}"
    open(f"{d}/preferencesKad.dat", "wb").write(struct.pack("<IH", le(a), 0) + ids[i] + b"\0")
    others = [(n, x) for j, (n, x) in enumerate(zip(ids, addrs)) if j != i]
    b = struct.pack("<III", 0, 2, len(others))
    for n, x in others:
        b += n + struct.pack("<IHHBIIB", le(x), 4672, 4662, 8, 0, 0, 1)
    open(f"{d}/nodes.dat", "wb").write(b)
EOF
}

# amulecmd against the client whose EC port is $2, in namespace $1.
amule_cmd() {
  local ns=$1 ec=$2
  shift 2
  ip netns exec "$ns" timeout 20 amulecmd -h 127.0.0.1 -p "$ec" -P "$AMULE_EC_PASS" -c "$*"
}

# amulecmd $2 against client $1 (the first three are on the internet side).
amule_dl() {
  local ns=$NS_SUB
  [ "$1" -gt 3 ] || ns=$NS_NET
  amule_cmd "$ns" $((4710 + $1)) "$2" >>"$W/amulecmd.log" 2>&1 || true
}

edonkey_obfuscated() {
  command -v amuled >/dev/null || die "amuled is missing: apt-get install amule-daemon amule-utils"
  # Two seeders and a downloader on the internet side, three downloaders on the subscriber
  # side (not the subscriber that browses: its address is the first of SUB_PEERS). The
  # downloader outside meets those inside through source exchange too (in the recorded
  # capture, in plain eDonkey).
  local all=("${NET_PEERS[@]:0:3}" "${SUB_PEERS[@]:1:3}") i a ns
  # Connections to a seeder's port come from the link's sources, in plain eDonkey. Those to
  # a downloader's port are seeders calling back a downloader they queued, whose user hash
  # they know from its hello (obfuscated), or downloaders that met through source exchange.
  for a in "${all[@]}"; do
    if [ "$a" = "${all[0]}" ] || [ "$a" = "${all[1]}" ]; then
      truth "tcp,$a,$AMULE_TCP,p2p,edonkey"
    else
      truth "tcp,$a,$AMULE_TCP,p2p,edonkey.downloader"
    fi
    truth "udp,$a,$AMULE_UDP,p2p,edonkey.kad"
  done
  head -c $((3 * 1024 * 1024)) /dev/urandom >"$W/lab-share.bin"
  local size hash
  size=$(stat -c %s "$W/lab-share.bin")
  hash=$(openssl dgst -md4 -provider legacy -provider default "$W/lab-share.bin" | awk '{print $2}')
  # The seeders' addresses ride in the link as sources too.
  local link="ed2k://|file|lab-share.bin|$size|$hash|/|sources"
  for a in "${all[@]:0:2}"; do link+=",$a:$AMULE_TCP"; done
  link+="|/"
  i=0
  for a in "${all[@]}"; do
    i=$((i + 1))
    # The seeders upload at 10 kB/s: two slots each, so downloaders queue and are called back.
    amule_conf "n$i" "$a" $((4710 + i)) "$([ "$i" -le 2 ] && echo "${AMULE_SEED_UP:-10}" || echo 0)"
  done
  amule_kad_files "$W/amule-n" "${all[@]}"
  i=0
  for a in "${all[@]}"; do
    i=$((i + 1))
    [ "$i" -gt 2 ] || cp "$W/lab-share.bin" "$W/amule-n$i/Incoming/"
    if [ "$i" -le 3 ]; then
      ns=$NS_NET
    else
      ns=$NS_SUB
    fi
    start "$ns" "amule-n$i" env HOME="$W/amule-n$i" amuled -c "$W/amule-n$i"
  done
  sleep "${AMULE_SETTLE:-20}"
  local dl=(3 4 5 6) t
  for i in "${dl[@]}"; do amule_dl "$i" "add $link"; done
  background_clients
  # Downloads stall after a few hundred kB (LAB-NOTES.md): pause and resume now and then,
  # and give the link's sources again (pausing drops a file's sources). A pause also frees
  # the seeder's slot for a queued downloader; 45 s apart, the queued one's idle
  # connection has closed by then, so the seeder connects anew.
  for t in $(seq "${AMULE_ROUNDS:-7}"); do
    sleep "${AMULE_GAP:-45}"
    for i in "${dl[@]}"; do
      amule_dl "$i" "pause $hash"
      amule_dl "$i" "resume $hash"
      amule_dl "$i" "add $link"
    done
  done
  for i in "${dl[@]}"; do amule_dl "$i" "show dl"; done
  log "downloads: $(grep -a -E '%|lab-share' "$W/amulecmd.log" | tail -n 4 | tr '\n' ' ')"
}

printf 'proto,host,port,class,what\n# ground truth by construction: lab/capture/run.sh %s\n' \
  "$SCENARIO" >"$TRUTH"
topology
background_servers
capture_start
log "capturing on $NS_SUB/$IF_SUB"
case "$SCENARIO" in
  bt-encrypted) nginx_start && swarm encrypted ;;
  bt-utp) nginx_start && swarm utp ;;
  bt-dht) nginx_start && swarm dht ;;
  hls) hls ;;
  dash) dash ;;
  rtmp) rtmp ;;
  edonkey-obfuscated) nginx_start && edonkey_obfuscated ;;
  background) nginx_start && background_clients ;;
esac
capture_stop
log "wrote $PCAP ($(stat -c %s "$PCAP") bytes) and $TRUTH"
