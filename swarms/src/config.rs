//! The `swarms` section of the daemon's config:
//!
//! ```yaml
//! swarms: { enabled: true, retention: 24h, pseudonymize: false }
//! ```
//!
//! Durations are written as the rest of the config writes them (`15s`, `45m`, `24h`).

use std::time::Duration;

use serde::Deserialize;

/// The swarm view's settings. Off by default: nothing is extracted, kept or served unless
/// `enabled` is true.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwarmsConfig {
    /// Turns the swarm view on.
    #[serde(default)]
    pub enabled: bool,
    /// A swarm not seen for this long is dropped (from memory here; the history store keeps
    /// its rows for the same time).
    #[serde(default = "default_retention", deserialize_with = "duration")]
    pub retention: Duration,
    /// Info-hashes are replaced by a keyed hash (HMAC-SHA256 under an installation key)
    /// before anything is kept.
    #[serde(default)]
    pub pseudonymize: bool,
    /// Most swarms kept at once; the least recently seen is evicted (and counted) past it.
    #[serde(default = "default_max_swarms")]
    pub max_swarms: usize,
    /// Most flows with a known swarm kept at once; likewise evicted past it.
    #[serde(default = "default_max_flows")]
    pub max_flows: usize,
    /// How long a plaintext announce (tracker, DHT `announce_peer`) attributes the
    /// announcing endpoint's encrypted flows to its swarm: a tracker's usual announce
    /// interval is 30 minutes, DHT announces are repeated about as often.
    #[serde(default = "default_announce_ttl", deserialize_with = "duration")]
    pub announce_ttl: Duration,
    /// A flow with no bytes for this long is forgotten (its swarm stays).
    #[serde(default = "default_flow_idle", deserialize_with = "duration")]
    pub flow_idle: Duration,
}

impl Default for SwarmsConfig {
    fn default() -> Self {
        SwarmsConfig {
            enabled: false,
            retention: default_retention(),
            pseudonymize: false,
            max_swarms: default_max_swarms(),
            max_flows: default_max_flows(),
            announce_ttl: default_announce_ttl(),
            flow_idle: default_flow_idle(),
        }
    }
}

/// A setting out of its range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("swarms.{field}: {value} is out of range ({range})")]
pub struct ConfigError {
    /// The setting, as written in the config.
    pub field: &'static str,
    /// Its value, as the config would write it.
    pub value: String,
    /// What is accepted.
    pub range: &'static str,
}

impl SwarmsConfig {
    /// Checks every setting's range.
    pub fn check(&self) -> Result<(), ConfigError> {
        let dur = |field, d: Duration, lo: u64, hi: u64, range| {
            if d < Duration::from_secs(lo) || d > Duration::from_secs(hi) {
                Err(ConfigError {
                    field,
                    value: humantime::format_duration(d).to_string(),
                    range,
                })
            } else {
                Ok(())
            }
        };
        let count = |field, n: usize, lo: usize, hi: usize, range| {
            if n < lo || n > hi {
                Err(ConfigError {
                    field,
                    value: n.to_string(),
                    range,
                })
            } else {
                Ok(())
            }
        };
        dur("retention", self.retention, 60, 366 * 86_400, "1m to 366d")?;
        dur("announce_ttl", self.announce_ttl, 60, 86_400, "1m to 24h")?;
        dur("flow_idle", self.flow_idle, 10, 86_400, "10s to 24h")?;
        count(
            "max_swarms",
            self.max_swarms,
            1,
            10_000_000,
            "1 to 10000000",
        )?;
        count("max_flows", self.max_flows, 1, 10_000_000, "1 to 10000000")?;
        Ok(())
    }
}

fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!("{text:?} is not a duration like 45m or 24h ({e})"))
    })
}

fn default_retention() -> Duration {
    Duration::from_secs(24 * 3600)
}

fn default_max_swarms() -> usize {
    100_000
}

fn default_max_flows() -> usize {
    200_000
}

fn default_announce_ttl() -> Duration {
    Duration::from_secs(45 * 60)
}

fn default_flow_idle() -> Duration {
    Duration::from_secs(10 * 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(yaml: &str) -> Result<SwarmsConfig, String> {
        serde_saphyr::from_str::<SwarmsConfig>(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_off_and_a_day() {
        let c = read("{}").expect("empty section");
        assert_eq!(c, SwarmsConfig::default());
        assert!(!c.enabled && !c.pseudonymize);
        assert_eq!(c.retention, Duration::from_secs(86_400));
        assert_eq!(c.check(), Ok(()));
    }

    #[test]
    fn reads_the_issue_example() {
        let c = read("{ enabled: true, retention: 12h, pseudonymize: true, announce_ttl: 30m }")
            .expect("valid");
        assert!(c.enabled && c.pseudonymize);
        assert_eq!(c.retention, Duration::from_secs(12 * 3600));
        assert_eq!(c.announce_ttl, Duration::from_secs(1800));
    }

    #[test]
    fn refuses_unknown_fields_bad_durations_and_ranges() {
        let e = read("{ enabled: true, retension: 1h }").expect_err("typo");
        assert!(e.contains("retension"), "{e}");
        let e = read("{ retention: 24 }").expect_err("no unit");
        assert!(e.contains("is not a duration like"), "{e}");
        let c = read("{ retention: 10s }").expect("parses");
        assert_eq!(
            c.check().map_err(|e| e.to_string()),
            Err("swarms.retention: 10s is out of range (1m to 366d)".to_string())
        );
        let c = read("{ max_swarms: 0 }").expect("parses");
        assert_eq!(
            c.check().map_err(|e| e.to_string()),
            Err("swarms.max_swarms: 0 is out of range (1 to 10000000)".to_string())
        );
    }
}
