//! The rtnetlink side of shaping: `RTM_NEWQDISC`, `RTM_NEWTCLASS`, ... written by hand as
//! `tc(8)` sends them, and the answers parsed.

use std::{
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

use super::*;

// rtnetlink constants (linux/rtnetlink.h, linux/pkt_sched.h) that the libc crate lacks.
const RTM_NEWQDISC: u16 = 36;
const RTM_DELQDISC: u16 = 37;
const RTM_NEWTCLASS: u16 = 40;
const RTM_DELTCLASS: u16 = 41;
const TCA_KIND: u16 = 1;
const TCA_OPTIONS: u16 = 2;
const TCA_HTB_PARMS: u16 = 1;
const TCA_HTB_INIT: u16 = 2;
const TCA_HTB_RATE64: u16 = 6;
const TCA_HTB_CEIL64: u16 = 7;
/// `TC_H_ROOT`: the parent of a root qdisc.
pub const TC_H_ROOT: u32 = 0xffff_ffff;
const TC_LINKLAYER_ETHERNET: u8 = 1;
/// `TC_HTB_PROTOVER`: the version iproute2 sends.
const HTB_PROTOVER: u32 = 3;
/// HTB's psched tick is 64 ns (`PSCHED_SHIFT` 6): buffers are given in ticks.
const PSCHED_SHIFT: u32 = 6;
const NLMSGERR_ATTR_MSG: u16 = 1;

/// How long a class may send at line rate after idling, as time at its own rate: 10 ms,
/// at least two full frames. tc's default is one timer tick plus an MTU (about 1 ms), which
/// undershoots the rate on a busy two-core host whose timers fire late.
const BURST_NS: u64 = 10_000_000;
const MIN_BURST_BYTES: u64 = 2 * 1514;

/// An rtnetlink message under construction: header, `struct tcmsg`, attributes.
struct Msg {
    buf: Vec<u8>,
}

impl Msg {
    fn new(kind: u16, flags: u16, ifindex: u32, handle: u32, parent: u32) -> Msg {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_len, set in finish()
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(
            &(flags | libc::NLM_F_REQUEST as u16 | libc::NLM_F_ACK as u16).to_ne_bytes(),
        );
        buf.extend_from_slice(&0u32.to_ne_bytes()); // seq, set in finish()
        buf.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel
        // struct tcmsg: family, 3 bytes of padding, ifindex, handle, parent, info.
        buf.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
        buf.extend_from_slice(&(ifindex as i32).to_ne_bytes());
        buf.extend_from_slice(&handle.to_ne_bytes());
        buf.extend_from_slice(&parent.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes());
        Msg { buf }
    }

    fn attr(&mut self, kind: u16, data: &[u8]) {
        self.buf
            .extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.pad();
    }

    /// Starts a nested attribute; returns where its length goes.
    fn nest(&mut self, kind: u16) -> usize {
        let at = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        at
    }

    fn end_nest(&mut self, at: usize) {
        let len = (self.buf.len() - at) as u16;
        self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    fn finish(mut self, seq: u32) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.buf
    }
}

/// `struct tc_htb_glob`: version, rate2quantum, defcls, debug, direct_pkts.
fn htb_glob() -> Vec<u8> {
    [HTB_PROTOVER, 10, 0, 0, 0]
        .iter()
        .flat_map(|v| v.to_ne_bytes())
        .collect()
}

/// `struct tc_ratespec` for `rate` bytes/s (saturated to 32 bits; TCA_HTB_RATE64 carries more).
fn ratespec(rate: u64) -> [u8; 12] {
    let mut r = [0u8; 12];
    // cell_log 0, linklayer ethernet (so the kernel needs no rate table), overhead 0,
    // cell_align 0, mpu 0.
    r[1] = TC_LINKLAYER_ETHERNET;
    r[8..12].copy_from_slice(&(rate.min(u64::from(u32::MAX)) as u32).to_ne_bytes());
    r
}

/// The HTB class parameters for `rate` bytes/s: `struct tc_htb_opt` (rate, ceil, buffer,
/// cbuffer, quantum, level, prio).
fn htb_opt(rate: u64) -> Vec<u8> {
    let burst = (rate.saturating_mul(BURST_NS) / 1_000_000_000).max(MIN_BURST_BYTES);
    let buffer_ns = burst.saturating_mul(1_000_000_000) / rate.max(1);
    let ticks = (buffer_ns >> PSCHED_SHIFT).min(u64::from(u32::MAX)) as u32;
    // Every class sits directly under the root with rate = ceil, so the quantum (the share
    // when siblings borrow) never comes into play; set it in HTB's advised range to keep
    // the kernel from warning.
    let quantum = (rate / 10).clamp(1514, 200_000) as u32;
    let mut o = Vec::with_capacity(44);
    o.extend_from_slice(&ratespec(rate));
    o.extend_from_slice(&ratespec(rate));
    for v in [ticks, ticks, quantum, 0, 0] {
        o.extend_from_slice(&v.to_ne_bytes());
    }
    o
}

/// A netlink error: the errno and the kernel's extended-ack message, if any.
fn nl_error(errno: i32, message: Option<String>) -> io::Error {
    let os = io::Error::from_raw_os_error(errno);
    match message {
        Some(m) => io::Error::new(os.kind(), format!("{os}: {m}")),
        None => os,
    }
}

/// An NETLINK_ROUTE socket in the namespace it was opened in.
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

impl Netlink {
    /// Opens the socket (with extended acks, so errors carry the kernel's reason).
    pub fn open() -> io::Result<Netlink> {
        // SAFETY: plain socket(2).
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let one: libc::c_int = 1;
        for opt in [libc::NETLINK_EXT_ACK, libc::NETLINK_CAP_ACK] {
            // SAFETY: setsockopt with a c_int of the right size. Failure only loses detail.
            unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_NETLINK,
                    opt,
                    (&one as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
        }
        // SAFETY: zeroed sockaddr_nl is valid; bind with pid 0 lets the kernel choose.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: addr is a sockaddr_nl of the given size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Netlink { fd, seq: 0 })
    }

    /// Sends `msg` and waits for its acknowledgement.
    fn request(&mut self, msg: Msg) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let buf = msg.finish(seq);
        // SAFETY: buf is a complete netlink message; the kernel is the destination.
        let sent = unsafe { libc::send(self.fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), 0) };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut rx = vec![0u8; 8192];
        loop {
            // SAFETY: rx is writable for its length.
            let n = unsafe { libc::recv(self.fd.as_raw_fd(), rx.as_mut_ptr().cast(), rx.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if let Some(result) = parse_ack(&rx[..n as usize], seq) {
                return result;
            }
        }
    }
}

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(i..i + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(i..i + 4)?.try_into().ok()?))
}

/// The outcome carried by the NLMSG_ERROR answering `seq` in `datagram`, if there is one.
fn parse_ack(datagram: &[u8], seq: u32) -> Option<io::Result<()>> {
    let mut off = 0;
    while off + 16 <= datagram.len() {
        let len = u32_at(datagram, off)? as usize;
        let kind = u16_at(datagram, off + 4)?;
        let flags = u16_at(datagram, off + 6)?;
        let this_seq = u32_at(datagram, off + 8)?;
        if len < 16 || off + len > datagram.len() {
            return Some(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "truncated netlink answer",
            )));
        }
        if kind == libc::NLMSG_ERROR as u16 && this_seq == seq {
            let errno = u32_at(datagram, off + 16)? as i32;
            if errno == 0 {
                return Some(Ok(()));
            }
            // struct nlmsgerr: error, then the request's header (capped: no payload),
            // then the extended-ack attributes.
            let mut a = off + 16 + 4 + 16;
            if flags & libc::NLM_F_CAPPED as u16 == 0 {
                a = off + 16 + 4 + u32_at(datagram, off + 20).unwrap_or(16) as usize;
            }
            let mut message = None;
            while a + 4 <= off + len {
                let alen = u16_at(datagram, a)? as usize;
                let akind = u16_at(datagram, a + 2)?;
                if alen < 4 {
                    break;
                }
                if akind == NLMSGERR_ATTR_MSG {
                    let text = datagram.get(a + 4..a + alen)?;
                    let text = text.split(|b| *b == 0).next().unwrap_or(text);
                    message = Some(String::from_utf8_lossy(text).into_owned());
                }
                a += alen.next_multiple_of(4);
            }
            return Some(Err(nl_error(-errno, message)));
        }
        off += len.next_multiple_of(4);
    }
    None
}

impl TcOps for Netlink {
    fn create_qdisc(
        &mut self,
        ifindex: u32,
        kind: Qdisc,
        major: u32,
        parent: u32,
    ) -> io::Result<()> {
        let flags = (libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16;
        let mut m = Msg::new(RTM_NEWQDISC, flags, ifindex, major << 16, parent);
        m.attr(TCA_KIND, kind.kind());
        if kind == Qdisc::Htb {
            let opts = m.nest(TCA_OPTIONS);
            m.attr(TCA_HTB_INIT, &htb_glob());
            m.end_nest(opts);
        }
        self.request(m)
    }

    fn delete_root(&mut self, ifindex: u32, kind: Qdisc, major: u32) -> io::Result<bool> {
        // The kernel deletes only if the root is of that kind with that handle (EINVAL for
        // another root, ENOENT for the device's default, which has handle 0).
        let mut m = Msg::new(RTM_DELQDISC, 0, ifindex, major << 16, TC_H_ROOT);
        m.attr(TCA_KIND, kind.kind());
        match self.request(m) {
            Ok(()) => Ok(true),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::EINVAL)) => Ok(false),
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || e.kind() == io::ErrorKind::InvalidInput =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    fn set_class(&mut self, ifindex: u32, classid: u32, rate: u64) -> io::Result<()> {
        // `tc class replace`: create, or change the existing class in place.
        let flags = (libc::NLM_F_CREATE | libc::NLM_F_REPLACE) as u16;
        let mut m = Msg::new(
            RTM_NEWTCLASS,
            flags,
            ifindex,
            classid,
            classid & 0xffff_0000,
        );
        m.attr(TCA_KIND, b"htb\0");
        let opts = m.nest(TCA_OPTIONS);
        m.attr(TCA_HTB_PARMS, &htb_opt(rate));
        if rate > u64::from(u32::MAX) {
            m.attr(TCA_HTB_RATE64, &rate.to_ne_bytes());
            m.attr(TCA_HTB_CEIL64, &rate.to_ne_bytes());
        }
        m.end_nest(opts);
        self.request(m)
    }

    fn delete_class(&mut self, ifindex: u32, classid: u32) -> io::Result<()> {
        let m = Msg::new(RTM_DELTCLASS, 0, ifindex, classid, classid & 0xffff_0000);
        match self.request(m) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    fn clear_xps(&mut self, iface: &str, ifindex: u32, queues: u32) -> io::Result<Vec<String>> {
        let Some(dir) = own_sysfs(iface, ifindex) else {
            tracing::warn!(
                interface = iface,
                "cannot see this interface's XPS maps in /sys \
                (another network namespace's sysfs?): left as they are; if XPS is set, \
                it chooses the transmit queue instead of the shaping"
            );
            return Ok(Vec::new());
        };
        let mut saved = Vec::new();
        for q in 0..queues {
            match std::fs::read_to_string(xps_path(&dir, q)) {
                Ok(mask) => saved.push(mask.trim().to_string()),
                // A kernel built without XPS has no such file: nothing to clear.
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("{}: {e}", xps_path(&dir, q)),
                    ));
                }
            }
        }
        for q in 0..queues {
            write_xps(&dir, q, "0")?;
        }
        Ok(saved)
    }

    fn restore_xps(&mut self, iface: &str, ifindex: u32, maps: &[String]) -> io::Result<()> {
        // The interface gone or renamed: nothing to put back.
        let Some(dir) = own_sysfs(iface, ifindex) else {
            return Ok(());
        };
        for (q, mask) in (0..).zip(maps) {
            write_xps(&dir, q, mask)?;
        }
        Ok(())
    }
}

/// `/sys/class/net/IFACE` if it is the interface of index `ifindex`: /sys shows the network
/// namespace it was mounted in, which is not the daemon's when the daemon entered one itself
/// (`netns:`), and an interface of the same name there is another one.
fn own_sysfs(iface: &str, ifindex: u32) -> Option<String> {
    let dir = format!("/sys/class/net/{iface}");
    let found = std::fs::read_to_string(format!("{dir}/ifindex")).ok()?;
    (found.trim() == ifindex.to_string()).then_some(dir)
}

fn xps_path(dir: &str, queue: u32) -> String {
    format!("{dir}/queues/tx-{queue}/xps_cpus")
}

fn write_xps(dir: &str, queue: u32, mask: &str) -> io::Result<()> {
    let path = xps_path(dir, queue);
    std::fs::write(&path, mask).map_err(|e| io::Error::new(e.kind(), format!("{path}: {e}")))
}

/// Transmit queues `iface` uses, as `ethtool -l` reports them (`ETHTOOL_GCHANNELS`: the
/// combined channels plus the transmit-only ones, `real_num_tx_queues` on a veth); 1 when
/// the driver does not say. Asked through an ioctl on a socket of the current network
/// namespace: /sys/class/net shows the namespace sysfs was mounted in, not the daemon's.
pub fn tx_queues(iface: &str) -> u32 {
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
    const ETHTOOL_GCHANNELS: u32 = 0x3c;
    // struct ethtool_channels: cmd, max_rx, max_tx, max_other, max_combined, rx_count,
    // tx_count, other_count, combined_count.
    let mut channels = [0u32; 9];
    channels[0] = ETHTOOL_GCHANNELS;
    let name = iface.as_bytes();
    if name.len() >= libc::IFNAMSIZ {
        return 1;
    }
    // SAFETY: a zeroed ifreq is valid.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(name) {
        *d = *s as libc::c_char;
    }
    ifr.ifr_ifru.ifru_data = channels.as_mut_ptr().cast();
    // SAFETY: plain socket(2).
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return 1;
    }
    // SAFETY: a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifr names the device and points at a buffer of the size the command writes.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), SIOCETHTOOL as _, &mut ifr) };
    if rc != 0 {
        return 1;
    }
    (channels[6] + channels[8]).clamp(1, peerwarden_common::shape::MAX_QUEUES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_message_layout() {
        let mut m = Msg::new(RTM_NEWTCLASS, 0, 7, 0x1_0002, 0x1_0000);
        m.attr(TCA_KIND, b"htb\0");
        let opts = m.nest(TCA_OPTIONS);
        m.attr(TCA_HTB_PARMS, &htb_opt(2_500_000));
        m.end_nest(opts);
        let b = m.finish(42);
        assert_eq!(u32_at(&b, 0), Some(b.len() as u32));
        assert_eq!(u32_at(&b, 8), Some(42));
        // tcmsg: ifindex 7, handle 1:2, parent 1:.
        assert_eq!(
            (u32_at(&b, 20), u32_at(&b, 24), u32_at(&b, 28)),
            (Some(7), Some(0x10002), Some(0x10000))
        );
        // TCA_KIND (8 bytes), then TCA_OPTIONS holding TCA_HTB_PARMS of 44 bytes.
        assert_eq!((u16_at(&b, 36), u16_at(&b, 38)), (Some(8), Some(TCA_KIND)));
        assert_eq!(
            (u16_at(&b, 44), u16_at(&b, 46)),
            (Some(4 + 4 + 44), Some(TCA_OPTIONS))
        );
        assert_eq!(
            (u16_at(&b, 48), u16_at(&b, 50)),
            (Some(48), Some(TCA_HTB_PARMS))
        );
        let opt = &b[52..96];
        assert_eq!(u32_at(opt, 8), Some(2_500_000), "rate");
        assert_eq!(u32_at(opt, 20), Some(2_500_000), "ceil");
        // 10 ms in 64 ns ticks.
        assert_eq!(u32_at(opt, 24), Some(10_000_000 >> 6));
        assert_eq!(u32_at(opt, 32), Some(200_000), "quantum clamped");
    }

    #[test]
    fn acks_and_errors_are_parsed() {
        let ack = |seq: u32, errno: i32, extra: &[u8]| {
            let mut b = Vec::new();
            let len = 16 + 4 + 16 + extra.len();
            b.extend_from_slice(&(len as u32).to_ne_bytes());
            b.extend_from_slice(&(libc::NLMSG_ERROR as u16).to_ne_bytes());
            b.extend_from_slice(&(libc::NLM_F_CAPPED as u16).to_ne_bytes());
            b.extend_from_slice(&seq.to_ne_bytes());
            b.extend_from_slice(&0u32.to_ne_bytes());
            b.extend_from_slice(&errno.to_ne_bytes());
            b.extend_from_slice(&[0u8; 16]);
            b.extend_from_slice(extra);
            b
        };
        assert!(matches!(parse_ack(&ack(3, 0, &[]), 3), Some(Ok(()))));
        assert!(
            parse_ack(&ack(2, 0, &[]), 3).is_none(),
            "another request's answer"
        );
        let mut msg = Vec::new();
        msg.extend_from_slice(&14u16.to_ne_bytes());
        msg.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        msg.extend_from_slice(b"Exclusive\0\0\0");
        let e = parse_ack(&ack(3, -libc::EEXIST, &msg), 3)
            .expect("answer")
            .expect_err("an error");
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert!(e.to_string().ends_with(": Exclusive"), "{e}");
    }
}
