//! The audit log: one entry per mutating call with before/after, atomic with the change,
//! queries by app/actor/action/time newest first with paging, per-app key layout.

use crate::support::{app, login, root, Backend, Fixture, MINUTE, PASSWORD, T0};
use meridian_state::{KvStore, WriteBatch, WriteOp};
use meridian_tenancy::{mask, Actor, AuditCursor, AuditEntry, AuditFilter, AuditId, Error, Grant, NewAuditEntry, Role, Scope};
use serde_json::json;

both_stores!(
    every_mutating_call_writes_one_entry_with_before_and_after,
    a_failed_commit_leaves_neither_the_change_nor_its_entry,
    queries_filter_by_app_actor_action_and_time_newest_first_with_paging,
    a_query_for_one_app_reads_only_that_apps_entries,
    other_capabilities_commit_their_change_with_their_entry,
    ids_and_times_only_go_forward_across_restarts,
    concurrent_writers_get_dense_ids_and_lose_nothing,
);

fn all_entries(fixture: &Fixture) -> Vec<AuditEntry> {
    fixture.tenancy.audit().query(&AuditFilter::default(), None, 1000).unwrap().entries
}

fn every_mutating_call_writes_one_entry_with_before_and_after(backend: Backend) {
    let fixture = Fixture::new(backend);
    let tenancy = &fixture.tenancy;
    let shop = app("shop");
    let alice = login("alice");
    // Each call commits once, and that one batch holds the change and its entry.
    let one_commit = |table: &str| {
        let batches = fixture.store.take_batches();
        assert_eq!(batches.len(), 1, "one commit for a change of {table}");
        let tables: Vec<&str> = batches[0].ops().iter().map(|op| match op {
            WriteOp::Put { table, .. } | WriteOp::Delete { table, .. } | WriteOp::DeletePrefix { table, .. } => *table,
        }).collect();
        assert!(tables.contains(&table) && tables.contains(&"audit_log"), "{table}: the batch writes {tables:?}");
    };
    tenancy.create_app(&root(), &shop, Some("Europe/Paris")).unwrap();
    one_commit("apps");
    tenancy.update_app(&root(), &shop, "Asia/Tokyo").unwrap();
    one_commit("apps");
    tenancy.set_app_name(&root(), &shop, Some("Shop")).unwrap();
    one_commit("apps");
    let (secret, key) = tenancy.create_key(&root(), &shop, &[Scope::Write]).unwrap();
    one_commit("api_keys");
    tenancy.revoke_key(&root(), &shop, &key.key_id).unwrap();
    one_commit("api_keys");
    tenancy.create_operator(&root(), &alice, "Alice", PASSWORD, &[Grant::global(Role::Viewer)]).unwrap();
    one_commit("operators");
    tenancy.set_grants(&root(), &alice, &[Grant::on_app(shop.clone(), Role::Reviewer)]).unwrap();
    one_commit("operators");
    tenancy.set_display_name(&root(), &alice, "Alice M.").unwrap();
    one_commit("operators");
    tenancy.set_password(&root(), &alice, "another long password").unwrap();
    one_commit("operators");
    let (token, session) = tenancy.login("alice", "another long password", "10.0.0.1", T0).unwrap();
    one_commit("operator_sessions");
    tenancy.revoke_sessions(&root(), &alice).unwrap();
    one_commit("operator_sessions");
    tenancy.disable_operator(&root(), &alice).unwrap();
    one_commit("operators");
    tenancy.enable_operator(&root(), &alice).unwrap();
    one_commit("operators");
    let (token2, _) = tenancy.login("alice", "another long password", "10.0.0.1", T0).unwrap();
    one_commit("operator_sessions");
    tenancy.logout(token2.as_str()).unwrap();
    one_commit("operator_sessions");

    let entries = all_entries(&fixture);
    let summary: Vec<(&str, &str, Option<&str>, bool, bool)> =
        entries.iter().rev().map(|e| (e.action.as_str(), e.target.as_str(), e.app.as_ref().map(|a| a.as_str()), e.before.is_some(), e.after.is_some())).collect();
    let session_id = session.session_id.as_str();
    assert_eq!(
        summary,
        vec![
            ("app.create", "shop", Some("shop"), false, true),
            ("app.update", "shop", Some("shop"), true, true),
            ("app.rename", "shop", Some("shop"), true, true),
            ("key.create", key.key_id.as_str(), Some("shop"), false, true),
            ("key.revoke", key.key_id.as_str(), Some("shop"), true, false),
            ("operator.create", "alice", None, false, true),
            ("operator.grants", "alice", None, true, true),
            ("operator.rename", "alice", None, true, true),
            ("operator.password", "alice", None, true, true),
            ("session.login", session_id, None, false, true),
            ("operator.sessions_revoke", "alice", None, false, true),
            ("operator.disable", "alice", None, true, true),
            ("operator.enable", "alice", None, true, true),
            ("session.login", entries[1].target.as_str(), None, false, true),
            ("session.logout", entries[1].target.as_str(), None, false, false),
        ]
    );
    let ids: Vec<u64> = entries.iter().rev().map(|e| e.id.0).collect();
    assert_eq!(ids, (1..=15).collect::<Vec<_>>(), "ids are dense and ascending in commit order");
    let by_action = |action: &str| entries.iter().find(|e| e.action == action).unwrap();
    let update = by_action("app.update");
    assert_eq!((update.before.as_ref().unwrap()["time_zone"].clone(), update.after.as_ref().unwrap()["time_zone"].clone()), (json!("Europe/Paris"), json!("Asia/Tokyo")));
    assert_eq!(update.actor, root());
    let disable = by_action("operator.disable");
    assert_eq!((disable.before.as_ref().unwrap()["disabled"].clone(), disable.after.as_ref().unwrap()["disabled"].clone()), (json!(false), json!(true)));
    let grants = by_action("operator.grants");
    assert_eq!(grants.after.as_ref().unwrap()["grants"], json!([{"app": "shop", "role": "reviewer"}]));
    assert_eq!(by_action("operator.sessions_revoke").after, Some(json!({"sessions_revoked": 1})));
    assert_eq!(by_action("session.login").actor, Actor::Operator { login: alice.clone() });
    // No secret in any entry: not the key, not the passwords, not the hash, not the token.
    let text = serde_json::to_string(&entries).unwrap();
    for secret in [secret.as_str(), PASSWORD, "another long password", "$argon2", token.as_str(), session.csrf_token.as_str()] {
        assert!(!text.contains(secret), "{secret:?} is in the audit log");
    }
}

fn a_failed_commit_leaves_neither_the_change_nor_its_entry(backend: Backend) {
    let fixture = Fixture::new(backend);
    let tenancy = &fixture.tenancy;
    let (shop, alice) = (app("shop"), login("alice"));
    tenancy.create_app(&root(), &shop, None).unwrap();
    let (secret, key) = tenancy.create_key(&root(), &shop, &[Scope::Read]).unwrap();
    tenancy.create_operator(&root(), &alice, "Alice", PASSWORD, &[]).unwrap();
    let (token, _) = tenancy.login("alice", PASSWORD, "10.0.0.1", T0).unwrap();
    let rows_before = fixture.store.dump();
    let n_entries = all_entries(&fixture).len();

    fixture.store.set_failing(true);
    let attempts: Vec<(&str, Result<(), Error>)> = vec![
        ("create_app", tenancy.create_app(&root(), &app("new"), None).map(drop)),
        ("update_app", tenancy.update_app(&root(), &shop, "Europe/Paris").map(drop)),
        ("set_app_name", tenancy.set_app_name(&root(), &shop, Some("Shop")).map(drop)),
        ("create_key", tenancy.create_key(&root(), &shop, &[Scope::Write]).map(drop)),
        ("revoke_key", tenancy.revoke_key(&root(), &shop, &key.key_id).map(drop)),
        ("create_operator", tenancy.create_operator(&root(), &login("bob"), "Bob", PASSWORD, &[]).map(drop)),
        ("set_grants", tenancy.set_grants(&root(), &alice, &[Grant::global(Role::Admin)]).map(drop)),
        ("set_password", tenancy.set_password(&root(), &alice, "another long password").map(drop)),
        ("disable_operator", tenancy.disable_operator(&root(), &alice).map(drop)),
        ("revoke_sessions", tenancy.revoke_sessions(&root(), &alice).map(drop)),
        ("login", tenancy.login("alice", PASSWORD, "10.0.0.1", T0).map(drop)),
        ("logout", tenancy.logout(token.as_str()).map(drop)),
        ("record", tenancy.audit().record(NewAuditEntry::new(root(), "test.thing", "x")).map(drop)),
    ];
    for (call, result) in attempts {
        assert!(matches!(result, Err(Error::State(_))), "{call} should fail with the store, got {result:?}");
    }
    fixture.store.set_failing(false);

    // Nothing changed: not in the store, not in memory.
    assert_eq!(fixture.store.dump(), rows_before);
    assert_eq!(all_entries(&fixture).len(), n_entries);
    assert!(!tenancy.app_exists(&app("new")));
    let shop_record = tenancy.app(&shop).unwrap();
    assert_eq!((shop_record.time_zone.as_str(), shop_record.name.as_deref()), ("UTC", None));
    assert_eq!(tenancy.list_keys(&shop), vec![key]);
    assert!(tenancy.authenticate_key(&secret).is_some());
    assert!(tenancy.operator(&login("bob")).is_none());
    let alice_now = tenancy.operator(&alice).unwrap();
    assert!(alice_now.grants.is_empty() && !alice_now.disabled);
    tenancy.session(token.as_str(), T0).expect("the session survives the failed revocations");
    assert_eq!(tenancy.sessions_of(&alice).len(), 1);
    tenancy.login("alice", PASSWORD, "10.0.0.1", T0).expect("the old password still works");

    // The next successful change takes the next id.
    let created = tenancy.create_app(&root(), &app("new"), None).unwrap();
    let newest = &all_entries(&fixture)[0];
    assert_eq!((newest.action.as_str(), newest.target.as_str()), ("app.create", created.id.as_str()));
    assert_eq!(newest.id, AuditId(n_entries as u64 + 2), "after the failures, only the extra login's entry came in between");
}

fn queries_filter_by_app_actor_action_and_time_newest_first_with_paging(backend: Backend) {
    let fixture = Fixture::new(backend);
    let tenancy = &fixture.tenancy;
    let (shop, blog) = (app("shop"), app("blog"));
    let bob = Actor::Operator { login: login("bob") };
    tenancy.create_app(&root(), &shop, None).unwrap();
    tenancy.create_app(&root(), &blog, None).unwrap();
    // 30 entries, one a minute, alternating apps and actors.
    for i in 0..30 {
        fixture.clock.advance(MINUTE);
        let (app_id, actor) = if i % 2 == 0 { (&shop, root()) } else { (&blog, bob.clone()) };
        let action = if i % 3 == 0 { "slot.publish" } else { "slot.edit" };
        tenancy.audit().record(NewAuditEntry::new(actor, action, format!("slot-{i}")).app(app_id.clone())).unwrap();
    }
    let everything = all_entries(&fixture);
    assert_eq!(everything.len(), 32);
    assert!(everything.windows(2).all(|w| (w[0].time_ms, w[0].id) > (w[1].time_ms, w[1].id)), "newest first");

    let expect = |filter: &AuditFilter| -> Vec<AuditEntry> {
        everything
            .iter()
            .filter(|e| filter.app.as_ref().is_none_or(|a| e.app.as_ref() == Some(a)))
            .filter(|e| filter.actor.as_ref().is_none_or(|a| *a == e.actor))
            .filter(|e| filter.action_prefix.as_deref().is_none_or(|p| e.action.starts_with(p)))
            .filter(|e| filter.from_ms.is_none_or(|t| e.time_ms >= t))
            .filter(|e| filter.to_ms.is_none_or(|t| e.time_ms < t))
            .cloned()
            .collect()
    };
    let paged = |filter: &AuditFilter, limit: usize| -> Vec<AuditEntry> {
        let mut out = Vec::new();
        let mut cursor = None;
        for _ in 0..100 {
            let page = tenancy.audit().query(filter, cursor, limit).unwrap();
            assert!(page.entries.len() <= limit);
            out.extend(page.entries);
            match page.next_cursor {
                // Through its text form, as an HTTP client would pass it back.
                Some(next) => cursor = Some(next.to_string().parse::<AuditCursor>().unwrap()),
                None => return out,
            }
        }
        panic!("paging does not end");
    };
    let filters = [
        AuditFilter::default(),
        AuditFilter { app: Some(shop.clone()), ..AuditFilter::default() },
        AuditFilter { app: Some(blog.clone()), actor: Some(bob.clone()), ..AuditFilter::default() },
        AuditFilter { actor: Some(root()), ..AuditFilter::default() },
        AuditFilter { action_prefix: Some("slot.pub".into()), ..AuditFilter::default() },
        AuditFilter { action_prefix: Some("app.".into()), ..AuditFilter::default() },
        AuditFilter { from_ms: Some(T0 + 10 * MINUTE), to_ms: Some(T0 + 20 * MINUTE), ..AuditFilter::default() },
        AuditFilter { app: Some(shop.clone()), from_ms: Some(T0 + 5 * MINUTE), to_ms: Some(T0 + 25 * MINUTE + 1), action_prefix: Some("slot.".into()), ..AuditFilter::default() },
        AuditFilter { to_ms: Some(T0), ..AuditFilter::default() },
        AuditFilter { from_ms: Some(T0 + 31 * MINUTE), ..AuditFilter::default() },
    ];
    for filter in &filters {
        let want = expect(filter);
        for limit in [1, 3, 7, 1000] {
            assert_eq!(paged(filter, limit), want, "filter {filter:?}, limit {limit}");
        }
    }
    // Spot checks against hand-counted numbers, so the oracle above is not the only judge.
    assert_eq!(expect(&filters[1]).len(), 16, "15 shop slots + app.create of shop");
    assert_eq!(expect(&filters[6]).len(), 10, "minutes 10..=19");
    assert_eq!(expect(&filters[8]).len(), 0);
    assert!(matches!(tenancy.audit().query(&AuditFilter::default(), None, 0), Err(Error::InvalidArgument(_))));
    assert!(matches!(tenancy.audit().query(&AuditFilter::default(), None, 1001), Err(Error::InvalidArgument(_))));
    assert!(matches!("garbage".parse::<AuditCursor>(), Err(Error::InvalidCursor(_))));
}

fn a_query_for_one_app_reads_only_that_apps_entries(backend: Backend) {
    let fixture = Fixture::new(backend);
    let tenancy = &fixture.tenancy;
    let (big, small) = (app("big"), app("small"));
    tenancy.create_app(&root(), &big, None).unwrap();
    tenancy.create_app(&root(), &small, None).unwrap();
    for i in 0..600 {
        fixture.clock.advance(1000);
        tenancy.audit().record(NewAuditEntry::new(root(), "slot.edit", format!("b{i}")).app(big.clone())).unwrap();
    }
    for i in 0..4 {
        tenancy.audit().record(NewAuditEntry::new(root(), "slot.edit", format!("s{i}")).app(small.clone())).unwrap();
    }
    let before = fixture.store.rows_read();
    let page = tenancy.audit().query(&AuditFilter { app: Some(small.clone()), ..AuditFilter::default() }, None, 100).unwrap();
    assert_eq!(page.entries.len(), 5, "four slots and the app's creation");
    assert_eq!(page.next_cursor, None);
    assert_eq!(fixture.store.rows_read() - before, 5, "not one of the other app's 601 entries was read");
    // A window in time starts at its end: ten entries from the middle of 600 cost ten reads.
    let before = fixture.store.rows_read();
    let window = AuditFilter { app: Some(big), to_ms: Some(T0 + 300_000), ..AuditFilter::default() };
    let page = tenancy.audit().query(&window, None, 10).unwrap();
    assert_eq!(page.entries.iter().map(|e| e.target.as_str()).collect::<Vec<_>>(), ["b298", "b297", "b296", "b295", "b294", "b293", "b292", "b291", "b290", "b289"]);
    assert_eq!(fixture.store.rows_read() - before, 10);
}

fn other_capabilities_commit_their_change_with_their_entry(backend: Backend) {
    let fixture = Fixture::new(backend);
    let audit = fixture.tenancy.audit();
    let shop = app("shop");
    let mut batch = WriteBatch::new();
    batch.put("test_slots", b"banner".to_vec(), b"v2".to_vec());
    let entry = audit
        .record_in(batch, NewAuditEntry {
            actor: root(),
            app: Some(shop.clone()),
            action: "slot.publish",
            target: "banner".into(),
            before: Some(json!({"version": 1})),
            after: Some(json!({"version": 2, "webhook_secret": mask("whsec_0123456789abcdef")})),
        })
        .unwrap();
    assert_eq!(entry.after.as_ref().unwrap()["webhook_secret"], json!("whse…"));
    assert_eq!(fixture.store.get("test_slots", b"banner").unwrap(), Some(b"v2".to_vec()));
    fixture.store.set_failing(true);
    let mut batch = WriteBatch::new();
    batch.put("test_slots", b"banner".to_vec(), b"v3".to_vec());
    assert!(audit.record_in(batch, NewAuditEntry::new(root(), "slot.publish", "banner").app(shop.clone())).is_err());
    fixture.store.set_failing(false);
    assert_eq!(fixture.store.get("test_slots", b"banner").unwrap(), Some(b"v2".to_vec()), "the change did not commit");
    let page = audit.query(&AuditFilter { app: Some(shop), ..AuditFilter::default() }, None, 10).unwrap();
    assert_eq!(page.entries, vec![entry], "nor did its entry");
    assert!(matches!(audit.record(NewAuditEntry::new(root(), "Slot Publish", "banner")), Err(Error::InvalidArgument(_))));
}

fn ids_and_times_only_go_forward_across_restarts(backend: Backend) {
    let fixture = Fixture::new(backend);
    let first = fixture.tenancy.audit().record(NewAuditEntry::new(Actor::System, "test.one", "a")).unwrap();
    assert_eq!((first.id, first.time_ms), (AuditId(1), T0));
    fixture.clock.set(T0 - 5 * MINUTE);
    let second = fixture.tenancy.audit().record(NewAuditEntry::new(Actor::System, "test.two", "b")).unwrap();
    assert_eq!((second.id, second.time_ms), (AuditId(2), T0), "a clock going back does not move audit time back");
    let fixture = fixture.reopen();
    let third = fixture.tenancy.audit().record(NewAuditEntry::new(Actor::System, "test.three", "c")).unwrap();
    assert_eq!((third.id, third.time_ms), (AuditId(3), T0), "ids and times continue after a restart");
    assert_eq!(all_entries(&fixture).iter().map(|e| e.id.0).collect::<Vec<_>>(), vec![3, 2, 1]);
}

fn concurrent_writers_get_dense_ids_and_lose_nothing(backend: Backend) {
    let fixture = Fixture::new(backend);
    let shop = app("shop");
    fixture.tenancy.create_app(&root(), &shop, None).unwrap();
    let secrets: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..4)
            .map(|worker| {
                let (tenancy, shop) = (&fixture.tenancy, &shop);
                scope.spawn(move || {
                    let mut secrets = Vec::new();
                    for i in 0..10 {
                        let (secret, _) = tenancy.create_key(&root(), shop, &[Scope::Read]).unwrap();
                        assert!(tenancy.authenticate_key(&secret).is_some());
                        secrets.push(secret);
                        tenancy.audit().record(NewAuditEntry::new(Actor::System, "test.tick", format!("{worker}-{i}"))).unwrap();
                    }
                    secrets
                })
            })
            .collect();
        workers.into_iter().flat_map(|worker| worker.join().unwrap()).collect()
    });
    assert_eq!(fixture.tenancy.list_keys(&shop).len(), 40);
    let entries = all_entries(&fixture);
    assert_eq!(entries.iter().map(|e| e.id.0).collect::<Vec<_>>(), (1..=81).rev().collect::<Vec<_>>());
    let fixture = fixture.reopen();
    assert!(secrets.iter().all(|secret| fixture.tenancy.authenticate_key(secret).is_some()));
    assert_eq!(all_entries(&fixture).len(), 81);
}
