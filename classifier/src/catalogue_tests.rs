use std::collections::{HashMap, HashSet};

use super::*;

/// Shared infrastructure that must never be a video suffix (issue 12): a bystander's web
/// traffic would become video. Kept apart from `SHARED_INFRASTRUCTURE` so that shrinking
/// that list cannot make this test pass.
const DENY: &[&str] = &[
    "google.com",
    "googleapis.com",
    "ggpht.com",
    "gstatic.com",
    "akamaihd.net",
    "akamaized.net",
    "cloudfront.net",
    "amazonaws.com",
    "amazon.com",
    "apple.com",
    "microsoft.com",
    "fastly.net",
    "llnwi.net",
    "facebook.com",
];

#[test]
fn builtin_catalogue_is_sound() {
    let c = Catalogue::parse(BUILTIN, "services.yaml").unwrap_or_else(|e| panic!("{}", e[0]));
    assert!(c.services.len() >= 150, "{} services", c.services.len());
    let families: HashSet<&str> = [
        "global",
        "north-america",
        "europe",
        "middle-east-africa",
        "asia",
        "latin-america",
        "oceania",
        "live-short",
    ]
    .into();
    let mut owner: HashMap<&str, &str> = HashMap::new();
    for s in &c.services {
        assert!(check_name(&s.name).is_ok(), "{}", s.name);
        assert!(
            s.source.as_deref().is_some_and(|x| !x.trim().is_empty()),
            "{} has no source",
            s.name
        );
        assert!(
            s.family.as_deref().is_some_and(|f| families.contains(f)),
            "{}: family {:?}",
            s.name,
            s.family
        );
        assert!(!s.domains.is_empty(), "{} has no domains", s.name);
        for d in &s.domains {
            if let Some(other) = owner.insert(d, &s.name) {
                panic!("{d} is listed under {other} and {}", s.name);
            }
            let host = d.trim_start_matches('=');
            assert!(host.contains('.'), "{d}: a single label");
            assert!(!REGISTRY_SUFFIXES.contains(&host), "{d}: a registry suffix");
            assert!(
                !DENY.contains(&host),
                "{d} ({}): shared infrastructure",
                s.name
            );
            assert_eq!(d, &d.to_ascii_lowercase());
        }
    }
    assert_eq!(Catalogue::builtin(), &c);
}

#[test]
fn builtin_catalogue_has_the_families_asked_for() {
    let names: HashSet<&str> = Catalogue::builtin()
        .services
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    for want in [
        "youtube",
        "netflix",
        "primevideo",
        "disneyplus",
        "hbomax",
        "hulu",
        "appletv",
        "paramountplus",
        "peacock",
        "twitch",
        "vimeo",
        "dailymotion",
        "kick",
        "tiktok",
        "bbc",
        "itvx",
        "channel4",
        "ard",
        "zdf",
        "arte",
        "francetv",
        "rai",
        "rtve",
        "npo",
        "svt",
        "nrk",
        "dr",
        "yle",
        "orf",
        "srf",
        "rtlplus",
        "joyn",
        "canalplus",
        "dazn",
        "nowtv",
        "viaplay",
        "iqiyi",
        "youku",
        "bilibili",
        "tencentvideo",
        "mgtv",
        "huya",
        "douyu",
        "niconico",
        "abematv",
        "tver",
        "hotstar",
        "jiocinema",
        "zee5",
        "sonyliv",
        "viu",
        "iwanttfc",
        "chzzk",
        "soop",
        "wavve",
        "tving",
        "coupangplay",
        "globoplay",
        "kwai",
        "likee",
        "trovo",
    ] {
        assert!(names.contains(want), "{want} is missing");
    }
}

#[test]
fn entries_are_normalized() {
    assert_eq!(
        normalize(" *.Example-TV.net. ").as_deref(),
        Ok("example-tv.net")
    );
    assert_eq!(
        normalize("=Live.Example.org").as_deref(),
        Ok("=live.example.org")
    );
    assert_eq!(
        normalize("=d1x.cloudfront.net").as_deref(),
        Ok("=d1x.cloudfront.net")
    );
    assert_eq!(
        normalize("tv.example.co.uk").as_deref(),
        Ok("tv.example.co.uk")
    );
    for bad in [
        "com",
        "co.uk",
        "=co.uk",
        "cloudfront.net",
        "apple.com",
        "",
        "a..b",
        "-a.com",
        "a b.com",
        "exa/mple.com",
        "*.",
        "=",
    ] {
        assert!(normalize(bad).is_err(), "{bad:?} was accepted");
    }
}

fn errors(text: &str) -> Vec<String> {
    match Catalogue::parse(text, "ops.yaml") {
        Ok(_) => Vec::new(),
        Err(e) => e.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn operator_file_errors_name_line_and_column() {
    let text = "\
services:
  - name: ExampleTV
    domains: [example-tv.net]
  - name: other
    source: ops
    domains:
      - other.example
      - cloudfront.net
      - example-tv.net
  - name: other
    domains: [com]
";
    let e = errors(text);
    assert_eq!(e.len(), 5, "{e:#?}");
    assert!(
        e[0].starts_with("ops.yaml:2:11: service name `ExampleTV`"),
        "{}",
        e[0]
    );
    assert!(
        e[1].starts_with("ops.yaml:8:9: `cloudfront.net` is shared"),
        "{}",
        e[1]
    );
    assert!(
        e[2].starts_with(
            "ops.yaml:9:9: `example-tv.net` is already listed for `ExampleTV` at line 3"
        ),
        "{}",
        e[2]
    );
    assert!(
        e[3].starts_with("ops.yaml:10:11: service `other` is already listed at line 4"),
        "{}",
        e[3]
    );
    assert!(
        e[4].starts_with("ops.yaml:11:15: `com` is a registry suffix"),
        "{}",
        e[4]
    );
}

#[test]
fn malformed_operator_files_are_refused_with_a_place() {
    let e = errors("services:\n  - name: x\n    domain: [a.example]\n");
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("ops.yaml:3:5:") && e[0].contains("domain"),
        "{}",
        e[0]
    );
    let e = errors("services:\n  - name: x\n    domains: [a.example\n");
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("ops.yaml:"), "{}", e[0]);
    assert!(!errors("nothing: here\n").is_empty());
    assert!(errors("services: []\n").is_empty());
    let Err(e) = Catalogue::load(Path::new("/nonexistent/services.yaml")) else {
        panic!("a missing file was read");
    };
    assert!(
        e[0].to_string()
            .starts_with("/nonexistent/services.yaml: cannot read"),
        "{}",
        e[0]
    );
}

#[test]
fn overlay_replaces_adds_and_removes_by_name() {
    let ops = Catalogue::parse(
        "services:\n  - name: netflix\n    domains: [netflix.example]\n  - name: exampletv\n    domains: [example-tv.net]\n  - name: twitch\n    domains: []\n",
        "ops.yaml",
    )
    .unwrap_or_else(|e| panic!("{}", e[0]));
    let m = Catalogue::builtin().merged(&ops);
    let find = |n: &str| m.services.iter().find(|s| s.name == n);
    assert_eq!(
        find("netflix").map(|s| s.domains.clone()),
        Some(vec!["netflix.example".to_owned()])
    );
    assert!(find("exampletv").is_some());
    assert!(find("twitch").is_none());
    assert_eq!(
        find("youtube"),
        Catalogue::builtin()
            .services
            .iter()
            .find(|s| s.name == "youtube")
    );
    assert_eq!(m.services.len(), Catalogue::builtin().services.len());
}
