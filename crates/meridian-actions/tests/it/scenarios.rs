//! Aggregations, windows, zones, lifecycle, segments, triggers, back-fill, erasure,
//! isolation and bad input, end to end through the runtime.

use crate::*;
use meridian_actions::{Error, UserKey};
use meridian_runtime::{ProcessContext, Result as RtResult, Timer};
use meridian_state::WriteBatch;
use serde_json::json;

#[test]
fn every_aggregation_kind_with_its_filters() {
    let now = daytime_now();
    let f = Fixture::new(config(), now);
    let t = |h: i64| now - h * 3_600_000;
    fn shop(id: &str) -> Option<(&str, &str)> {
        Some(("shop", id))
    }
    let events = vec![
        f.event("z", "u1", "view", shop("s1"), t(1), json!({"category": "food"})),
        f.event("z", "u1", "view", shop("s1"), t(2), json!({"category": "food"})),
        f.event("z", "u1", "view", shop("s2"), t(3), json!({"category": "toys"})),
        f.event("z", "u1", "view", Some(("sku", "s3")), t(3), json!({"category": "food"})), // not a shop
        f.event("z", "u1", "order", None, t(30), json!({"amount": 40.5, "tier": "silver"})),
        f.event("z", "u1", "order", None, t(50), json!({"amount": "12"})), // numeric string
        f.event("z", "u1", "order", None, t(24 * 10), json!({"amount": 100, "tier": "bronze"})),
        f.event("z", "u1", "order", None, t(5), json!({"amount": "n/a"})), // counts, adds no amount
        f.event("z", "u2", "view", shop("s9"), t(1), json!({"category": "food"})),
    ];
    f.ingest(&events);
    assert_eq!(f.value("z", "u1", "food_views", "today"), json!(2), "views of food shops only");
    assert_eq!(f.value("z", "u1", "shops_viewed", "7d"), json!(2), "distinct shops, not the sku");
    assert_eq!(f.value("z", "u1", "orders", "7d"), json!(3));
    assert_eq!(f.value("z", "u1", "orders", "30d"), json!(4));
    assert_eq!(f.value("z", "u1", "spend", "7d"), json!(52.5));
    assert_eq!(f.value("z", "u1", "spend", "all"), json!(152.5));
    assert_eq!(f.value("z", "u1", "cheapest", "30d"), json!(12.0));
    assert_eq!(f.value("z", "u1", "dearest", "7d"), json!(40.5));
    assert_eq!(f.value("z", "u1", "first_order", "all"), json!(t(240)));
    assert_eq!(f.value("z", "u1", "last_order", "all"), json!(t(5)));
    assert_eq!(f.value("z", "u1", "tier", "all"), json!("silver"), "the value of the latest event that has it");
    let ten_days_ago = meridian_actions::window::day_to_date(meridian_actions::window::local_day(chrono_tz::UTC, t(240)));
    assert_eq!(f.value("z", "u1", "tier", &format!("{ten_days_ago}..{ten_days_ago}")), json!("bronze"));
    assert_eq!(f.value("z", "u1", "dearest", "today"), json!(null), "no order today: no max");
    assert_eq!(f.value("z", "u2", "food_views", "today"), json!(1), "users are separate");
    assert_eq!(f.value("z", "nobody", "orders", "all"), json!(0));
    let profile = f.service.profile(&app("z"), "u1").unwrap();
    assert!(profile.known);
    assert_eq!(profile.values["orders"].d30, json!(4));
    assert_eq!(profile.events.all, json!(8));
    assert_eq!(profile.stage, "growing", "first seen 10 days ago: past new, not dormant");
    assert_eq!(profile.timeline[0].action, "view", "newest first");
    assert_eq!(profile.segments, vec!["big_spenders".to_owned()], "spent 152.5 in 30 days; not new, so not a new buyer");
    // Reads from memory (users the processor published after its commit) answer exactly
    // what the store does; a user never seen is not in memory.
    let z = app("z");
    for user in ["u1", "u2"] {
        assert_eq!(f.service.profile_in_memory(&z, user).unwrap().as_deref(), Some(&f.service.profile_from_store(&z, user).unwrap()), "{user}");
        for (name, window) in [("orders", "30d"), ("spend", "all"), ("shops_viewed", "7d"), ("tier", "all"), ("dearest", "today")] {
            assert_eq!(f.service.aggregate_in_memory(&z, user, name, window).unwrap(), Some(f.service.aggregate_from_store(&z, user, name, window).unwrap()), "{user} {name} {window}");
        }
        for segment in ["big_spenders", "new_buyers"] {
            assert_eq!(f.service.in_segment_in_memory(&z, user, segment).unwrap(), Some(f.service.in_segment(&z, user, segment).unwrap()), "{user} {segment}");
        }
    }
    assert_eq!(f.service.profile_in_memory(&z, "nobody").unwrap(), None);
    assert_eq!(f.service.profile(&z, "u1").unwrap(), f.service.profile_in_memory(&z, "u1").unwrap().unwrap(), "the read path answers from memory");
    assert!(!f.service.profile(&z, "nobody").unwrap().known, "…and from the store for a user not in memory");
    assert!(matches!(f.service.aggregate_in_memory(&z, "u1", "nope", "7d"), Err(Error::UnknownAggregation(_))), "bad input is refused in memory too");
    // A profile built from memory is kept for the next read, never past a change: a new
    // event shows at once, and so does a new day (today's values move to 7d).
    let before = f.service.profile_in_memory(&z, "u1").unwrap().unwrap();
    assert!(std::sync::Arc::ptr_eq(&f.service.profile_in_memory(&z, "u1").unwrap().unwrap(), &before), "read twice: the kept profile, shared");
    let rendered = |f: &Fixture| f.service.profile_rendered_in_memory(&z, "u1", |p| bytes::Bytes::from(serde_json::to_vec(p).unwrap())).unwrap().unwrap();
    assert_eq!(rendered(&f), serde_json::to_vec(&before).unwrap(), "rendered once, as the profile");
    f.ingest(&[f.event("z", "u1", "view", shop("s1"), now, json!({"category": "food"}))]);
    let after = f.service.profile_in_memory(&z, "u1").unwrap().unwrap();
    assert_eq!(after.values["food_views"].today, json!(3), "the new event is in the profile read from memory");
    assert_eq!(*after, f.service.profile_from_store(&z, "u1").unwrap());
    assert_eq!(rendered(&f), serde_json::to_vec(&after).unwrap(), "rendered again after the change");
    f.clock.set(now + DAY);
    let tomorrow = f.service.profile_in_memory(&z, "u1").unwrap().unwrap();
    assert_eq!(tomorrow.values["food_views"].today, json!(0), "a new day: nothing today yet");
    assert_eq!(*tomorrow, f.service.profile_from_store(&z, "u1").unwrap());
}

#[test]
fn days_are_local_to_each_app_east_and_west_of_utc() {
    // 2026-03-01 17:30 UTC is already the 2nd in Shanghai and still the 1st in New York.
    let now = ms("2026-03-02T03:00:00Z"); // the 2nd in Shanghai (11:00), the 1st in New York (22:00)
    let f = Fixture::new(config(), now);
    let at = ms("2026-03-01T17:30:00Z");
    let before = ms("2026-03-01T15:30:00Z"); // the 1st in Shanghai (23:30)
    f.ingest(&[
        f.event("shop", "u", "order", None, at, json!({})),
        f.event("shop", "u", "order", None, before, json!({})),
        f.event("ny", "u", "order", None, at, json!({})),
        f.event("ny", "u", "order", None, ms("2026-03-01T04:00:00Z"), json!({})), // 23:00 on Feb 28 in New York
    ]);
    assert_eq!(f.value("shop", "u", "orders", "today"), json!(1), "Shanghai: only the 17:30 UTC order is on the 2nd");
    assert_eq!(f.value("shop", "u", "orders", "2026-03-01..2026-03-01"), json!(1));
    assert_eq!(f.value("ny", "u", "orders", "today"), json!(1), "New York: the 1st");
    assert_eq!(f.value("ny", "u", "orders", "2026-02-28..2026-02-28"), json!(1));
    assert_eq!(f.value("ny", "u", "orders", "month"), json!(1), "March in New York has one");
    assert_eq!(f.value("ny", "u", "orders", "2026-02"), json!(1));
}

#[test]
fn late_and_out_of_order_events_land_in_their_own_days() {
    let now = ms("2026-06-20T12:00:00Z");
    let f = Fixture::new(config(), now);
    f.ingest(&[f.event("z", "u", "order", None, now - 1000, json!({"amount": 5, "tier": "gold"}))]);
    // Arrives later, happened earlier.
    f.ingest(&[f.event("z", "u", "order", None, now - 3 * DAY, json!({"amount": 7, "tier": "tin"}))]);
    assert_eq!(f.value("z", "u", "orders", "today"), json!(1));
    assert_eq!(f.value("z", "u", "orders", "7d"), json!(2));
    assert_eq!(f.value("z", "u", "first_order", "all"), json!(now - 3 * DAY));
    assert_eq!(f.value("z", "u", "tier", "all"), json!("gold"), "the late event is older: the value stays");
    let p = f.service.profile(&app("z"), "u").unwrap();
    assert_eq!(p.last_active_ms, now - 1000);
    assert_eq!(p.first_seen_ms, now - 3 * DAY);
    // Beyond retention: ignored, nothing changes.
    f.ingest(&[f.event("z", "u", "order", None, now - 200 * DAY, json!({"amount": 1}))]);
    assert_eq!(f.value("z", "u", "orders", "all"), json!(2));
}

#[test]
fn lifecycle_segments_and_triggers_follow_events_and_time() {
    // The processor's clock stands in the past, so the daily reviews it schedules are due
    // at once in real time: a month of days passes in a second, review by review.
    let start = ms("2020-01-10T10:00:00Z");
    let f = Fixture::new(config(), start);
    // One append: the events are handled in one round, before the first review fires.
    let mut events = vec![f.event("z", "u", "checkin", None, start, json!({}))];
    for i in 0..3 {
        events.push(f.event("z", "u", "order", None, start + i * 60_000, json!({"amount": 50})));
    }
    f.ingest(&events);
    let records = f.records("triggers");
    let fired: Vec<&str> = records.iter().map(|r| r["trigger"].as_str().unwrap()).collect();
    assert_eq!(fired[..2], ["first_checkin", "third_order"], "{fired:?}");
    // Time passes with no event: dormant after 7 days, churned after 30; out of the
    // 30-day spend window, out of big_spenders.
    f.eventually("the user becomes churned", || f.service.profile(&app("z"), "u").unwrap().stage == "churned");
    f.caught_up();
    let changes = f.records("segment-changes");
    let seq: Vec<(String, String)> = changes.iter().map(|r| (r["segment"].as_str().unwrap().to_owned(), r["change"].as_str().unwrap().to_owned())).collect();
    assert_eq!(
        seq.iter().filter(|(s, _)| s == "big_spenders").map(|(_, c)| c.as_str()).collect::<Vec<_>>(),
        vec!["enter", "exit"],
        "entered with the 2nd order, left when it aged out of 30 days"
    );
    let exit = changes.iter().find(|r| r["segment"] == "big_spenders" && r["change"] == "exit").unwrap();
    assert_eq!(exit["cause"]["kind"], "review", "time, not an event, made the user leave");
    let fired: Vec<Value> = f.records("triggers");
    let dormant: Vec<&Value> = fired.iter().filter(|r| r["trigger"] == "went_dormant").collect();
    assert_eq!(dormant.len(), 1, "went_dormant fires once, on the review that made the user dormant");
    assert_eq!(dormant[0]["time_ms"], json!(meridian_actions::window::day_start_ms(chrono_tz::UTC, meridian_actions::window::local_day(chrono_tz::UTC, start) + 7)));
    // Every trigger also went to the notify topic, with the same id.
    let notes = f.records("notifications");
    assert_eq!(notes.len(), fired.len());
    assert!(notes.iter().all(|n| n["event_type"] == "trigger.fired"));
    // The notify module reads them.
    for note in &notes {
        let request = meridian_notify::NotificationRequest::from_record_value(note.to_string().as_bytes()).unwrap();
        assert_eq!(request.app.as_str(), "z");
        assert!(fired.iter().any(|t| t["id"].as_str() == Some(request.id.as_str())));
    }
    // Still exactly one of each after a restart (no re-firing on reload).
    let mut f = f;
    let n = f.records("triggers").len();
    f.restart_with(config());
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(f.records("triggers").len(), n);
    assert_eq!(f.service.segment_count(&app("z"), "big_spenders").unwrap(), 0);
}

#[test]
fn a_new_segment_member_is_counted_listed_and_exported() {
    let now = real_now();
    let mut c = config();
    c.mask_key = "secret-key".into();
    let f = Fixture::new(c, now);
    for u in ["a", "b", "c"] {
        f.ingest(&[f.event("z", u, "order", None, now - 1000, json!({"amount": 150}))]);
    }
    f.ingest(&[f.event("z", "d", "order", None, now - 1000, json!({"amount": 5}))]);
    let z = app("z");
    assert_eq!(f.service.segment_count(&z, "big_spenders").unwrap(), 3);
    assert!(f.service.in_segment(&z, "a", "big_spenders").unwrap());
    assert!(!f.service.in_segment(&z, "d", "big_spenders").unwrap());
    assert_eq!(f.service.segment_members(&z, "big_spenders", Some("a"), 10).unwrap(), vec!["b", "c"]);
    let mut out = Vec::new();
    let n = f.service.export(&z, "big_spenders", meridian_actions::service::ExportFormat::Csv, false, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(n, 3);
    assert!(text.starts_with("user_hash\n"), "{text}");
    assert!(!text.contains("\na\n"), "ids are masked");
    assert!(text.contains(&f.service.mask(&z, "a").unwrap()));
    let mut out = Vec::new();
    f.service.export(&z, "big_spenders", meridian_actions::service::ExportFormat::Jsonl, true, &mut out).unwrap();
    assert_eq!(String::from_utf8(out).unwrap().lines().next().unwrap(), r#"{"segment":"big_spenders","user":"a"}"#);
}

#[test]
fn bad_queries_are_refused_and_change_nothing() {
    let now = real_now();
    let f = Fixture::new(config(), now);
    f.ingest(&[f.event("z", "u", "order", None, now, json!({"amount": 1}))]);
    let z = app("z");
    let before = f.service.profile(&z, "u").unwrap();
    assert!(matches!(f.service.aggregate(&z, "u", "nope", "7d"), Err(Error::UnknownAggregation(n)) if n == "nope"));
    let e = f.service.aggregate(&z, "u", "orders", "91d").unwrap_err();
    assert_eq!(e.to_string(), "window 91d reaches 91 days back, beyond the 90 days kept (actions.retention_days)");
    assert!(matches!(f.service.aggregate(&z, "u", "orders", "fortnight"), Err(Error::Window(_))));
    assert!(matches!(f.service.aggregate(&z, "", "orders", "7d"), Err(Error::InvalidUser(_))));
    assert!(matches!(f.service.aggregate(&z, &"x".repeat(129), "orders", "7d"), Err(Error::InvalidUser(_))));
    assert!(matches!(f.service.in_segment(&z, "u", "ghosts"), Err(Error::UnknownSegment(n)) if n == "ghosts"));
    let many: Vec<String> = (0..1001).map(|i| format!("u{i}")).collect();
    assert!(matches!(f.service.profiles(&z, &many), Err(Error::TooManyUsers { got: 1001, limit: 1000 })));
    let mut out = Vec::new();
    assert!(matches!(f.service.export(&z, "big_spenders", meridian_actions::service::ExportFormat::Csv, false, &mut out), Err(Error::MaskKeyMissing)), "no mask key: masked export refused");
    assert!(out.is_empty(), "nothing written");
    assert_eq!(f.service.profile(&z, "u").unwrap(), before, "nothing changed");
    assert_eq!(f.service.profiles(&z, &many[..1000]).unwrap().len(), 1000);
}

#[test]
fn a_backfill_equals_the_live_result_and_fires_no_old_crossings() {
    let now = real_now();
    let mut base = config();
    base.aggregations.retain(|a| a.name != "checkins");
    base.triggers.retain(|t| t.name != "first_checkin");
    let f0 = Fixture::new(base.clone(), now);
    let mut f = f0;
    let mut events = Vec::new();
    for i in 0..400 {
        let user = format!("u{}", i % 37);
        let action = if i % 3 == 0 { "checkin" } else { "order" };
        events.push(f.event("z", &user, action, None, now - (i % 20) * DAY / 2, json!({"amount": i % 7})));
    }
    let (old, new) = events.split_at(300);
    f.ingest(old);
    // The aggregation (and a trigger on it) is added; new events count live.
    let full = config();
    f.restart_with(full.clone());
    f.ingest(new);
    let triggers_before = f.records("triggers").iter().filter(|r| r["trigger"] == "first_checkin").count();
    let job = f.service.request_backfill("checkins", false).unwrap();
    assert_eq!(job.total, 300, "the back-fill reads up to where the aggregation went live");
    f.eventually("the back-fill finishes", || f.service.backfill_status("checkins").unwrap().is_some_and(|j| j.done));
    assert!(f.service.request_backfill("checkins", false).is_err(), "once per definition");
    // Reference: the same events processed with the aggregation from the start.
    let r = Fixture::new(full, now);
    r.ingest(&events);
    for u in 0..37 {
        let user = format!("u{u}");
        for w in ["today", "7d", "all"] {
            assert_eq!(f.value("z", &user, "checkins", w), r.value("z", &user, "checkins", w), "{user} {w}");
        }
        assert_eq!(f.service.profile(&app("z"), &user).unwrap().values, r.service.profile(&app("z"), &user).unwrap().values, "{user}");
    }
    let after = f.records("triggers").iter().filter(|r| r["trigger"] == "first_checkin").count();
    assert_eq!(after, triggers_before, "old check-ins found by the back-fill fire nothing");
    assert!(triggers_before > 0, "new first check-ins fired live");
}

#[test]
fn an_erasure_removes_the_profile_and_memberships_and_a_backfill_does_not_bring_it_back() {
    let now = real_now();
    let mut f = Fixture::new(config(), now);
    f.ingest(&[f.event("z", "gone", "order", None, now, json!({"amount": 500})), f.event("z", "stay", "order", None, now, json!({"amount": 500}))]);
    assert_eq!(f.service.segment_count(&app("z"), "big_spenders").unwrap(), 2);
    let erasure = meridian_event::Erasure { id: "er_1".into(), app: app("z"), kind: meridian_event::SubjectKind::User, subject: "gone".into(), requested_ms: now, requested_by: "test".into() };
    let record = AppendRecord { key: Bytes::from(erasure.partition_key().to_owned()), value: Bytes::from(erasure.encode()), timestamp: now };
    f.rt.block_on(f.log.append(&TopicName::new("events").unwrap(), vec![record])).unwrap();
    f.caught_up();
    let z = app("z");
    assert!(!f.service.profile(&z, "gone").unwrap().known);
    assert!(!f.service.profile_in_memory(&z, "gone").unwrap().expect("published").known, "the erasure is published to memory too");
    assert_eq!(f.service.in_segment_in_memory(&z, "gone", "big_spenders").unwrap(), Some(false));
    assert_eq!(f.service.segment_count(&z, "big_spenders").unwrap(), 1);
    assert!(!f.service.in_segment(&z, "gone", "big_spenders").unwrap());
    let receipts = f.runtime.as_ref().unwrap().erasure_receipts("er_1").unwrap();
    assert_eq!(receipts.len(), 1);
    assert_eq!(receipts[0].1["profiles"], json!(1));
    // A new aggregation back-filled from the log skips the erased user's old events.
    let mut c = config();
    c.aggregations.push(agg("all_orders", AggregationKind::Count, None, Some("action == \"order\"")));
    f.restart_with(c);
    f.ingest(&[f.event("z", "stay", "view", None, now, json!({}))]);
    f.service.request_backfill("all_orders", false).unwrap();
    f.eventually("back-fill done", || f.service.backfill_status("all_orders").unwrap().is_some_and(|j| j.done));
    assert_eq!(f.value("z", "gone", "all_orders", "all"), json!(0), "erased stays erased");
    assert_eq!(f.value("z", "stay", "all_orders", "all"), json!(1));
    let mut key = UserKey::new(app("z"), "gone").to_bytes();
    key.push(0);
    assert_eq!(f.store.get(meridian_actions::store::USERS_TABLE, &key).unwrap(), None, "nothing of the erased user is stored");
}

/// Slows its processor down: every `process` call sleeps.
struct Slow(Box<dyn Processor>);

impl Processor for Slow {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn topics(&self) -> Vec<TopicName> {
        self.0.topics()
    }
    fn process(&mut self, ctx: &mut ProcessContext<'_>, topic: &TopicName, records: &[meridian_log::Record]) -> RtResult<()> {
        std::thread::sleep(Duration::from_millis(20));
        self.0.process(ctx, topic, records)
    }
    fn end_of_round(&mut self, ctx: &mut ProcessContext<'_>) -> RtResult<()> {
        self.0.end_of_round(ctx)
    }
    fn on_timer(&mut self, ctx: &mut ProcessContext<'_>, timer: &Timer) -> RtResult<()> {
        self.0.on_timer(ctx, timer)
    }
    fn reset_cache(&mut self) {
        self.0.reset_cache()
    }
    fn clear_state(&mut self, batch: &mut WriteBatch) {
        self.0.clear_state(batch)
    }
}

#[test]
fn an_isolated_group_counts_orders_while_a_flood_of_clicks_waits() {
    let now = real_now();
    let mut c = config();
    c.groups = vec![group_config("core", "orders")];
    for a in c.aggregations.iter_mut().filter(|a| ["orders", "spend"].contains(&a.name.as_str())) {
        a.group = "core".into();
    }
    c.segments.retain(|s| s.name == "big_spenders");
    c.triggers.retain(|t| t.name == "third_order");
    let mut f = Fixture::new(c.clone(), now);
    // The default group's processor is slow (a flood it cannot keep up with).
    f.runtime.take().unwrap().shutdown();
    f.start_wrapped(&mut |p| if p.name() == "actions" { Box::new(Slow(p)) } else { p });
    let clicks: Vec<Event> = (0..20_000).map(|i| f.event("z", &format!("c{}", i % 500), "click", None, now, json!({}))).collect();
    f.append("events", &clicks);
    let started = Instant::now();
    f.append("orders", &[f.event("z", "buyer", "order", None, now, json!({"amount": 120}))]);
    f.eventually("the order is counted", || f.value("z", "buyer", "orders", "today") == json!(1));
    let waited = started.elapsed();
    let status = f.runtime.as_ref().unwrap().status();
    let default_lag = status.iter().find(|s| s.name == "actions").unwrap().lag;
    assert!(default_lag > 10_000, "the click flood is still waiting ({default_lag} records) while the order is already counted after {waited:?}");
    assert!(f.service.in_segment(&app("z"), "buyer", "big_spenders").unwrap(), "the core group's segment follows at once");
}

/// Events of 40 users over the last 20 days (the first record is 60 days old, so the
/// log's first whole day is before all of them).
fn spread_events(f: &Fixture, now: i64, n: usize, salt: &str) -> Vec<Event> {
    let mut events = vec![f.event("z", "marker", "view", None, now - 60 * DAY, json!({}))];
    for i in 0..n {
        let user = format!("u{}", i % 40);
        // Each user's events spread over the 20 days and both actions.
        let round = i / 40;
        let action = if round % 4 == 0 { "checkin" } else { "order" };
        let mut e = f.event("z", &user, action, None, now - ((round * 7919) % 20) as i64 * DAY - (i % 1000) as i64, json!({"amount": i % 9}));
        e.id = meridian_event::EventId::new(format!("{salt}{i}")).unwrap();
        events.push(e);
    }
    events
}

fn values(f: &Fixture) -> Vec<(String, Value, Value, Value)> {
    (0..40)
        .map(|u| {
            let user = format!("u{u}");
            (user.clone(), f.value("z", &user, "orders", "all"), f.value("z", &user, "spend", "30d"), f.value("z", &user, "checkins", "today"))
        })
        .collect()
}

#[test]
fn a_recompute_switches_over_without_readers_seeing_a_change() {
    let now = real_now();
    let f = Fixture::new(config(), now);
    f.ingest(&spread_events(&f, now, 50_000, "a"));
    let before = values(&f);
    let service = f.service.clone();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (service, stop, before) = (service.clone(), stop.clone(), before.clone());
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !stop.load(Ordering::SeqCst) {
                for (user, orders, spend, _) in &before {
                    let z = AppId::new("z").unwrap();
                    assert_eq!(&service.aggregate(&z, user, "orders", "all").unwrap().value, orders, "{user}: a reader saw orders change during the switch-over");
                    assert_eq!(&service.aggregate(&z, user, "spend", "30d").unwrap().value, spend, "{user}");
                    reads += 2;
                }
            }
            reads
        })
    };
    let job = f.service.request_recompute("orders").unwrap();
    assert_eq!(job.total, 50_001);
    f.eventually("the recompute finishes", || f.service.recompute_status("orders").unwrap().is_some_and(|j| j.phase == meridian_actions::recompute::Phase::Done));
    stop.store(true, Ordering::SeqCst);
    let reads = reader.join().expect("no reader saw a change");
    assert!(reads > 100, "the reader read during the recompute ({reads} reads)");
    let job = f.service.recompute_status("orders").unwrap().unwrap();
    assert!(job.steps >= 3, "several steps: {job:?}");
    assert_eq!(job.switched, 40, "every user with orders in the batch's days was switched over");
    assert_eq!(values(&f), before, "the batch agrees with the live layer");
}

#[test]
fn a_recompute_counts_events_that_arrive_during_it_once() {
    let now = real_now();
    let mut f = Fixture::new(config(), now);
    let first = spread_events(&f, now, 30_000, "a");
    f.ingest(&first);
    f.service.request_recompute("orders").unwrap();
    // Late events for old days and new ones keep arriving while it runs.
    let mut later = Vec::new();
    let mut k = 0;
    let status = || f.service.recompute_status("orders").unwrap().expect("requested");
    while status().phase != meridian_actions::recompute::Phase::Done {
        let steps = status().steps;
        let batch: Vec<Event> = spread_events(&f, now, 300, &format!("late{k}-")).into_iter().skip(1).collect();
        f.append("events", &batch);
        later.extend(batch);
        k += 1;
        // The next batch arrives after the job's next step (whatever the machine's load).
        f.eventually("the recompute takes a step", || {
            let job = status();
            job.steps > steps || job.phase == meridian_actions::recompute::Phase::Done
        });
    }
    f.caught_up();
    assert!(k >= 1, "events arrived while the recompute ran ({k} batches, each after a step)");
    // Reference: the same events, processed live only.
    let r = Fixture::new(config(), now);
    let mut all = first;
    all.extend(later);
    r.ingest(&all);
    assert_eq!(values(&f), values(&r), "every event counted once across the switch-over");
    f.restart_with(config());
    assert_eq!(values(&f), values(&r), "and after a restart");
}

#[test]
fn a_recompute_restores_old_days_a_lost_store_forgot_and_leaves_recent_days_live() {
    let now = real_now();
    let mut f = Fixture::new(config(), now);
    let events = spread_events(&f, now, 2_000, "a");
    f.ingest(&events);
    let reference = values(&f);
    // The profiles are lost (a wiped profile store); the log still has every event.
    f.runtime.take().unwrap().shutdown();
    let mut batch = meridian_state::WriteBatch::new();
    batch.delete_prefix(meridian_actions::store::USERS_TABLE, Vec::new());
    f.store.commit(batch).unwrap();
    f.restart_with(config());
    assert_eq!(f.value("z", "u1", "orders", "all"), json!(0));
    f.service.request_recompute("orders").unwrap();
    f.eventually("the recompute finishes", || f.service.recompute_status("orders").unwrap().is_some_and(|j| j.phase == meridian_actions::recompute::Phase::Done));
    // live_days = 2: today and yesterday are the live layer's (lost here); every older day
    // is back, as a fixture that never lost anything shows.
    let r = Fixture::new(config(), now);
    r.ingest(&events);
    assert_eq!(values(&r), reference);
    let mut restored = 0;
    for u in 0..40 {
        let user = format!("u{u}");
        let n = |fx: &Fixture, w: &str| fx.value("z", &user, "orders", w).as_u64().unwrap();
        assert_eq!(n(&f, "2d"), 0, "{user}: the live days stay the live layer's");
        assert_eq!(n(&f, "all"), n(&r, "all") - n(&r, "2d"), "{user}: every older day restored");
        restored += n(&f, "all");
    }
    assert!(restored > 1000, "restored {restored} orders");
}

#[test]
fn memberships_equal_their_conditions_whatever_each_event_changed() {
    // The processor skips the conditions an event cannot have changed; every user's
    // memberships must still be exactly what the conditions say of the final values.
    let now = real_now();
    let mut c = config();
    c.segments.push(segment("busy", "events_7d >= 6"));
    c.segments.push(segment("regular", "active_days_7d >= 3"));
    c.segments.push(segment("food_fans", "food_views_7d >= 2 && shops_viewed_all >= 2"));
    let f = Fixture::new(c, now);
    let actions = ["view", "view", "order", "checkin", "click"];
    let mut next = xorshift(0x2545_f491_4f6c_dd1d);
    let mut active: std::collections::HashMap<String, std::collections::HashSet<i64>> = std::collections::HashMap::new();
    for _ in 0..12 {
        let batch: Vec<Event> = (0..150)
            .map(|_| {
                let r = next();
                let user = format!("p{}", r % 30);
                let action = actions[(r >> 8) as usize % actions.len()];
                let time = now - ((r >> 16) % 10) as i64 * DAY - ((r >> 24) % 3_600_000) as i64;
                active.entry(user.clone()).or_default().insert(time.div_euclid(DAY));
                let shop = format!("s{}", (r >> 32) % 4);
                let category = if (r >> 40).is_multiple_of(2) { "food" } else { "toys" };
                f.event("z", &user, action, Some(("shop", &shop)), time, json!({"category": category, "amount": (r >> 48) % 80}))
            })
            .collect();
        f.ingest(&batch);
    }
    let z = app("z");
    let num = |user: &str, name: &str, w: &str| f.service.aggregate(&z, user, name, w).unwrap().value.as_f64().unwrap_or(0.0);
    for u in 0..30 {
        let user = format!("p{u}");
        let p = f.service.profile(&z, &user).unwrap();
        let expected = [
            ("big_spenders", num(&user, "spend", "30d") >= 100.0),
            ("new_buyers", p.stage == "new" && num(&user, "orders", "30d") >= 1.0),
            ("busy", p.events.d7.as_f64().unwrap() >= 6.0),
            ("regular", active.get(&user).map_or(0, |days| days.iter().filter(|d| **d > now.div_euclid(DAY) - 7).count()) >= 3),
            ("food_fans", num(&user, "food_views", "7d") >= 2.0 && num(&user, "shops_viewed", "all") >= 2.0),
        ];
        for (segment, should) in expected {
            assert_eq!(p.segments.iter().any(|s| s == segment), should, "{user} in {segment}: {p:?}");
        }
    }
}

#[test]
fn a_round_spread_over_threads_gives_what_one_thread_gives() {
    // The processor spreads a round's users over threads when a round has many records:
    // profiles, memberships, counts and every emitted record must be those of one thread.
    let now = real_now();
    let run = |threads: usize| {
        let mut c = config();
        c.threads = threads;
        c.segments.push(segment("busy", "events_7d >= 6"));
        let f = Fixture::with_batch(c, now, 10_000);
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
        let actions = ["view", "view", "order", "checkin", "click"];
        let mut events: Vec<Event> = (0..6000)
            .map(|_| {
                let r = next();
                let user = format!("t{}", r % 300);
                let time = now - ((r >> 16) % 12) as i64 * DAY - ((r >> 24) % 3_600_000) as i64;
                let shop = format!("s{}", (r >> 32) % 50);
                let category = if (r >> 40).is_multiple_of(2) { "food" } else { "toys" };
                f.event("z", &user, actions[(r >> 8) as usize % actions.len()], Some(("shop", &shop)), time, json!({"category": category, "amount": (r >> 48) % 80, "tier": format!("t{}", r % 3)}))
            })
            .collect();
        // An erasure in the middle of the stream: the user's earlier events go, later ones count.
        let half = events.split_off(3000);
        f.append("events", &events);
        let erasure = meridian_event::Erasure { id: "er_t".into(), app: app("z"), kind: meridian_event::SubjectKind::User, subject: "t7".into(), requested_ms: now, requested_by: "test".into() };
        f.rt.block_on(f.log.append(&TopicName::new("events").unwrap(), vec![meridian_log::AppendRecord { key: Bytes::from("t7"), value: Bytes::from(erasure.encode()), timestamp: now }])).unwrap();
        f.ingest(&half);
        let z = app("z");
        let profiles: Vec<String> = (0..300).map(|u| format!("{:?}", f.service.profile(&z, &format!("t{u}")).unwrap())).collect();
        let counts: Vec<u64> = ["big_spenders", "new_buyers", "busy"].iter().map(|s| f.service.segment_count(&z, s).unwrap()).collect();
        let mut emitted: Vec<String> = ["segment-changes", "triggers"].iter().flat_map(|t| f.records(t)).map(|r| r.to_string()).collect();
        emitted.sort();
        let notifications = f.records("notifications").len();
        (profiles, counts, emitted, notifications)
    };
    let (one, many) = (run(1), run(4));
    assert!(one.2.len() > 100, "the stream crosses many segments and triggers: {}", one.2.len());
    assert!(one.1[0] > 0 && one.1[2] > 0, "big_spenders and busy have members: {:?}", one.1);
    assert_eq!(one.1, many.1, "segment counts");
    assert_eq!(one.3, many.3, "notification requests");
    assert_eq!(one.2, many.2, "segment and trigger records");
    for (a, b) in one.0.iter().zip(&many.0) {
        assert_eq!(a, b, "profiles");
    }
}

#[test]
fn an_erasure_stays_in_force_for_every_group_across_a_restart() {
    // Two groups on two topics: the erasure record is in both, at different partitions
    // and offsets. Each group's processor must keep where the erasure is in its own topic
    // (they share one store), or after a restart a back-fill of one group brings the
    // erased user's old events back.
    let now = real_now();
    let mut c = config();
    c.groups = vec![group_config("core", "orders")];
    for a in c.aggregations.iter_mut().filter(|a| a.name == "orders") {
        a.group = "core".into();
    }
    c.segments.clear();
    c.triggers.clear();
    let gone = (0..).map(|i| format!("gone{i}")).find(|u| meridian_log::partition_for_key(u.as_bytes(), 3) != meridian_log::partition_for_key(u.as_bytes(), 2)).unwrap();
    let mut f = Fixture::new(c.clone(), now);
    let views: Vec<Event> = (0..30).map(|i| f.event("z", if i % 3 == 0 { &gone } else { "stay" }, "view", None, now - 1000, json!({}))).collect();
    f.append("events", &views);
    f.append("orders", &[f.event("z", &gone, "order", None, now - 1000, json!({"amount": 5})), f.event("z", "stay", "order", None, now - 1000, json!({"amount": 5}))]);
    f.caught_up();
    let erasure = meridian_event::Erasure { id: "er_g".into(), app: app("z"), kind: meridian_event::SubjectKind::User, subject: gone.clone(), requested_ms: now, requested_by: "test".into() };
    for topic in ["events", "orders"] {
        let record = AppendRecord { key: Bytes::from(erasure.partition_key().to_owned()), value: Bytes::from(erasure.encode()), timestamp: now };
        f.rt.block_on(f.log.append(&TopicName::new(topic).unwrap(), vec![record])).unwrap();
    }
    f.caught_up();
    assert_eq!(f.runtime.as_ref().unwrap().erasure_receipts("er_g").unwrap().len(), 2, "both groups erased");
    // New aggregations in both groups, back-filled from the log after a restart.
    c.aggregations.push(agg("all_views", AggregationKind::Count, None, Some("action == \"view\"")));
    let mut core_orders = agg("all_orders", AggregationKind::Count, None, Some("action == \"order\""));
    core_orders.group = "core".into();
    c.aggregations.push(core_orders);
    f.restart_with(c);
    f.append("events", &[f.event("z", "stay", "click", None, now, json!({}))]);
    f.append("orders", &[f.event("z", "stay", "cart", None, now, json!({}))]);
    f.caught_up();
    for name in ["all_views", "all_orders"] {
        f.service.request_backfill(name, false).unwrap();
    }
    f.eventually("back-fills done", || ["all_views", "all_orders"].iter().all(|n| f.service.backfill_status(n).unwrap().is_some_and(|j| j.done)));
    assert_eq!(f.value("z", "stay", "all_views", "all"), json!(20), "the back-fill counted the other user's views");
    assert_eq!(f.value("z", "stay", "all_orders", "all"), json!(1));
    assert_eq!(f.value("z", &gone, "all_views", "all"), json!(0), "the default group still skips the erased user's old events");
    assert_eq!(f.value("z", &gone, "all_orders", "all"), json!(0), "the core group too");
}

#[test]
fn an_erasure_is_forgotten_once_retention_has_removed_what_it_skips() {
    let now = real_now();
    // Small segments and 16 KB kept per partition: a few thousand events push old
    // segments out.
    let log_config = EmbeddedLogConfig { segment_bytes: 4096, retention_bytes: Some(16 << 10), ..EmbeddedLogConfig::default() };
    let mut f = Fixture::with_log(config(), now, 64, log_config);
    let erase = |f: &Fixture, user: &str| -> u64 {
        let erasure = meridian_event::Erasure { id: format!("er_{user}"), app: app("z"), kind: meridian_event::SubjectKind::User, subject: user.into(), requested_ms: now, requested_by: "test".into() };
        let record = AppendRecord { key: Bytes::from(erasure.partition_key().to_owned()), value: Bytes::from(erasure.encode()), timestamp: now };
        let at = f.rt.block_on(f.log.append(&TopicName::new("events").unwrap(), vec![record])).unwrap()[0];
        f.caught_up();
        at.offset
    };
    let rows = |f: &Fixture| -> Vec<String> {
        f.store.scan_prefix(meridian_actions::processor::ERASURES_TABLE, b"actions\0", usize::MAX).unwrap().into_iter().map(|(k, _)| String::from_utf8_lossy(&k[8..]).into_owned()).collect()
    };
    f.ingest(&[f.event("z", "early", "order", None, now, json!({"amount": 5}))]);
    let early_at = erase(&f, "early");
    // Others' events fill every partition past its retention.
    let others: Vec<Event> = (0..3000).map(|i| f.event("z", &format!("o{}", i % 300), "view", None, now, json!({"category": "food"}))).collect();
    f.ingest(&others);
    f.ingest(&[f.event("z", "late", "order", None, now, json!({"amount": 5}))]);
    erase(&f, "late");
    assert_eq!(rows(&f), vec!["z\0early".to_owned(), "z\0late".to_owned()]);
    f.log.enforce_retention().unwrap();
    let partition = meridian_log::partition_for_key(b"early", 3);
    let start = f.log.offsets(&TopicName::new("events").unwrap(), partition).unwrap().start;
    assert!(start > early_at, "retention removed the early erasure ({early_at}) and what precedes it (start {start})");
    // A processor forgets, when it starts, erasures whose records are gone; the late
    // erasure still skips records the log holds.
    f.restart_with(config());
    f.ingest(&[f.event("z", "someone", "view", None, now, json!({}))]);
    assert_eq!(rows(&f), vec!["z\0late".to_owned()]);
    assert!(!f.service.profile(&app("z"), "early").unwrap().known, "still nothing of the early user");
}
