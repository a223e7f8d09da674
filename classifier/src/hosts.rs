//! Host names that decide a label: the video services of the [catalogue](crate::catalogue)
//! (TLS SNI, QUIC SNI, HTTP Host), and the BitTorrent clients' own services. Matching is by
//! domain suffix on label boundaries: `googlevideo.com` matches `rr3---sn-a.googlevideo.com`
//! and `googlevideo.com`, never `notgooglevideo.com`; an entry `=name` matches that name
//! only.

use std::sync::{
    Arc, LazyLock, Mutex, PoisonError,
    atomic::{AtomicU64, Ordering},
};

use peerwarden_common::Label;

use crate::{
    catalogue::{Catalogue, CatalogueError},
    flow::FxMap,
};

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

/// The host-name list: the service catalogue (built in, with an operator's file applied)
/// plus hosts added at run time (the policy file's). Cloning is cheap until one of the
/// clones is changed.
#[derive(Debug, Clone)]
pub struct HostList {
    table: Arc<Table>,
}

/// Video hosts by name: a host is looked up whole among the exact names, then each of its
/// label-boundary suffixes, longest first, among the suffixes. A few hash lookups per
/// name, whatever the catalogue's size.
#[derive(Debug, Clone, Default)]
struct Table {
    exact: FxMap<String, Arc<str>>,
    suffix: FxMap<String, Arc<str>>,
}

impl Table {
    /// Adds a normalized entry (`=host` or a suffix); a later entry replaces an earlier one.
    fn insert(&mut self, entry: &str, service: Arc<str>) {
        match entry.strip_prefix('=') {
            Some(host) => self.exact.insert(host.to_owned(), service),
            None => self.suffix.insert(entry.to_owned(), service),
        };
    }

    fn from_catalogue(c: &Catalogue) -> Table {
        let mut t = Table::default();
        for s in &c.services {
            let name: Arc<str> = Arc::from(s.name.as_str());
            for d in &s.domains {
                t.insert(d, name.clone());
            }
        }
        t
    }
}

static BUILTIN: LazyLock<HostList> = LazyLock::new(|| HostList {
    table: Arc::new(Table::from_catalogue(Catalogue::builtin())),
});

impl Default for HostList {
    /// The built-in catalogue (built once, shared).
    fn default() -> Self {
        BUILTIN.clone()
    }
}

impl HostList {
    /// The built-in catalogue with an operator's `services` applied: services of the same
    /// name replaced, new ones added ([`Catalogue::merged`]).
    pub fn with_services(services: &Catalogue) -> HostList {
        HostList {
            table: Arc::new(Table::from_catalogue(
                &Catalogue::builtin().merged(services),
            )),
        }
    }

    /// The built-in catalogue with the operator's file at `path` applied; its problems
    /// (`FILE:LINE:COL: message`) if it cannot be read or is not valid.
    pub fn load_services(path: &std::path::Path) -> Result<HostList, Vec<CatalogueError>> {
        Catalogue::load(path).map(|c| HostList::with_services(&c))
    }

    /// Adds a video service host suffix (e.g. `"example-tv.net"`, `"exampletv"`); a leading
    /// `*.` or `.` is ignored, case does not matter; `=name` is one exact host name.
    pub fn add_video(&mut self, suffix: &str, service: &str) {
        let (exact, s) = match suffix.strip_prefix('=') {
            Some(h) => (true, h),
            None => (
                false,
                suffix.trim_start_matches("*.").trim_start_matches('.'),
            ),
        };
        let s = s.trim_end_matches('.').to_ascii_lowercase();
        if s.is_empty() {
            return;
        }
        let entry = if exact { format!("={s}") } else { s };
        Arc::make_mut(&mut self.table).insert(&entry, Arc::from(service.to_ascii_lowercase()));
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
        self.video(host).map(|n| HostMatch::Video(n.to_owned()))
    }

    /// The service of a lowercase host name: its exact entry, else its longest listed
    /// suffix on a label boundary.
    fn video(&self, host: &str) -> Option<&str> {
        if host.is_empty() {
            return None;
        }
        if let Some(n) = self.table.exact.get(host) {
            return Some(n);
        }
        let mut rest = host;
        loop {
            if let Some(n) = self.table.suffix.get(rest) {
                return Some(n);
            }
            rest = rest.split_once('.')?.1;
        }
    }
}

/// A host list shared between threads and replaced whole (the daemon's reload of the
/// service file): readers poll [`SharedHosts::newer`], which costs one atomic load when
/// nothing changed.
#[derive(Debug, Default)]
pub struct SharedHosts {
    version: AtomicU64,
    current: Mutex<Option<HostList>>,
}

impl SharedHosts {
    /// Puts `hosts` in place of the list readers have.
    pub fn replace(&self, hosts: HostList) {
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Some(hosts);
        self.version.fetch_add(1, Ordering::Release);
    }

    /// The list, if it was replaced since the version in `seen` (which is brought up to
    /// date).
    pub fn newer(&self, seen: &mut u64) -> Option<HostList> {
        let v = self.version.load(Ordering::Acquire);
        if v == *seen {
            return None;
        }
        *seen = v;
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// `host` is `suffix` or ends with `.suffix`.
fn suffix_match(host: &str, suffix: &str) -> bool {
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

    fn video(name: &str) -> Option<HostMatch> {
        Some(HostMatch::Video(name.into()))
    }

    /// The services and domains of the list the catalogue replaced (the former `VIDEO`
    /// const): each still matches, under the same name, so reports and golden files keep
    /// their labels.
    #[test]
    fn former_built_in_hosts_keep_their_services() {
        let h = HostList::default();
        for (host, service) in [
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
            ("itunes.apple.com", "appletv"),
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
        ] {
            assert_eq!(h.lookup(host), video(service), "{host}");
        }
    }

    #[test]
    fn catalogue_entries_match_on_label_boundaries() {
        let h = HostList::default();
        assert_eq!(
            h.lookup("upos-sz-mirrorcos.bilivideo.com"),
            video("bilibili")
        );
        assert_eq!(h.lookup("www.bilibili.com"), video("bilibili"));
        assert_eq!(h.lookup("notbilibili.com"), None);
        assert_eq!(h.lookup("bilibili.com.example"), None);
        assert_eq!(h.lookup("ds-vod-abematv.akamaized.net"), video("abematv"));
        assert_eq!(h.lookup("other.akamaized.net"), None, "a shared CDN");
        assert_eq!(h.lookup("chzzk.naver.com"), video("chzzk"));
        assert_eq!(h.lookup("api.chzzk.naver.com"), video("chzzk"));
        assert_eq!(h.lookup("www.naver.com"), None, "Naver's portal");
        assert_eq!(h.lookup("tv.nrk.no"), video("nrk"));
        assert_eq!(h.lookup("www.nrk.no"), None, "NRK's news");
        assert_eq!(h.lookup("v16-webapp.tiktok.com"), video("tiktok"));
        assert_eq!(h.lookup("www.viaplay.se:443"), video("viaplay"));
        assert_eq!(h.lookup("wetv.qq.com"), video("tencentvideo"));
        assert_eq!(h.lookup("mail.qq.com"), None);
        assert_eq!(h.lookup("hsprepack.akamaized.net"), video("hotstar"));
        assert_eq!(h.lookup("globoplay.globo.com"), video("globoplay"));
        assert_eq!(h.lookup("g1.globo.com"), None, "Globo's news");
        assert_eq!(h.lookup("."), None);
        assert_eq!(h.lookup("co.uk"), None);
    }

    #[test]
    fn an_operator_catalogue_overrides_and_adds() {
        let ops = Catalogue::parse(
            "services:\n  - name: youtube\n    domains: [youtube.com]\n  - name: exampletv\n    domains: [example-tv.net, \"=live.example.org\", nflxvideo.net]\n",
            "ops.yaml",
        )
        .unwrap_or_else(|e| panic!("{}", e[0]));
        let h = HostList::with_services(&ops);
        assert_eq!(h.lookup("m.youtube.com"), video("youtube"));
        assert_eq!(
            h.lookup("rr1.googlevideo.com"),
            None,
            "youtube replaced whole"
        );
        assert_eq!(h.lookup("cdn.example-tv.net"), video("exampletv"));
        assert_eq!(h.lookup("live.example.org"), video("exampletv"));
        assert_eq!(h.lookup("x.live.example.org"), None, "an exact entry");
        assert_eq!(
            h.lookup("ipv4-c1.nflxvideo.net"),
            video("exampletv"),
            "the operator's wins"
        );
        assert_eq!(h.lookup("www.netflix.com"), video("netflix"));
        assert_eq!(HostList::default().lookup("cdn.example-tv.net"), None);
    }

    #[test]
    fn shared_hosts_hand_out_replacements_once() {
        let shared = SharedHosts::default();
        let mut seen = 0;
        assert!(shared.newer(&mut seen).is_none());
        let mut h = HostList::default();
        h.add_video("example-tv.net", "exampletv");
        shared.replace(h);
        let got = shared
            .newer(&mut seen)
            .map(|h| h.lookup("a.example-tv.net"));
        assert_eq!(got, Some(video("exampletv")));
        assert!(shared.newer(&mut seen).is_none());
    }

    #[test]
    fn services_files_load_or_say_where_they_are_wrong() {
        let dir = std::env::temp_dir().join(format!("pw-services-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let good = dir.join("good.yaml");
        let bad = dir.join("bad.yaml");
        let write =
            |p: &std::path::Path, t: &str| std::fs::write(p, t).unwrap_or_else(|e| panic!("{e}"));
        write(
            &good,
            "services:\n  - name: exampletv\n    domains: [example-tv.net]\n",
        );
        write(
            &bad,
            "services:\n  - name: exampletv\n    domains: [example-tv.net, google.com, x]\n",
        );
        let h = HostList::load_services(&good).unwrap_or_else(|e| panic!("{}", e[0]));
        assert_eq!(h.lookup("a.example-tv.net"), video("exampletv"));
        assert_eq!(h.lookup("www.netflix.com"), video("netflix"));
        let Err(e) = HostList::load_services(&bad) else {
            panic!("a bad file was accepted");
        };
        let line = crate::catalogue::summary(&e);
        let origin = bad.display().to_string();
        assert!(
            line.starts_with(&format!("{origin}:3:31: `google.com` is shared")),
            "{line}"
        );
        assert!(
            line.ends_with("(and 1 more; run peerwarden config check)"),
            "{line}"
        );
        std::fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    }
}
