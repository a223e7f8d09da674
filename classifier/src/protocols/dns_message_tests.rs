use std::net::IpAddr;

use super::*;

/// A name in wire form, uncompressed.
pub(crate) fn wire_name(name: &str) -> Vec<u8> {
    let mut o = Vec::new();
    for l in name.split('.').filter(|l| !l.is_empty()) {
        o.push(l.len() as u8);
        o.extend_from_slice(l.as_bytes());
    }
    o.push(0);
    o
}

/// A query for `name` (type A) with id `id`.
pub(crate) fn query(id: u16, name: &str) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    m.extend_from_slice(&wire_name(name));
    m.extend_from_slice(&[0, 1, 0, 1]);
    m
}

/// A response to `query(id, name)`: `chain` are CNAME targets from `name` on, each owner
/// written as a pointer to where its name was last written; `addrs` are owned by the last
/// name of the chain, each with `ttl`.
pub(crate) fn response(id: u16, name: &str, chain: &[&str], addrs: &[IpAddr], ttl: u32) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    let an = (chain.len() + addrs.len()) as u16;
    m.extend_from_slice(&[0x81, 0x80, 0, 1]);
    m.extend_from_slice(&an.to_be_bytes());
    m.extend_from_slice(&[0, 0, 0, 0]);
    let mut owner_at = m.len() as u16;
    m.extend_from_slice(&wire_name(name));
    m.extend_from_slice(&[0, 1, 0, 1]);
    let ptr = |at: u16| (0xc000 | at).to_be_bytes();
    for target in chain {
        m.extend_from_slice(&ptr(owner_at));
        m.extend_from_slice(&[0, 5, 0, 1]);
        m.extend_from_slice(&ttl.to_be_bytes());
        let w = wire_name(target);
        m.extend_from_slice(&(w.len() as u16).to_be_bytes());
        owner_at = m.len() as u16;
        m.extend_from_slice(&w);
    }
    for a in addrs {
        m.extend_from_slice(&ptr(owner_at));
        let (t, data) = match a {
            IpAddr::V4(v) => (TYPE_A, v.octets().to_vec()),
            IpAddr::V6(v) => (TYPE_AAAA, v.octets().to_vec()),
        };
        m.extend_from_slice(&t.to_be_bytes());
        m.extend_from_slice(&[0, 1]);
        m.extend_from_slice(&ttl.to_be_bytes());
        m.extend_from_slice(&(data.len() as u16).to_be_bytes());
        m.extend_from_slice(&data);
    }
    m
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

#[test]
fn query_reads_its_question() {
    let m = parse(&query(0x1234, "WWW.Netflix.com")).expect("query");
    assert_eq!(m.id, 0x1234);
    assert!(!m.response);
    assert_eq!(m.question, Some(("www.netflix.com".into(), TYPE_A)));
    assert!(m.answers.is_empty());
}

#[test]
fn compressed_cname_chain_to_a_and_aaaa() {
    let r = response(
        7,
        "www.netflix.com",
        &["www.dradis.netflix.com", "edge-1.nflxvideo.net"],
        &[ip("198.51.100.9"), ip("2001:db8:100::9")],
        300,
    );
    let m = parse(&r).expect("response");
    assert!(m.response);
    assert_eq!(m.answers.len(), 4);
    // Owners written as pointers read back as the names they point at.
    assert_eq!(m.answers[1].name, "www.dradis.netflix.com");
    assert_eq!(m.answers[2].name, "edge-1.nflxvideo.net");
    let res = resolve(&m).expect("question");
    assert_eq!(
        res.names,
        [
            "www.netflix.com",
            "www.dradis.netflix.com",
            "edge-1.nflxvideo.net"
        ]
    );
    assert_eq!(
        res.addrs,
        [(ip("198.51.100.9"), 300), (ip("2001:db8:100::9"), 300)]
    );
}

#[test]
fn addresses_off_the_chain_are_not_taken() {
    // An A record for a name the question never led to (an additional-looking record
    // smuggled into the answer section) is not the question's address.
    let mut r = response(7, "tv.example", &[], &[ip("198.51.100.9")], 60);
    r[7] += 1; // one more answer
    r.extend_from_slice(&wire_name("other.example"));
    r.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 203, 0, 113, 5]);
    let res = resolve(&parse(&r).expect("response")).expect("question");
    assert_eq!(res.addrs, [(ip("198.51.100.9"), 60)]);
}

#[test]
fn truncated_messages_are_refused_at_every_length() {
    let r = response(7, "a.example", &["b.example"], &[ip("198.51.100.9")], 60);
    assert!(parse(&r).is_some());
    for n in 0..r.len() {
        assert_eq!(parse(&r[..n]), None, "cut at {n}");
    }
}

#[test]
fn pointer_loops_and_forward_pointers_are_refused() {
    let mut m = query(1, "a.example");
    // The question's name points at itself.
    m.truncate(12);
    m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    assert_eq!(parse(&m), None);
    // Two names pointing at each other: the second is read first through the first.
    let mut m = query(1, "a.example");
    m.truncate(12);
    m.extend_from_slice(&[1, b'x', 0xc0, 20, 0, 1, 0, 1]);
    m.extend_from_slice(&[1, b'y', 0xc0, 12]);
    assert_eq!(parse(&m), None);
    // Out of bounds.
    let mut m = query(1, "a.example");
    m.truncate(12);
    m.extend_from_slice(&[0xc0, 200, 0, 1, 0, 1]);
    assert_eq!(parse(&m), None);
    assert_eq!(read_name(&[0xc0], 0), None);
    // A backward pointer is fine.
    let r = response(7, "a.example", &[], &[ip("198.51.100.9")], 60);
    assert!(parse(&r).is_some());
}

#[test]
fn long_names_and_bad_labels_are_refused() {
    let long = vec!["abcdefghij"; 30].join(".");
    assert_eq!(parse(&query(1, &long)), None);
    let mut m = query(1, "a.example");
    m[13] = b'.';
    assert_eq!(parse(&m), None);
    let mut m = query(1, "a.example");
    m[12] = 0x41; // extended label type
    assert_eq!(parse(&m), None);
}

#[test]
fn cname_loops_end() {
    let mut r = response(7, "a.example", &["b.example", "a.example"], &[], 60);
    assert!(parse(&r).is_some());
    let res = resolve(&parse(&r).expect("response")).expect("question");
    assert_eq!(res.names, ["a.example", "b.example"]);
    r.truncate(r.len() - 1);
    assert_eq!(parse(&r), None);
}

#[test]
fn tcp_framing_several_messages_and_a_partial_one() {
    let q = query(1, "a.example");
    let r = response(1, "a.example", &[], &[ip("198.51.100.9")], 60);
    let mut s = Vec::new();
    for m in [&q, &r] {
        s.extend_from_slice(&(m.len() as u16).to_be_bytes());
        s.extend_from_slice(m);
    }
    let whole = s.len();
    s.extend_from_slice(&(r.len() as u16).to_be_bytes());
    s.extend_from_slice(&r[..5]);
    let (msgs, used) = tcp_messages(&s);
    assert_eq!(msgs, [&q[..], &r[..]]);
    assert_eq!(used, whole);
    assert_eq!(tcp_messages(&s[..1]), (vec![], 0));
}

/// An ECHConfigList with one configuration whose public name is `public`.
pub(crate) fn ech_config_list(public: &str) -> Vec<u8> {
    let mut c = vec![7, 0, 0x20]; // config_id, kem_id (X25519)
    c.extend_from_slice(&[0, 32]);
    c.extend_from_slice(&[0x42; 32]); // public key
    c.extend_from_slice(&[0, 4, 0, 1, 0, 1]); // one cipher suite
    c.push(0); // maximum_name_length
    c.push(public.len() as u8);
    c.extend_from_slice(public.as_bytes());
    c.extend_from_slice(&[0, 0]); // extensions
    let mut cfg = vec![0xfe, 0x0d];
    cfg.extend_from_slice(&(c.len() as u16).to_be_bytes());
    cfg.extend_from_slice(&c);
    let mut list = (cfg.len() as u16).to_be_bytes().to_vec();
    list.extend_from_slice(&cfg);
    list
}

/// A response to an HTTPS query for `name`: one record (priority 1, target ".") with an
/// `alpn` parameter and, if `public` is given, an `ech` one.
pub(crate) fn https_response(id: u16, name: &str, public: Option<&str>, ttl: u32) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
    m.extend_from_slice(&wire_name(name));
    m.extend_from_slice(&[0, 65, 0, 1]);
    let mut rdata = vec![0, 1, 0];
    rdata.extend_from_slice(&[0, 1, 0, 3, 2, b'h', b'2']);
    if let Some(p) = public {
        let l = ech_config_list(p);
        rdata.extend_from_slice(&[0, 5]);
        rdata.extend_from_slice(&(l.len() as u16).to_be_bytes());
        rdata.extend_from_slice(&l);
    }
    m.extend_from_slice(&[0xc0, 12, 0, 65, 0, 1]);
    m.extend_from_slice(&ttl.to_be_bytes());
    m.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    m.extend_from_slice(&rdata);
    m
}

#[test]
fn https_records_give_their_ech_public_names() {
    let r = https_response(3, "www.netflix.com", Some("Cover.Example.NET"), 300);
    let res = resolve(&parse(&r).expect("response")).expect("question");
    assert_eq!(res.ech, [("cover.example.net".to_string(), 300)]);
    let r = https_response(3, "www.netflix.com", None, 300);
    let res = resolve(&parse(&r).expect("response")).expect("question");
    assert!(res.ech.is_empty());
    // A public name that is no host name reads as no ECH; the record itself still parses.
    let mut r = https_response(3, "www.netflix.com", Some("cover.example.net"), 300);
    let n = r.len();
    r[n - 5] = b'\n';
    let m = parse(&r).expect("response");
    assert_eq!(m.answers[0].data, RData::Https(Vec::new()));
}
