//! A TCP direction's stream head, reassembled in sequence order up to [`STREAM_CAP`] bytes.
//!
//! Segments that arrive ahead of a gap are held (at most [`MAX_PENDING`] of them, within the
//! cap) until the gap fills, instead of ending reassembly at the first gap. Where two copies
//! of the same bytes differ (an overlapping retransmission), the first copy placed in the
//! head wins, as in most operating systems' stacks; the other copy is not thrown away
//! unread: [`Push::conflicts`] hands it, placed at its stream offset, to the caller, so a
//! signature in either copy is seen (an evasion that sends junk the receiver never gets,
//! Geneva-style, cannot hide the real bytes behind it).

/// Bytes of each direction's stream head kept (a ClientHello over several segments, HTTP
/// heads, RTMP's 1537 bytes, a handshake after a prefix).
pub const STREAM_CAP: usize = 8 * 1024;

/// Out-of-order segments held per direction.
pub const MAX_PENDING: usize = 8;

/// How much of a conflicting copy is kept for the caller: enough for a peer-wire handshake
/// and the messages after it.
const CONFLICT_KEEP: usize = 256;

/// The stream head of one direction.
#[derive(Debug, Default)]
pub struct Stream {
    /// The head, in order, without gaps.
    pub buf: Vec<u8>,
    next: Option<u32>,
    pending: Vec<(u32, Vec<u8>)>,
    /// The cap was reached: the head is what it is.
    pub closed: bool,
}

/// What a segment did to the head.
#[derive(Debug, Default)]
pub struct Push {
    /// The head grew.
    pub grew: bool,
    /// Conflicting copies: (stream offset, the copy's bytes from there, cut to 256).
    pub conflicts: Vec<(usize, Vec<u8>)>,
}

impl Stream {
    /// Fixes the stream's first sequence number (one past a SYN's) if nothing came yet.
    pub fn start_at(&mut self, seq: u32) {
        if self.buf.is_empty() && self.pending.is_empty() {
            self.next = Some(seq);
        }
    }

    /// Adds a segment.
    pub fn push(&mut self, seq: u32, data: &[u8]) -> Push {
        let mut out = Push::default();
        if self.closed || data.is_empty() {
            return out;
        }
        let next = *self.next.get_or_insert(seq);
        let ahead = seq.wrapping_sub(next) as i32;
        if ahead > 0 {
            self.hold(seq, ahead as usize, data);
            return out;
        }
        self.place(seq, data, &mut out);
        // Held segments the head now reaches.
        while let Some(i) = self
            .pending
            .iter()
            .position(|(s, _)| self.next.is_some_and(|n| s.wrapping_sub(n) as i32 <= 0))
        {
            let (s, d) = self.pending.swap_remove(i);
            self.place(s, &d, &mut out);
            if self.closed {
                self.pending.clear();
            }
        }
        out
    }

    /// Holds a segment `ahead` bytes past the head's end, if it fits the cap and the count.
    fn hold(&mut self, seq: u32, ahead: usize, data: &[u8]) {
        let room = STREAM_CAP.saturating_sub(self.buf.len());
        if ahead >= room || self.pending.len() >= MAX_PENDING {
            return;
        }
        if self
            .pending
            .iter()
            .any(|(s, d)| *s == seq && d.len() >= data.len())
        {
            return;
        }
        let keep = data.len().min(room - ahead);
        self.pending.push((seq, data[..keep].to_vec()));
    }

    /// Places a segment that starts at or before the head's end.
    fn place(&mut self, seq: u32, data: &[u8], out: &mut Push) {
        let Some(next) = self.next else { return };
        let behind = next.wrapping_sub(seq) as usize;
        let have = self.buf.len();
        // Bytes of `data` that cover what the head already holds, and where they start.
        let (skip_data, at) = if behind <= have {
            (0, have - behind)
        } else {
            // Starts before the head's first byte (a retransmission of what came before
            // the capture or the SYN): only its tail can matter.
            (behind - have, 0)
        };
        if skip_data >= data.len() {
            return;
        }
        let data = &data[skip_data..];
        let overlap = (have - at).min(data.len());
        if self.buf[at..at + overlap] != data[..overlap] {
            out.conflicts
                .push((at, data[..data.len().min(CONFLICT_KEEP)].to_vec()));
        }
        let fresh = &data[overlap..];
        let n = fresh.len().min(STREAM_CAP - have);
        if n > 0 {
            self.buf.extend_from_slice(&fresh[..n]);
            self.next = Some(next.wrapping_add(n as u32));
            out.grew = true;
        }
        if self.buf.len() >= STREAM_CAP {
            self.closed = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_out_of_order_and_one_byte_segments() {
        let msg = b"hello, stream reassembly";
        let mut s = Stream::default();
        s.start_at(1000);
        // Reversed one-byte segments: all held until the first arrives... but only 8 are
        // held, so send them in blocks of reversed eights.
        for block in msg.chunks(8).enumerate() {
            let base = 1000 + (block.0 * 8) as u32;
            for (i, b) in block.1.iter().enumerate().rev() {
                s.push(base + i as u32, &[*b]);
            }
        }
        assert_eq!(s.buf, msg);
    }

    #[test]
    fn first_copy_wins_and_the_other_is_reported() {
        let mut s = Stream::default();
        s.push(1, b"AAAA");
        let p = s.push(1, b"BBBBCC");
        assert_eq!(s.buf, b"AAAACC");
        assert_eq!(p.conflicts, vec![(0, b"BBBBCC".to_vec())]);
        // An identical retransmission is no conflict.
        assert!(s.push(3, b"AACC").conflicts.is_empty());
        // A held segment that conflicts with what fills the gap is reported too.
        let mut s = Stream::default();
        s.push(100, b"ab");
        s.push(104, b"XY");
        let p = s.push(102, b"cdef");
        assert_eq!(s.buf, b"abcdef");
        assert_eq!(p.conflicts, vec![(4, b"XY".to_vec())]);
    }

    #[test]
    fn bounded() {
        let mut s = Stream::default();
        s.push(0, b"x");
        for i in 0..100u32 {
            s.push(10 + i * 10, b"y");
        }
        assert_eq!(s.pending.len(), MAX_PENDING);
        s.push(1, &vec![7u8; 3 * STREAM_CAP]);
        assert_eq!(s.buf.len(), STREAM_CAP);
        assert!(s.closed && s.pending.is_empty());
        // Far ahead of the cap: dropped, not held.
        let mut s = Stream::default();
        s.push(0, b"x");
        s.push(1 + STREAM_CAP as u32, b"far");
        assert!(s.pending.is_empty());
    }
}
