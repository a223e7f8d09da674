//! HTTP/1.x heads, and what they say: BitTorrent trackers and webseeds, PeerCast channels,
//! HLS/DASH playlists, manifests and segments, progressive video, video services by Host.

use peerwarden_common::Label;

const METHODS: &[&[u8]] = &[
    b"GET ",
    b"POST ",
    b"HEAD ",
    b"PUT ",
    b"DELETE ",
    b"OPTIONS ",
    b"CONNECT ",
    b"PATCH ",
];

/// Whether `p` starts like an HTTP request (a method and a space).
pub fn starts_request(p: &[u8]) -> bool {
    METHODS.iter().any(|m| p.starts_with(m))
}

/// Whether `p` starts like an HTTP/1.x response.
pub fn starts_response(p: &[u8]) -> bool {
    p.starts_with(b"HTTP/1.") && p.len() >= 12 && p[8] == b' ' && p[9].is_ascii_digit()
}

/// The parts of a request head the classifier reads.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// The request target, with its query.
    pub target: &'a [u8],
    /// `Host`.
    pub host: Option<&'a [u8]>,
    /// `User-Agent`.
    pub user_agent: Option<&'a [u8]>,
    /// Any header whose name starts with `x-peercast`.
    pub peercast_header: bool,
}

/// The parts of a response head the classifier reads.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Response<'a> {
    /// `Content-Type`, without parameters.
    pub content_type: Option<&'a [u8]>,
    /// The first bytes of the body, if the head ended within the data.
    pub body: &'a [u8],
}

/// Parses a request head (as much of it as `p` holds). `None` unless the request line is an
/// HTTP/1.x one (an RTSP request line is not).
pub fn request(p: &[u8]) -> Option<Request<'_>> {
    if !starts_request(p) {
        return None;
    }
    let (line, rest) = split_line(p);
    let sp = line.iter().position(|&b| b == b' ')?;
    let after = &line[sp + 1..];
    let sp2 = after.iter().rposition(|&b| b == b' ')?;
    let (target, version) = (&after[..sp2], &after[sp2 + 1..]);
    if !version.starts_with(b"HTTP/1.") {
        return None;
    }
    let mut r = Request {
        target,
        ..Request::default()
    };
    for (name, value) in headers(rest) {
        if name.eq_ignore_ascii_case(b"host") {
            r.host = Some(value);
        } else if name.eq_ignore_ascii_case(b"user-agent") {
            r.user_agent = Some(value);
        } else if name.len() >= 10 && name[..10].eq_ignore_ascii_case(b"x-peercast") {
            r.peercast_header = true;
        }
    }
    Some(r)
}

/// Parses a response head (as much of it as `p` holds).
pub fn response(p: &[u8]) -> Option<Response<'_>> {
    if !starts_response(p) {
        return None;
    }
    let (_, rest) = split_line(p);
    let mut r = Response::default();
    for (name, value) in headers(rest) {
        if name.eq_ignore_ascii_case(b"content-type") {
            let v = value.split(|&b| b == b';').next().unwrap_or(value);
            r.content_type = Some(trim(v));
        }
    }
    if let Some(i) = find(p, b"\r\n\r\n") {
        r.body = &p[i + 4..];
    }
    Some(r)
}

fn split_line(p: &[u8]) -> (&[u8], &[u8]) {
    match p.iter().position(|&b| b == b'\n') {
        Some(i) => (trim_cr(&p[..i]), &p[i + 1..]),
        None => (p, &[]),
    }
}

fn trim_cr(l: &[u8]) -> &[u8] {
    l.strip_suffix(b"\r").unwrap_or(l)
}

fn trim(v: &[u8]) -> &[u8] {
    let s = v
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(v.len());
    let e = v
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(s, |e| e + 1);
    &v[s..e.max(s)]
}

/// The complete header lines of a head (a last line cut off by the end of data is left out).
fn headers(mut p: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    std::iter::from_fn(move || {
        let i = p.iter().position(|&b| b == b'\n')?;
        let line = trim_cr(&p[..i]);
        p = &p[i + 1..];
        if line.is_empty() {
            p = &[];
            return None;
        }
        let c = line.iter().position(|&b| b == b':')?;
        Some((trim(&line[..c]), trim(&line[c + 1..])))
    })
}

/// Position of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

fn path_of(target: &[u8]) -> &[u8] {
    let end = target
        .iter()
        .position(|&b| b == b'?' || b == b'#')
        .unwrap_or(target.len());
    &target[..end]
}

fn ends_with_ci(s: &[u8], suffix: &[u8]) -> bool {
    s.len() >= suffix.len() && s[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
}

/// BitTorrent client names as they start their User-Agent: a GET from one of them is a
/// tracker request or a webseed download (BEP 19).
const BT_AGENTS: &[&[u8]] = &[
    b"uTorrent",
    b"BitTorrent",
    b"Transmission",
    b"libtorrent",
    b"qBittorrent",
    b"Deluge",
    b"Azureus",
    b"Vuze",
    b"BitComet",
    b"rtorrent",
    b"aria2",
    b"Tixati",
    b"BiglyBT",
    b"Frostwire",
];

/// What a request says, if anything beyond "HTTP".
pub fn request_label(r: &Request<'_>) -> Option<Label> {
    let path = path_of(r.target);
    let query = &r.target[path.len()..];
    // Announce and scrape (BEP 3, BEP 48) carry the torrent's info hash in the query.
    if find(query, b"info_hash=").is_some() {
        return Some(Label::BittorrentTracker);
    }
    if let Some(ua) = r.user_agent {
        if BT_AGENTS
            .iter()
            .any(|a| ua.len() >= a.len() && ua[..a.len()].eq_ignore_ascii_case(a))
        {
            return Some(Label::BittorrentTracker);
        }
        if find(ua, b"PeerCast").is_some() && path.starts_with(b"/") {
            return Some(Label::Peercast);
        }
    }
    if r.peercast_header
        || path.starts_with(b"/channel/")
            && r.user_agent.is_some_and(|u| find(u, b"PeerCast").is_some())
    {
        return Some(Label::Peercast);
    }
    if ends_with_ci(path, b".m3u8") {
        return Some(Label::Hls);
    }
    if ends_with_ci(path, b".mpd") || ends_with_ci(path, b".m4s") {
        return Some(Label::Dash);
    }
    // MPEG-TS segments: `.ts` is also TypeScript's extension, so only under a path that
    // names streaming (`/hls/`, `seg`, `chunk`, `live`, ...); other `.ts` answers are
    // decided by their Content-Type (`video/mp2t`).
    if ends_with_ci(path, b".ts") {
        let lower = path.to_ascii_lowercase();
        if [
            &b"hls"[..],
            b"seg",
            b"chunk",
            b"frag",
            b"live",
            b"media",
            b"video",
            b"stream",
        ]
        .iter()
        .any(|w| find(&lower, w).is_some())
        {
            return Some(Label::Hls);
        }
    }
    // Progressive video files and DASH/CMAF init segments, by their extension.
    if [
        &b".mp4"[..],
        b".m4v",
        b".webm",
        b".mkv",
        b".flv",
        b".mov",
        b".3gp",
    ]
    .iter()
    .any(|e| ends_with_ci(path, e))
    {
        return Some(Label::HttpVideo);
    }
    None
}

/// What a response says, if anything beyond "HTTP".
pub fn response_label(r: &Response<'_>) -> Option<Label> {
    if let Some(ct) = r.content_type {
        let lower = |s: &[u8]| ct.eq_ignore_ascii_case(s);
        if lower(b"application/vnd.apple.mpegurl")
            || lower(b"application/x-mpegurl")
            || lower(b"audio/mpegurl")
            || lower(b"audio/x-mpegurl")
            || lower(b"video/mp2t")
        {
            return Some(Label::Hls);
        }
        if lower(b"application/dash+xml") {
            return Some(Label::Dash);
        }
        if ct.len() > 6 && ct[..6].eq_ignore_ascii_case(b"video/") {
            return Some(Label::HttpVideo);
        }
    }
    if r.body.starts_with(b"#EXTM3U") {
        return Some(Label::Hls);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trackers_and_webseeds() {
        let ann = b"GET /announce?info_hash=%aa7i&peer_id=-TR2940-x&port=51413 HTTP/1.1\r\nHost: t.example\r\nUser-Agent: Transmission/2.94\r\n\r\n";
        assert_eq!(
            request(ann).as_ref().and_then(request_label),
            Some(Label::BittorrentTracker)
        );
        let seed = b"GET /files/ubuntu.iso HTTP/1.1\r\nUser-Agent: qBittorrent/4.6\r\nRange: bytes=0-16383\r\n\r\n";
        assert_eq!(
            request(seed).as_ref().and_then(request_label),
            Some(Label::BittorrentTracker)
        );
        let plain = b"GET /announce.html HTTP/1.1\r\nUser-Agent: Mozilla/5.0\r\n\r\n";
        assert_eq!(request(plain).as_ref().and_then(request_label), None);
    }

    #[test]
    fn streaming_requests_and_responses() {
        let hls = b"GET /live/index.m3u8?token=1 HTTP/1.1\r\nHost: cdn.example\r\n\r\n";
        assert_eq!(
            request(hls).as_ref().and_then(request_label),
            Some(Label::Hls)
        );
        let ts = b"GET /hls/720p/segment00042.ts HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(
            request(ts).as_ref().and_then(request_label),
            Some(Label::Hls)
        );
        let code = b"GET /src/app/main.ts HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(
            request(code).as_ref().and_then(request_label),
            None,
            "TypeScript"
        );
        let seg = b"GET /v/V2400/206598098.m4s HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(
            request(seg).as_ref().and_then(request_label),
            Some(Label::Dash)
        );
        let r = b"HTTP/1.1 200 OK\r\nContent-Type: application/dash+xml; charset=utf-8\r\n\r\n<MPD";
        assert_eq!(
            response(r).as_ref().and_then(response_label),
            Some(Label::Dash)
        );
        let v = b"HTTP/1.1 206 Partial\r\ncontent-type: video/mp4\r\n\r\n";
        assert_eq!(
            response(v).as_ref().and_then(response_label),
            Some(Label::HttpVideo)
        );
        let m = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n#EXTM3U\n#EXT-X-VERSION:3";
        assert_eq!(
            response(m).as_ref().and_then(response_label),
            Some(Label::Hls)
        );
        let page = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<html>video/mp4</html>";
        assert_eq!(response(page).as_ref().and_then(response_label), None);
    }

    #[test]
    fn rtsp_request_line_is_not_http() {
        assert!(request(b"OPTIONS rtsp://10.2.2.2:8554/s RTSP/1.0\r\nCSeq: 1\r\n\r\n").is_none());
        let r =
            request(b"GET /a HTTP/1.1\r\nHost: x.example:8080\r\nUser-Ag").expect("partial head");
        assert_eq!((r.host, r.user_agent), (Some(&b"x.example:8080"[..]), None));
    }
}
