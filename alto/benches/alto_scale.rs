//! The ALTO server's cost at 100,000 subscribers (each an IPv4 /32 and an IPv6 /64, five
//! plans): building the network map from a new policy (the first request after a reload),
//! then each answer from the built map: the network map, the numerical cost map, an
//! endpoint cost query of one source and 1,000 destinations. Set against the baseline of
//! the same run, `peerwarden_policies::load_str` of the same policy, which every reload
//! pays before ALTO sees it (STYLE.md 9: ratios to a baseline, no timing assertion).
//!
//! Run: `cargo bench -p peerwarden-alto --bench alto_scale` (no root needed).

use std::{
    fmt::Write as _,
    sync::Arc,
    time::{Duration, Instant},
};

use peerwarden_alto::{AltoConfig, model::CostMode, server::Alto};
use serde_json::json;

const SUBSCRIBERS: u32 = 100_000;
const ROUNDS: usize = 5;
const DESTINATIONS: u32 = 1_000;

fn policy_yaml() -> String {
    let mut y = String::with_capacity(10 << 20);
    y.push_str("plans:\n");
    for p in 0..5 {
        let _ = writeln!(
            y,
            "  plan{p}: {{ rate: {{ down: {}mbit, up: 10mbit }} }}",
            50 * (p + 1)
        );
    }
    y.push_str("default_plan: plan0\nsubscribers:\n");
    for i in 0..SUBSCRIBERS {
        let (a, b) = (i >> 8, i & 0xff);
        let _ = writeln!(
            y,
            "  - {{ id: s{i}, prefixes: [100.{}.{a_lo}.{b}/32, \"2001:db8:{:x}:{:x}::/64\"], plan: plan{} }}",
            64 + (a >> 8),
            i >> 16,
            i & 0xffff,
            i % 5,
            a_lo = a & 0xff,
        );
    }
    y
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time<T>(f: impl FnMut() -> T) -> Duration {
    let mut f = f;
    median(
        (0..ROUNDS)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(f());
                t.elapsed()
            })
            .collect(),
    )
}

fn main() {
    let yaml = policy_yaml();
    let load = time(|| peerwarden_policies::load_str(&yaml, "bench.yaml").expect("valid"));
    let policy = Arc::new(peerwarden_policies::load_str(&yaml, "bench.yaml").expect("valid"));
    let build = time(|| Alto::new(AltoConfig::default()).maps(Some(&policy)));
    let alto = Alto::new(AltoConfig::default());
    alto.maps(Some(&policy));
    let mut size = 0;
    let network = time(|| {
        let b = alto.network_map_json(Some(&policy));
        size = b.len();
        b
    });
    let cost = time(|| alto.cost_map_json(Some(&policy), CostMode::Numerical));
    let dsts: Vec<String> = (0..DESTINATIONS)
        .map(|i| {
            if i % 2 == 0 {
                format!("ipv4:100.64.{}.{}", (i * 37 >> 8) & 0xff, i * 37 & 0xff)
            } else {
                format!("ipv4:203.0.113.{}", i % 250)
            }
        })
        .collect();
    let body = serde_json::to_vec(&json!({
        "cost-type": {"cost-mode": "ordinal", "cost-metric": "routingcost"},
        "endpoints": {"srcs": ["ipv4:100.64.0.1"], "dsts": dsts}
    }))
    .expect("body");
    let ecs = time(|| {
        alto.endpoint_cost_json(Some(&policy), &body, None)
            .expect("answered")
    });
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "alto_scale: {SUBSCRIBERS} subscribers (IPv4 /32 + IPv6 /64 each, 5 plans), median of {ROUNDS}"
    );
    println!(
        "  baseline: load_str (parse + validate)    {:8.1} ms",
        ms(load)
    );
    for (what, d) in [
        ("network map build (after a reload)", build),
        ("GET networkmap (built map)", network),
        ("GET costmap num-routingcost", cost),
        ("POST endpointcost (1 x 1000)", ecs),
    ] {
        println!(
            "  {what:<38}  {:8.2} ms  {:6.3} x baseline",
            ms(d),
            d.as_secs_f64() / load.as_secs_f64()
        );
    }
    println!(
        "  network map answer: {:.1} MiB",
        size as f64 / (1 << 20) as f64
    );
}
