//! Tests of `check.rs`: every problem of a configuration, with its place.

use super::*;

fn lines(c: &Checked) -> Vec<String> {
    c.problems.iter().map(ToString::to_string).collect()
}

#[test]
fn a_good_file_has_no_problem_and_the_loaders_config() {
    let text = "interfaces: { downlink: eth1, uplink: eth0 }\nflow_table_size: 4096\n";
    let c = check(text, "c.yaml");
    assert!(c.problems.is_empty(), "{:?}", lines(&c));
    assert_eq!(c.value.as_ref().map(|c| c.flow_table_size), Some(4096));
    assert!(Config::parse(text, std::path::Path::new("c.yaml")).is_ok());
    assert_eq!(c.place("interfaces.uplink"), (1, 39));
    assert_eq!(c.place("interfaces.nothing"), (1, 13));
    assert_eq!(c.place("nothing"), (1, 1));
}

#[test]
fn three_different_errors_are_all_reported_with_their_places() {
    // An unknown key, a value out of range and a collector that is not an address:
    // the loader stops at the first (line 2).
    let text = "interfaces: { downlink: eth1, uplink: eth0 }\n\
                bogus: 1\n\
                flow_table_size: 0\n\
                ipfix:\n  collector: nowhere\n";
    let c = check(text, "c.yaml");
    let got = lines(&c);
    assert_eq!(got.len(), 3, "{got:#?}");
    assert!(
        got[0].starts_with("c.yaml:2:1: unknown key `bogus` (keys here: "),
        "{got:#?}"
    );
    assert_eq!(
        got[1],
        "c.yaml:3:18: flow_table_size: 0 is out of range (1 to 67108864)"
    );
    assert!(got[2].starts_with("c.yaml:5:14: "), "{got:#?}");
    assert!(
        got[2].contains("nowhere") || got[2].contains("address"),
        "{got:#?}"
    );
    let loader = Config::parse(text, std::path::Path::new("c.yaml")).expect_err("refused");
    assert!(loader.to_string().contains("bogus"), "{loader}");
}

#[test]
fn values_of_several_sections_are_checked_together() {
    let text = "mode: observe\n\
                interfaces: { downlink: a, uplink: b }\n\
                subscriber_networks: [100.64.0.0/10]\n\
                history_seconds: 10\n\
                history:\n  minute_retention_days: 0\n\
                ipfix: { collector: \"198.51.100.2:4739\", idle_timeout: soon }\n";
    let got = lines(&check(text, "c.yaml"));
    assert_eq!(
        got,
        [
            "c.yaml:2:13: interfaces: observe mode needs the mirror port: interfaces: { mirror: IFACE }",
            "c.yaml:2:13: interfaces: observe mode uses only the mirror port; remove downlink and uplink",
            "c.yaml:4:18: history_seconds: 10 is out of range (60 to 604800)",
            "c.yaml:6:26: history.minute_retention_days: 0 is out of range (1 to 366)",
        ]
        .into_iter()
        .chain(got.get(4).map(String::as_str))
        .collect::<Vec<_>>(),
        "{got:#?}"
    );
    assert_eq!(got.len(), 5, "{got:#?}");
    assert!(
        got[4].starts_with("c.yaml:7:") && got[4].contains("not a duration"),
        "{got:#?}"
    );
}

#[test]
fn a_broken_interfaces_section_does_not_make_up_mode_problems() {
    // `interfaces` unreadable: the mode's checks, which read it, are not run; the
    // other entries still are.
    let text = "interfaces: { downlink: a, uplink: b, tap: c }\nmax_subscribers: 0\n";
    let got = lines(&check(text, "c.yaml"));
    assert_eq!(got.len(), 2, "{got:#?}");
    assert!(
        got[0].starts_with("c.yaml:1:") && got[0].contains("unknown key `tap`"),
        "{got:#?}"
    );
    assert_eq!(
        got[1],
        "c.yaml:2:18: max_subscribers: 0 is out of range (1 to 8000000)"
    );
    let missing = lines(&check("flow_table_size: 0\n", "c.yaml"));
    assert_eq!(missing.len(), 2, "{missing:#?}");
    assert!(
        missing.iter().any(|l| l.contains("interfaces")),
        "{missing:#?}"
    );
    assert!(
        missing
            .iter()
            .any(|l| l.starts_with("c.yaml:1:18: flow_table_size")),
        "{missing:#?}"
    );
}

#[test]
fn errors_within_one_section_are_all_reported() {
    // Block style: each nested entry is on lines of its own and is blanked alone.
    let text = "interfaces:\n  downlink: eth1\n  uplink: eth0\n\
                ipfix:\n  collector: nowhere\n  idle_timeout: soon\n\
                history:\n  path: 5\n  keep: 1\n";
    let got = lines(&check(text, "c.yaml"));
    assert_eq!(got.len(), 3, "{got:#?}");
    assert!(
        got[0].starts_with("c.yaml:5:14: ipfix.collector: "),
        "{got:#?}"
    );
    assert!(
        got[1].starts_with("c.yaml:6:17: ipfix.idle_timeout: ")
            && got[1].contains("not a duration"),
        "{got:#?}"
    );
    // `path: 5` is a path to the loader (a string); `keep` is not a key. Blanking it
    // leaves a section of one key: nothing is made up about it.
    assert!(
        got[2].starts_with("c.yaml:9:3: unknown key `keep`"),
        "{got:#?}"
    );
    // All of a section's keys wrong: the section left empty says nothing more.
    let text = "interfaces: { downlink: a, uplink: b }\nmetrics:\n  series: 1\n";
    let got = lines(&check(text, "c.yaml"));
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(
        got[0].starts_with("c.yaml:3:3: unknown key `series`"),
        "{got:#?}"
    );
}

#[test]
fn a_syntax_error_is_one_problem_with_its_place() {
    let c = check("interfaces: [\n", "c.yaml");
    assert!(c.value.is_none());
    assert_eq!(c.problems.len(), 1, "{:?}", lines(&c));
    assert!(c.problems[0].line >= 1, "{:?}", lines(&c));
    assert!(!lines(&c)[0].contains('\n'));
    // A flow mapping at the top: nothing to blank line by line, one problem.
    let c = check(
        "{interfaces: {downlink: a, uplink: b}, x: 1, y: 2}",
        "c.yaml",
    );
    assert_eq!(c.problems.len(), 1, "{:?}", lines(&c));
}

#[test]
fn problems_display_like_policy_check() {
    let p = Problem {
        origin: "c.yaml".into(),
        line: 3,
        column: 7,
        message: "bad".into(),
        hint: "fix it".into(),
    };
    assert_eq!(p.to_string(), "c.yaml:3:7: bad (fix it)");
    let p = Problem {
        line: 0,
        hint: String::new(),
        ..p
    };
    assert_eq!(p.to_string(), "c.yaml: bad");
}

#[test]
fn alto_pids_and_costs_are_checked_with_their_places() {
    let text = "interfaces: { downlink: eth1, uplink: eth0 }\n\
                alto:\n\
                \x20 costs: { local: 1, transit: -3 }\n\
                \x20 pids:\n\
                \x20   north: [100.64.0.0/16]\n\
                \x20   south: [100.64.0.0/16, 100.65.0.1/16]\n\
                \x20   default: [10.0.0.0/8]\n";
    let got = lines(&check(text, "c.yaml"));
    assert_eq!(got.len(), 4, "{got:#?}");
    assert!(got[0].starts_with("c.yaml:3:"), "{got:#?}");
    assert!(
        got[0].contains("alto.costs.transit: -3 is out of range"),
        "{got:#?}"
    );
    assert!(
        got.iter()
            .any(|l| l.starts_with("c.yaml:6:")
                && l.contains("100.64.0.0/16 is also in PID \"north\"")),
        "{got:#?}"
    );
    assert!(
        got.iter()
            .any(|l| l.starts_with("c.yaml:6:") && l.contains("did you mean 100.65.0.0/16?")),
        "{got:#?}"
    );
    assert!(
        got.iter()
            .any(|l| l.starts_with("c.yaml:7:")
                && l.contains("alto.pids.default: the name is reserved")),
        "{got:#?}"
    );
    let loader = Config::parse(text, std::path::Path::new("c.yaml")).expect_err("refused");
    assert!(loader.to_string().contains("alto."), "{loader}");
    let ok =
        "interfaces: { downlink: eth1, uplink: eth0 }\nalto: { pids: { pop1: [100.64.0.0/10] } }\n";
    assert!(check(ok, "c.yaml").problems.is_empty());
}

#[test]
fn the_swarms_section_is_checked_with_its_places() {
    let text = "interfaces: { downlink: eth1, uplink: eth0 }\n\
                swarms:\n\
                \x20 enabled: true\n\
                \x20 retention: 10s\n";
    let got = lines(&check(text, "c.yaml"));
    assert_eq!(
        got,
        ["c.yaml:4:14: swarms.retention: 10s is out of range (1m to 366d)"],
        "{got:#?}"
    );
    let typo = "interfaces: { downlink: eth1, uplink: eth0 }\nswarms: { enabeld: true }\n";
    let got = lines(&check(typo, "c.yaml"));
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(
        got[0].starts_with("c.yaml:2:") && got[0].contains("enabeld"),
        "{got:#?}"
    );
    let loader = Config::parse(text, std::path::Path::new("c.yaml")).expect_err("refused");
    assert!(loader.to_string().contains("swarms.retention"), "{loader}");
    let ok = "interfaces: { downlink: eth1, uplink: eth0 }\n\
              history: { path: /var/lib/pw/h.db }\n\
              swarms: { enabled: true, retention: 12h, pseudonymize: true }\n";
    let c = check(ok, "c.yaml");
    assert!(c.problems.is_empty(), "{:?}", lines(&c));
    let c = c.value.expect("read");
    assert!(c.swarms.enabled && c.swarms.pseudonymize);
    assert_eq!(
        c.swarms_key_path(),
        std::path::Path::new("/var/lib/pw/swarms.key")
    );
    let off = Config::parse(
        "interfaces: { downlink: eth1, uplink: eth0 }\n",
        std::path::Path::new("c.yaml"),
    )
    .expect("valid");
    assert!(!off.swarms.enabled, "off by default");
}
