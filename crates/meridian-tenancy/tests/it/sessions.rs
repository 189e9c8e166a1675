//! Login and sessions: password checks, uniform failures, disabled operators, rate limits,
//! absolute and idle expiry on an injected clock, CSRF, logout, tokens stored hashed.

use crate::support::{app, contains, login, root, Backend, Fixture, HOUR, MINUTE, PASSWORD, T0};
use meridian_tenancy::{Error, Grant, LoginLimits, PasswordHashing, Role, TenancyConfig};
use std::time::{Duration, Instant};

both_stores!(
    login_needs_the_right_password,
    unknown_login_and_wrong_password_fail_alike,
    a_disabled_operator_is_refused_and_its_sessions_are_revoked,
    failed_logins_are_rate_limited_with_a_retry_time,
    sessions_expire_absolutely_and_when_idle,
    the_last_use_is_written_at_most_once_per_refresh_interval,
    tokens_and_passwords_are_stored_only_hashed,
    logout_revocation_and_password_changes_end_sessions,
    grant_changes_reach_open_sessions,
    ensure_operator_is_idempotent,
    the_last_enabled_global_admin_cannot_be_disabled_or_demoted,
);

fn with_operator(backend: Backend) -> Fixture {
    let fixture = Fixture::new(backend);
    fixture.tenancy.create_app(&root(), &app("shop"), None).unwrap();
    fixture.tenancy.create_operator(&root(), &login("alice"), "Alice", PASSWORD, &[Grant::on_app(app("shop"), Role::Operator)]).unwrap();
    fixture
}

fn login_needs_the_right_password(backend: Backend) {
    let fixture = with_operator(backend);
    let (token, session) = fixture.tenancy.login("alice", PASSWORD, "10.0.0.1", T0).unwrap();
    assert_eq!(session.login, login("alice"));
    assert_eq!(session.display_name, "Alice");
    assert_eq!(session.grants, vec![Grant::on_app(app("shop"), Role::Operator)]);
    assert_eq!((session.created_ms, session.expires_ms, session.idle_expires_ms), (T0, T0 + 12 * HOUR, T0 + 2 * HOUR));
    let again = fixture.tenancy.session(token.as_str(), T0 + 1).unwrap();
    assert_eq!(again.session_id, session.session_id);
    assert_eq!(again.csrf_token, session.csrf_token, "the CSRF token is stable for the session");
    assert!(session.csrf_matches(session.csrf_token.as_str()));
    assert!(!session.csrf_matches(""));
    let (_, second) = fixture.tenancy.login("alice", PASSWORD, "10.0.0.1", T0).unwrap();
    assert_ne!(second.session_id, session.session_id);
    assert!(!session.csrf_matches(second.csrf_token.as_str()), "another session's CSRF token does not match");
    assert!(matches!(fixture.tenancy.login("alice", "correct horse battery!", "10.0.0.1", T0), Err(Error::InvalidCredentials)));
    assert!(matches!(fixture.tenancy.login("alice", "", "10.0.0.1", T0), Err(Error::InvalidCredentials)));
    assert!(matches!(fixture.tenancy.session("ms_not_a_token", T0), Err(Error::UnknownSession)));
    assert!(matches!(fixture.tenancy.create_operator(&root(), &login("bob"), "Bob", "short", &[]), Err(Error::WeakPassword { min_chars: 10 })));
    assert!(fixture.tenancy.operator(&login("bob")).is_none());
    assert!(matches!(fixture.tenancy.create_operator(&root(), &login("alice"), "Alice 2", PASSWORD, &[]), Err(Error::OperatorExists(_))));
    assert!(matches!(
        fixture.tenancy.create_operator(&root(), &login("carol"), "Carol", PASSWORD, &[Grant::on_app(app("ghost"), Role::Viewer)]),
        Err(Error::UnknownApp(_))
    ));
}

fn unknown_login_and_wrong_password_fail_alike(backend: Backend) {
    let fixture = with_operator(backend);
    let wrong_password = fixture.tenancy.login("alice", "not the password", "10.0.0.1", T0).unwrap_err();
    let unknown_login = fixture.tenancy.login("mallory", "not the password", "10.0.0.1", T0).unwrap_err();
    let malformed_login = fixture.tenancy.login("Not A Login!", "not the password", "10.0.0.1", T0).unwrap_err();
    for error in [&wrong_password, &unknown_login, &malformed_login] {
        assert!(matches!(error, Error::InvalidCredentials), "{error:?}");
        assert_eq!(error.to_string(), "wrong login or password");
    }
}

/// The dummy verification makes an unknown login cost one argon2 verification. Measured
/// with a cost high enough (4 MiB) to dwarf the noise; memory store only, since timing
/// does not depend on the backend.
#[test]
fn an_unknown_login_costs_a_password_verification() {
    let config = TenancyConfig {
        password_hashing: PasswordHashing { memory_kib: 4096, iterations: 1, parallelism: 1 },
        login_limits: LoginLimits {
            failures_per_login_per_minute: 1000,
            attempts_per_login_per_minute: 1000,
            failures_per_client_per_minute: 1000,
            attempts_per_client_per_minute: 1000,
        },
        ..TenancyConfig::default()
    };
    let fixture = Fixture::with_config(Backend::Memory, config);
    fixture.tenancy.create_operator(&root(), &login("alice"), "Alice", PASSWORD, &[]).unwrap();
    let attempt = |name: &str| {
        let started = Instant::now();
        let result = fixture.tenancy.login(name, "not the password", "10.0.0.1", T0);
        assert!(matches!(result, Err(Error::InvalidCredentials)));
        started.elapsed()
    };
    // Interleaved, each going first in turn, so that both see the same load from the tests
    // running alongside; the fastest of each is the least disturbed.
    let (mut wrong_password, mut unknown_login) = (Duration::MAX, Duration::MAX);
    for round in 0..12 {
        if round % 2 == 0 {
            wrong_password = wrong_password.min(attempt("alice"));
            unknown_login = unknown_login.min(attempt("mallory"));
        } else {
            unknown_login = unknown_login.min(attempt("mallory"));
            wrong_password = wrong_password.min(attempt("alice"));
        }
    }
    eprintln!("login failure times (fastest of 12): wrong password {wrong_password:?}, unknown login {unknown_login:?}");
    assert!(wrong_password > Duration::from_micros(500), "the verification takes measurable time ({wrong_password:?})");
    assert!(
        unknown_login * 3 > wrong_password && wrong_password * 3 > unknown_login,
        "unknown login {unknown_login:?} vs wrong password {wrong_password:?}"
    );
}

fn a_disabled_operator_is_refused_and_its_sessions_are_revoked(backend: Backend) {
    let fixture = with_operator(backend);
    let (first, _) = fixture.tenancy.login("alice", PASSWORD, "10.0.0.1", T0).unwrap();
    let (second, _) = fixture.tenancy.login("alice", PASSWORD, "10.0.0.2", T0).unwrap();
    assert_eq!(fixture.tenancy.sessions_of(&login("alice")).len(), 2);
    let disabled = fixture.tenancy.disable_operator(&root(), &login("alice")).unwrap();
    assert!(disabled.disabled);
    for token in [&first, &second] {
        assert!(matches!(fixture.tenancy.session(token.as_str(), T0 + 1), Err(Error::UnknownSession)));
    }
    assert!(fixture.tenancy.sessions_of(&login("alice")).is_empty());
    assert!(!fixture.store.dump().iter().any(|(table, _)| *table == "operator_sessions"), "the sessions are deleted from the store");
    assert!(matches!(fixture.tenancy.login("alice", PASSWORD, "10.0.0.1", T0 + 2), Err(Error::OperatorDisabled)));
    assert!(matches!(fixture.tenancy.login("alice", "not the password", "10.0.0.1", T0 + 3), Err(Error::InvalidCredentials)));
    let fixture = fixture.reopen();
    assert!(fixture.tenancy.operator(&login("alice")).unwrap().disabled);
    assert!(matches!(fixture.tenancy.session(first.as_str(), T0 + 4), Err(Error::UnknownSession)));
    assert!(matches!(fixture.tenancy.login("alice", PASSWORD, "10.0.0.1", T0 + 5), Err(Error::OperatorDisabled)));
    fixture.tenancy.enable_operator(&root(), &login("alice")).unwrap();
    let (token, _) = fixture.tenancy.login("alice", PASSWORD, "10.0.0.1", T0 + 6).unwrap();
    fixture.tenancy.session(token.as_str(), T0 + 7).unwrap();
    assert!(matches!(fixture.tenancy.disable_operator(&root(), &login("ghost")), Err(Error::UnknownOperator(_))));
}

fn failed_logins_are_rate_limited_with_a_retry_time(backend: Backend) {
    let fixture = with_operator(backend);
    // Five failures per login and minute (the default).
    for i in 0..5 {
        assert!(matches!(fixture.tenancy.login("alice", "guess number one", "10.0.0.1", T0 + i), Err(Error::InvalidCredentials)));
    }
    match fixture.tenancy.login("alice", PASSWORD, "10.0.0.9", T0 + 5) {
        Err(Error::RateLimited { retry_after_secs }) => assert_eq!(retry_after_secs, 12, "one more attempt every 60 s / 5"),
        other => panic!("expected RateLimited, got {other:?}"),
    }
    let message = fixture.tenancy.login("alice", PASSWORD, "10.0.0.9", T0 + 5).unwrap_err().to_string();
    assert_eq!(message, "too many login attempts; retry after 12 s");
    // Refused attempts do not count, so the wait does not grow; after it the right
    // password works.
    fixture.tenancy.login("alice", PASSWORD, "10.0.0.9", T0 + 12_000).unwrap();

    // Twenty failures per client and minute, across logins.
    for i in 0..20 {
        let name = format!("nobody{i}");
        assert!(matches!(fixture.tenancy.login(&name, "guess number one", "10.6.6.6", T0 + 20 * MINUTE), Err(Error::InvalidCredentials)));
    }
    match fixture.tenancy.login("alice", PASSWORD, "10.6.6.6", T0 + 20 * MINUTE) {
        Err(Error::RateLimited { retry_after_secs }) => assert_eq!(retry_after_secs, 3),
        other => panic!("expected RateLimited for the client, got {other:?}"),
    }
    fixture.tenancy.login("alice", PASSWORD, "10.0.0.7", T0 + 20 * MINUTE).unwrap();
}

fn sessions_expire_absolutely_and_when_idle(backend: Backend) {
    let fixture = with_operator(backend);
    // Idle: two hours without use.
    let (idle, _) = fixture.tenancy.login("alice", PASSWORD, "10.0.0.1", T0).unwrap();
    fixture.tenancy.session(idle.as_str(), T0 + 2 * HOUR - 1).unwrap();
    let refreshed = fixture.tenancy.session(idle.as_str(), T0 + 2 * HOUR - 1).unwrap();
    assert_eq!(refreshed.idle_expires_ms, T0 + 4 * HOUR - 1, "a use moves the idle expiry");
    fixture.tenancy.session(idle.as_str(), T0 + 4 * HOUR - 2).unwrap();
    let (lazy, _) = fixture.tenancy.login("alice", PASSWORD, "10.0.0.1", T0).unwrap();
    assert!(matches!(fixture.tenancy.session(lazy.as_str(), T0 + 2 * HOUR), Err(Error::SessionExpired)));

    // Absolute: twelve hours however active.
    let (busy, _) = fixture.tenancy.login("alice", PASSWORD, "10.0.0.1", T0).unwrap();
    for hour in 1..12 {
        let session = fixture.tenancy.session(busy.as_str(), T0 + hour * HOUR).unwrap();
        assert_eq!(session.expires_ms, T0 + 12 * HOUR);
        assert!(session.idle_expires_ms <= session.expires_ms);
    }
    fixture.tenancy.session(busy.as_str(), T0 + 12 * HOUR - 1).unwrap();
    assert!(matches!(fixture.tenancy.session(busy.as_str(), T0 + 12 * HOUR), Err(Error::SessionExpired)));

    // Expired sessions are purged; then they are unknown, also after a restart.
    let (fresh, _) = fixture.tenancy.login("alice", PASSWORD, "10.0.0.1", T0 + 11 * HOUR).unwrap();
    assert_eq!(fixture.tenancy.purge_expired_sessions(T0 + 12 * HOUR).unwrap(), 3);
    assert_eq!(fixture.tenancy.purge_expired_sessions(T0 + 12 * HOUR).unwrap(), 0);
    let fixture = fixture.reopen();
    for token in [&idle, &lazy, &busy] {
        assert!(matches!(fixture.tenancy.session(token.as_str(), T0 + 12 * HOUR), Err(Error::UnknownSession)));
    }
    fixture.tenancy.session(fresh.as_str(), T0 + 12 * HOUR).unwrap();
}

fn the_last_use_is_written_at_most_once_per_refresh_interval(backend: Backend) {
    let fixture = with_operator(backend);
    let (token, _) = fixture.tenancy.login("alice", PASSWORD, "10.0.0.1", T0).unwrap();
    let commits = fixture.store.commits();
    for seconds in [1, 10, 30, 59] {
        let session = fixture.tenancy.session(token.as_str(), T0 + seconds * 1000).unwrap();
        assert_eq!(session.last_seen_ms, T0);
    }
    assert_eq!(fixture.store.commits(), commits, "no write within a minute of the last one");
    assert_eq!(fixture.tenancy.session(token.as_str(), T0 + MINUTE).unwrap().last_seen_ms, T0 + MINUTE);
    fixture.tenancy.session(token.as_str(), T0 + MINUTE + 30_000).unwrap();
    assert_eq!(fixture.store.commits(), commits + 1);
    // The refreshed time was persisted: after a restart the idle expiry counts from it.
    let fixture = fixture.reopen();
    fixture.tenancy.session(token.as_str(), T0 + MINUTE + 2 * HOUR - 1).unwrap();
}

fn tokens_and_passwords_are_stored_only_hashed(backend: Backend) {
    let fixture = with_operator(backend);
    let (token, session) = fixture.tenancy.login("alice", PASSWORD, "10.0.0.1", T0).unwrap();
    fixture.tenancy.session(token.as_str(), T0 + 2 * MINUTE).unwrap();
    fixture.tenancy.set_password(&root(), &login("alice"), "a brand new passphrase").unwrap();
    let (token, session2) = fixture.tenancy.login("alice", "a brand new passphrase", "10.0.0.1", T0 + 3 * MINUTE).unwrap();
    let secrets: [&[u8]; 6] = [
        token.as_str().as_bytes(),
        &token.as_str().as_bytes()[3..],
        session.csrf_token.as_str().as_bytes(),
        session2.csrf_token.as_str().as_bytes(),
        PASSWORD.as_bytes(),
        b"a brand new passphrase",
    ];
    let rows = fixture.store.dump();
    for (table, (key, value)) in &rows {
        for secret in secrets {
            assert!(!contains(key, secret) && !contains(value, secret), "a secret is stored in table {table}");
        }
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(token.as_str().as_bytes());
    assert!(rows.iter().any(|(table, (key, _))| *table == "operator_sessions" && key.as_slice() == digest.as_slice()), "stored under its SHA-256");
    let operator = rows.iter().find(|(table, _)| *table == "operators").unwrap();
    assert!(contains(&operator.1 .1, b"$argon2id$v=19$"), "the password is an argon2id PHC string");
    assert!(!format!("{token:?}{session:?}").contains(token.as_str()), "Debug output hides the token");
}

fn logout_revocation_and_password_changes_end_sessions(backend: Backend) {
    let fixture = with_operator(backend);
    let (token, _) = fixture.tenancy.login("alice", PASSWORD, "10.0.0.1", T0).unwrap();
    assert!(fixture.tenancy.logout(token.as_str()).unwrap());
    assert!(matches!(fixture.tenancy.session(token.as_str(), T0), Err(Error::UnknownSession)));
    assert!(!fixture.tenancy.logout(token.as_str()).unwrap(), "a second logout finds nothing");

    let (a, _) = fixture.tenancy.login("alice", PASSWORD, "10.0.0.1", T0).unwrap();
    let (b, _) = fixture.tenancy.login("alice", PASSWORD, "10.0.0.2", T0).unwrap();
    assert_eq!(fixture.tenancy.revoke_sessions(&root(), &login("alice")).unwrap(), 2);
    assert!(matches!(fixture.tenancy.session(a.as_str(), T0), Err(Error::UnknownSession)));
    assert!(matches!(fixture.tenancy.session(b.as_str(), T0), Err(Error::UnknownSession)));

    let (c, _) = fixture.tenancy.login("alice", PASSWORD, "10.0.0.1", T0).unwrap();
    assert!(matches!(fixture.tenancy.set_password(&root(), &login("alice"), "too short"), Err(Error::WeakPassword { .. })));
    fixture.tenancy.session(c.as_str(), T0).unwrap();
    let changed = fixture.tenancy.set_password(&root(), &login("alice"), "a brand new passphrase").unwrap();
    assert_eq!(changed.password_changed_ms, T0);
    assert!(matches!(fixture.tenancy.session(c.as_str(), T0), Err(Error::UnknownSession)), "a new password ends every session");
    assert!(matches!(fixture.tenancy.login("alice", PASSWORD, "10.0.0.1", T0), Err(Error::InvalidCredentials)));
    let fixture = fixture.reopen();
    for token in [&token, &a, &b, &c] {
        assert!(matches!(fixture.tenancy.session(token.as_str(), T0), Err(Error::UnknownSession)));
    }
    fixture.tenancy.login("alice", "a brand new passphrase", "10.0.0.1", T0).unwrap();
}

fn grant_changes_reach_open_sessions(backend: Backend) {
    let fixture = with_operator(backend);
    let (token, session) = fixture.tenancy.login("alice", PASSWORD, "10.0.0.1", T0).unwrap();
    assert_eq!(session.grants, vec![Grant::on_app(app("shop"), Role::Operator)]);
    fixture.tenancy.set_grants(&root(), &login("alice"), &[Grant::global(Role::Viewer), Grant::global(Role::Viewer)]).unwrap();
    let session = fixture.tenancy.session(token.as_str(), T0 + 1).unwrap();
    assert_eq!(session.grants, vec![Grant::global(Role::Viewer)], "new grants apply at once, de-duplicated");
    fixture.tenancy.set_display_name(&root(), &login("alice"), "Alice M.").unwrap();
    assert_eq!(fixture.tenancy.session(token.as_str(), T0 + 2).unwrap().display_name, "Alice M.");
    assert!(matches!(fixture.tenancy.set_grants(&root(), &login("alice"), &[Grant::on_app(app("ghost"), Role::Admin)]), Err(Error::UnknownApp(_))));
}

fn ensure_operator_is_idempotent(backend: Backend) {
    let fixture = Fixture::new(backend);
    let demo = fixture.tenancy.ensure_operator(&login("demo"), "demo-password", &[Grant::global(Role::Admin)]).unwrap();
    assert_eq!(demo.grants, vec![Grant::global(Role::Admin)]);
    let again = fixture.tenancy.ensure_operator(&login("demo"), "another-password", &[]).unwrap();
    assert_eq!(again, demo, "an existing operator is left as it is");
    fixture.tenancy.login("demo", "demo-password", "127.0.0.1", T0).unwrap();
    assert!(matches!(fixture.tenancy.login("demo", "another-password", "127.0.0.1", T0), Err(Error::InvalidCredentials)));
    let fixture = fixture.reopen();
    assert_eq!(fixture.tenancy.ensure_operator(&login("demo"), "demo-password", &[]).unwrap(), demo);
    assert_eq!(fixture.tenancy.list_operators().len(), 1);
}

fn the_last_enabled_global_admin_cannot_be_disabled_or_demoted(backend: Backend) {
    let fixture = with_operator(backend);
    let tenancy = &fixture.tenancy;
    tenancy.create_operator(&root(), &login("root1"), "Root 1", PASSWORD, &[Grant::global(Role::Admin)]).unwrap();
    tenancy.create_operator(&root(), &login("root2"), "Root 2", PASSWORD, &[Grant::global(Role::Admin)]).unwrap();
    // Another global admin remains: allowed.
    tenancy.disable_operator(&root(), &login("root1")).unwrap();
    let last = |r: Result<meridian_tenancy::Operator, Error>| matches!(r, Err(Error::LastGlobalAdmin(ref who)) if who == "root2");
    assert!(last(tenancy.disable_operator(&root(), &login("root2"))), "disabling the last global admin is refused");
    assert!(last(tenancy.set_grants(&root(), &login("root2"), &[Grant::on_app(app("shop"), Role::Admin)])), "demoting it too");
    assert!(!tenancy.operator(&login("root2")).unwrap().disabled, "the refused change changed nothing");
    // Operators who are not global admins are not held back by it.
    tenancy.disable_operator(&root(), &login("alice")).unwrap();
    // With root1 enabled again, root2 may go.
    tenancy.enable_operator(&root(), &login("root1")).unwrap();
    tenancy.set_grants(&root(), &login("root2"), &[Grant::on_app(app("shop"), Role::Admin)]).unwrap();
    assert!(matches!(tenancy.disable_operator(&root(), &login("root1")), Err(Error::LastGlobalAdmin(ref who)) if who == "root1"));
}
