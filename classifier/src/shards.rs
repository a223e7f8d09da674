//! Splitting a stream of packet samples over worker threads by flow, so that each flow's
//! samples reach one worker, in the order they came, while different flows are inspected
//! at once. [`shard_of`] picks the worker from the flow's key, which both directions of a
//! flow share (it is written from the flow's `Up` side). [`Dispatch`] holds one bounded
//! queue per worker; a sample for a full queue waits for room, and the wait is counted
//! ([`Dispatch::waited`]): nothing is dropped here, and a reader held up leaves samples in
//! whatever fed it (the daemon's ring buffer, where the kernel counts what it could not
//! put).
//!
//! ```
//! use peerwarden_classifier::{FlowKey, shards::{Dispatch, shard_of}};
//! let (dispatch, queues) = Dispatch::new(2, 16);
//! let key = FlowKey {
//!     proto: 6,
//!     src: "100.64.1.10:51413".parse().unwrap(),
//!     dst: "198.51.100.7:6881".parse().unwrap(),
//! };
//! let shard = shard_of(&key, 2);
//! dispatch.send(shard, 7u32).unwrap();
//! assert_eq!(queues[shard].recv(), Ok(7));
//! ```

use std::{
    hash::{Hash as _, Hasher as _},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
        mpsc::{Receiver, SyncSender, TrySendError, sync_channel},
    },
};

use crate::flow::{FlowKey, FxHasher};

/// The shard (0 to `n - 1`) of the flow `key`; 0 when `n` is 0 or 1.
pub fn shard_of(key: &FlowKey, n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    let mut h = FxHasher::default();
    key.hash(&mut h);
    // FxHash's last multiply leaves its best-mixed bits at the top.
    ((u128::from(h.finish()) * n as u128) >> 64) as usize
}

/// The sending side of `n` bounded queues, one per worker.
#[derive(Debug)]
pub struct Dispatch<T> {
    queues: Vec<SyncSender<T>>,
    waited: Arc<AtomicU64>,
}

impl<T> Dispatch<T> {
    /// `n` queues (at least one) of `depth` items each (at least one), and their receiving
    /// ends, one per worker.
    pub fn new(n: usize, depth: usize) -> (Dispatch<T>, Vec<Receiver<T>>) {
        let (queues, receivers) = (0..n.max(1)).map(|_| sync_channel(depth.max(1))).unzip();
        let waited = Arc::default();
        (Dispatch { queues, waited }, receivers)
    }

    /// Queues.
    pub fn len(&self) -> usize {
        self.queues.len()
    }

    /// Never: there is at least one queue.
    pub fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }

    /// Hands `item` to queue `shard` (taken modulo the number of queues); when the queue
    /// is full, counts a wait and blocks until its worker takes one. Gives `item` back if
    /// that worker is gone.
    pub fn send(&self, shard: usize, item: T) -> Result<(), T> {
        let q = &self.queues[shard % self.queues.len()];
        match q.try_send(item) {
            Ok(()) => Ok(()),
            Err(TrySendError::Disconnected(item)) => Err(item),
            Err(TrySendError::Full(item)) => {
                self.waited.fetch_add(1, Ordering::Relaxed);
                q.send(item).map_err(|e| e.0)
            }
        }
    }

    /// Items that found their queue full and waited for room, since the dispatch was made.
    pub fn waited(&self) -> u64 {
        self.waited.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use std::{thread, time::Duration};

    use super::*;

    fn key(sub: u8, port: u16) -> FlowKey {
        FlowKey {
            proto: 17,
            src: std::net::SocketAddr::from(([100, 64, 1, sub], port)),
            dst: std::net::SocketAddr::from(([198, 51, 100, 7], 6881)),
        }
    }

    #[test]
    fn flows_spread_over_the_shards_and_each_stays_on_one() {
        let mut per = [0u32; 4];
        for i in 0..4000u16 {
            let k = key((i % 200) as u8, 1024 + i);
            let s = shard_of(&k, 4);
            assert_eq!(s, shard_of(&k, 4), "the same flow, the same shard");
            per[s] += 1;
        }
        // Uniform would be 1,000 each.
        assert!(per.iter().all(|&c| (800..1200).contains(&c)), "{per:?}");
        assert_eq!(shard_of(&key(1, 1), 1), 0);
        assert_eq!(shard_of(&key(1, 1), 0), 0);
    }

    #[test]
    fn a_flows_items_arrive_in_order_and_a_full_queue_waits_counted() {
        let (d, rx) = Dispatch::new(3, 2);
        let workers: Vec<_> = rx
            .into_iter()
            .map(|rx| {
                thread::spawn(move || {
                    // A slow worker: the reader finds its queue full.
                    let mut got: Vec<(usize, u32)> = Vec::new();
                    while let Ok(item) = rx.recv() {
                        thread::sleep(Duration::from_micros(200));
                        got.push(item);
                    }
                    got
                })
            })
            .collect();
        let flows: Vec<FlowKey> = (0..12).map(|i| key(i, 5000)).collect();
        for seq in 0..40u32 {
            for (f, k) in flows.iter().enumerate() {
                d.send(shard_of(k, 3), (f, seq)).expect("worker alive");
            }
        }
        assert!(d.waited() > 0, "a queue of two fills up");
        drop(d);
        let mut total = 0;
        for (shard, w) in workers.into_iter().enumerate() {
            let got = w.join().expect("worker");
            total += got.len();
            for (f, k) in flows.iter().enumerate() {
                let seqs: Vec<u32> = got.iter().filter(|(g, _)| *g == f).map(|x| x.1).collect();
                if shard_of(k, 3) == shard {
                    assert_eq!(
                        seqs,
                        (0..40).collect::<Vec<_>>(),
                        "flow {f} in order, whole"
                    );
                } else {
                    assert!(seqs.is_empty(), "flow {f} on one shard only");
                }
            }
        }
        assert_eq!(total, 12 * 40, "nothing dropped");
    }

    #[test]
    fn a_gone_worker_gives_the_item_back() {
        let (d, rx) = Dispatch::new(1, 1);
        drop(rx);
        assert_eq!(d.send(0, 5u8), Err(5));
    }
}
