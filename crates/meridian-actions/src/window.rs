//! Local days and windows: every bucket is one day in the app's time zone; a window is
//! an inclusive range of such days, answered by combining buckets.

use chrono::{Datelike, NaiveDate, TimeZone};
use chrono_tz::Tz;
use std::fmt;

/// A local day: days since 1970-01-01 in the app's time zone.
pub type Day = i32;

/// The local day of `ms` (milliseconds since the epoch) in `tz`.
pub fn local_day(tz: Tz, ms: i64) -> Day {
    let date = tz.timestamp_millis_opt(ms).single().map(|t| t.date_naive()).unwrap_or_else(|| {
        // Out of chrono's range: clamp to the epoch's neighbourhood (such events are
        // refused at ingestion; this only keeps arithmetic total).
        chrono::DateTime::from_timestamp_millis(ms).map(|t| t.date_naive()).unwrap_or_default()
    });
    date_to_day(date)
}

/// Local days of many instants, memoised per zone and quarter hour (time-zone rules
/// change offsets only on quarter hours): a processor asks several times per event.
#[derive(Debug, Default)]
pub struct Days {
    offsets: rustc_hash::FxHashMap<(Tz, i64), i64>,
    starts: rustc_hash::FxHashMap<(Tz, Day), i64>,
}

impl Days {
    /// The local day of `ms` in `tz` (same as [`local_day`]).
    pub fn local_day(&mut self, tz: Tz, ms: i64) -> Day {
        const QUARTER: i64 = 900_000;
        let slot = ms.div_euclid(QUARTER);
        if self.offsets.len() > 100_000 {
            self.offsets.clear();
        }
        let offset = *self.offsets.entry((tz, slot)).or_insert_with(|| {
            use chrono::Offset;
            tz.timestamp_millis_opt(slot * QUARTER).single().map_or(0, |t| i64::from(t.offset().fix().local_minus_utc()) * 1000)
        });
        (ms + offset).div_euclid(86_400_000) as Day
    }

    /// When local `day` starts in `tz` (same as [`day_start_ms`]).
    pub fn day_start_ms(&mut self, tz: Tz, day: Day) -> i64 {
        if self.starts.len() > 100_000 {
            self.starts.clear();
        }
        *self.starts.entry((tz, day)).or_insert_with(|| day_start_ms(tz, day))
    }
}

/// The day number of a date.
pub fn date_to_day(date: NaiveDate) -> Day {
    (date - epoch()).num_days() as Day
}

/// The date of a day number.
pub fn day_to_date(day: Day) -> NaiveDate {
    epoch() + chrono::Duration::days(i64::from(day))
}

fn epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default()
}

/// When local `day` starts in `tz`, ms since the epoch (the first valid instant of the
/// day where a daylight-saving change skips midnight).
pub fn day_start_ms(tz: Tz, day: Day) -> i64 {
    let date = day_to_date(day);
    for minute in (0..24 * 60).step_by(15) {
        let local = date.and_hms_opt(minute / 60, minute % 60, 0).unwrap_or_default();
        if let Some(t) = tz.from_local_datetime(&local).earliest() {
            return t.timestamp_millis();
        }
    }
    i64::from(day) * 86_400_000
}

/// A window of local days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Window {
    /// Today.
    Today,
    /// The last N days, today included.
    Days(u32),
    /// This calendar month up to today.
    Month,
    /// A calendar month.
    CalendarMonth(i32, u32),
    /// A custom inclusive range of days.
    Range(Day, Day),
    /// Everything kept (the retention).
    All,
}

/// Why a window is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    /// Not a window.
    #[error("{0:?} is not a window; use today, 7d, 30d, month, all, YYYY-MM or YYYY-MM-DD..YYYY-MM-DD")]
    Invalid(String),
    /// Reaches further back than buckets are kept.
    #[error("window {window} reaches {days} days back, beyond the {limit} days kept (actions.retention_days)")]
    BeyondRetention {
        /// The window as given.
        window: String,
        /// How many days back it reaches.
        days: i64,
        /// The retention.
        limit: u32,
    },
}

impl Window {
    /// Parses `today`, `Nd`, `month`, `all`, `YYYY-MM` or `YYYY-MM-DD..YYYY-MM-DD`.
    pub fn parse(text: &str) -> Result<Window, WindowError> {
        let invalid = || WindowError::Invalid(text.to_owned());
        Ok(match text {
            "today" => Window::Today,
            "month" => Window::Month,
            "all" => Window::All,
            _ => {
                if let Some(n) = text.strip_suffix('d') {
                    let n: u32 = n.parse().map_err(|_| invalid())?;
                    if n == 0 {
                        return Err(invalid());
                    }
                    Window::Days(n)
                } else if let Some((from, to)) = text.split_once("..") {
                    let from = NaiveDate::parse_from_str(from, "%Y-%m-%d").map_err(|_| invalid())?;
                    let to = NaiveDate::parse_from_str(to, "%Y-%m-%d").map_err(|_| invalid())?;
                    if to < from {
                        return Err(invalid());
                    }
                    Window::Range(date_to_day(from), date_to_day(to))
                } else {
                    let date = NaiveDate::parse_from_str(&format!("{text}-01"), "%Y-%m-%d").map_err(|_| invalid())?;
                    Window::CalendarMonth(date.year(), date.month())
                }
            }
        })
    }

    /// The inclusive days it covers, as of local day `today`.
    pub fn days(self, today: Day, retention_days: u32) -> (Day, Day) {
        match self {
            Window::Today => (today, today),
            Window::Days(n) => (today - (n as Day - 1), today),
            Window::Month => {
                let date = day_to_date(today);
                (date_to_day(date.with_day(1).unwrap_or(date)), today)
            }
            Window::CalendarMonth(year, month) => {
                let first = NaiveDate::from_ymd_opt(year, month, 1).unwrap_or_default();
                let next = if month == 12 { NaiveDate::from_ymd_opt(year + 1, 1, 1) } else { NaiveDate::from_ymd_opt(year, month + 1, 1) }.unwrap_or(first);
                (date_to_day(first), date_to_day(next) - 1)
            }
            Window::Range(from, to) => (from, to),
            Window::All => (today - (retention_days as Day - 1), today),
        }
    }

    /// Refuses a window that starts before the oldest kept day (as of `today`).
    pub fn check(self, today: Day, retention_days: u32) -> Result<(Day, Day), WindowError> {
        let (from, to) = self.days(today, retention_days);
        let back = i64::from(today) - i64::from(from) + 1;
        if back > i64::from(retention_days) {
            return Err(WindowError::BeyondRetention { window: self.to_string(), days: back, limit: retention_days });
        }
        Ok((from, to))
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Window::Today => f.write_str("today"),
            Window::Days(n) => write!(f, "{n}d"),
            Window::Month => f.write_str("month"),
            Window::CalendarMonth(y, m) => write!(f, "{y:04}-{m:02}"),
            Window::Range(a, b) => write!(f, "{}..{}", day_to_date(*a), day_to_date(*b)),
            Window::All => f.write_str("all"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(text).unwrap().timestamp_millis()
    }

    #[test]
    fn local_days_follow_the_zone_east_and_west_of_utc() {
        let shanghai: Tz = "Asia/Shanghai".parse().unwrap();
        let new_york: Tz = "America/New_York".parse().unwrap();
        // 2026-03-01 17:30 UTC: already the 2nd in Shanghai (UTC+8), still the 1st in New York (UTC-5).
        let t = ms("2026-03-01T17:30:00Z");
        let first = date_to_day(NaiveDate::from_ymd_opt(2026, 3, 1).unwrap());
        assert_eq!(local_day(chrono_tz::UTC, t), first);
        assert_eq!(local_day(shanghai, t), first + 1);
        assert_eq!(local_day(new_york, t), first);
        // 03:30 UTC on the 2nd is 22:30 on the 1st in New York.
        assert_eq!(local_day(new_york, ms("2026-03-02T03:30:00Z")), first);
        assert_eq!(local_day(new_york, ms("2026-03-02T05:00:00Z")), first + 1);
        // Shanghai's day starts at 16:00 UTC the day before.
        assert_eq!(day_start_ms(shanghai, first + 1), ms("2026-03-01T16:00:00Z"));
        assert_eq!(local_day(shanghai, ms("2026-03-01T15:59:59.999Z")), first);
    }

    #[test]
    fn daylight_saving_days_are_23_and_25_hours_long() {
        let new_york: Tz = "America/New_York".parse().unwrap();
        let spring = date_to_day(NaiveDate::from_ymd_opt(2026, 3, 8).unwrap());
        let autumn = date_to_day(NaiveDate::from_ymd_opt(2026, 11, 1).unwrap());
        assert_eq!(day_start_ms(new_york, spring + 1) - day_start_ms(new_york, spring), 23 * 3_600_000);
        assert_eq!(day_start_ms(new_york, autumn + 1) - day_start_ms(new_york, autumn), 25 * 3_600_000);
        // 23:30 local on the autumn day (04:30 UTC next day) still belongs to it.
        assert_eq!(local_day(new_york, ms("2026-11-02T04:30:00Z")), autumn);
        // A zone whose midnight does not exist on the change day (Santiago, clocks go 00:00 → 01:00).
        let santiago: Tz = "America/Santiago".parse().unwrap();
        let change = date_to_day(NaiveDate::from_ymd_opt(2026, 9, 6).unwrap());
        let start = day_start_ms(santiago, change);
        assert_eq!(local_day(santiago, start), change);
        assert_eq!(local_day(santiago, start - 1), change - 1);
    }

    #[test]
    fn memoised_days_equal_local_days_across_zones_and_changes() {
        let mut days = Days::default();
        let zones: [Tz; 5] = [chrono_tz::UTC, chrono_tz::Asia::Shanghai, chrono_tz::America::New_York, chrono_tz::America::Santiago, chrono_tz::Australia::Lord_Howe];
        let start = ms("2026-01-01T00:00:00Z");
        // Every 7 minutes 13 seconds through a year, twice (the second pass hits the memo).
        for _ in 0..2 {
            let mut t = start;
            while t < start + 366 * 86_400_000 {
                for tz in zones {
                    assert_eq!(days.local_day(tz, t), local_day(tz, t), "{tz} at {t}");
                }
                t += 433_000;
            }
        }
    }

    #[test]
    fn windows_parse_and_cover_the_right_days() {
        let today = date_to_day(NaiveDate::from_ymd_opt(2026, 2, 10).unwrap());
        assert_eq!(Window::parse("today").unwrap().days(today, 90), (today, today));
        assert_eq!(Window::parse("7d").unwrap().days(today, 90), (today - 6, today));
        assert_eq!(Window::parse("month").unwrap().days(today, 90), (today - 9, today));
        let (a, b) = Window::parse("2026-01").unwrap().days(today, 90);
        assert_eq!((day_to_date(a).to_string(), day_to_date(b).to_string()), ("2026-01-01".into(), "2026-01-31".into()));
        let (a, b) = Window::parse("2025-12").unwrap().days(today, 90);
        assert_eq!(b - a + 1, 31);
        assert_eq!(Window::parse("2026-02-01..2026-02-03").unwrap().days(today, 90), (today - 9, today - 7));
        assert_eq!(Window::parse("all").unwrap().days(today, 90), (today - 89, today));
        for bad in ["", "0d", "-3d", "week", "2026-13", "2026-02-05..2026-02-01", "7 d"] {
            assert!(matches!(Window::parse(bad), Err(WindowError::Invalid(_))), "{bad}");
        }
        let err = Window::parse("91d").unwrap().check(today, 90).unwrap_err();
        assert_eq!(err.to_string(), "window 91d reaches 91 days back, beyond the 90 days kept (actions.retention_days)");
        assert!(Window::parse("90d").unwrap().check(today, 90).is_ok());
        assert!(Window::parse("2025-10").unwrap().check(today, 90).is_err());
    }
}
