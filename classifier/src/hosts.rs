//! Host names that decide a label: the video services (TLS SNI, QUIC SNI, HTTP Host), and
//! the BitTorrent clients' own services. Matching is by domain suffix on label boundaries:
//! `googlevideo.com` matches `rr3---sn-a.googlevideo.com` and `googlevideo.com`, never
//! `notgooglevideo.com`.

use peerwarden_common::Label;

/// Built-in video services: (domain suffix, service name). The service name is what reports
/// print after `video.`. Sources: each service's public domains as they appear in SNI.
const VIDEO: &[(&str, &str)] = &[
    ("youtube.com", "youtube"),
    ("youtu.be", "youtube"),
    ("youtube-nocookie.com", "youtube"),
    ("youtubei.googleapis.com", "youtube"),
    ("googlevideo.com", "youtube"),
    ("ytimg.com", "youtube"),
    ("yt3.ggpht.com", "youtube"),
    ("yt4.ggpht.com", "youtube"),
    ("netflix.com", "netflix"),
    ("netflix.net", "netflix"),
    ("nflxvideo.net", "netflix"),
    ("nflximg.net", "netflix"),
    ("nflximg.com", "netflix"),
    ("nflxext.com", "netflix"),
    ("nflxso.net", "netflix"),
    ("twitch.tv", "twitch"),
    ("ttvnw.net", "twitch"),
    ("jtvnw.net", "twitch"),
    ("twitchcdn.net", "twitch"),
    ("iplayer.bbc.co.uk", "bbc"),
    ("bbcfmt.s.llnwi.net", "bbc"),
    ("primevideo.com", "primevideo"),
    ("aiv-cdn.net", "primevideo"),
    ("aiv-delivery.net", "primevideo"),
    ("amazonvideo.com", "primevideo"),
    ("disneyplus.com", "disneyplus"),
    ("disney-plus.net", "disneyplus"),
    ("dssott.com", "disneyplus"),
    ("bamgrid.com", "disneyplus"),
    ("hulu.com", "hulu"),
    ("hulustream.com", "hulu"),
    ("huluim.com", "hulu"),
    ("vimeo.com", "vimeo"),
    ("vimeocdn.com", "vimeo"),
    ("dailymotion.com", "dailymotion"),
    ("dmcdn.net", "dailymotion"),
    ("iqiyi.com", "iqiyi"),
    ("iqiyipic.com", "iqiyi"),
    ("qiyi.com", "iqiyi"),
    ("qy.net", "iqiyi"),
    ("71.am", "iqiyi"),
    ("pluralsight.com", "pluralsight"),
    ("pluralsight.imgix.net", "pluralsight"),
    ("pluralsight2.imgix.net", "pluralsight"),
    // iTunes' store hosts (`p53-buy.itunes.apple.com`, ...) share the domain: name the
    // media ones exactly ("=" means the whole name, not a suffix).
    ("=itunes.apple.com", "appletv"),
    ("play.itunes.apple.com", "appletv"),
    ("sync.itunes.apple.com", "appletv"),
    ("hls.itunes.apple.com", "appletv"),
    ("play-edge.itunes.apple.com", "appletv"),
    ("tv.apple.com", "appletv"),
    ("pandora.com", "pandora"),
    ("p-cdn.com", "pandora"),
    ("iflix.com", "iflix"),
    ("iflixcorp.com", "iflix"),
    ("1kxun.com", "1kxun"),
    ("1kxun.mobi", "1kxun"),
    ("ocs.fr", "ocs"),
    ("labgency.ws", "ocs"),
    ("hbomax.com", "hbomax"),
    ("max.com", "hbomax"),
    ("crunchyroll.com", "crunchyroll"),
    ("dazn.com", "dazn"),
    ("peacocktv.com", "peacock"),
    ("paramountplus.com", "paramountplus"),
    ("showmax.com", "showmax"),
];

/// BitTorrent clients' own services (client web UIs, update and tracker-list hosts).
const BITTORRENT: &[&str] = &["utorrent.com", "bittorrent.com"];

/// What a host name says about a flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    /// A video service, with its name.
    Video(String),
    /// A P2P label.
    P2p(Label),
}

/// The host-name list: built-in entries plus those added at run time (the policy file's).
#[derive(Debug, Clone)]
pub struct HostList {
    /// (suffix, service), longest suffixes first so the most specific entry wins.
    video: Vec<(String, String)>,
}

impl Default for HostList {
    fn default() -> Self {
        let mut h = HostList { video: Vec::new() };
        for (s, n) in VIDEO {
            h.video.push(((*s).to_owned(), (*n).to_owned()));
        }
        h.sort();
        h
    }
}

impl HostList {
    /// Adds a video service host suffix (e.g. `"example-tv.net"`, `"exampletv"`); a leading
    /// `*.` or `.` is ignored, case does not matter.
    pub fn add_video(&mut self, suffix: &str, service: &str) {
        let s = suffix
            .trim_start_matches("*.")
            .trim_start_matches('.')
            .to_ascii_lowercase();
        if s.is_empty() {
            return;
        }
        self.video.retain(|(x, _)| *x != s);
        self.video.push((s, service.to_ascii_lowercase()));
        self.sort();
    }

    fn sort(&mut self) {
        self.video
            .sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
    }

    /// What `host` (an SNI or HTTP Host, possibly with a port) matches, if anything.
    pub fn lookup(&self, host: &str) -> Option<HostMatch> {
        let host = host.trim_end_matches('.');
        let host = match host.rsplit_once(':') {
            // A port after a name (not an IPv6 literal).
            Some((h, p)) if !h.contains(':') && p.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host,
        };
        if host.len() > 253 {
            return None;
        }
        let mut buf = [0u8; 253];
        let lower = &mut buf[..host.len()];
        lower.copy_from_slice(host.as_bytes());
        lower.make_ascii_lowercase();
        let host = std::str::from_utf8(lower).ok()?;
        if BITTORRENT.iter().any(|s| suffix_match(host, s)) {
            return Some(HostMatch::P2p(Label::Bittorrent));
        }
        self.video
            .iter()
            .find(|(s, _)| suffix_match(host, s))
            .map(|(_, n)| HostMatch::Video(n.clone()))
    }
}

/// `host` is `suffix` or ends with `.suffix`; an entry `=name` matches `name` only.
fn suffix_match(host: &str, suffix: &str) -> bool {
    if let Some(exact) = suffix.strip_prefix('=') {
        return host == exact;
    }
    host == suffix
        || (host.len() > suffix.len()
            && host.ends_with(suffix)
            && host.as_bytes()[host.len() - suffix.len() - 1] == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_on_label_boundaries() {
        let h = HostList::default();
        let yt = Some(HostMatch::Video("youtube".into()));
        assert_eq!(h.lookup("rr3---sn-4g5e6nsz.googlevideo.com"), yt);
        assert_eq!(h.lookup("WWW.YouTube.com."), yt);
        assert_eq!(h.lookup("www.youtube.com:443"), yt);
        assert_eq!(h.lookup("notyoutube.com"), None);
        assert_eq!(h.lookup("youtube.com.evil.example"), None);
        assert_eq!(h.lookup("www.google.com"), None);
        assert_eq!(
            h.lookup("ggpht.com"),
            None,
            "ggpht serves other Google images too"
        );
        assert_eq!(
            h.lookup("web.utorrent.com"),
            Some(HostMatch::P2p(Label::Bittorrent))
        );
        assert_eq!(h.lookup(""), None);
        assert_eq!(
            h.lookup("itunes.apple.com"),
            Some(HostMatch::Video("appletv".into()))
        );
        assert_eq!(
            h.lookup("p53-buy.itunes.apple.com"),
            None,
            "the store, not the player"
        );
    }

    #[test]
    fn added_hosts_take_precedence_when_more_specific() {
        let mut h = HostList::default();
        h.add_video("*.Example-TV.net", "ExampleTV");
        assert_eq!(
            h.lookup("edge1.example-tv.net"),
            Some(HostMatch::Video("exampletv".into()))
        );
        h.add_video("kids.youtube.com", "youtubekids");
        assert_eq!(
            h.lookup("kids.youtube.com"),
            Some(HostMatch::Video("youtubekids".into()))
        );
        assert_eq!(
            h.lookup("m.youtube.com"),
            Some(HostMatch::Video("youtube".into()))
        );
    }
}
