use std::net::{IpAddr, SocketAddr};

use super::*;
use crate::protocols::dns_message::tests::{query, response};

const S: u64 = 1_000_000_000;

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

/// A UDP flow from `sub` to a resolver.
fn udp_flow(sub: &str) -> FlowKey {
    FlowKey {
        proto: 17,
        src: sa(sub),
        dst: sa("198.51.100.53:53"),
    }
}

/// Asks `name` as `sub` and delivers `answer` (a response) back.
fn ask(
    h: &mut DnsHints,
    hosts: &HostList,
    key: &FlowKey,
    id: u16,
    name: &str,
    answer: &[u8],
    now: u64,
) {
    h.observe(key, Direction::Up, &query(id, name), now, hosts);
    h.observe(key, Direction::Down, answer, now + S / 100, hosts);
}

#[test]
fn an_answered_query_labels_its_addresses_for_its_ttl_clamped() {
    let hosts = HostList::default();
    let mut h = DnsHints::new(16);
    let k = udp_flow("100.64.1.10:40000");
    let sub = k.src.ip();
    let a = ip("198.51.100.9");
    let r = response(
        9,
        "www.netflix.com",
        &["edge.nflxvideo.net"],
        &[a, ip("2001:db8::9")],
        5,
    );
    ask(&mut h, &hosts, &k, 9, "www.netflix.com", &r, 0);
    assert_eq!(h.service(sub, a, S), Some("netflix"));
    assert_eq!(h.service(sub, ip("2001:db8::9"), S), Some("netflix"));
    // A TTL of 5 s is held for the 30 s minimum, and no longer.
    assert_eq!(h.service(sub, a, 29 * S), Some("netflix"));
    assert_eq!(h.service(sub, a, 31 * S), None);
    // A week-long TTL is cut to a day.
    let r = response(10, "www.netflix.com", &[], &[a], 7 * 86_400);
    ask(&mut h, &hosts, &k, 10, "www.netflix.com", &r, 100 * S);
    assert_eq!(h.service(sub, a, (100 + 86_399) * S), Some("netflix"));
    assert_eq!(h.service(sub, a, (100 + 86_401) * S), None);
}

#[test]
fn the_service_comes_from_any_name_of_the_chain() {
    let hosts = HostList::default();
    let mut h = DnsHints::new(16);
    let k = udp_flow("100.64.1.10:40000");
    let a = ip("198.51.100.9");
    // The question is no one's; its CNAME target is Netflix's CDN.
    let r = response(
        3,
        "tv.example.org",
        &["x.example.net", "ipv4-c001.nflxvideo.net"],
        &[a],
        300,
    );
    ask(&mut h, &hosts, &k, 3, "tv.example.org", &r, 0);
    assert_eq!(h.service(k.src.ip(), a, S), Some("netflix"));
    // No name of the chain is a video service's: nothing remembered.
    let b = ip("198.51.100.10");
    let r = response(4, "www.example.org", &["cdn.example.net"], &[b], 300);
    ask(&mut h, &hosts, &k, 4, "www.example.org", &r, 0);
    assert_eq!(h.service(k.src.ip(), b, S), None);
    assert_eq!(h.len(), 1);
}

#[test]
fn one_subscribers_answers_never_label_anothers_flows() {
    let hosts = HostList::default();
    let mut h = DnsHints::new(16);
    let k = udp_flow("100.64.1.10:40000");
    let a = ip("198.51.100.9");
    let r = response(9, "www.youtube.com", &[], &[a], 300);
    ask(&mut h, &hosts, &k, 9, "www.youtube.com", &r, 0);
    assert_eq!(h.service(ip("100.64.1.10"), a, S), Some("youtube"));
    assert_eq!(h.service(ip("100.64.1.11"), a, S), None);
}

#[test]
fn forged_and_unsolicited_answers_are_ignored() {
    let hosts = HostList::default();
    let mut h = DnsHints::new(16);
    let k = udp_flow("100.64.1.10:40000");
    let sub = k.src.ip();
    let a = ip("198.51.100.9");
    // No query at all.
    let r = response(9, "www.youtube.com", &[], &[a], 300);
    h.observe(&k, Direction::Down, &r, 0, &hosts);
    // A query, answered with another transaction id, or for another name.
    h.observe(&k, Direction::Up, &query(9, "www.youtube.com"), S, &hosts);
    h.observe(
        &k,
        Direction::Down,
        &response(8, "www.youtube.com", &[], &[a], 300),
        S,
        &hosts,
    );
    h.observe(
        &k,
        Direction::Down,
        &response(9, "www.netflix.com", &[], &[a], 300),
        S,
        &hosts,
    );
    // An answer sent up by the subscriber itself (a response in the query direction).
    h.observe(&k, Direction::Up, &r, S, &hosts);
    // From another port of the subscriber than the query's.
    let other = udp_flow("100.64.1.10:40001");
    h.observe(&other, Direction::Down, &r, S, &hosts);
    assert_eq!(h.service(sub, a, 2 * S), None);
    assert_eq!(h.unsolicited(), 4);
    // The real answer still matches, once; after the query's wait it would not.
    h.observe(&k, Direction::Down, &r, 2 * S, &hosts);
    assert_eq!(h.service(sub, a, 3 * S), Some("youtube"));
    h.observe(
        &k,
        Direction::Up,
        &query(11, "www.youtube.com"),
        10 * S,
        &hosts,
    );
    let late = response(11, "www.youtube.com", &[], &[ip("198.51.100.77")], 300);
    h.observe(&k, Direction::Down, &late, 21 * S, &hosts);
    assert_eq!(h.service(sub, ip("198.51.100.77"), 22 * S), None);
}

#[test]
fn capacity_bounds_the_map_and_the_soonest_expiry_goes_first() {
    let hosts = HostList::default();
    let mut h = DnsHints::new(4);
    let k = udp_flow("100.64.1.10:40000");
    let sub = k.src.ip();
    // Four entries, TTLs 400, 100, 300, 200 s.
    for (i, ttl) in [400u32, 100, 300, 200].into_iter().enumerate() {
        let a = IpAddr::from([198, 51, 100, 100 + i as u8]);
        let r = response(i as u16, "www.twitch.tv", &[], &[a], ttl);
        ask(&mut h, &hosts, &k, i as u16, "www.twitch.tv", &r, 0);
    }
    assert_eq!(h.len(), 4);
    let r = response(9, "www.twitch.tv", &[], &[ip("198.51.100.200")], 500);
    ask(&mut h, &hosts, &k, 9, "www.twitch.tv", &r, S);
    assert_eq!(h.len(), 4);
    // The one with the 100 s TTL went.
    assert_eq!(h.service(sub, ip("198.51.100.101"), 2 * S), None);
    for a in [
        "198.51.100.100",
        "198.51.100.102",
        "198.51.100.103",
        "198.51.100.200",
    ] {
        assert_eq!(h.service(sub, ip(a), 2 * S), Some("twitch"), "{a}");
    }
    // Past 250 s the 200 s entry has expired: it goes before any live one.
    let r = response(10, "www.twitch.tv", &[], &[ip("198.51.100.201")], 500);
    ask(&mut h, &hosts, &k, 10, "www.twitch.tv", &r, 250 * S);
    assert_eq!(h.len(), 4);
    assert_eq!(
        h.service(sub, ip("198.51.100.102"), 251 * S),
        Some("twitch")
    );
    assert_eq!(
        h.service(sub, ip("198.51.100.201"), 251 * S),
        Some("twitch")
    );
}

#[test]
fn dns_over_tcp_messages_across_segments() {
    let hosts = HostList::default();
    let mut h = DnsHints::new(16);
    let k = FlowKey {
        proto: TCP,
        src: sa("100.64.1.10:40000"),
        dst: sa("198.51.100.53:53"),
    };
    let a = ip("198.51.100.9");
    let framed = |m: &[u8]| {
        let mut f = (m.len() as u16).to_be_bytes().to_vec();
        f.extend_from_slice(m);
        f
    };
    // Two queries in one segment (RFC 7766 pipelining), answers split across three.
    let mut up = framed(&query(1, "www.example.org"));
    up.extend_from_slice(&framed(&query(2, "www.hulu.com")));
    h.observe(&k, Direction::Up, &up, 0, &hosts);
    let mut down = framed(&response(
        1,
        "www.example.org",
        &[],
        &[ip("198.51.100.8")],
        60,
    ));
    down.extend_from_slice(&framed(&response(2, "www.hulu.com", &[], &[a], 60)));
    for part in [&down[..1], &down[1..40], &down[40..]] {
        assert_eq!(h.service(k.src.ip(), a, S), None);
        h.observe(&k, Direction::Down, part, S, &hosts);
    }
    assert_eq!(h.service(k.src.ip(), a, 2 * S), Some("hulu"));
    assert_eq!(h.service(k.src.ip(), ip("198.51.100.8"), 2 * S), None);
    assert_eq!(h.unsolicited(), 0);
}

/// What the daemon relies on: it tells the kernel a flow is final, and the kernel stops
/// sampling it, only when `Engine::is_final` says so. A DNS query must leave the flow open
/// so that its answer reaches the engine; the answer then closes it.
#[test]
fn the_engine_keeps_a_dns_flow_open_until_its_answer_then_labels_by_it() {
    use crate::{Engine, EngineConfig, PacketMeta};
    let mut e = Engine::new(EngineConfig::default());
    let dns = udp_flow("100.64.1.10:40000");
    let pkt = |key: FlowKey, dir, payload: &'static [u8], ts_ns| PacketMeta {
        ts_ns,
        key,
        dir,
        payload,
        tcp_flags: 0,
        tcp_seq: 0,
    };
    let q: &'static [u8] = query(0x77, "www.twitch.tv").leak();
    let a = ip("198.51.100.9");
    let r: &'static [u8] = response(0x77, "www.twitch.tv", &[], &[a], 60).leak();
    let v = e
        .on_packet(&pkt(dns, Direction::Up, q, 0))
        .expect("a verdict");
    assert_eq!(v.to_string(), "dns");
    assert!(
        !e.is_final(&dns),
        "a query alone must keep the flow sampled"
    );
    e.on_packet(&pkt(dns, Direction::Down, r, S / 100));
    assert!(e.is_final(&dns));
    assert_eq!(
        e.verdict(&dns).map(|v| v.to_string()).as_deref(),
        Some("dns")
    );
    assert_eq!(e.dns_hints().service(dns.src.ip(), a, S), Some("twitch"));
    // mDNS and LLMNR queries answer no one's resolver: final at once, as before.
    let mdns = FlowKey {
        proto: 17,
        src: sa("100.64.1.10:5353"),
        dst: sa("224.0.0.251:5353"),
    };
    let mq: &'static [u8] = query(0, "printer.local").leak();
    e.on_packet(&pkt(mdns, Direction::Up, mq, 0));
    assert!(e.is_final(&mdns));
    // A nameless QUIC flow to the answered address: video.twitch, provisional as an SNI's.
    let quic = FlowKey {
        proto: 17,
        src: sa("100.64.1.10:41000"),
        dst: SocketAddr::new(a, 443),
    };
    let hello = crate::protocols::tls::tests::client_hello_msg(None);
    let initial: &'static [u8] =
        crate::protocols::quic::tests::initial(1, &[3; 8], &[(0, &hello)]).leak();
    let v = e
        .on_packet(&pkt(quic, Direction::Up, initial, S))
        .expect("a verdict");
    assert_eq!(v.to_string(), "video.twitch");
    assert!(!e.is_final(&quic));
    // After the answer's 60 s, a new flow is plain QUIC again.
    let later = FlowKey {
        src: sa("100.64.1.10:41001"),
        ..quic
    };
    let v = e
        .on_packet(&pkt(later, Direction::Up, initial, 61 * S))
        .expect("a verdict");
    assert_eq!(v.to_string(), "quic");
}

#[test]
fn one_subscriber_cannot_push_anothers_entries_out() {
    let hosts = HostList::default();
    // A map large enough for two subscribers' shares.
    let mut h = DnsHints::new(2 * MAX_PER_SUBSCRIBER);
    let bob = udp_flow("100.64.1.11:40000");
    let a = ip("198.51.100.9");
    let r = response(1, "www.hulu.com", &[], &[a], 600);
    ask(&mut h, &hosts, &bob, 1, "www.hulu.com", &r, 0);
    // Alice answers herself with 64 addresses at a time, more than a whole map's worth,
    // TTLs rising so that hers expire later than Bob's.
    let alice = udp_flow("100.64.1.10:40000");
    let rounds = 2 * MAX_PER_SUBSCRIBER / 64 + 8;
    for i in 0..rounds {
        let addrs: Vec<IpAddr> = (0..64u32)
            .map(|j| IpAddr::from((0x0a00_0000u32 + i as u32 * 64 + j).to_be_bytes()))
            .collect();
        let r = response(i as u16, "www.hulu.com", &[], &addrs, 3600 + i as u32);
        ask(&mut h, &hosts, &alice, i as u16, "www.hulu.com", &r, S);
    }
    assert_eq!(h.len(), MAX_PER_SUBSCRIBER + 1);
    assert_eq!(h.service(bob.src.ip(), a, 2 * S), Some("hulu"));
    // Alice keeps her latest answers, not her first.
    let last = IpAddr::from((0x0a00_0000u32 + (rounds as u32 - 1) * 64).to_be_bytes());
    assert_eq!(h.service(alice.src.ip(), last, 2 * S), Some("hulu"));
    assert_eq!(h.service(alice.src.ip(), ip("10.0.0.0"), 2 * S), None);
}

#[test]
fn tcp_streams_that_ended_unseen_make_room_for_new_ones() {
    let hosts = HostList::default();
    let mut h = DnsHints::new(16);
    // TCP_STREAMS connections each leave half a message behind and are never ended.
    for i in 0..TCP_STREAMS as u16 {
        let k = FlowKey {
            proto: TCP,
            src: SocketAddr::new(ip("100.64.2.1"), 1024 + i),
            dst: sa("198.51.100.53:53"),
        };
        h.observe(&k, Direction::Up, &[0, 40, 1, 2], u64::from(i), &hosts);
    }
    // A new connection is still read whole.
    let k = FlowKey {
        proto: TCP,
        src: sa("100.64.1.10:40000"),
        dst: sa("198.51.100.53:53"),
    };
    let framed = |m: Vec<u8>| {
        let mut f = (m.len() as u16).to_be_bytes().to_vec();
        f.extend_from_slice(&m);
        f
    };
    let a = ip("198.51.100.9");
    let q = framed(query(5, "www.hulu.com"));
    h.observe(&k, Direction::Up, &q[..3], S, &hosts);
    h.observe(&k, Direction::Up, &q[3..], S, &hosts);
    let r = framed(response(5, "www.hulu.com", &[], &[a], 60));
    h.observe(&k, Direction::Down, &r[..3], S, &hosts);
    h.observe(&k, Direction::Down, &r[3..], S, &hosts);
    assert_eq!(h.service(k.src.ip(), a, 2 * S), Some("hulu"));
}

#[test]
fn an_answer_stamped_at_the_end_of_time_is_held_not_overflowed() {
    // A capture's clock is whatever its file says; a timestamp near u64::MAX must not
    // overflow the expiry (the capture fuzzer found `now + ttl` panicking).
    let hosts = HostList::default();
    let mut h = DnsHints::new(16);
    let k = udp_flow("100.64.1.10:40000");
    let a = ip("198.51.100.9");
    let r = response(9, "www.netflix.com", &[], &[a], 300);
    let late = u64::MAX - S;
    ask(&mut h, &hosts, &k, 9, "www.netflix.com", &r, late);
    assert_eq!(h.service(k.src.ip(), a, u64::MAX - 1), Some("netflix"));
}
