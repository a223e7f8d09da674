//! Schedules: which days and hours a plan's stricter limits apply, in the policy's
//! timezone.
//!
//! The policy only holds wall-clock windows. Turning "now" into a weekday and a minute
//! of the day in [`crate::Policy::timezone`] is the caller's job (the daemon has the
//! system's tz database; this crate has no clock).

use std::fmt;

/// A day of the week.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Weekday {
    /// Monday.
    Mon = 0,
    /// Tuesday.
    Tue = 1,
    /// Wednesday.
    Wed = 2,
    /// Thursday.
    Thu = 3,
    /// Friday.
    Fri = 4,
    /// Saturday.
    Sat = 5,
    /// Sunday.
    Sun = 6,
}

/// Monday first, as ISO 8601 counts.
pub const WEEK: [Weekday; 7] = [
    Weekday::Mon,
    Weekday::Tue,
    Weekday::Wed,
    Weekday::Thu,
    Weekday::Fri,
    Weekday::Sat,
    Weekday::Sun,
];

impl Weekday {
    /// `mon`, `tue`, ... as written in policies.
    pub const fn name(self) -> &'static str {
        match self {
            Weekday::Mon => "mon",
            Weekday::Tue => "tue",
            Weekday::Wed => "wed",
            Weekday::Thu => "thu",
            Weekday::Fri => "fri",
            Weekday::Sat => "sat",
            Weekday::Sun => "sun",
        }
    }

    /// The day with this three-letter name, case-insensitive.
    pub fn from_name(s: &str) -> Option<Weekday> {
        WEEK.iter()
            .copied()
            .find(|d| d.name().eq_ignore_ascii_case(s.trim()))
    }

    /// The day before (Sunday before Monday).
    pub const fn prev(self) -> Weekday {
        WEEK[(self as usize + 6) % 7]
    }
}

/// A set of weekdays.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Days(u8);

impl Days {
    /// Every day.
    pub const ALL: Days = Days(0x7f);

    /// Whether `day` is in the set.
    pub const fn contains(self, day: Weekday) -> bool {
        self.0 & (1 << day as u8) != 0
    }

    /// Adds a day.
    pub fn insert(&mut self, day: Weekday) {
        self.0 |= 1 << day as u8;
    }

    /// Whether no day is in the set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Parses one entry of a `days:` list: `mon`, or a range `mon-fri`. A range may
    /// wrap over the weekend: `fri-mon` is Friday to Monday.
    pub fn parse_entry(s: &str) -> Option<Days> {
        let mut days = Days::default();
        match s.split_once('-') {
            None => days.insert(Weekday::from_name(s)?),
            Some((from, to)) => {
                let from = Weekday::from_name(from)? as usize;
                let to = Weekday::from_name(to)? as usize;
                let count = (to + 7 - from) % 7 + 1;
                for i in 0..count {
                    days.insert(WEEK[(from + i) % 7]);
                }
            }
        }
        Some(days)
    }

    /// The union of two sets.
    pub const fn union(self, other: Days) -> Days {
        Days(self.0 | other.0)
    }
}

impl fmt::Display for Days {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = WEEK
            .iter()
            .filter(|d| self.contains(**d))
            .map(|d| d.name())
            .collect();
        write!(f, "[{}]", names.join(", "))
    }
}

/// A daily window in minutes since midnight, `start` inclusive, `end` exclusive.
/// `end` may be 1440 (24:00). A window with `end < start` runs over midnight
/// (`22:00-06:00`) and belongs to the day it starts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Hours {
    start: u16,
    end: u16,
}

/// Minutes in a day.
pub const DAY_MINUTES: u16 = 24 * 60;

/// Why a `hours:` value did not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HoursError {
    /// Not `HH:MM-HH:MM`.
    Syntax,
    /// A time that does not exist (`25:00`, `18:60`) or `24:00` as a start.
    BadTime(String),
    /// Start and end are equal: the window is empty.
    Empty,
}

impl Hours {
    /// Whether a window starting on `days` is in force on `day` at `minute` (0..1440)
    /// local time: one that runs over midnight is still in force after it on the next day.
    pub fn in_force(self, days: Days, day: Weekday, minute: u16) -> bool {
        if self.crosses_midnight() {
            (days.contains(day) && minute >= self.start)
                || (days.contains(day.prev()) && minute < self.end)
        } else {
            days.contains(day) && minute >= self.start && minute < self.end
        }
    }

    /// A window from minute `start` to minute `end`; `None` if either is out of range or
    /// they are equal.
    pub fn new(start: u16, end: u16) -> Option<Hours> {
        (start < DAY_MINUTES && end <= DAY_MINUTES && start != end).then_some(Hours { start, end })
    }

    /// First minute of the window.
    pub const fn start(self) -> u16 {
        self.start
    }

    /// Minute the window ends (exclusive); may be less than `start` (over midnight).
    pub const fn end(self) -> u16 {
        self.end
    }

    /// Whether the window runs over midnight into the next day.
    pub const fn crosses_midnight(self) -> bool {
        self.end < self.start
    }

    /// Parses `18:00-23:00`. Hours may have one digit (`8:00-9:30`).
    pub fn parse(s: &str) -> Result<Hours, HoursError> {
        let (a, b) = s.trim().split_once('-').ok_or(HoursError::Syntax)?;
        let start = parse_time(a.trim())?;
        let end = parse_time(b.trim())?;
        if start == DAY_MINUTES {
            return Err(HoursError::BadTime(a.trim().to_owned()));
        }
        if start == end {
            return Err(HoursError::Empty);
        }
        Ok(Hours { start, end })
    }
}

fn parse_time(t: &str) -> Result<u16, HoursError> {
    let (h, m) = t.split_once(':').ok_or(HoursError::Syntax)?;
    let digits = |s: &str, n: std::ops::RangeInclusive<usize>| {
        n.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
    };
    if !digits(h, 1..=2) || !digits(m, 2..=2) {
        return Err(HoursError::Syntax);
    }
    let bad = || HoursError::BadTime(t.to_owned());
    let h: u16 = h.parse().map_err(|_| bad())?;
    let m: u16 = m.parse().map_err(|_| bad())?;
    if m > 59 || h > 24 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

impl fmt::Display for Hours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start / 60,
            self.start % 60,
            self.end / 60,
            self.end % 60
        )
    }
}

/// Whether `name` looks like a timezone the tz database could hold: `UTC`, or an IANA
/// `Area/Location` name such as `Europe/Berlin` or `America/Argentina/Buenos_Aires`.
///
/// A shape check, not a lookup: the crate carries no tz database (chrono-tz would add
/// one to every build for a single check). The daemon resolves the name at start.
pub fn is_timezone_name(name: &str) -> bool {
    const AREAS: &[&str] = &[
        "Africa",
        "America",
        "Antarctica",
        "Arctic",
        "Asia",
        "Atlantic",
        "Australia",
        "Europe",
        "Indian",
        "Pacific",
        "Etc",
    ];
    if name == "UTC" {
        return true;
    }
    let mut parts = name.split('/');
    let area_ok = parts.next().is_some_and(|a| AREAS.contains(&a));
    let rest: Vec<&str> = parts.collect();
    area_ok
        && !rest.is_empty()
        && rest.len() <= 2
        && rest.iter().all(|p| {
            p.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-+".contains(c))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ScheduleEntry;

    fn days(list: &[&str]) -> Days {
        list.iter()
            .map(|s| Days::parse_entry(s).expect(s))
            .fold(Days::default(), Days::union)
    }

    #[test]
    fn day_lists_and_ranges() {
        assert_eq!(days(&["mon-fri"]).to_string(), "[mon, tue, wed, thu, fri]");
        assert_eq!(days(&["sat", "sun"]).to_string(), "[sat, sun]");
        assert_eq!(days(&["fri-mon"]).to_string(), "[mon, fri, sat, sun]");
        assert_eq!(days(&["Mon"]).to_string(), "[mon]");
        assert_eq!(days(&["mon-sun"]), Days::ALL);
        assert_eq!(Days::parse_entry("monday"), None);
        assert_eq!(Days::parse_entry("mon-"), None);
        assert_eq!(Days::parse_entry("weekend"), None);
        assert_eq!(Weekday::Mon.prev(), Weekday::Sun);
    }

    #[test]
    fn hours_parse_and_reject_impossible_times() {
        let h = Hours::parse("18:00-23:00").expect("valid");
        assert_eq!((h.start(), h.end()), (18 * 60, 23 * 60));
        assert_eq!(h.to_string(), "18:00-23:00");
        assert_eq!(Hours::parse("8:30-9:00").map(Hours::start), Ok(8 * 60 + 30));
        assert_eq!(Hours::parse("00:00-24:00").map(Hours::end), Ok(DAY_MINUTES));
        assert!(
            Hours::parse("22:00-06:00")
                .expect("valid")
                .crosses_midnight()
        );
        assert_eq!(
            Hours::parse("18:00-25:00"),
            Err(HoursError::BadTime("25:00".into()))
        );
        assert_eq!(
            Hours::parse("18:60-19:00"),
            Err(HoursError::BadTime("18:60".into()))
        );
        assert_eq!(
            Hours::parse("24:00-06:00"),
            Err(HoursError::BadTime("24:00".into()))
        );
        assert_eq!(
            Hours::parse("24:30-06:00"),
            Err(HoursError::BadTime("24:30".into()))
        );
        assert_eq!(Hours::parse("18:00-18:00"), Err(HoursError::Empty));
        assert_eq!(Hours::parse("00:00-00:00"), Err(HoursError::Empty));
        for bad in [
            "18-23",
            "18:00",
            "18:00-",
            "6pm-11pm",
            "18:0-23:00",
            "018:00-19:00",
        ] {
            assert_eq!(Hours::parse(bad), Err(HoursError::Syntax), "{bad}");
        }
    }

    #[test]
    fn windows_apply_on_their_days_and_over_midnight() {
        let entry = |d: &[&str], h: &str| ScheduleEntry {
            days: days(d),
            hours: Hours::parse(h).expect(h),
            classes: Vec::new(),
        };
        let peak = entry(&["mon-fri"], "18:00-23:00");
        assert!(peak.active_at(Weekday::Mon, 18 * 60));
        assert!(peak.active_at(Weekday::Fri, 23 * 60 - 1));
        assert!(!peak.active_at(Weekday::Fri, 23 * 60));
        assert!(!peak.active_at(Weekday::Sat, 20 * 60));
        let night = entry(&["fri"], "22:00-06:00");
        assert!(night.active_at(Weekday::Fri, 23 * 60));
        assert!(night.active_at(Weekday::Sat, 5 * 60));
        assert!(!night.active_at(Weekday::Fri, 5 * 60));
        assert!(!night.active_at(Weekday::Sat, 22 * 60));
    }

    #[test]
    fn timezone_names() {
        for ok in [
            "UTC",
            "Europe/Berlin",
            "America/Argentina/Buenos_Aires",
            "Etc/GMT+2",
            "America/Port-au-Prince",
        ] {
            assert!(is_timezone_name(ok), "{ok}");
        }
        for bad in [
            "",
            "Berlin",
            "utc",
            "Europe/",
            "Europe/berlin",
            "Mars/Olympus",
            "Europe/Berlin/X/Y",
            "CET ",
        ] {
            assert!(!is_timezone_name(bad), "{bad}");
        }
    }
}
