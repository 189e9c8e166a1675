//! The conformance suite every [`ProfileStore`] backend passes: backends call
//! [`run_all`] from their tests with a factory making a fresh, empty store.

use crate::state::UserKey;
use crate::store::{ProfileStore, UserWrite};
use meridian_event::AppId;

/// Runs every check against stores made by `make`; panics naming the failing check.
pub fn run_all(make: &mut dyn FnMut() -> Box<dyn ProfileStore>) {
    unknown_users_read_empty(&*make());
    writes_set_replace_and_remove_fields(&*make());
    applying_twice_is_harmless(&*make());
    clear_removes_every_field_then_sets(&*make());
    users_and_apps_do_not_leak_into_each_other(&*make());
    users_list_in_order_with_paging(&*make());
    binary_values_round_trip(&*make());
    scopes_of_one_user_read_back_together(&*make());
    a_full_write_then_a_partial_one_in_one_call(&*make());
    a_prepared_write_stores_what_the_write_says(&*make());
}

fn a_prepared_write_stores_what_the_write_says(store: &dyn ProfileStore) {
    let (u, v) = (key("app", "prepared"), key("app", "plain"));
    store.apply(&[write(&u, &[("m", b"old"), ("a:gone", b"x")], &[])]).unwrap();
    let mut full = UserWrite { clear: true, ..write(&u, &[("m", b"m1"), ("a:1", b"1")], &[]) };
    store.prepare(&mut full);
    let mut partial = write(&v, &[("m", b"m2")], &[]);
    store.prepare(&mut partial);
    store.apply(&[full, partial]).unwrap();
    assert_eq!(fields(store, &u), vec![("a:1".into(), b"1".to_vec()), ("m".into(), b"m1".to_vec())], "a prepared full write replaces every field");
    assert_eq!(fields(store, &v), vec![("m".into(), b"m2".to_vec())], "a prepared partial write sets its fields");
}

fn a_full_write_then_a_partial_one_in_one_call(store: &dyn ProfileStore) {
    let u = key("app", "twice");
    store.apply(&[write(&u, &[("m", b"old"), ("a:gone", b"x")], &[])]).unwrap();
    let full = UserWrite { clear: true, ..write(&u, &[("m", b"m1"), ("a:1", b"1")], &[]) };
    store.apply(&[full, write(&u, &[("a:2", b"2")], &["a:1"])]).unwrap();
    assert_eq!(fields(store, &u), vec![("a:2".into(), b"2".to_vec()), ("m".into(), b"m1".to_vec())], "the second write builds on the first");
}

fn key(app: &str, user: &str) -> UserKey {
    UserKey::new(AppId::new(app).expect("valid app"), user)
}

fn write(user: &UserKey, set: &[(&str, &[u8])], remove: &[&str]) -> UserWrite {
    UserWrite {
        user: Some(user.clone()),
        clear: false,
        set: set.iter().map(|(f, v)| (f.to_string(), v.to_vec())).collect(),
        remove: remove.iter().map(|f| f.to_string()).collect(),
        scope: String::new(),
        prepared: None,
    }
}

fn fields(store: &dyn ProfileStore, user: &UserKey) -> Vec<(String, Vec<u8>)> {
    let mut f = store.read_many(std::slice::from_ref(user)).expect("read_many").remove(0);
    f.sort();
    f
}

fn unknown_users_read_empty(store: &dyn ProfileStore) {
    let u = key("app", "nobody");
    assert_eq!(store.read_many(&[u.clone(), u.clone()]).unwrap(), vec![Vec::new(), Vec::new()], "unknown users have no fields");
    assert_eq!(store.read_field(&u, "m").unwrap(), None);
    store.apply(&[]).unwrap();
    assert!(store.users(&AppId::new("app").unwrap(), None, 10).unwrap().is_empty());
}

fn writes_set_replace_and_remove_fields(store: &dyn ProfileStore) {
    let u = key("app", "u1");
    store.apply(&[write(&u, &[("m", b"meta1"), ("a:orders@1", b"b1")], &[])]).unwrap();
    store.apply(&[write(&u, &[("a:orders@1", b"b2"), ("a:views@2", b"v")], &["m"])]).unwrap();
    assert_eq!(fields(store, &u), vec![("a:orders@1".into(), b"b2".to_vec()), ("a:views@2".into(), b"v".to_vec())], "set replaces, remove deletes");
    assert_eq!(store.read_field(&u, "a:views@2").unwrap().as_deref(), Some(&b"v"[..]));
    assert_eq!(store.read_field(&u, "m").unwrap(), None);
}

fn applying_twice_is_harmless(store: &dyn ProfileStore) {
    let u = key("app", "u2");
    let writes = vec![write(&u, &[("m", b"x")], &[]), write(&u, &[("a:k", b"y")], &["m"])];
    store.apply(&writes).unwrap();
    let once = fields(store, &u);
    store.apply(&writes).unwrap();
    assert_eq!(fields(store, &u), once, "a redo applied again leaves the same fields");
    assert_eq!(once, vec![("a:k".into(), b"y".to_vec())], "writes apply in order");
}

fn clear_removes_every_field_then_sets(store: &dyn ProfileStore) {
    let u = key("app", "u3");
    store.apply(&[write(&u, &[("m", b"x"), ("a:1", b"1"), ("a:2", b"2")], &[])]).unwrap();
    store.apply(&[UserWrite { clear: true, ..UserWrite::new(u.clone()) }]).unwrap();
    assert!(fields(store, &u).is_empty(), "clear erases every field");
    store.apply(&[UserWrite { clear: true, set: vec![("m".into(), b"new".to_vec())], ..UserWrite::new(u.clone()) }]).unwrap();
    assert_eq!(fields(store, &u), vec![("m".into(), b"new".to_vec())], "clear happens before the sets of the same write");
}

fn users_and_apps_do_not_leak_into_each_other(store: &dyn ProfileStore) {
    // Ids that are prefixes of each other, in two apps that are prefixes of each other.
    let a = key("shop", "u");
    let b = key("shop", "u1");
    let c = key("shop2", "u");
    store.apply(&[write(&a, &[("m", b"a")], &[]), write(&b, &[("m", b"b")], &[]), write(&c, &[("m", b"c")], &[])]).unwrap();
    assert_eq!(fields(store, &a), vec![("m".into(), b"a".to_vec())]);
    assert_eq!(fields(store, &b), vec![("m".into(), b"b".to_vec())]);
    assert_eq!(fields(store, &c), vec![("m".into(), b"c".to_vec())]);
    store.apply(&[UserWrite { clear: true, ..UserWrite::new(a.clone()) }]).unwrap();
    assert_eq!(fields(store, &b), vec![("m".into(), b"b".to_vec())], "clearing u leaves u1");
    assert_eq!(fields(store, &c), vec![("m".into(), b"c".to_vec())], "clearing shop/u leaves shop2/u");
}

fn users_list_in_order_with_paging(store: &dyn ProfileStore) {
    let app = AppId::new("listing").unwrap();
    let ids = ["a", "a1", "b", "c", "d"];
    for id in ids {
        store.apply(&[write(&key("listing", id), &[("m", b"x"), ("a:1", b"y")], &[])]).unwrap();
    }
    store.apply(&[write(&key("listingx", "zz"), &[("m", b"x")], &[])]).unwrap();
    assert_eq!(store.users(&app, None, 10).unwrap(), ids.to_vec(), "every user once, in order, of this app only");
    assert_eq!(store.users(&app, None, 2).unwrap(), vec!["a", "a1"]);
    assert_eq!(store.users(&app, Some("a1"), 2).unwrap(), vec!["b", "c"]);
    assert_eq!(store.users(&app, Some("d"), 2).unwrap(), Vec::<String>::new());
}

fn scopes_of_one_user_read_back_together(store: &dyn ProfileStore) {
    let u = key("app", "scoped");
    let mut core = write(&u, &[("m:core", b"c"), ("a:orders@1", b"o")], &[]);
    core.scope = "core".into();
    store.apply(&[write(&u, &[("m", b"d")], &[]), core]).unwrap();
    assert_eq!(
        fields(store, &u),
        vec![("a:orders@1".into(), b"o".to_vec()), ("m".into(), b"d".to_vec()), ("m:core".into(), b"c".to_vec())],
        "fields written under two scopes all read back"
    );
    let mut again = write(&u, &[("m:core", b"c2")], &["a:orders@1"]);
    again.scope = "core".into();
    store.apply(&[again]).unwrap();
    assert_eq!(fields(store, &u), vec![("m".into(), b"d".to_vec()), ("m:core".into(), b"c2".to_vec())], "a scope's write leaves the other scope");
    assert_eq!(store.users(&AppId::new("app").unwrap(), Some("s"), 10).unwrap(), vec!["scoped"], "listed once");
}

fn binary_values_round_trip(store: &dyn ProfileStore) {
    let u = key("app", "bin");
    let value: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    store.apply(&[write(&u, &[("a:big", &value)], &[])]).unwrap();
    assert_eq!(store.read_field(&u, "a:big").unwrap(), Some(value), "large binary values come back intact");
}

#[cfg(test)]
mod tests {
    use crate::store::EmbeddedProfileStore;
    use meridian_state::MemoryStore;
    use std::sync::Arc;

    #[test]
    fn embedded_store_passes_the_suite() {
        let config = crate::ActionsConfig { groups: vec![crate::config::GroupConfig { name: "core".into(), topic: "orders".into() }], ..Default::default() };
        super::run_all(&mut || Box::new(EmbeddedProfileStore::for_config(Arc::new(MemoryStore::new()), &config)));
    }
}
