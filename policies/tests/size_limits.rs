//! How big a policy may be: a legitimate file of 100,000 subscribers loads in one piece,
//! while input that only grows inside the parser (nested aliases, a "billion laughs") or
//! that is absurdly large is refused with a message saying so, and nothing is loaded.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use peerwarden_policies::{PolicyErrors, load_str};

const HEADER: &str = "timezone: UTC
plans:
  home:
    rate: { down: 100mbit, up: 20mbit }
    classes:
      p2p: { down: 5mbit, up: 1mbit, dscp: LE }
  business:
    rate: { down: 1gbit, up: 1gbit }
default_plan: home
";

/// `n` subscribers, one a line, each with an IPv4 /32 and an IPv6 /64.
fn many(n: u32) -> String {
    let mut y = String::from(HEADER);
    y.push_str("subscribers:\n");
    for i in 0..n {
        let v4 = Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 64, 0, 1)) + i);
        let v6 = Ipv6Addr::new(0x2001, 0xdb8, (i >> 16) as u16, i as u16, 0, 0, 0, 0);
        let plan = if i % 10 == 0 { "business" } else { "home" };
        let _ = writeln!(
            y,
            "  - {{ id: sub-{i}, prefixes: [{v4}/32, \"{v6}/64\"], plan: {plan} }}"
        );
    }
    y
}

fn only_error(e: &PolicyErrors) -> String {
    assert_eq!(e.errors().len(), 1, "{e}");
    e.errors()[0].to_string()
}

#[test]
fn one_file_of_100k_subscribers_loads() {
    let yaml = many(100_000);
    let policy = load_str(&yaml, "big.yaml").unwrap_or_else(|e| panic!("{}", only_error(&e)));
    assert_eq!(policy.subscribers().len(), 100_000);
    // The last subscriber of the file is there with both prefixes and its plan.
    let last: IpAddr = "100.65.134.160".parse().expect("addr");
    let s = policy
        .subscriber_for(last)
        .expect("the last subscriber's IPv4");
    assert_eq!((s.id.as_str(), s.plan.as_str()), ("sub-99999", "home"));
    let v6: IpAddr = "2001:db8:1:869f::42".parse().expect("addr");
    assert_eq!(
        policy.subscriber_for(v6).map(|s| s.id.as_str()),
        Some("sub-99999")
    );
    let business: IpAddr = "100.65.134.151".parse().expect("addr");
    assert_eq!(
        policy.subscriber_for(business).map(|s| s.plan.as_str()),
        Some("business"),
        "sub-99990"
    );
}

#[test]
fn a_mistake_deep_in_a_big_file_is_found_with_its_line() {
    let yaml = many(100_000).replace("100.65.134.151/32", "100.65.134.151/33");
    let e = load_str(&yaml, "big.yaml").expect_err("a bad prefix");
    // Line 11 holds subscriber 0, so subscriber 99,990 is on line 100,001.
    let msg = only_error(&e);
    assert!(
        msg.starts_with("big.yaml:100001:") && msg.contains("longer than 32 bits"),
        "{msg}"
    );
}

#[test]
fn aliases_that_multiply_a_small_file_are_refused() {
    // A "billion laughs" in the shapes a policy allows: one anchored list of 1,000
    // prefixes, then 200 subscribers naming it, 200,000 prefixes from 40 kB of text.
    let mut yaml = String::from(HEADER);
    let list: Vec<String> = (0..1000u32)
        .map(|i| {
            format!(
                "{}/32",
                Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 64, 0, 0)) + i)
            )
        })
        .collect();
    let _ = writeln!(
        yaml,
        "subscribers:\n  - {{ id: s0, prefixes: &many [{}] }}",
        list.join(", ")
    );
    for i in 1..200 {
        let _ = writeln!(yaml, "  - {{ id: s{i}, prefixes: *many }}");
    }
    assert!(yaml.len() < 40_000);
    let e = load_str(&yaml, "bomb.yaml").expect_err("an alias bomb");
    let msg = only_error(&e);
    assert!(
        msg.contains("aliases expand to too much") && msg.contains("at most 100000 values"),
        "{msg}"
    );
}

#[test]
fn nested_aliases_are_refused() {
    // The classic form, lists of lists of aliases ten deep (10^10 prefixes): a policy
    // has no nested lists, so the shape refuses it at the first nested alias.
    let mut yaml = String::from(HEADER);
    yaml.push_str("subscribers:\n  - { id: a, prefixes: &l0 [100.64.0.1/32, 100.64.0.2/32] }\n");
    for l in 1..=9 {
        let refs = vec![format!("*l{}", l - 1); 10].join(", ");
        let _ = writeln!(yaml, "  - {{ id: s{l}, prefixes: &l{l} [{refs}] }}");
    }
    let e = load_str(&yaml, "bomb.yaml").expect_err("an alias bomb");
    let msg = only_error(&e);
    assert!(msg.starts_with("bomb.yaml:12:"), "{msg}");
}

#[test]
fn a_few_aliases_are_fine() {
    let yaml = "timezone: UTC
plans:
  home:
    rate: { down: 100mbit, up: 20mbit }
    classes: &standard
      p2p: { down: 5mbit, up: 1mbit, dscp: LE }
      video: { down: 25mbit }
  family:
    rate: { down: 200mbit, up: 20mbit }
    classes: *standard
default_plan: home
subscribers:
  - { id: alice, prefixes: [100.64.1.10/32], plan: family }
";
    let policy = load_str(yaml, "alias.yaml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(policy.plans().len(), 2);
}

#[test]
fn an_absurdly_large_text_is_refused_before_parsing() {
    // 33 MiB: a comment line repeated, then a valid policy.
    let mut yaml = "# padding padding padding padding padding padding padding padding\n"
        .repeat((33 << 20) / 66 + 1);
    yaml.push_str(&many(3));
    let e = load_str(&yaml, "huge.yaml").expect_err("too large");
    let msg = only_error(&e);
    assert!(
        msg.contains("the policy is 33.0 MiB; at most 32 MiB is accepted"),
        "{msg}"
    );
}
