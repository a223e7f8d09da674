#!/usr/bin/env bash
# Installs what peerwarden needs on a fresh Debian bookworm machine of the lab's kind,
# idempotently: every step checks first and skips what is already there.
#
#   scripts/setup.sh            toolchain + lab clients (what `make demo` and `make test` need)
#
# What it installs (cold: about 4-6 minutes, mostly apt and bpf-linker; warm: ~1 s):
#   - Debian: rustc-web rust-web-src (rustc 1.96 + its library source, LLVM 22) and llvm-22-dev
#     for bpf-linker; bpftool; lab clients: python3-libtorrent, opentracker, aria2,
#     nginx-light, curl, iperf3, tcpdump, ethtool, iproute2; nfdump (nfcapd) and tshark, the
#     IPFIX collector and decoder the export test reads back with; prometheus (promtool checks
#     contrib/prometheus and contrib/grafana; the fleet lab scrapes two gateways with it);
#     amule-daemon and amule-utils (amuled, amulecmd: lab/capture/run.sh edonkey-obfuscated)
#   - crates.io: bpf-linker 0.13.0 built against LLVM 22; cargo-fuzz 0.13.1 (scripts/fuzz.sh);
#     cargo-deb 3.8.0 (the Debian package: `cargo deb -p peerwarden`)
#   - `rustup toolchain link debian /usr` so aya-build can run Debian's rustc with build-std
#   - mounts bpffs on /sys/fs/bpf
set -euo pipefail

log() { printf 'setup: %s\n' "$*" >&2; }

[ "$(id -u)" = 0 ] || { echo "setup: must run as root (installs packages, mounts bpffs)" >&2; exit 1; }

export DEBIAN_FRONTEND=noninteractive
PKGS=(rustc-web cargo-web rust-web-src llvm-22-dev libpolly-22-dev libzstd-dev bpftool
      python3-libtorrent opentracker aria2 nginx-light curl iperf3 tcpdump ethtool iproute2
      libpcap-dev libndpi-bin chromium ffmpeg libnginx-mod-rtmp dnsmasq-base bind9-dnsutils wrk
      nfdump tshark prometheus amule-daemon amule-utils)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  # nginx and prometheus would start themselves in the root namespace on install; forbid
  # service starts meanwhile.
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1
  rm -f /usr/sbin/policy-rc.d
  trap - EXIT
fi

# Debian's rustc-web installs as rustc-web? Make sure /usr/bin/rustc is the 1.96 one.
if ! /usr/bin/rustc --version 2>/dev/null | grep -q '1\.9[6-9]'; then
  echo "setup: /usr/bin/rustc is not Debian's rustc 1.96 ($(/usr/bin/rustc --version 2>&1))" >&2
  exit 1
fi

if ! command -v bpf-linker >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/bpf-linker" ]; then
  log "building bpf-linker 0.13.0 against LLVM 22 (about a minute)"
  PATH=/usr/lib/llvm-22/bin:$PATH cargo install --locked bpf-linker@0.13.0 \
    --no-default-features --features llvm-22 >/dev/null
fi

if ! command -v cargo-fuzz >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/cargo-fuzz" ]; then
  log "installing cargo-fuzz 0.13.1 (scripts/fuzz.sh; about a minute)"
  cargo install --locked cargo-fuzz@0.13.1 >/dev/null
fi

if ! command -v cargo-deb >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/cargo-deb" ]; then
  log "installing cargo-deb 3.8.0 (the Debian package; about 2 minutes)"
  cargo install --locked cargo-deb@3.8.0 >/dev/null
fi

if ! rustup toolchain list | grep -q '^debian'; then
  log "linking Debian's rustc as the rustup toolchain 'debian'"
  rustup toolchain link debian /usr
fi

if ! mountpoint -q /sys/fs/bpf; then
  log "mounting bpffs on /sys/fs/bpf"
  mount -t bpf bpf /sys/fs/bpf
fi
log "ready"
