//! Apps: time zones validated, persisted and usable for local day boundaries.

use crate::support::{app, root, Backend, Fixture, T0};
use meridian_tenancy::{AuditFilter, Error};

both_stores!(time_zones_are_validated_and_persisted, apps_are_created_once_and_changed_only_when_they_exist);

fn time_zones_are_validated_and_persisted(backend: Backend) {
    let fixture = Fixture::new(backend);
    let tenancy = &fixture.tenancy;
    match tenancy.create_app(&root(), &app("mars"), Some("Mars/Olympus_Mons")) {
        Err(Error::InvalidTimeZone(name)) => assert_eq!(name, "Mars/Olympus_Mons"),
        other => panic!("expected InvalidTimeZone, got {other:?}"),
    }
    assert!(!tenancy.app_exists(&app("mars")), "a refused app is not created");
    let error = tenancy.create_app(&root(), &app("mars"), Some("utc+8")).unwrap_err().to_string();
    assert!(error.contains("\"utc+8\"") && error.contains("IANA"), "{error}");

    let shop = tenancy.create_app(&root(), &app("shop"), Some("Asia/Shanghai")).unwrap();
    assert_eq!(shop.time_zone.as_str(), "Asia/Shanghai");
    assert_eq!(shop.created_ms, T0);
    let plain = tenancy.create_app(&root(), &app("plain"), None).unwrap();
    assert_eq!(plain.time_zone.as_str(), "UTC");

    let moved = tenancy.update_app(&root(), &app("plain"), "America/New_York").unwrap();
    assert_eq!(moved.time_zone.as_str(), "America/New_York");
    assert!(matches!(tenancy.update_app(&root(), &app("plain"), "Nowhere"), Err(Error::InvalidTimeZone(_))));
    assert_eq!(tenancy.app(&app("plain")).unwrap().time_zone.as_str(), "America/New_York", "a refused update changes nothing");
    tenancy.set_app_name(&root(), &app("shop"), Some("Shop (CN)")).unwrap();

    let fixture = fixture.reopen();
    let shop = fixture.tenancy.app(&app("shop")).unwrap();
    assert_eq!((shop.time_zone.as_str(), shop.name.as_deref()), ("Asia/Shanghai", Some("Shop (CN)")));
    assert_eq!(fixture.tenancy.app(&app("plain")).unwrap().time_zone.as_str(), "America/New_York");
    // Other capabilities compute the app's local day from it: 2023-11-14T22:13:20Z is
    // already the 15th in Shanghai, whose day started at 16:00 UTC on the 14th.
    let (start, end) = shop.time_zone.day_bounds_ms(T0);
    assert_eq!(start, chrono::DateTime::parse_from_rfc3339("2023-11-14T16:00:00Z").unwrap().timestamp_millis());
    assert_eq!(end - start, 24 * 3_600_000);
    use chrono::TimeZone;
    assert_eq!(shop.tz().timestamp_millis_opt(T0).unwrap().format("%Y-%m-%d %H:%M").to_string(), "2023-11-15 06:13");
}

fn apps_are_created_once_and_changed_only_when_they_exist(backend: Backend) {
    let fixture = Fixture::new(backend);
    let tenancy = &fixture.tenancy;
    tenancy.create_app(&root(), &app("shop"), None).unwrap();
    assert!(matches!(tenancy.create_app(&root(), &app("shop"), Some("Europe/Paris")), Err(Error::AppExists(_))));
    assert_eq!(tenancy.app(&app("shop")).unwrap().time_zone.as_str(), "UTC");
    assert!(matches!(tenancy.update_app(&root(), &app("ghost"), "UTC"), Err(Error::UnknownApp(_))));
    assert!(matches!(tenancy.set_app_name(&root(), &app("shop"), Some("")), Err(Error::InvalidArgument(_))));
    assert_eq!(tenancy.apps().iter().map(|a| a.id.as_str()).collect::<Vec<_>>(), ["shop"]);
    let page = tenancy.audit().query(&AuditFilter::default(), None, 100).unwrap();
    assert_eq!(page.entries.len(), 1, "refused calls write no audit entry");
}
