//! DSCP marks written by the gateway, read back from captures of alice's link.

use peerwarden_tests::captures::{EthernetFrame, ethernet_frames};

use super::*;

/// `(dscp, ports, header checksum ok)` of each TCP frame: IPv4 or IPv6 after Ethernet.
fn tcp_tos(frames: &[EthernetFrame]) -> Vec<(u8, (u16, u16), bool, bool)> {
    let mut out = Vec::new();
    for f in frames.iter().map(|f| &f.data) {
        match u16::from_be_bytes([f[12], f[13]]) {
            0x0800 if f[23] == 6 => {
                let ihl = usize::from(f[14] & 0x0f) * 4;
                let mut sum: u32 = f[14..14 + ihl]
                    .chunks(2)
                    .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
                    .sum();
                while sum > 0xffff {
                    sum = (sum & 0xffff) + (sum >> 16);
                }
                let l4 = 14 + ihl;
                let ports = (
                    u16::from_be_bytes([f[l4], f[l4 + 1]]),
                    u16::from_be_bytes([f[l4 + 2], f[l4 + 3]]),
                );
                out.push((f[15] >> 2, ports, sum == 0xffff, true));
            }
            0x86dd if f[20] == 6 => {
                let tc = ((f[14] & 0x0f) << 4) | (f[15] >> 4);
                let ports = (
                    u16::from_be_bytes([f[54], f[55]]),
                    u16::from_be_bytes([f[56], f[57]]),
                );
                out.push((tc >> 2, ports, true, false));
            }
            _ => {}
        }
    }
    out
}

fn in_hdr_errors(ns: &str) -> u64 {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "cat", "/proc/net/snmp"])
        .output()
        .expect("snmp");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines().filter(|l| l.starts_with("Ip:"));
    let (names, values) = (lines.next().unwrap_or(""), lines.next().unwrap_or(""));
    let i = names
        .split_whitespace()
        .position(|n| n == "InHdrErrors")
        .expect("InHdrErrors");
    values
        .split_whitespace()
        .nth(i)
        .and_then(|v| v.parse().ok())
        .expect("a count")
}

#[test]
fn mark_sets_dscp_on_the_marked_class_only_with_valid_checksums() {
    let mut lab = PolicyLab::up(3, &policy(&other("dscp: AF41"), ""));
    lab.iperf_server();
    lab.web_server();
    let tmp = lab.tmp.0.clone();
    let filter = format!("tcp and (port {IPERF_PORT} or port 80)");
    let errors_before = in_hdr_errors(&lab.ns("gw"));
    // What reaches the internet side (up) and what reaches alice (down).
    let up = Capture::start(&lab.ns("net"), "eth0", "in", &filter, &tmp.join("up.pcap"));
    let down = Capture::start(
        &lab.ns("alice"),
        "eth0",
        "in",
        &filter,
        &tmp.join("down.pcap"),
    );
    // At 20 Mbit/s, so that tcpdump keeps up on two shared cores.
    for host in [addr::WEB_V4, addr::WEB_V6] {
        lab.iperf(host, 2, 0, 1, false, &["-b", "20M"]);
        lab.iperf(host, 2, 0, 1, true, &["-b", "20M"]);
        lab.download(host, Some("4M"));
    }
    thread::sleep(Duration::from_millis(300));
    assert_eq!(up.stop(), 0, "tcpdump dropped frames (up)");
    assert_eq!(down.stop(), 0, "tcpdump dropped frames (down)");
    assert_eq!(
        in_hdr_errors(&lab.ns("gw")),
        errors_before,
        "the gateway saw IPv4 header errors"
    );
    for (name, dir) in [("up.pcap", "up"), ("down.pcap", "down")] {
        let frames = tcp_tos(&ethernet_frames(&tmp.join(name)));
        let mut counts = std::collections::BTreeMap::new();
        // Per web flow: how many frames it had when its last AF41 one went by. A flow's
        // first packets, before its payload names it `http`, are class other and get
        // other's mark; nothing after.
        let mut web_frames: std::collections::BTreeMap<(u16, u16, bool), (u64, u64)> =
            Default::default();
        for (dscp, (sport, dport), csum_ok, v4) in &frames {
            assert!(
                *csum_ok,
                "{dir}: bad IPv4 header checksum on {sport} -> {dport}"
            );
            let iperf = *sport == IPERF_PORT || *dport == IPERF_PORT;
            if iperf {
                assert_eq!(
                    *dscp, 34,
                    "{dir}: DSCP of an iperf3 frame {sport} -> {dport}"
                );
            } else {
                assert!(
                    *dscp == 0 || *dscp == 34,
                    "{dir}: DSCP {dscp} on a web frame"
                );
                let seen = web_frames.entry((*sport, *dport, *v4)).or_default();
                seen.0 += 1;
                if *dscp == 34 {
                    seen.1 = seen.0;
                }
            }
            *counts.entry((iperf, *v4)).or_insert(0u64) += 1;
        }
        eprintln!("{dir}: per web flow (frames, last marked frame): {web_frames:?}");
        for (flow, (total, last_marked)) in &web_frames {
            assert!(
                *last_marked <= 3 && *total > 10,
                "{dir}: web flow {flow:?}: frame {last_marked} of {total} marked"
            );
        }
        eprintln!("{dir}: frames by (iperf, ipv4): {counts:?}");
        for key in [(true, true), (true, false), (false, true), (false, false)] {
            assert!(
                counts.get(&key).copied().unwrap_or(0) > 10,
                "{dir}: too few frames of {key:?}: {counts:?}"
            );
        }
        // tcpdump's own reading agrees: AF41 is tos/class 0x88, and no bad checksum.
        let text = Command::new("tcpdump")
            .args(["-v", "-n", "-r"])
            .arg(tmp.join(name))
            .output()
            .expect("tcpdump -r");
        let text = String::from_utf8_lossy(&text.stdout).into_owned();
        assert!(
            text.contains("tos 0x88") && text.contains("class 0x88"),
            "{dir}: tcpdump -v shows no AF41"
        );
        assert!(
            !text.contains("bad cksum"),
            "{dir}: tcpdump -v reports a bad checksum"
        );
    }
}
