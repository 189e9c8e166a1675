//! Apps (tenants) with their IANA time zone, and the local day and hour boundaries other
//! capabilities compute from it.

use crate::audit::{Actor, NewAuditEntry};
use crate::{Error, Result, Tenancy};
use chrono::{LocalResult, NaiveDate, Offset, TimeZone};
use chrono_tz::Tz;
use meridian_event::AppId;
use meridian_state::WriteBatch;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Table of apps: key = app id, value = JSON [`AppRecord`].
pub const APPS_TABLE: &str = "apps";

/// Longest display name of an app, in characters.
pub const MAX_APP_NAME_CHARS: usize = 100;

/// A validated IANA time zone name (`Europe/Paris`, `UTC`…), stored as its name.
#[derive(Clone, Copy)]
pub struct TimeZoneName(Tz);

impl TimeZoneName {
    /// UTC, the default of apps created before time zones existed.
    pub const UTC: TimeZoneName = TimeZoneName(Tz::UTC);

    /// Validates an IANA zone name (exact spelling, e.g. `Asia/Shanghai`).
    pub fn new(name: &str) -> Result<TimeZoneName> {
        name.parse::<Tz>().map(TimeZoneName).map_err(|_| Error::InvalidTimeZone(name.chars().take(64).collect()))
    }

    /// The zone's name.
    pub fn as_str(&self) -> &'static str {
        self.0.name()
    }

    /// The zone, to convert times with `chrono`.
    pub fn tz(&self) -> Tz {
        self.0
    }

    /// The UTC offset in force at `ms` (ms since the epoch), in seconds east of UTC.
    pub fn offset_secs_at(&self, ms: i64) -> i32 {
        self.0.offset_from_utc_datetime(&utc_naive(ms)).fix().local_minus_utc()
    }

    /// The local calendar date at `ms`.
    pub fn local_date(&self, ms: i64) -> NaiveDate {
        utc_naive(ms).checked_add_signed(chrono::Duration::seconds(self.offset_secs_at(ms).into())).unwrap_or_else(|| utc_naive(ms)).date()
    }

    /// `[start, end)` in ms since the epoch of the local day containing `ms`. A day is
    /// 23 or 25 hours long when daylight saving time starts or ends in it; when local
    /// midnight does not exist (a DST gap at midnight) the day starts at the first local
    /// time that does.
    pub fn day_bounds_ms(&self, ms: i64) -> (i64, i64) {
        let date = self.local_date(ms);
        let start = self.day_start_ms(date);
        let end = date.succ_opt().map_or(i64::MAX, |next| self.day_start_ms(next));
        (start, end)
    }

    /// `[start, end)` in ms since the epoch of the local hour containing `ms` (for zones
    /// with a half-hour offset, such as Asia/Kolkata, local hours start at :30 UTC).
    pub fn hour_bounds_ms(&self, ms: i64) -> (i64, i64) {
        const HOUR_MS: i64 = 3_600_000;
        let offset_ms = i64::from(self.offset_secs_at(ms)) * 1000;
        let start = ms - (ms + offset_ms).rem_euclid(HOUR_MS);
        (start, start + HOUR_MS)
    }

    fn day_start_ms(&self, date: NaiveDate) -> i64 {
        let midnight = date.and_hms_opt(0, 0, 0).expect("midnight is a valid time of day");
        // Gaps are at most a few hours long; step in minutes to the first local time that
        // exists.
        for minutes in 0..=24 * 60 {
            let local = midnight + chrono::Duration::minutes(minutes);
            match self.0.from_local_datetime(&local) {
                LocalResult::Single(t) => return t.timestamp_millis(),
                LocalResult::Ambiguous(earliest, _) => return earliest.timestamp_millis(),
                LocalResult::None => continue,
            }
        }
        midnight.and_utc().timestamp_millis()
    }
}

fn utc_naive(ms: i64) -> chrono::NaiveDateTime {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default().naive_utc()
}

impl Default for TimeZoneName {
    fn default() -> Self {
        TimeZoneName::UTC
    }
}

impl PartialEq for TimeZoneName {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for TimeZoneName {}

impl fmt::Debug for TimeZoneName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TimeZoneName({:?})", self.as_str())
    }
}

impl fmt::Display for TimeZoneName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for TimeZoneName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for TimeZoneName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        TimeZoneName::new(&name).map_err(serde::de::Error::custom)
    }
}

/// A registered app. Records written before time zones existed (`{id, created_ms}`) read
/// as UTC without a name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRecord {
    /// Its id.
    pub id: AppId,
    /// Creation time, ms since the epoch.
    pub created_ms: i64,
    /// The zone its local days and hours are counted in.
    #[serde(default)]
    pub time_zone: TimeZoneName,
    /// A display name for the console.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl AppRecord {
    /// The app's time zone, to convert times with `chrono`.
    pub fn tz(&self) -> Tz {
        self.time_zone.tz()
    }
}

fn check_app_name(name: &str) -> Result<()> {
    let n_chars = name.chars().count();
    if n_chars == 0 || n_chars > MAX_APP_NAME_CHARS || name.chars().any(char::is_control) || name.trim() != name {
        return Err(Error::InvalidArgument(format!(
            "an app name is 1-{MAX_APP_NAME_CHARS} printable characters without leading or trailing spaces"
        )));
    }
    Ok(())
}

impl Tenancy {
    /// Creates an app in `time_zone` (an IANA name; UTC when `None`).
    pub fn create_app(&self, actor: &Actor, id: &AppId, time_zone: Option<&str>) -> Result<AppRecord> {
        let time_zone = time_zone.map(TimeZoneName::new).transpose()?.unwrap_or_default();
        let _writes = self.writes.lock();
        if self.app_exists(id) {
            return Err(Error::AppExists(id.to_string()));
        }
        let record = AppRecord { id: id.clone(), created_ms: self.clock.now_ms(), time_zone, name: None };
        let mut batch = WriteBatch::new();
        batch.put(APPS_TABLE, id.as_str().as_bytes().to_vec(), crate::to_json(&record));
        self.audit.record_in(
            batch,
            NewAuditEntry::new(actor.clone(), "app.create", id.as_str()).app(id.clone()).after(crate::to_json_value(&record)),
        )?;
        self.apps.write().insert(id.clone(), record.clone());
        Ok(record)
    }

    /// Moves an app to another time zone.
    pub fn update_app(&self, actor: &Actor, id: &AppId, time_zone: &str) -> Result<AppRecord> {
        let time_zone = TimeZoneName::new(time_zone)?;
        self.change_app(actor, id, "app.update", |record| record.time_zone = time_zone)
    }

    /// Sets (or with `None` removes) an app's display name.
    pub fn set_app_name(&self, actor: &Actor, id: &AppId, name: Option<&str>) -> Result<AppRecord> {
        if let Some(name) = name {
            check_app_name(name)?;
        }
        self.change_app(actor, id, "app.rename", |record| record.name = name.map(str::to_owned))
    }

    fn change_app(&self, actor: &Actor, id: &AppId, action: &str, change: impl FnOnce(&mut AppRecord)) -> Result<AppRecord> {
        let _writes = self.writes.lock();
        let before = self.app(id).ok_or_else(|| Error::UnknownApp(id.to_string()))?;
        let mut after = before.clone();
        change(&mut after);
        let mut batch = WriteBatch::new();
        batch.put(APPS_TABLE, id.as_str().as_bytes().to_vec(), crate::to_json(&after));
        self.audit.record_in(
            batch,
            NewAuditEntry::new(actor.clone(), action, id.as_str())
                .app(id.clone())
                .before(crate::to_json_value(&before))
                .after(crate::to_json_value(&after)),
        )?;
        self.apps.write().insert(id.clone(), after.clone());
        Ok(after)
    }

    /// All apps, by id.
    pub fn apps(&self) -> Vec<AppRecord> {
        self.apps.read().values().cloned().collect()
    }

    /// One app.
    pub fn app(&self, id: &AppId) -> Option<AppRecord> {
        self.apps.read().get(id).cloned()
    }

    /// Whether `id` exists.
    pub fn app_exists(&self, id: &AppId) -> bool {
        self.apps.read().contains_key(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(rfc3339: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(rfc3339).unwrap().timestamp_millis()
    }

    #[test]
    fn zone_names_are_validated_and_keep_their_spelling() {
        assert_eq!(TimeZoneName::new("Europe/Paris").unwrap().as_str(), "Europe/Paris");
        assert_eq!(TimeZoneName::default().as_str(), "UTC");
        match TimeZoneName::new("Mars/Olympus_Mons") {
            Err(Error::InvalidTimeZone(name)) => assert_eq!(name, "Mars/Olympus_Mons"),
            other => panic!("expected InvalidTimeZone, got {other:?}"),
        }
        let json = serde_json::to_string(&TimeZoneName::new("Asia/Shanghai").unwrap()).unwrap();
        assert_eq!(json, "\"Asia/Shanghai\"");
        assert!(serde_json::from_str::<TimeZoneName>("\"Nowhere/City\"").is_err());
    }

    #[test]
    fn local_days_follow_the_zone_including_daylight_saving_days() {
        let paris = TimeZoneName::new("Europe/Paris").unwrap();
        // A winter day: UTC+1.
        let (start, end) = paris.day_bounds_ms(ms("2025-01-15T12:00:00Z"));
        assert_eq!((start, end), (ms("2025-01-14T23:00:00Z"), ms("2025-01-15T23:00:00Z")));
        // 30 March 2025: clocks go from 02:00 to 03:00, the day has 23 hours.
        let (start, end) = paris.day_bounds_ms(ms("2025-03-30T12:00:00Z"));
        assert_eq!(start, ms("2025-03-29T23:00:00Z"));
        assert_eq!(end - start, 23 * 3_600_000);
        // 26 October 2025: 25 hours.
        let (start, end) = paris.day_bounds_ms(ms("2025-10-26T12:00:00Z"));
        assert_eq!(start, ms("2025-10-25T22:00:00Z"));
        assert_eq!(end - start, 25 * 3_600_000);
        // 23:30 UTC on the 15th is already the 16th in Shanghai (UTC+8).
        let shanghai = TimeZoneName::new("Asia/Shanghai").unwrap();
        assert_eq!(shanghai.local_date(ms("2025-01-15T23:30:00Z")), NaiveDate::from_ymd_opt(2025, 1, 16).unwrap());
        assert_eq!(shanghai.day_bounds_ms(ms("2025-01-15T23:30:00Z")).0, ms("2025-01-15T16:00:00Z"));
        assert_eq!(TimeZoneName::UTC.day_bounds_ms(ms("2025-01-15T23:30:00Z")), (ms("2025-01-15T00:00:00Z"), ms("2025-01-16T00:00:00Z")));
    }

    #[test]
    fn a_day_whose_midnight_does_not_exist_starts_at_the_first_local_time() {
        // Santiago (Chile) starts daylight saving time at 24:00 → 01:00: 8 Sep 2024 has
        // no local midnight.
        let santiago = TimeZoneName::new("America/Santiago").unwrap();
        let (start, end) = santiago.day_bounds_ms(ms("2024-09-08T15:00:00Z"));
        assert_eq!(start, ms("2024-09-08T04:00:00Z"), "01:00 local, UTC-3");
        assert_eq!(end - start, 23 * 3_600_000);
    }

    #[test]
    fn local_hours_follow_half_hour_offsets() {
        let kolkata = TimeZoneName::new("Asia/Kolkata").unwrap();
        assert_eq!(kolkata.offset_secs_at(0), 19_800);
        let (start, end) = kolkata.hour_bounds_ms(ms("2025-01-15T10:10:00Z"));
        assert_eq!((start, end), (ms("2025-01-15T09:30:00Z"), ms("2025-01-15T10:30:00Z")));
        assert_eq!(TimeZoneName::UTC.hour_bounds_ms(ms("2025-01-15T10:10:00Z")).0, ms("2025-01-15T10:00:00Z"));
    }

    #[test]
    fn app_names_are_checked() {
        check_app_name("Shop (EU)").unwrap();
        assert!(check_app_name("").is_err());
        assert!(check_app_name(" padded").is_err());
        assert!(check_app_name("line\nbreak").is_err());
        assert!(check_app_name(&"x".repeat(101)).is_err());
    }
}
