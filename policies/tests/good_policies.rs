//! Every `tests/good/*.yaml` and every example policy must load, and what they load
//! must mean what their comments say.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use peerwarden_common::{Class, Label};
use peerwarden_policies::{Action, Policy, Rate, Target, Weekday, load_file};

fn dir(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn load(rel: &str) -> Policy {
    let path = dir(rel);
    load_file(&path).unwrap_or_else(|e| panic!("{} should load:\n{e}", path.display()))
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect(s)
}

fn mbit(n: u64) -> Option<Rate> {
    Some(Rate::from_bits_per_sec(n * 1_000_000))
}

#[test]
fn good_policies_and_examples_load() {
    let mut paths = Vec::new();
    for d in ["tests/good", "examples"] {
        for entry in fs::read_dir(dir(d)).expect("directory exists") {
            let path = entry.expect("readable dir entry").path();
            if path.extension().is_some_and(|x| x == "yaml") {
                paths.push(path);
            }
        }
    }
    assert!(paths.len() >= 8, "found only {} good policies", paths.len());
    let failures: Vec<String> = paths
        .iter()
        .filter_map(|p| load_file(p).err().map(|e| e.to_string()))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn isp_example_resolves_lab_addresses_to_their_plans() {
    let policy = load("examples/isp.yaml");
    assert_eq!(policy.timezone(), "Europe/Berlin");
    for (addr, id, plan) in [
        ("100.64.1.10", "alice", "home-50"),
        ("2001:db8:1::10", "alice", "home-50"),
        ("100.64.1.20", "bob", "home-200"),
        ("2001:db8:1::20", "bob", "home-200"),
        ("100.64.2.3", "carol", "home-50"),
        ("2001:db8:100:ff::1", "acme-gmbh", "business"),
        ("100.64.3.8", "erin", "home-50"),
    ] {
        let s = policy
            .subscriber_for(ip(addr))
            .unwrap_or_else(|| panic!("{addr} has a subscriber"));
        assert_eq!(s.id, id, "{addr}");
        assert_eq!(policy.plan_of(s).name, plan, "{addr}");
    }
    // Not a subscriber's: nobody, and the default plan.
    assert!(policy.subscriber_for(ip("100.64.1.11")).is_none());
    assert!(policy.subscriber_for(ip("198.51.100.7")).is_none());
    assert_eq!(policy.plan_for(ip("100.64.2.4")).name, "home-50");
    assert_eq!(policy.default_plan().name, "home-50");
}

#[test]
fn isp_example_tightens_p2p_at_peak_and_keeps_the_rest() {
    let policy = load("examples/isp.yaml");
    let plan = policy.plan("home-50").expect("home-50");
    let p2p = Target::Class(Class::P2p);
    let at = |day, h: u16| {
        plan.rules_at(day, h * 60)
            .into_iter()
            .find(|r| r.target == p2p)
            .expect("a p2p rule")
    };
    let off_peak = at(Weekday::Tue, 12);
    assert_eq!((off_peak.down, off_peak.up), (mbit(5), mbit(1)));
    assert_eq!(off_peak.burst, Some(64 * 1024));
    assert_eq!(off_peak.dscp.map(|d| d.value()), Some(1));
    let peak = at(Weekday::Tue, 20);
    assert_eq!(
        (peak.down, peak.up),
        (mbit(2), mbit(1)),
        "up is kept from the plan"
    );
    assert_eq!(peak.dscp, off_peak.dscp, "dscp is kept from the plan");
    assert_eq!(peak.action, Action::Police);
    assert_eq!(at(Weekday::Sat, 20).down, mbit(5), "no peak at weekends");

    let video = plan.rule(&Target::Class(Class::Video)).expect("video");
    assert_eq!(
        (video.down, video.up, video.action),
        (mbit(25), None, Action::Police)
    );
    let games = plan
        .rule(&Target::User("game-downloads".into()))
        .expect("games");
    assert_eq!(games.action, Action::Shape);
    let business = policy.plan("business").expect("business");
    assert!(business.classes.is_empty() && business.schedule.is_empty());
    assert_eq!(business.rate.down, Rate::from_bits_per_sec(500_000_000));
    let suspended = policy.plan("suspended").expect("suspended");
    assert!(suspended.classes.iter().all(|r| r.action == Action::Block));
    let games_class = policy.class("game-downloads").expect("class");
    assert_eq!(games_class.hosts.len(), 3);
    assert!(
        games_class
            .hosts
            .iter()
            .any(|h| h.matches("cdn1.steamcontent.com"))
    );
}

#[test]
fn lab_example_has_alice_and_bob_on_home_50() {
    let policy = load("examples/lab.yaml");
    for (addr, id) in [
        ("100.64.1.10", "alice"),
        ("2001:db8:1::10", "alice"),
        ("100.64.1.20", "bob"),
        ("2001:db8:1::20", "bob"),
    ] {
        let s = policy.subscriber_for(ip(addr)).expect(addr);
        assert_eq!(s.id, id);
        assert_eq!(policy.plan_of(s).name, "home-50");
    }
}

#[test]
fn block_style_reads_plain_numbers_and_quoted_values() {
    let policy = load("tests/good/block_style.yaml");
    assert_eq!(policy.link().down, Rate::from_bits_per_sec(40_000_000_000));
    let plan = policy.plan("fiber-1g").expect("plan");
    assert_eq!(plan.rate.down, Rate::from_bits_per_sec(1_000_000_000));
    let p2p = plan.rule(&Target::Class(Class::P2p)).expect("p2p");
    assert_eq!(
        (p2p.burst, p2p.dscp.map(|d| d.value())),
        (Some(1_572_864), Some(8))
    );
    let dht = plan
        .rule(&Target::Label(Label::BittorrentDht))
        .expect("dht");
    assert_eq!(dht.action, Action::Block);
    let web = plan.rule(&Target::Class(Class::Web)).expect("web");
    assert_eq!(
        (web.action, web.dscp.map(|d| d.value())),
        (Action::Mark, Some(18))
    );
    let s = policy.subscriber("customer 4711").expect("subscriber");
    assert_eq!(s.prefixes.len(), 2);
    assert_eq!(
        policy
            .subscriber_for(ip("2001:db8:4711:ffff::1"))
            .map(|s| s.id.as_str()),
        Some("customer 4711")
    );
    // Saturday, all day: the schedule lifts p2p to 200mbit.
    let sat = plan.rules_at(Weekday::Sat, 3 * 60);
    assert_eq!(
        sat.iter()
            .find(|r| r.target == Target::Class(Class::P2p))
            .and_then(|r| r.down),
        mbit(200)
    );
}

#[test]
fn anchors_and_merge_keys_share_rules() {
    let policy = load("tests/good/anchors.yaml");
    let p100 = policy.plan("home-100").expect("plan");
    assert_eq!(
        p100.rule(&Target::Class(Class::P2p)).and_then(|r| r.down),
        mbit(5)
    );
    assert_eq!(
        p100.rule(&Target::Class(Class::Video)).and_then(|r| r.down),
        mbit(50)
    );
    let night = policy.plan("home-100-night").expect("plan");
    assert_eq!(night.schedule.len(), 1);
    assert_eq!(
        night
            .rule(&Target::Class(Class::Video))
            .and_then(|r| r.down),
        mbit(25)
    );
}

#[test]
fn overnight_windows_and_standalone_schedule_rules() {
    let policy = load("tests/good/overnight_and_wrapping.yaml");
    let plan = policy.default_plan();
    let p2p_down = |day, minute| {
        plan.rules_at(day, minute)
            .into_iter()
            .find(|r| r.target == Target::Class(Class::P2p))
            .and_then(|r| r.down)
    };
    assert_eq!(
        p2p_down(Weekday::Sat, 3 * 60),
        mbit(200),
        "Friday night runs into Saturday"
    );
    assert_eq!(
        p2p_down(Weekday::Tue, 3 * 60),
        mbit(200),
        "Monday night runs into Tuesday"
    );
    assert_eq!(p2p_down(Weekday::Wed, 3 * 60), mbit(10));
    assert_eq!(p2p_down(Weekday::Tue, 22 * 60), mbit(10));
    let lunch = plan.rules_at(Weekday::Wed, 12 * 60 + 30);
    let video = lunch
        .iter()
        .find(|r| r.target == Target::Class(Class::Video))
        .expect("video at lunch");
    assert_eq!(video.action, Action::Block);
    assert!(
        plan.rules_at(Weekday::Sat, 12 * 60 + 30)
            .iter()
            .all(|r| r.target != Target::Class(Class::Video))
    );
}

#[test]
fn adjacent_prefixes_resolve_to_their_own_subscribers() {
    let policy = load("tests/good/many_subscribers.yaml");
    for (addr, id) in [
        ("100.64.0.1", "s1"),
        ("100.64.0.2", "s2"),
        ("100.64.0.7", "s3"),
        ("100.64.0.8", "s4"),
        ("100.64.0.9", "s5"),
        ("2001:db8:1:1::99", "s2"),
        ("2001:db8:1:3::1", "s3"),
        ("2001:db8:1:4::2", "s5"),
        ("::ffff:100.64.0.9", "s5"),
    ] {
        assert_eq!(
            policy.subscriber_for(ip(addr)).map(|s| s.id.as_str()),
            Some(id),
            "{addr}"
        );
    }
    assert!(policy.subscriber_for(ip("100.64.0.10")).is_none());
    assert!(policy.subscriber_for(ip("2001:db8:1:4::3")).is_none());
}

#[test]
fn a_missing_file_is_an_error_without_a_place() {
    let errors = load_file(Path::new("/nonexistent/policy.yaml")).expect_err("no such file");
    let e = &errors.errors()[0];
    assert_eq!((e.line, e.column), (0, 0));
    assert!(
        e.to_string()
            .starts_with("/nonexistent/policy.yaml: cannot read the policy file: ")
    );
}
