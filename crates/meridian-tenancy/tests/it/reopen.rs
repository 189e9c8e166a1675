//! A restart (reopening the store) keeps apps, keys, operators, sessions and the audit log.

use crate::support::{app, login, root, Backend, Fixture, MINUTE, PASSWORD, T0};
use meridian_tenancy::{AuditFilter, Error, Grant, Principal, Role, Scope};

both_stores!(reopen_keeps_everything);

fn reopen_keeps_everything(backend: Backend) {
    let fixture = Fixture::new(backend);
    let tenancy = &fixture.tenancy;
    let (shop, blog) = (app("shop"), app("blog"));
    tenancy.create_app(&root(), &shop, Some("Asia/Shanghai")).unwrap();
    tenancy.create_app(&root(), &blog, None).unwrap();
    tenancy.set_app_name(&root(), &blog, Some("The Blog")).unwrap();
    let (kept_secret, kept_key) = tenancy.create_key(&root(), &shop, &[Scope::Write, Scope::Read]).unwrap();
    let (revoked_secret, revoked_key) = tenancy.create_key(&root(), &blog, &[Scope::Admin]).unwrap();
    tenancy.revoke_key(&root(), &blog, &revoked_key.key_id).unwrap();
    tenancy.create_operator(&root(), &login("alice"), "Alice", PASSWORD, &[Grant::on_app(shop.clone(), Role::Reviewer)]).unwrap();
    tenancy.create_operator(&root(), &login("bob"), "Bob", PASSWORD, &[Grant::global(Role::Viewer)]).unwrap();
    tenancy.disable_operator(&root(), &login("bob")).unwrap();
    let (token, session) = tenancy.login("alice", PASSWORD, "10.0.0.1", T0).unwrap();
    let apps = tenancy.apps();
    let operators = tenancy.list_operators();
    let sessions = tenancy.sessions_of(&login("alice"));
    let entries = tenancy.audit().query(&AuditFilter::default(), None, 1000).unwrap().entries;

    let fixture = fixture.reopen();
    let tenancy = &fixture.tenancy;
    assert_eq!(tenancy.apps(), apps);
    assert_eq!(tenancy.app(&shop).unwrap().time_zone.as_str(), "Asia/Shanghai");
    assert_eq!(tenancy.authenticate_key(&kept_secret), Some(kept_key.clone()));
    assert!(tenancy.authenticate_key(&revoked_secret).is_none());
    assert_eq!(tenancy.list_keys(&shop), vec![kept_key]);
    assert!(tenancy.list_keys(&blog).is_empty());
    assert_eq!(tenancy.list_operators(), operators);
    assert_eq!(tenancy.sessions_of(&login("alice")), sessions);
    let resumed = tenancy.session(token.as_str(), T0 + MINUTE).unwrap();
    assert_eq!((&resumed.session_id, &resumed.csrf_token, resumed.expires_ms), (&session.session_id, &session.csrf_token, session.expires_ms));
    assert!(Principal::Operator(resumed).allows(meridian_tenancy::Permission::Review, &shop));
    assert!(matches!(tenancy.login("bob", PASSWORD, "10.0.0.1", T0), Err(Error::OperatorDisabled)));
    assert_eq!(tenancy.audit().query(&AuditFilter::default(), None, 1000).unwrap().entries, entries);
    let next = tenancy.create_app(&root(), &app("new"), None).unwrap();
    let newest = &tenancy.audit().query(&AuditFilter::default(), None, 1).unwrap().entries[0];
    assert_eq!((newest.id.0, newest.target.as_str()), (entries[0].id.0 + 1, next.id.as_str()));
}
