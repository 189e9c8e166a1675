//! Data directories written before this crate existed (the collector's `apps` and
//! `api_keys` tables) still load, and unreadable records stop the open with their table.

use crate::support::{app, root, Backend, Fixture, StoreDir, T0};
use meridian_state::WriteBatch;
use meridian_tenancy::{ManualClock, Principal, Scope, Tenancy, TimeZoneName};
use sha2::{Digest, Sha256};
use std::sync::Arc;

both_stores!(old_format_records_load, unreadable_records_stop_the_open_naming_their_table);

fn old_format_records_load(backend: Backend) {
    let dir = StoreDir::new(backend);
    {
        // Exactly what meridian-collector's KeyRegistry wrote.
        let store = dir.open();
        let mut batch = WriteBatch::new();
        batch.put("apps", b"shop".to_vec(), br#"{"id":"shop","created_ms":5}"#.to_vec());
        let digest: [u8; 32] = Sha256::digest(b"mk_0a1b2c3d4e5f_oldsecret").into();
        batch.put("api_keys", digest.to_vec(), br#"{"key_id":"0a1b2c3d4e5f","app":"shop","scopes":["write","read"],"created_ms":6}"#.to_vec());
        store.commit(batch).unwrap();
    }
    let fixture = Fixture::open(dir, crate::support::fast_config(), Arc::new(ManualClock::new(T0)));
    let shop = fixture.tenancy.app(&app("shop")).expect("the old app loads");
    assert_eq!(shop.created_ms, 5);
    assert_eq!(shop.time_zone, TimeZoneName::UTC, "apps from before time zones are UTC");
    assert_eq!(shop.name, None);
    let key = fixture.tenancy.authenticate_key("mk_0a1b2c3d4e5f_oldsecret").expect("the old key authenticates");
    assert_eq!(key.scopes, vec![Scope::Write, Scope::Read]);
    assert_eq!(key.app, Some(app("shop")));
    assert!(matches!(fixture.tenancy.authenticate("mk_0a1b2c3d4e5f_oldsecret"), Some(Principal::Key(_))));
    assert_eq!(fixture.tenancy.list_keys(&app("shop")).len(), 1);
    // The old record gains the new fields when it is next written, and still loads.
    fixture.tenancy.update_app(&root(), &app("shop"), "Asia/Tokyo").unwrap();
    let fixture = fixture.reopen();
    let shop = fixture.tenancy.app(&app("shop")).unwrap();
    assert_eq!((shop.created_ms, shop.time_zone.as_str()), (5, "Asia/Tokyo"));
}

fn unreadable_records_stop_the_open_naming_their_table(backend: Backend) {
    let dir = StoreDir::new(backend);
    {
        let store = dir.open();
        let mut batch = WriteBatch::new();
        batch.put("operators", b"alice".to_vec(), b"{not json".to_vec());
        store.commit(batch).unwrap();
    }
    let store = dir.open();
    let error = Tenancy::open(store, None, crate::support::fast_config()).unwrap_err();
    match &error {
        meridian_tenancy::Error::CorruptRecord { table, key, .. } => assert_eq!((*table, key.as_str()), ("operators", "alice")),
        other => panic!("expected CorruptRecord, got {other:?}"),
    }
    assert!(error.to_string().contains("restore the data directory from a backup"), "{error}");
}
