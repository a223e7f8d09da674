//! The video service catalogue: which host names make a flow `video.<service>`.
//!
//! The built-in catalogue is `data/services.yaml`, compiled in and read once. Operators add
//! services, or override built-in ones by name, in a file of the same format (the daemon's
//! `services:` key):
//!
//! ```
//! use peerwarden_classifier::catalogue::Catalogue;
//! let extra = Catalogue::parse(
//!     "services:\n  - name: exampletv\n    source: our CDN contract\n    domains: [example-tv.net, \"=live.example.org\"]\n",
//!     "services.yaml",
//! )
//! .unwrap();
//! assert_eq!(extra.services[0].domains, ["example-tv.net", "=live.example.org"]);
//! assert!(Catalogue::builtin().services.len() >= 150);
//! ```
//!
//! Every problem is reported as `FILE:LINE:COL: message`, like the policy's.

use std::{collections::HashMap, fmt, path::Path, sync::LazyLock};

use serde::Deserialize;
use serde_saphyr::{DefaultMessageFormatter, Location, MessageFormatter as _, Spanned};

/// The built-in catalogue's text.
const BUILTIN: &str = include_str!("../data/services.yaml");

/// The longest service name accepted: it is printed in reports and flow records.
const MAX_NAME: usize = 40;

/// Operators' files are small; a larger one is refused before parsing.
const MAX_FILE_BYTES: usize = 4 << 20;

/// Domains shared by many services or by ordinary web traffic: listing one of them as a
/// suffix would turn a bystander's web page into video. A service's own host under one
/// of them may be named exactly (`=name`) or by a longer suffix of its own.
pub const SHARED_INFRASTRUCTURE: &[&str] = &[
    "google.com",
    "googleapis.com",
    "gstatic.com",
    "ggpht.com",
    "googleusercontent.com",
    "akamaihd.net",
    "akamaized.net",
    "akamai.net",
    "edgesuite.net",
    "edgekey.net",
    "cloudfront.net",
    "amazonaws.com",
    "amazon.com",
    "apple.com",
    "icloud.com",
    "microsoft.com",
    "azureedge.net",
    "fastly.net",
    "fastlylb.net",
    "llnwd.net",
    "llnwi.net",
    "footprint.net",
    "cloudflare.com",
    "cloudflare.net",
    "facebook.com",
    "fbcdn.net",
    "qq.com",
    "baidu.com",
    "naver.com",
    "kakao.com",
    "globo.com",
    "sohu.com",
];

/// Registry suffixes under which anyone registers a name: a suffix entry equal to one
/// would match every site under it. Not the whole public suffix list: the common
/// second-level ones; any single label (`com`, `tv`) is refused as well.
const REGISTRY_SUFFIXES: &[&str] = &[
    "co.uk", "org.uk", "me.uk", "ac.uk", "gov.uk", "com.au", "net.au", "org.au", "co.nz", "net.nz",
    "co.jp", "ne.jp", "or.jp", "co.kr", "or.kr", "com.cn", "net.cn", "org.cn", "com.hk", "com.tw",
    "com.br", "com.ar", "com.mx", "co.in", "net.in", "co.id", "com.sg", "com.my", "com.tr",
    "co.za", "com.vn", "co.th", "com.ph", "com.pk", "com.bd",
];

/// One service: its label name, where it sits in the docs' list, where its facts come
/// from, and its domains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// The label's suffix: `video.<name>`.
    pub name: String,
    /// The docs' grouping (region or kind), if given.
    pub family: Option<String>,
    /// Where the domain names come from, if given.
    pub source: Option<String>,
    /// Lowercase suffixes matched on label boundaries; `=host` for one exact host name.
    pub domains: Vec<String>,
}

/// A list of services, as read from one file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalogue {
    /// In file order.
    pub services: Vec<Service>,
}

/// One problem in a catalogue file, displayed `FILE:LINE:COL: message` (1-based line and
/// column; `FILE: message` when it has no place, as when the file cannot be read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogueError {
    /// The file (or other origin).
    pub origin: String,
    /// 1-based line, 0 when unknown.
    pub line: u32,
    /// 1-based column, 0 when unknown.
    pub column: u32,
    /// What is wrong, on one line.
    pub message: String,
}

impl fmt::Display for CatalogueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.origin, self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.origin, self.line, self.column, self.message
            )
        }
    }
}

impl std::error::Error for CatalogueError {}

impl CatalogueError {
    fn at(origin: &str, loc: Location, message: String) -> CatalogueError {
        let n = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        CatalogueError {
            origin: origin.to_owned(),
            line: n(loc.line()),
            column: n(loc.column()),
            message,
        }
    }

    fn whole(origin: &str, message: String) -> CatalogueError {
        CatalogueError {
            origin: origin.to_owned(),
            line: 0,
            column: 0,
            message,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    services: Vec<EntryDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryDoc {
    name: Spanned<String>,
    #[serde(default)]
    family: Option<String>,
    #[serde(default)]
    source: Option<String>,
    domains: Vec<Spanned<String>>,
}

static BUILTIN_CATALOGUE: LazyLock<Catalogue> = LazyLock::new(|| {
    // The file is part of the source, checked by the tests (`builtin_catalogue_is_sound`):
    // a broken one fails them, never a running daemon.
    Catalogue::parse(BUILTIN, "classifier/data/services.yaml")
        .expect("the built-in service catalogue is valid")
});

impl Catalogue {
    /// The compiled-in catalogue (read once).
    pub fn builtin() -> &'static Catalogue {
        &BUILTIN_CATALOGUE
    }

    /// Reads and validates a catalogue file; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Catalogue, Vec<CatalogueError>> {
        if text.len() > MAX_FILE_BYTES {
            return Err(vec![CatalogueError::whole(
                origin,
                format!(
                    "the file is {} bytes; a service catalogue may have at most {MAX_FILE_BYTES}",
                    text.len()
                ),
            )]);
        }
        let doc: FileDoc = serde_saphyr::from_str(text).map_err(|e| {
            let e = e.without_snippet();
            let mut inner = e;
            while let serde_saphyr::Error::AliasError { error, .. } = inner {
                inner = error;
            }
            let message = match inner {
                serde_saphyr::Error::SerdeUnknownField {
                    field, expected, ..
                } => format!("unknown key `{field}` (keys here: {})", expected.join(", ")),
                other => DefaultMessageFormatter.format_message(other).into_owned(),
            };
            // One line, as every problem is printed.
            let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
            vec![match e.location() {
                Some(loc) => CatalogueError::at(origin, loc, message),
                None => CatalogueError::whole(origin, message),
            }]
        })?;
        validate(doc, origin)
    }

    /// Reads a catalogue file from disk.
    pub fn load(path: &Path) -> Result<Catalogue, Vec<CatalogueError>> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            vec![CatalogueError::whole(
                &origin,
                format!("cannot read the service catalogue: {e}"),
            )]
        })?;
        Catalogue::parse(&text, &origin)
    }

    /// The services of `self` with `overlay`'s applied: a service of the same name is
    /// replaced whole (an empty `domains` list removes it), a new one is added.
    pub fn merged(&self, overlay: &Catalogue) -> Catalogue {
        let mut services: Vec<Service> = self
            .services
            .iter()
            .filter(|s| !overlay.services.iter().any(|o| o.name == s.name))
            .cloned()
            .collect();
        services.extend(
            (overlay.services.iter())
                .filter(|o| !o.domains.is_empty())
                .cloned(),
        );
        Catalogue { services }
    }
}

/// One line for a refused file: its first problem and how many more (the daemon's log; the
/// whole list is `peerwarden config check`'s).
pub fn summary(errors: &[CatalogueError]) -> String {
    let first = errors.first().map(ToString::to_string).unwrap_or_default();
    match errors.len() {
        0 | 1 => first,
        n => format!("{first} (and {} more; run peerwarden config check)", n - 1),
    }
}

/// Checks names and domains; every problem is reported, in file order.
fn validate(doc: FileDoc, origin: &str) -> Result<Catalogue, Vec<CatalogueError>> {
    let mut errors = Vec::new();
    let mut names: HashMap<String, u64> = HashMap::new();
    let mut domains: HashMap<String, (String, u64)> = HashMap::new();
    let mut services = Vec::with_capacity(doc.services.len());
    for entry in doc.services {
        let name = entry.name.value.trim().to_owned();
        let at = entry.name.referenced;
        if let Err(why) = check_name(&name) {
            errors.push(CatalogueError::at(origin, at, why));
        } else if let Some(first) = names.insert(name.clone(), at.line()) {
            errors.push(CatalogueError::at(
                origin,
                at,
                format!("service `{name}` is already listed at line {first}; merge the two"),
            ));
        }
        let mut own = Vec::with_capacity(entry.domains.len());
        for d in entry.domains {
            let loc = d.referenced;
            match normalize(&d.value) {
                Err(why) => errors.push(CatalogueError::at(origin, loc, why)),
                Ok(domain) => match domains.get(&domain) {
                    Some((other, line)) => errors.push(CatalogueError::at(
                        origin,
                        loc,
                        format!(
                            "`{domain}` is already listed for `{other}` at line {line}; a domain belongs to one service"
                        ),
                    )),
                    None => {
                        domains.insert(domain.clone(), (name.clone(), loc.line()));
                        own.push(domain);
                    }
                },
            }
        }
        services.push(Service {
            name,
            family: entry.family,
            source: entry.source,
            domains: own,
        });
    }
    if errors.is_empty() {
        Ok(Catalogue { services })
    } else {
        Err(errors)
    }
}

/// A service name is a label's suffix: lowercase ASCII letters, digits, `_` and `-`.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(format!(
            "service name `{name}` must have 1 to {MAX_NAME} characters"
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        return Err(format!(
            "service name `{name}` may hold only lowercase letters, digits, `_` and `-` (it becomes the label video.{name})"
        ));
    }
    Ok(())
}

/// A domain entry as matched: lowercase, without a trailing dot or a leading `*.`; `=`
/// kept in front of an exact host name. Refuses what is not a host name, a single label,
/// a registry suffix, and shared infrastructure as a suffix.
pub fn normalize(entry: &str) -> Result<String, String> {
    let raw = entry.trim();
    let (exact, rest) = match raw.strip_prefix('=') {
        Some(r) => (true, r),
        None => (false, raw.strip_prefix("*.").unwrap_or(raw)),
    };
    let host = rest.trim_end_matches('.').to_ascii_lowercase();
    let well_formed = !host.is_empty() && peerwarden_common::host::is_name(&host);
    if !well_formed {
        return Err(format!(
            "`{raw}` is not a host name (letters, digits, `-` and `_` in dot-separated labels)"
        ));
    }
    if !host.contains('.') || REGISTRY_SUFFIXES.contains(&host.as_str()) {
        return Err(format!(
            "`{raw}` is a registry suffix: it would match every site under it; name the service's own domain"
        ));
    }
    if !exact && SHARED_INFRASTRUCTURE.contains(&host.as_str()) {
        return Err(format!(
            "`{raw}` is shared infrastructure: it would make other sites' traffic video; name the service's own host (`=host.{host}`) or a longer suffix"
        ));
    }
    Ok(if exact { format!("={host}") } else { host })
}

#[cfg(test)]
#[path = "catalogue_tests.rs"]
mod tests;
