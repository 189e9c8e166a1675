//! Roles → permissions for every role × permission, app-scoped vs global grants, key
//! scopes, who may manage apps and operators, visible apps, actors.

use crate::support::{app, login, root, Backend, Fixture, PASSWORD, T0};
use meridian_tenancy::{Actor, Error, Grant, Permission, Principal, Role, Scope};

both_stores!(roles_grant_exactly_their_permissions_on_their_apps, only_global_admins_and_the_master_key_manage_apps_and_operators);

/// The table of DESIGN.md §4.9, written out rather than derived from the code.
fn expected(role: Role, permission: Permission) -> bool {
    use Permission::*;
    match role {
        Role::Viewer => matches!(permission, Read),
        Role::Operator => matches!(permission, Read | Write),
        Role::Reviewer => matches!(permission, Read | Review),
        Role::Admin => true,
    }
}

fn session_principal(fixture: &Fixture, name: &str, grants: &[Grant]) -> Principal {
    let id = login(name);
    fixture.tenancy.create_operator(&root(), &id, name, PASSWORD, grants).unwrap();
    let (_, session) = fixture.tenancy.login(name, PASSWORD, "10.0.0.1", T0).unwrap();
    Principal::Operator(session)
}

fn roles_grant_exactly_their_permissions_on_their_apps(backend: Backend) {
    let fixture = Fixture::new(backend);
    let (shop, other) = (app("shop"), app("other"));
    fixture.tenancy.create_app(&root(), &shop, None).unwrap();
    fixture.tenancy.create_app(&root(), &other, None).unwrap();
    let mut checked = 0;
    for role in Role::ALL {
        let global = session_principal(&fixture, &format!("global-{}", role.as_str()), &[Grant::global(role)]);
        let scoped = session_principal(&fixture, &format!("shop-{}", role.as_str()), &[Grant::on_app(shop.clone(), role)]);
        for permission in Permission::ALL {
            let want = expected(role, permission);
            assert_eq!(role.grants(permission), want, "{role:?} × {permission:?}");
            assert_eq!(global.allows(permission, &shop), want, "global {role:?} on shop × {permission:?}");
            assert_eq!(global.allows(permission, &other), want, "global {role:?} on other × {permission:?}");
            assert_eq!(global.allows_global(permission), want, "global {role:?} globally × {permission:?}");
            assert_eq!(scoped.allows(permission, &shop), want, "shop {role:?} on shop × {permission:?}");
            assert!(!scoped.allows(permission, &other), "shop {role:?} has nothing on other");
            assert!(!scoped.allows_global(permission), "an app grant is never global");
            checked += 1;
        }
    }
    assert_eq!(checked, 16);
    // Grants add up: a viewer everywhere who reviews one app.
    let mixed = session_principal(&fixture, "mixed", &[Grant::global(Role::Viewer), Grant::on_app(shop.clone(), Role::Reviewer)]);
    assert!(mixed.allows(Permission::Review, &shop) && !mixed.allows(Permission::Review, &other));
    assert!(mixed.allows(Permission::Read, &other) && !mixed.allows(Permission::Write, &shop));
    // Key scopes map one to one.
    for scope in Scope::ALL {
        let (secret, _) = fixture.tenancy.create_key(&root(), &shop, &[scope]).unwrap();
        let key = fixture.tenancy.authenticate(&secret).unwrap();
        for permission in Permission::ALL {
            assert_eq!(key.allows(permission, &shop), scope.permission() == permission, "{scope:?} key × {permission:?}");
            assert!(!key.allows(permission, &other));
        }
    }
}

fn only_global_admins_and_the_master_key_manage_apps_and_operators(backend: Backend) {
    let fixture = Fixture::new(backend);
    let (shop, other) = (app("shop"), app("other"));
    let tenancy = &fixture.tenancy;
    let shop_record = tenancy.create_app(&root(), &shop, None).unwrap();
    tenancy.create_app(&root(), &other, None).unwrap();
    let global_admin = session_principal(&fixture, "boss", &[Grant::global(Role::Admin)]);
    let shop_admin = session_principal(&fixture, "shopkeeper", &[Grant::on_app(shop.clone(), Role::Admin)]);
    let (secret, key_record) = tenancy.create_key(&root(), &shop, &[Scope::Admin, Scope::Read]).unwrap();
    let admin_key = tenancy.authenticate(&secret).unwrap();

    assert!(Principal::Master.require(Permission::Admin, None).is_ok());
    assert!(global_admin.require(Permission::Admin, None).is_ok());
    for principal in [&shop_admin, &admin_key] {
        match principal.require(Permission::Admin, None) {
            Err(Error::Forbidden { permission: Permission::Admin, scope }) => assert_eq!(scope, "every app"),
            other => panic!("expected Forbidden, got {other:?}"),
        }
        assert!(principal.require(Permission::Admin, Some(&shop)).is_ok(), "still the admin of its own app");
        let error = principal.require(Permission::Admin, Some(&other)).unwrap_err().to_string();
        assert_eq!(error, "not allowed: this needs the admin permission on app other");
    }

    let all = tenancy.apps();
    assert_eq!(global_admin.apps_visible(&all).len(), 2);
    assert_eq!(Principal::Master.apps_visible(&all).len(), 2);
    assert_eq!(shop_admin.apps_visible(&all), vec![shop_record.clone()]);
    assert_eq!(admin_key.apps_visible(&all), vec![shop_record]);

    assert_eq!(Principal::Master.actor(), Actor::Master);
    assert_eq!(global_admin.actor(), Actor::Operator { login: login("boss") });
    assert_eq!(admin_key.actor(), Actor::Key { key_id: key_record.key_id, app: Some(shop) });
    assert_eq!(tenancy.authenticate(crate::support::MASTER).unwrap().actor(), Actor::Master);
}
