//! The lab's namespaces, veths, addresses and routes.
//!
//! Each veth is created directly inside its two namespaces (`ip link add A netns X type veth
//! peer name B netns Y`), so the root namespace never holds a lab interface, not even for an
//! instant. Routes name only lab prefixes; there is no default route anywhere.

use super::{Lab, LabError, Role, exec};

/// The lab's address plan (DESIGN.md: subscribers in 100.64.0.0/10, the internet side in
/// 198.51.100.0/24 and 203.0.113.0/24, IPv6 in 2001:db8::/32).
pub mod addr {
    /// Subscriber alice (the BitTorrent leecher).
    pub const ALICE_V4: &str = "100.64.1.10";
    /// Subscriber alice, IPv6.
    pub const ALICE_V6: &str = "2001:db8:1::10";
    /// Subscriber bob.
    pub const BOB_V4: &str = "100.64.1.20";
    /// Subscriber bob, IPv6.
    pub const BOB_V6: &str = "2001:db8:1::20";
    /// The gateway on the subscribers' segment.
    pub const GW_DOWN_V4: &str = "100.64.1.1";
    /// The gateway on the subscribers' segment, IPv6.
    pub const GW_DOWN_V6: &str = "2001:db8:1::1";
    /// The gateway on the internet side.
    pub const GW_UP_V4: &str = "198.51.100.1";
    /// The gateway on the internet side, IPv6.
    pub const GW_UP_V6: &str = "2001:db8:ff::1";
    /// The BitTorrent tracker (opentracker, HTTP and UDP on port [`TRACKER_PORT`]).
    pub const TRACKER_V4: &str = "198.51.100.2";
    /// The tracker host's IPv6 address (also the internet namespace's next hop).
    pub const TRACKER_V6: &str = "2001:db8:ff::2";
    /// The BitTorrent seeder.
    pub const SEEDER_V4: &str = "198.51.100.7";
    /// The seeder host's IPv6 address.
    pub const SEEDER_V6: &str = "2001:db8:ff::7";
    /// The web server (HTTP background traffic).
    pub const WEB_V4: &str = "203.0.113.10";
    /// The web server, IPv6.
    pub const WEB_V6: &str = "2001:db8:203::10";
    /// The tracker's TCP and UDP port.
    pub const TRACKER_PORT: u16 = 6969;
    /// The seeder's port (TCP and uTP).
    pub const SEEDER_PORT: u16 = 6881;
    /// The first of alice's leecher ports (one session per transport, consecutive ports).
    pub const LEECHER_PORT: u16 = 6881;
}

use addr::*;

/// The lab's namespaces that exist now (`<prefix>-*`).
pub fn existing(lab: &Lab) -> Result<Vec<String>, LabError> {
    let mine = format!("{}-", lab.prefix());
    Ok(exec::netns_list()?
        .into_iter()
        .filter(|ns| ns.starts_with(&mine))
        .collect())
}

/// Deletes the lab's namespaces (their veths go with them); returns the names deleted.
pub fn destroy(lab: &Lab) -> Result<Vec<String>, LabError> {
    let mut deleted = Vec::new();
    for ns in existing(lab)? {
        match exec::ip(&["netns", "del", &ns]) {
            Ok(_) => deleted.push(ns),
            // Gone in the meantime (a concurrent down): fine, that is the goal.
            Err(_) if !exec::netns_list()?.contains(&ns) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(deleted)
}

/// Builds the whole topology, the gateway's veths with `gateway_queues` queues each way;
/// returns the namespaces made.
pub fn create(lab: &Lab, gateway_queues: u32) -> Result<Vec<String>, LabError> {
    let alice = lab.netns(Role::Alice);
    let bob = lab.netns(Role::Bob);
    let sw = lab.netns(Role::Switch);
    let gw = lab.netns(Role::Gateway);
    let net = lab.netns(Role::Internet);
    let all = [&alice, &bob, &sw, &gw, &net];

    for ns in all {
        exec::ip(&["netns", "add", ns])?;
        exec::ip(&["-n", ns, "link", "set", "lo", "up"])?;
        // Addresses are usable at once (no duplicate address detection: nobody else is on
        // these links) so servers can bind their IPv6 addresses right away.
        sysctl(ns, "net.ipv6.conf.all.accept_dad", "0")?;
        sysctl(ns, "net.ipv6.conf.default.accept_dad", "0")?;
    }
    // The switch is layer 2 only: no addresses, and no IPv6 chatter of its own.
    sysctl(&sw, "net.ipv6.conf.all.disable_ipv6", "1")?;
    sysctl(&sw, "net.ipv6.conf.default.disable_ipv6", "1")?;
    sysctl(&gw, "net.ipv4.ip_forward", "1")?;
    sysctl(&gw, "net.ipv6.conf.all.forwarding", "1")?;

    // Links: subscriber eth0 <-> switch port named after it; gateway downlink <-> switch
    // port "gw"; gateway uplink <-> internet eth0.
    veth(("eth0", &alice), ("alice", &sw))?;
    veth(("eth0", &bob), ("bob", &sw))?;
    let q = gateway_queues.max(1);
    veth_queues(("downlink", &gw), ("gw", &sw), q)?;
    veth_queues(("uplink", &gw), ("eth0", &net), q)?;

    exec::ip(&[
        "-n",
        &sw,
        "link",
        "add",
        "br0",
        "type",
        "bridge",
        "stp_state",
        "0",
    ])?;
    for port in ["alice", "bob", "gw"] {
        exec::ip(&["-n", &sw, "link", "set", port, "master", "br0"])?;
    }

    for (ns, dev, addrs) in [
        (
            &alice,
            "eth0",
            [format!("{ALICE_V4}/24"), format!("{ALICE_V6}/64")].as_slice(),
        ),
        (
            &bob,
            "eth0",
            &[format!("{BOB_V4}/24"), format!("{BOB_V6}/64")],
        ),
        (
            &gw,
            "downlink",
            &[format!("{GW_DOWN_V4}/24"), format!("{GW_DOWN_V6}/64")],
        ),
        (
            &gw,
            "uplink",
            &[format!("{GW_UP_V4}/24"), format!("{GW_UP_V6}/64")],
        ),
        (
            &net,
            "eth0",
            &[
                format!("{TRACKER_V4}/24"),
                format!("{SEEDER_V4}/24"),
                format!("{WEB_V4}/24"),
                format!("{TRACKER_V6}/64"),
                format!("{SEEDER_V6}/64"),
                format!("{WEB_V6}/64"),
            ],
        ),
    ] {
        for a in addrs {
            exec::ip(&["-n", ns, "addr", "add", a, "dev", dev, "nodad"])?;
        }
    }

    for (ns, dev) in [
        (&alice, "eth0"),
        (&bob, "eth0"),
        (&sw, "alice"),
        (&sw, "bob"),
        (&sw, "gw"),
        (&gw, "downlink"),
        (&gw, "uplink"),
        (&net, "eth0"),
    ] {
        // LAB-NOTES: with offloads on, captures show 64 KB GSO blobs and unfinished
        // checksums, and the probe would see super-frames instead of wire-sized frames.
        exec::run(
            Some(ns),
            &[
                "ethtool", "-K", dev, "tso", "off", "gso", "off", "gro", "off", "tx", "off", "rx",
                "off",
            ],
        )?;
        exec::ip(&["-n", ns, "link", "set", dev, "up"])?;
    }
    exec::ip(&["-n", &sw, "link", "set", "br0", "up"])?;

    // Routes: only lab prefixes, only through the gateway. No default route anywhere.
    for ns in [&alice, &bob] {
        for prefix in ["198.51.100.0/24", "203.0.113.0/24"] {
            exec::ip(&["-n", ns, "route", "add", prefix, "via", GW_DOWN_V4])?;
        }
        exec::ip(&[
            "-n",
            ns,
            "-6",
            "route",
            "add",
            "2001:db8::/32",
            "via",
            GW_DOWN_V6,
        ])?;
    }
    exec::ip(&[
        "-n",
        &gw,
        "route",
        "add",
        "203.0.113.0/24",
        "via",
        TRACKER_V4,
    ])?;
    exec::ip(&[
        "-n",
        &gw,
        "-6",
        "route",
        "add",
        "2001:db8:203::/64",
        "via",
        TRACKER_V6,
    ])?;
    exec::ip(&["-n", &net, "route", "add", "100.64.0.0/10", "via", GW_UP_V4])?;
    exec::ip(&[
        "-n",
        &net,
        "-6",
        "route",
        "add",
        "2001:db8::/32",
        "via",
        GW_UP_V6,
    ])?;

    Ok(all.iter().map(|s| s.to_string()).collect())
}

fn veth((a, ns_a): (&str, &str), (b, ns_b): (&str, &str)) -> Result<(), LabError> {
    veth_queues((a, ns_a), (b, ns_b), 1)
}

/// A veth pair with `queues` transmit and receive queues on each end.
fn veth_queues(
    (a, ns_a): (&str, &str),
    (b, ns_b): (&str, &str),
    queues: u32,
) -> Result<(), LabError> {
    let q = queues.to_string();
    let mut args = vec!["link", "add", a, "netns", ns_a];
    if queues > 1 {
        args.extend(["numtxqueues", &q, "numrxqueues", &q]);
    }
    args.extend(["type", "veth", "peer", "name", b, "netns", ns_b]);
    if queues > 1 {
        args.extend(["numtxqueues", &q, "numrxqueues", &q]);
    }
    exec::ip(&args).map(drop)
}

fn sysctl(ns: &str, key: &str, value: &str) -> Result<(), LabError> {
    exec::run(Some(ns), &["sysctl", "-qw", &format!("{key}={value}")]).map(drop)
}
