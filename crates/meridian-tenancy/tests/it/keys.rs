//! API keys: scopes, revocation, the master key, no secrets in listings or the store.

use crate::support::{app, contains, root, Backend, Fixture, MASTER};
use meridian_tenancy::{Error, Permission, Principal, Scope};

both_stores!(keys_authenticate_with_their_scopes_only, revoked_keys_stop_authenticating, keys_are_kept_only_as_digests);

fn keys_authenticate_with_their_scopes_only(backend: Backend) {
    let fixture = Fixture::new(backend);
    let tenancy = &fixture.tenancy;
    let (shop, other) = (app("shop"), app("other"));
    tenancy.create_app(&root(), &shop, None).unwrap();
    tenancy.create_app(&root(), &other, None).unwrap();
    let (writer_secret, writer) = tenancy.create_key(&root(), &shop, &[Scope::Write]).unwrap();
    let (reader_secret, _) = tenancy.create_key(&root(), &shop, &[Scope::Read, Scope::Admin]).unwrap();
    assert!(writer_secret.starts_with(&format!("mk_{}_", writer.key_id)));

    let writer = Principal::from_key(tenancy.authenticate_key(&writer_secret).unwrap());
    assert!(writer.allows(Permission::Write, &shop));
    for permission in [Permission::Read, Permission::Review, Permission::Admin] {
        assert!(!writer.allows(permission, &shop), "a write key has no {permission}");
    }
    assert!(!writer.allows(Permission::Write, &other), "a key is for its own app only");
    assert!(!writer.allows_global(Permission::Write));

    let reader = tenancy.authenticate(&reader_secret).unwrap();
    assert!(reader.allows(Permission::Read, &shop) && reader.allows(Permission::Admin, &shop));
    assert!(!reader.allows(Permission::Write, &shop), "scopes are independent: admin does not imply write");
    assert!(!reader.allows_global(Permission::Admin), "an app's admin key cannot manage apps or operators");

    let master = tenancy.authenticate(MASTER).unwrap();
    assert_eq!(master, Principal::Master);
    assert!(Permission::ALL.iter().all(|p| master.allows(*p, &other) && master.allows_global(*p)));
    assert!(tenancy.authenticate_key("mk_000000000000_wrong").is_none());
    assert!(tenancy.authenticate_key("").is_none());
    assert!(matches!(tenancy.create_key(&root(), &app("nope"), &[Scope::Read]), Err(Error::UnknownApp(_))));
}

fn revoked_keys_stop_authenticating(backend: Backend) {
    let fixture = Fixture::new(backend);
    let shop = app("shop");
    fixture.tenancy.create_app(&root(), &shop, None).unwrap();
    fixture.tenancy.create_app(&root(), &app("other"), None).unwrap();
    let (kept_secret, kept) = fixture.tenancy.create_key(&root(), &shop, &[Scope::Write]).unwrap();
    let (revoked_secret, revoked) = fixture.tenancy.create_key(&root(), &shop, &[Scope::Write]).unwrap();
    assert!(matches!(
        fixture.tenancy.revoke_key(&root(), &app("other"), &revoked.key_id),
        Err(Error::UnknownKey { .. })
    ), "a key is revoked through its own app only");
    assert_eq!(fixture.tenancy.revoke_key(&root(), &shop, &revoked.key_id).unwrap(), revoked);
    assert!(fixture.tenancy.authenticate_key(&revoked_secret).is_none());
    assert!(fixture.tenancy.authenticate_key(&kept_secret).is_some());
    assert!(matches!(fixture.tenancy.revoke_key(&root(), &shop, &revoked.key_id), Err(Error::UnknownKey { .. })));
    assert_eq!(fixture.tenancy.list_keys(&shop), vec![kept.clone()]);
    let fixture = fixture.reopen();
    assert!(fixture.tenancy.authenticate_key(&revoked_secret).is_none(), "still revoked after a restart");
    assert_eq!(fixture.tenancy.authenticate_key(&kept_secret), Some(kept));
}

fn keys_are_kept_only_as_digests(backend: Backend) {
    let fixture = Fixture::new(backend);
    let shop = app("shop");
    fixture.tenancy.create_app(&root(), &shop, None).unwrap();
    let (secret, record) = fixture.tenancy.create_key(&root(), &shop, &[Scope::Read]).unwrap();
    let listing = serde_json::to_string(&fixture.tenancy.list_keys(&shop)).unwrap();
    assert!(listing.contains(&record.key_id) && !listing.contains(&secret));
    let secret_part = secret.rsplit('_').next().unwrap();
    let rows = fixture.store.dump();
    assert!(!rows.is_empty());
    for (table, (key, value)) in &rows {
        assert!(!contains(key, secret_part.as_bytes()) && !contains(value, secret_part.as_bytes()), "the secret is in table {table}");
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(secret.as_bytes());
    assert!(rows.iter().any(|(table, (key, _))| *table == "api_keys" && key.as_slice() == digest.as_slice()), "stored under its SHA-256");
}
