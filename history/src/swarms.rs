//! The swarm view's rows: bytes per (minute, swarm), local and transit, written by the
//! daemon once a minute when `swarms.enabled`, and kept for the shorter of the swarm view's
//! own `retention` and the store's minute retention.

use rusqlite::params;

use crate::{History, HistoryError, lock};

/// One swarm's bytes over some minutes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SwarmBytes {
    /// The swarm's id: its info-hash or its pseudonym.
    pub swarm: [u8; 20],
    /// Subscriber to subscriber.
    pub local: u64,
    /// Subscribers to the internet.
    pub transit_up: u64,
    /// The internet to subscribers.
    pub transit_down: u64,
}

/// SQLite integers are signed; a count past `i64::MAX` is stored as that.
fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl History {
    /// Adds `rows` to minute `t` (seconds, rounded down to its minute) and deletes the rows
    /// older than `keep_secs` before `now` or than the minute retention, whichever is
    /// shorter. One transaction.
    pub fn record_swarm_minute(
        &self,
        t: i64,
        rows: &[SwarmBytes],
        now: i64,
        keep_secs: u64,
    ) -> Result<(), HistoryError> {
        let t = crate::minute_of(t);
        let keep = int(keep_secs).min(i64::from(self.retention.minute_days) * 86_400);
        let mut w = lock(&self.writer);
        let tx = w
            .conn
            .transaction()
            .map_err(self.sql("starting the swarm rows"))?;
        {
            let mut up = tx
                .prepare_cached(
                    "INSERT INTO swarm_minute (t, swarm, local, transit_up, transit_down)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (t, swarm) DO UPDATE SET local = local + excluded.local,
                     transit_up = transit_up + excluded.transit_up,
                     transit_down = transit_down + excluded.transit_down",
                )
                .map_err(self.sql("preparing the swarm rows"))?;
            for r in rows {
                up.execute(params![
                    t,
                    &r.swarm[..],
                    int(r.local),
                    int(r.transit_up),
                    int(r.transit_down)
                ])
                .map_err(self.sql("writing a swarm row"))?;
            }
        }
        tx.execute(
            "DELETE FROM swarm_minute WHERE t < ?1",
            [now.saturating_sub(keep)],
        )
        .map_err(self.sql("deleting expired swarm rows"))?;
        tx.commit().map_err(self.sql("committing the swarm rows"))
    }

    /// Each swarm's bytes in the minutes that start in `[from, to)`, most transit first.
    pub fn swarm_totals(&self, from: i64, to: i64) -> Result<Vec<SwarmBytes>, HistoryError> {
        let conn = self.reader();
        let mut q = conn
            .prepare_cached(
                "SELECT swarm, SUM(local), SUM(transit_up), SUM(transit_down) FROM swarm_minute
                 WHERE t >= ?1 AND t < ?2 GROUP BY swarm
                 ORDER BY SUM(transit_up) + SUM(transit_down) DESC, swarm",
            )
            .map_err(self.sql("preparing the swarm totals"))?;
        let rows = q
            .query_map([from, to], |r| {
                let id: Vec<u8> = r.get(0)?;
                let n = |i| r.get::<_, i64>(i).map(|v| v.max(0) as u64);
                Ok((id, n(1)?, n(2)?, n(3)?))
            })
            .map_err(self.sql("reading the swarm totals"))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, local, transit_up, transit_down) =
                row.map_err(self.sql("reading a swarm total"))?;
            // Rows of another length were not written by this store; skip them.
            if let Ok(swarm) = <[u8; 20]>::try_from(id.as_slice()) {
                out.push(SwarmBytes {
                    swarm,
                    local,
                    transit_up,
                    transit_down,
                });
            }
        }
        Ok(out)
    }
}
