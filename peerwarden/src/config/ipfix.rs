//! The `ipfix` section: IPFIX export (RFC 7011) of finished flows to a collector.
//!
//! The exporter (`peerwarden/src/ipfix/`) reads this section; the smallest message the
//! encoder can cut (`peerwarden_ipfix::MIN_MESSAGE`) bounds `max_message_size`.

use std::{net::SocketAddr, time::Duration};

use serde::Deserialize;

use peerwarden_ipfix::MIN_MESSAGE;

/// IPFIX export (RFC 7011) over UDP; the exporter is `peerwarden/src/ipfix/`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpfixConfig {
    /// The collector, `IP:port` (reached from the gateway's namespace).
    pub collector: SocketAddr,
    /// A flow with no packet for this long is exported (e.g. `15s`).
    #[serde(default = "default_ipfix_idle", deserialize_with = "duration")]
    pub idle_timeout: Duration,
    /// A flow still active is exported this long after its last record (delta counts).
    #[serde(default = "default_ipfix_active", deserialize_with = "duration")]
    pub active_timeout: Duration,
    /// Templates are resent at least this often (and every 100 messages).
    #[serde(
        default = "default_ipfix_template_refresh",
        deserialize_with = "duration"
    )]
    pub template_refresh: Duration,
    /// The observation domain id in every message header.
    #[serde(default = "default_ipfix_domain")]
    pub observation_domain: u32,
    /// The largest message, bytes (UDP payload; 512 to 65000).
    #[serde(default = "default_ipfix_message_size")]
    pub max_message_size: usize,
}

fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!("{text:?} is not a duration like 15s or 1m ({e})"))
    })
}

fn default_ipfix_idle() -> Duration {
    Duration::from_secs(15)
}

fn default_ipfix_active() -> Duration {
    Duration::from_secs(60)
}

fn default_ipfix_template_refresh() -> Duration {
    Duration::from_secs(60)
}

fn default_ipfix_domain() -> u32 {
    1
}

fn default_ipfix_message_size() -> usize {
    1400
}

impl IpfixConfig {
    /// The section's ranges.
    pub(super) fn check(&self) -> Result<(), String> {
        let c = self.collector;
        if c.ip().is_unspecified() || c.ip().is_multicast() || c.port() == 0 {
            return Err(format!(
                "ipfix.collector: {c} is not a collector address (IP:port, unicast)"
            ));
        }
        if self.idle_timeout < Duration::from_secs(1)
            || self.idle_timeout > Duration::from_secs(3600)
        {
            return Err(format!(
                "ipfix.idle_timeout: {:?} is out of range (1s to 1h)",
                self.idle_timeout
            ));
        }
        if self.active_timeout < Duration::from_secs(1)
            || self.active_timeout > Duration::from_secs(86400)
        {
            return Err(format!(
                "ipfix.active_timeout: {:?} is out of range (1s to 1d)",
                self.active_timeout
            ));
        }
        if self.template_refresh < Duration::from_secs(1)
            || self.template_refresh > Duration::from_secs(3600)
        {
            return Err(format!(
                "ipfix.template_refresh: {:?} is out of range (1s to 1h)",
                self.template_refresh
            ));
        }
        if self.max_message_size < MIN_MESSAGE || self.max_message_size > 65000 {
            return Err(format!(
                "ipfix.max_message_size: {} is out of range ({} to 65000)",
                self.max_message_size, MIN_MESSAGE
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Config, ConfigError};

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.yaml"))
    }

    #[test]
    fn ipfix_section() {
        let c = parse("interfaces: { downlink: a, uplink: b }\n").expect("valid");
        assert!(c.ipfix.is_none());
        let c = parse(
            "interfaces: { downlink: a, uplink: b }\n\
             ipfix: { collector: \"198.51.100.2:4739\", idle_timeout: 2s, active_timeout: 1m }\n",
        )
        .expect("valid");
        let x = c.ipfix.expect("ipfix section");
        assert_eq!(x.collector.to_string(), "198.51.100.2:4739");
        assert_eq!(x.idle_timeout.as_secs(), 2);
        assert_eq!(x.active_timeout.as_secs(), 60);
        assert_eq!((x.observation_domain, x.max_message_size), (1, 1400));
        assert_eq!(x.template_refresh.as_secs(), 60);
        for (section, needle) in [
            ("ipfix: { idle_timeout: 2s }", "collector"),
            ("ipfix: { collector: nowhere }", "ipfix"),
            ("ipfix: { collector: \"0.0.0.0:4739\" }", "ipfix.collector"),
            (
                "ipfix: { collector: \"198.51.100.2:0\" }",
                "ipfix.collector",
            ),
            (
                "ipfix: { collector: \"198.51.100.2:4739\", idle_timeout: soon }",
                "not a duration",
            ),
            (
                "ipfix: { collector: \"198.51.100.2:4739\", idle_timeout: 0s }",
                "ipfix.idle_timeout",
            ),
            (
                "ipfix: { collector: \"198.51.100.2:4739\", active_timeout: 2d }",
                "ipfix.active_timeout",
            ),
            (
                "ipfix: { collector: \"198.51.100.2:4739\", max_message_size: 100 }",
                "ipfix.max_message_size",
            ),
            (
                "ipfix: { collector: \"198.51.100.2:4739\", template_refresh: 2h }",
                "ipfix.template_refresh",
            ),
            (
                "ipfix: { collector: \"198.51.100.2:4739\", port: 1 }",
                "port",
            ),
        ] {
            let e = parse(&format!(
                "interfaces: {{ downlink: a, uplink: b }}\n{section}\n"
            ))
            .unwrap_err();
            assert!(e.to_string().contains(needle), "{section}: {e}");
            assert!(!e.to_string().contains('\n'), "one line: {e}");
        }
    }
}
