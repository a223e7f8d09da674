//! HTB queues for `shape` rules, configured over rtnetlink.
//!
//! A `police` rule drops in XDP; a `shape` rule queues instead. The TC egress programs
//! (ebpf/src/shape.rs) set a shaped packet's `skb->priority` to its class; this module
//! keeps the qdiscs and one class per shaped (subscriber, slot) on each egress interface,
//! rate = ceil = the rule's rate. Up is shaped on the uplink's egress, down on the
//! downlink's.
//!
//! Where a class lives depends on the interface's transmit queues (counted when the
//! daemon starts; [`peerwarden_common::shape`] computes it, for the kernel programs too):
//!
//! - **One queue**: an HTB root `1:`, class `1:(sub * 8 + slot + 1)` (8 = `RULE_SLOTS`).
//!   16-bit minors hold subscriber indexes 0 to 8,190; a policy shaping beyond is refused.
//! - **`n` queues**: an `mq` root `7fff:` and under its leaf `7fff:(q + 1)` an HTB
//!   `(q + 1):` for each queue `q`. Subscriber `sub` belongs to queue `sub % n`; its class
//!   is `(sub % n + 1):((sub / n) * 8 + slot + 1)`. Each HTB holds 8,191 subscribers on
//!   every slot, so the interface holds `8,191 * n`: 16,382 on two queues, and 100,000
//!   subscribers with every slot shaped (800,000 classes) need 13 queues (a veth made with
//!   `numtxqueues 16` holds 131,056). Every queue's HTB has its own lock, and the XDP
//!   probe redirects a shaped subscriber's packets through a cpumap to CPU
//!   `(sub % n) % cpus` (ebpf/src/steer.rs), so that CPU alone queues them and the TC
//!   program puts them on queue `sub % n` (`queue_mapping`). XPS would override that
//!   choice, so it is cleared on the interface (LibreQoS's xdp-cpumap-tc does the same)
//!   and put back as it was when the mq root goes.
//!
//! The qdiscs are made only while some rule shapes that direction, and removed when none
//! does (and on shutdown): a gateway without `shape` rules keeps its own queueing.
//! HTB's `default` is 0, a class that never exists, so packets without a matching class
//! take HTB's direct queue and leave unshaped.
//!
//! The messages are written by hand (netlink.rs) as `tc(8)` sends them: the maintained
//! netlink crates do not cover HTB's options. The netlink calls sit behind [`TcOps`] so
//! the bookkeeping is tested without root.

use std::{collections::BTreeMap, io};

use peerwarden_common::{
    policy::RULE_SLOTS,
    shape::{MAX_RANK, MQ_MAJOR, capacity, place},
};

mod netlink;
pub use netlink::{Netlink, TC_H_ROOT, tx_queues};

/// Major number of the HTB root qdisc on a single-queue interface.
pub const HTB_MAJOR: u32 = 1;
/// Largest subscriber index a single-queue interface can shape on every slot: minors are
/// 16 bits.
pub const MAX_SHAPED_SUBSCRIBER: u32 = MAX_RANK;

/// The HTB class minor of a subscriber's slot on a single-queue interface.
pub const fn class_minor(sub: u32, slot: u32) -> u32 {
    sub * RULE_SLOTS + slot + 1
}

/// Why shaping could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ShapeError {
    /// The interface does not exist (in the daemon's namespace).
    #[error(transparent)]
    NoInterface(#[from] crate::probe::NoSuchInterface),
    /// A netlink request failed.
    #[error("{op} on {iface}: {source}")]
    Netlink {
        /// What was asked, e.g. `creating the HTB qdisc`.
        op: &'static str,
        /// The interface.
        iface: String,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
    /// A subscriber's class would not fit HTB's 16-bit minor (single-queue interface).
    #[error(
        "subscriber index {sub} cannot be shaped: HTB class minors are 16 bits, which holds \
         subscriber indexes 0 to {MAX_SHAPED_SUBSCRIBER} (use police for larger plans)"
    )]
    TooManyShaped {
        /// The subscriber's stable index.
        sub: u32,
    },
    /// A subscriber's class would not fit the HTBs of a multi-queue interface.
    #[error(
        "subscriber index {sub} cannot be shaped on {iface}: its {queues} transmit queues \
         hold subscriber indexes 0 to {max} (8,191 a queue; add queues or use police)"
    )]
    QueuesFull {
        /// The subscriber's stable index.
        sub: u32,
        /// The interface.
        iface: String,
        /// Its transmit queues.
        queues: u32,
        /// The largest index it holds.
        max: u32,
    },
}

/// The kinds of qdisc shaping makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Qdisc {
    /// `htb`: the classes.
    Htb,
    /// `mq`: one child qdisc per transmit queue.
    Mq,
}

impl Qdisc {
    /// The `TCA_KIND` string, NUL-terminated.
    pub fn kind(self) -> &'static [u8] {
        match self {
            Qdisc::Htb => b"htb\0",
            Qdisc::Mq => b"mq\0",
        }
    }
}

/// The traffic-control operations shaping needs (netlink in the daemon, a fake in tests).
pub trait TcOps: Send {
    /// Creates qdisc `kind` with handle `major:` under `parent` ([`TC_H_ROOT`] or a class
    /// id); fails if one is there.
    fn create_qdisc(
        &mut self,
        ifindex: u32,
        kind: Qdisc,
        major: u32,
        parent: u32,
    ) -> io::Result<()>;
    /// Deletes the root qdisc of `ifindex` (and all under it) if it is `kind` with handle
    /// `major:`; `Ok(false)` if it is not.
    fn delete_root(&mut self, ifindex: u32, kind: Qdisc, major: u32) -> io::Result<bool>;
    /// Creates or changes HTB class `classid` (`major << 16 | minor`) with rate = ceil =
    /// `rate` bytes/s.
    fn set_class(&mut self, ifindex: u32, classid: u32, rate: u64) -> io::Result<()>;
    /// Deletes class `classid` (absent is fine).
    fn delete_class(&mut self, ifindex: u32, classid: u32) -> io::Result<()>;
    /// Clears the XPS CPU maps of `iface`'s (index `ifindex`) first `queues` transmit
    /// queues, which would otherwise choose the queue instead of the TC program; returns
    /// the maps it cleared, to be put back by [`TcOps::restore_xps`] (none if it could not
    /// see this interface's).
    fn clear_xps(&mut self, iface: &str, ifindex: u32, queues: u32) -> io::Result<Vec<String>>;
    /// Writes back the maps [`TcOps::clear_xps`] returned, queue by queue.
    fn restore_xps(&mut self, iface: &str, ifindex: u32, maps: &[String]) -> io::Result<()>;
}

/// One egress interface and what is installed on it.
struct Egress {
    name: String,
    ifindex: u32,
    /// Transmit queues: 1 keeps one HTB root, more make an mq root with an HTB per queue.
    queues: u32,
    qdisc: bool,
    /// class id → rate in bytes/s.
    classes: BTreeMap<u32, u64>,
    /// The XPS maps found when the mq root was made, put back when it goes.
    xps_saved: Vec<String>,
}

impl Egress {
    /// The root qdisc shaping makes here: kind and major.
    fn root(&self) -> (Qdisc, u32) {
        if self.queues > 1 {
            (Qdisc::Mq, MQ_MAJOR)
        } else {
            (Qdisc::Htb, HTB_MAJOR)
        }
    }

    fn error(&self, op: &'static str) -> impl FnOnce(io::Error) -> ShapeError + use<> {
        let iface = self.name.clone();
        move |source| ShapeError::Netlink { op, iface, source }
    }

    /// Makes the root and, under an mq, one HTB per queue.
    fn create(&mut self, ops: &mut impl TcOps) -> Result<(), ShapeError> {
        let (kind, major) = self.root();
        if kind == Qdisc::Mq {
            self.xps_saved = ops
                .clear_xps(&self.name, self.ifindex, self.queues)
                .map_err(self.error("clearing XPS"))?;
        }
        ops.create_qdisc(self.ifindex, kind, major, TC_H_ROOT)
            .map_err(self.error("creating the root qdisc"))?;
        if kind == Qdisc::Mq {
            for q in 1..=self.queues {
                ops.create_qdisc(self.ifindex, Qdisc::Htb, q, (MQ_MAJOR << 16) | q)
                    .map_err(self.error("creating a queue's HTB qdisc"))?;
            }
        }
        self.qdisc = true;
        tracing::info!(interface = %self.name, queues = self.queues, root = ?kind,
            "qdiscs created for shape rules");
        Ok(())
    }

    fn delete(&mut self, ops: &mut impl TcOps) -> Result<(), ShapeError> {
        let (kind, major) = self.root();
        ops.delete_root(self.ifindex, kind, major)
            .map_err(self.error("removing the shaping qdisc"))?;
        self.qdisc = false;
        self.classes.clear();
        let saved = std::mem::take(&mut self.xps_saved);
        if !saved.is_empty() {
            ops.restore_xps(&self.name, self.ifindex, &saved)
                .map_err(self.error("restoring XPS"))?;
        }
        Ok(())
    }
}

/// Keeps the HTB qdiscs and classes of both egress interfaces in step with the policy.
pub struct Shaper<T: TcOps = Netlink> {
    ops: T,
    /// Indexed by direction: 0 = up (uplink egress), 1 = down (downlink egress).
    egress: [Egress; 2],
}

impl Shaper<Netlink> {
    /// Shaping on `uplink` (up) and `downlink` (down) in the current network namespace,
    /// after removing the qdiscs a crashed run left behind; each interface's transmit
    /// queues are counted now.
    pub fn new(uplink: &str, downlink: &str) -> Result<Shaper<Netlink>, ShapeError> {
        let ops = Netlink::open().map_err(|source| ShapeError::Netlink {
            op: "opening a netlink socket",
            iface: uplink.to_string(),
            source,
        })?;
        let index = crate::probe::interface_index;
        Shaper::with_queues(
            ops,
            [
                (uplink, index(uplink)?, tx_queues(uplink)),
                (downlink, index(downlink)?, tx_queues(downlink)),
            ],
        )
    }
}

impl<T: TcOps> Shaper<T> {
    /// Shaping through `ops` on `[(uplink, ifindex), (downlink, ifindex)]`, both taken to
    /// have one transmit queue.
    pub fn with_ops(ops: T, ifaces: [(&str, u32); 2]) -> Result<Shaper<T>, ShapeError> {
        Shaper::with_queues(ops, ifaces.map(|(name, i)| (name, i, 1)))
    }

    /// Shaping through `ops` on `[(uplink, ifindex, transmit queues), (downlink, ...)]`.
    pub fn with_queues(mut ops: T, ifaces: [(&str, u32, u32); 2]) -> Result<Shaper<T>, ShapeError> {
        for (name, ifindex, _) in ifaces {
            for (kind, major) in [(Qdisc::Htb, HTB_MAJOR), (Qdisc::Mq, MQ_MAJOR)] {
                let removed = ops.delete_root(ifindex, kind, major).map_err(|source| {
                    ShapeError::Netlink {
                        op: "removing a stale shaping qdisc",
                        iface: name.to_string(),
                        source,
                    }
                })?;
                if removed {
                    tracing::info!(interface = name, "removed the HTB qdisc of an earlier run");
                }
            }
        }
        let egress = ifaces.map(|(name, ifindex, queues)| Egress {
            name: name.to_string(),
            ifindex,
            queues: queues.clamp(1, peerwarden_common::shape::MAX_QUEUES),
            qdisc: false,
            classes: BTreeMap::new(),
            xps_saved: Vec::new(),
        });
        Ok(Shaper { ops, egress })
    }

    /// Transmit queues per direction (`[up, down]`), for the kernel's `SHAPE_LAYOUT`.
    pub fn queues(&self) -> [u32; 2] {
        [self.egress[0].queues, self.egress[1].queues]
    }

    /// Makes the classes match `shaped` (subscriber index, slot, direction, bytes/s, as
    /// [`peerwarden_policies::compile::Compiled::shaped`]): new classes are created, changed rates
    /// updated, classes no longer shaped deleted; the qdiscs of a direction exist exactly
    /// while it has classes. Called before the kernel maps are swapped, so a class exists
    /// before the TC program steers into it. A subscriber past an interface's capacity is
    /// refused before anything changes.
    pub fn sync(&mut self, shaped: &[(u32, u32, u32, u64)]) -> Result<(), ShapeError> {
        let mut want: [BTreeMap<u32, u64>; 2] = Default::default();
        for &(sub, slot, dir, rate) in shaped {
            let e = &self.egress[(dir & 1) as usize];
            let Some((_, classid)) = place(sub, slot, e.queues) else {
                if e.queues <= 1 {
                    return Err(ShapeError::TooManyShaped { sub });
                }
                return Err(ShapeError::QueuesFull {
                    sub,
                    iface: e.name.clone(),
                    queues: e.queues,
                    max: capacity(e.queues) - 1,
                });
            };
            want[(dir & 1) as usize].insert(classid, rate.max(1));
        }
        for (e, want) in self.egress.iter_mut().zip(want) {
            if want.is_empty() {
                if e.qdisc {
                    e.delete(&mut self.ops)?;
                    tracing::info!(interface = %e.name, "no shape rules left: qdiscs removed");
                }
                continue;
            }
            if !e.qdisc {
                e.create(&mut self.ops)?;
            }
            for (&classid, &rate) in &want {
                if e.classes.get(&classid) != Some(&rate) {
                    self.ops
                        .set_class(e.ifindex, classid, rate)
                        .map_err(e.error("setting an HTB class"))?;
                    e.classes.insert(classid, rate);
                }
            }
            let gone: Vec<u32> = e
                .classes
                .keys()
                .filter(|m| !want.contains_key(m))
                .copied()
                .collect();
            for classid in gone {
                self.ops
                    .delete_class(e.ifindex, classid)
                    .map_err(e.error("deleting an HTB class"))?;
                e.classes.remove(&classid);
            }
        }
        Ok(())
    }

    /// Removes both directions' qdiscs (with their classes). Also done on drop, where
    /// errors are only logged.
    pub fn remove(&mut self) -> Result<(), ShapeError> {
        for e in &mut self.egress {
            if e.qdisc {
                e.delete(&mut self.ops)?;
            }
        }
        Ok(())
    }

    /// Classes installed per direction (class id → bytes/s), for status and tests.
    pub fn classes(&self, dir: usize) -> &BTreeMap<u32, u64> {
        &self.egress[dir & 1].classes
    }
}

impl<T: TcOps> Drop for Shaper<T> {
    fn drop(&mut self) {
        if let Err(e) = self.remove() {
            tracing::warn!(error = %e, "removing the shaping qdiscs");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// Records calls and keeps a model of the interfaces' qdiscs and classes.
    #[derive(Default)]
    struct Fake {
        calls: Vec<String>,
        /// ifindex → root qdisc.
        roots: BTreeMap<u32, (Qdisc, u32)>,
        /// (ifindex, major) of the HTB qdiscs.
        htbs: BTreeSet<(u32, u32)>,
        /// ifindex → class id → rate, while the interface has a root.
        qdisc: BTreeMap<u32, BTreeMap<u32, u64>>,
        xps_cleared: Vec<(String, u32)>,
        xps_restored: Vec<(String, Vec<String>)>,
    }

    impl TcOps for Fake {
        fn create_qdisc(
            &mut self,
            ifindex: u32,
            kind: Qdisc,
            major: u32,
            parent: u32,
        ) -> io::Result<()> {
            self.calls
                .push(format!("create {ifindex} {kind:?} {major:x}: {parent:x}"));
            let exists = io::Error::from_raw_os_error(libc::EEXIST);
            if parent == TC_H_ROOT {
                if self.roots.insert(ifindex, (kind, major)).is_some() {
                    return Err(exists);
                }
                self.qdisc.insert(ifindex, BTreeMap::new());
            } else {
                // Under an mq leaf `7fff:(q + 1)`, of a queue the interface has.
                let root = self.roots.get(&ifindex).copied();
                assert_eq!(root, Some((Qdisc::Mq, MQ_MAJOR)), "a leaf of the mq root");
                assert_eq!(parent >> 16, MQ_MAJOR);
            }
            if kind == Qdisc::Htb && !self.htbs.insert((ifindex, major)) {
                return Err(exists);
            }
            Ok(())
        }
        fn delete_root(&mut self, ifindex: u32, kind: Qdisc, major: u32) -> io::Result<bool> {
            if self.roots.get(&ifindex) != Some(&(kind, major)) {
                return Ok(false);
            }
            self.calls.push(format!("delete {ifindex}"));
            self.roots.remove(&ifindex);
            self.htbs.retain(|(i, _)| *i != ifindex);
            self.qdisc.remove(&ifindex);
            Ok(true)
        }
        fn set_class(&mut self, ifindex: u32, classid: u32, rate: u64) -> io::Result<()> {
            self.calls.push(format!(
                "class {ifindex} {:x}:{:x} {rate}",
                classid >> 16,
                classid & 0xffff
            ));
            if !self.htbs.contains(&(ifindex, classid >> 16)) || classid & 0xffff == 0 {
                return Err(io::Error::from_raw_os_error(libc::ENOENT));
            }
            let q = self
                .qdisc
                .get_mut(&ifindex)
                .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))?;
            q.insert(classid, rate);
            Ok(())
        }
        fn delete_class(&mut self, ifindex: u32, classid: u32) -> io::Result<()> {
            self.calls.push(format!(
                "declass {ifindex} {:x}:{:x}",
                classid >> 16,
                classid & 0xffff
            ));
            self.qdisc.get_mut(&ifindex).map(|q| q.remove(&classid));
            Ok(())
        }
        fn clear_xps(&mut self, iface: &str, _: u32, queues: u32) -> io::Result<Vec<String>> {
            self.xps_cleared.push((iface.to_string(), queues));
            // As an operator may have set them: queue q on CPU q.
            Ok((0..queues).map(|q| format!("{:x}", 1 << q)).collect())
        }
        fn restore_xps(&mut self, iface: &str, _: u32, maps: &[String]) -> io::Result<()> {
            self.xps_restored.push((iface.to_string(), maps.to_vec()));
            Ok(())
        }
    }

    fn shaper(fake: Fake) -> Shaper<Fake> {
        Shaper::with_ops(fake, [("uplink", 3), ("downlink", 2)]).expect("fake never fails")
    }

    /// Class id `1:minor`.
    const fn one(minor: u32) -> u32 {
        (1 << 16) | minor
    }

    #[test]
    fn stale_qdisc_is_removed_and_qdiscs_follow_the_rules() {
        let mut stale = Fake::default();
        stale.roots.insert(3, (Qdisc::Htb, 1));
        stale.htbs.insert((3, 1));
        stale.qdisc.insert(3, BTreeMap::from([(one(9), 1)]));
        let mut s = shaper(stale);
        assert!(s.ops.qdisc.is_empty(), "the crashed run's HTB is gone");
        s.ops.calls.clear();
        // Alice (index 0) shaped down on slot 1, bob (index 5) up and down on slot 2.
        s.sync(&[(0, 1, 1, 2_500_000), (5, 2, 0, 125_000), (5, 2, 1, 250_000)])
            .expect("sync");
        assert_eq!(
            s.ops.qdisc[&2],
            BTreeMap::from([(one(2), 2_500_000), (one(43), 250_000)])
        );
        assert_eq!(s.ops.qdisc[&3], BTreeMap::from([(one(43), 125_000)]));
        assert_eq!(
            s.ops.roots[&2],
            (Qdisc::Htb, 1),
            "one queue: HTB 1: at the root"
        );
        assert!(s.ops.xps_cleared.is_empty());
        // Reload: alice's rate changes, bob's up rule is gone, so the uplink loses its qdisc.
        s.ops.calls.clear();
        s.sync(&[(0, 1, 1, 1_250_000), (5, 2, 1, 250_000)])
            .expect("sync");
        assert_eq!(s.ops.calls, ["delete 3", "class 2 1:2 1250000"]);
        assert!(!s.ops.qdisc.contains_key(&3));
        // The same again: nothing to do.
        s.ops.calls.clear();
        s.sync(&[(0, 1, 1, 1_250_000), (5, 2, 1, 250_000)])
            .expect("sync");
        assert!(s.ops.calls.is_empty(), "{:?}", s.ops.calls);
        s.sync(&[(0, 1, 1, 1_250_000)]).expect("sync");
        assert_eq!(s.ops.qdisc[&2], BTreeMap::from([(one(2), 1_250_000)]));
        drop(s);
    }

    #[test]
    fn drop_removes_the_qdiscs() {
        let mut s = shaper(Fake::default());
        s.sync(&[(0, 1, 0, 1000), (0, 1, 1, 1000)]).expect("sync");
        s.remove().expect("remove");
        assert!(s.ops.qdisc.is_empty());
    }

    #[test]
    fn minors_are_16_bits() {
        assert_eq!(MAX_SHAPED_SUBSCRIBER, 8190);
        assert_eq!(class_minor(MAX_SHAPED_SUBSCRIBER, RULE_SLOTS - 1), 0xfff8);
        let mut s = shaper(Fake::default());
        assert!(matches!(
            s.sync(&[(8191, 1, 0, 1000)]),
            Err(ShapeError::TooManyShaped { sub: 8191 })
        ));
        assert!(s.ops.qdisc.is_empty(), "refused before touching anything");
    }

    #[test]
    fn several_queues_get_an_mq_root_and_an_htb_each() {
        let mut s = Shaper::with_queues(Fake::default(), [("uplink", 3, 1), ("downlink", 2, 2)])
            .expect("fake never fails");
        assert_eq!(s.queues(), [1, 2]);
        // Alice (0) and bob (5) shaped down on slot 1: alice on queue 0 (HTB 1:, rank 0),
        // bob on queue 1 (HTB 2:, rank 2: minor 2 * 8 + 1 + 1 = 0x12).
        s.sync(&[(0, 1, 1, 1000), (5, 1, 1, 2000), (5, 1, 0, 3000)])
            .expect("sync");
        assert_eq!(s.ops.roots[&2], (Qdisc::Mq, MQ_MAJOR));
        assert_eq!(
            s.ops
                .htbs
                .iter()
                .filter(|(i, _)| *i == 2)
                .collect::<Vec<_>>(),
            [&(2, 1), &(2, 2)]
        );
        assert_eq!(
            s.ops.qdisc[&2],
            BTreeMap::from([(0x1_0002, 1000), (0x2_0012, 2000)])
        );
        assert_eq!(s.ops.xps_cleared, [("downlink".to_string(), 2)]);
        // The single-queue uplink is as before: bob is 1:(5 * 8 + 2).
        assert_eq!(s.ops.roots[&3], (Qdisc::Htb, 1));
        assert_eq!(s.ops.qdisc[&3], BTreeMap::from([(one(42), 3000)]));
        // Past two queues' capacity (2 * 8,191 subscribers): refused, nothing touched.
        s.ops.calls.clear();
        let e = s.sync(&[(16_382, 0, 1, 1000)]).expect_err("past capacity");
        assert!(
            matches!(
                e,
                ShapeError::QueuesFull {
                    sub: 16_382,
                    queues: 2,
                    max: 16_381,
                    ..
                }
            ),
            "{e}"
        );
        assert!(s.ops.calls.is_empty());
        assert!(
            s.ops.xps_restored.is_empty(),
            "XPS put back while still shaping"
        );
        s.sync(&[]).expect("sync");
        assert!(s.ops.roots.is_empty() && s.ops.htbs.is_empty());
        // The mq root gone, the XPS maps it cleared are put back as they were.
        assert_eq!(
            s.ops.xps_restored,
            [(
                "downlink".to_string(),
                vec!["1".to_string(), "2".to_string()]
            )]
        );
    }

    /// 100,000 subscribers with every slot shaped, on an interface with 16 queues: each of
    /// the 800,000 classes is made once, in an HTB that exists, none shared.
    #[test]
    fn a_hundred_thousand_subscribers_fit_on_sixteen_queues() {
        let mut s = Shaper::with_queues(Fake::default(), [("uplink", 3, 16), ("downlink", 2, 16)])
            .expect("fake never fails");
        let shaped: Vec<(u32, u32, u32, u64)> = (0..100_000)
            .flat_map(|sub| (0..RULE_SLOTS).map(move |slot| (sub, slot, 1, 1000 + u64::from(sub))))
            .collect();
        s.sync(&shaped).expect("100,000 subscribers fit 16 queues");
        let classes = &s.ops.qdisc[&2];
        assert_eq!(classes.len(), 800_000);
        assert_eq!(s.classes(1).len(), 800_000);
        let majors: BTreeSet<u32> = classes.keys().map(|c| c >> 16).collect();
        assert_eq!(
            majors,
            (1..=16).collect(),
            "every queue's HTB holds classes"
        );
        // Subscriber 99,999 sits in queue 15 (HTB 16:) at rank 6,249; its slot 7 is minor 50,000.
        assert_eq!(classes[&((16 << 16) | (6249 * 8 + 7 + 1))], 100_999);
        assert!(!s.ops.qdisc.contains_key(&3), "nothing shaped up");
        // One past the capacity is refused.
        let e = s
            .sync(&[(capacity(16), 0, 1, 1)])
            .expect_err("past capacity");
        assert!(
            matches!(e, ShapeError::QueuesFull { max: 131_055, .. }),
            "{e}"
        );
    }
}
