//! Loading tests: precedence (overrides > environment > file > defaults), errors that name
//! the file and line or the variable, unknown settings, masking of secrets.

use meridian_config::{env_var_name, known_keys, load, masked_toml, parse_override, LoadError, Sources};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Server {
    listen: String,
    master_key: Option<String>,
    workers: u32,
}

impl Default for Server {
    fn default() -> Self {
        Server { listen: "127.0.0.1:7070".into(), master_key: None, workers: 2 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct History {
    enabled: bool,
    max_items: usize,
    redis_prefix: String,
}

impl Default for History {
    fn default() -> Self {
        History { enabled: true, max_items: 200, redis_prefix: "meridian:".into() }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Root {
    server: Server,
    history: History,
}

fn sources(file: Option<&std::path::Path>, env: &[(&str, &str)], overrides: &[&str]) -> Sources {
    Sources {
        file: file.map(Into::into),
        env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        overrides: overrides.iter().map(|o| parse_override(o).unwrap()).collect(),
        bare_section: Some("server"),
        not_settings: vec!["MERIDIAN_REQUIRE_BACKENDS"],
    }
}

#[test]
fn every_key_is_known_with_its_variable() {
    let keys = known_keys::<Root>();
    assert_eq!(keys, vec!["history.enabled", "history.max_items", "history.redis_prefix", "server.listen", "server.master_key", "server.workers"]);
    assert_eq!(env_var_name("history.max_items"), "MERIDIAN_HISTORY_MAX_ITEMS");
}

#[test]
fn overrides_beat_the_environment_which_beats_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("meridian.toml");
    std::fs::write(&file, "[server]\nlisten = \"0.0.0.0:1\"\nworkers = 8\n[history]\nmax_items = 50\n").unwrap();
    let (root, warnings): (Root, _) = load(&sources(Some(&file), &[("MERIDIAN_HISTORY_MAX_ITEMS", "70"), ("MERIDIAN_WORKERS", "4")], &[])).unwrap();
    assert_eq!((root.server.listen.as_str(), root.server.workers, root.history.max_items), ("0.0.0.0:1", 4, 70));
    assert!(root.history.enabled, "defaults fill what nobody set");
    assert!(warnings.is_empty(), "{warnings:?}");
    let (root, _): (Root, _) = load(&sources(Some(&file), &[("MERIDIAN_HISTORY_MAX_ITEMS", "70")], &["history.max_items=90", "history.enabled=false"])).unwrap();
    assert_eq!((root.history.max_items, root.history.enabled), (90, false));
    let (root, _): (Root, _) = load(&sources(None, &[("MERIDIAN_SERVER_MASTER_KEY", "12345")], &[])).unwrap();
    assert_eq!(root.server.master_key.as_deref(), Some("12345"), "a key of digits is still text");
}

#[test]
fn unknown_keys_in_the_file_name_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("meridian.toml");
    std::fs::write(&file, "[server]\nlisten = \"127.0.0.1:9\"\n\n[history]\nmax_itmes = 5\n").unwrap();
    let err = load::<Root>(&sources(Some(&file), &[], &[])).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, LoadError::File { .. }), "{text}");
    assert!(text.contains("meridian.toml") && text.contains("line 5") && text.contains("max_itmes"), "{text}");
    std::fs::write(&file, "[sever]\nlisten = \"x\"\n").unwrap();
    let text = load::<Root>(&sources(Some(&file), &[], &[])).unwrap_err().to_string();
    assert!(text.contains("line 1") && text.contains("sever"), "{text}");
    std::fs::write(&file, "[history]\nmax_items = \"many\"\n").unwrap();
    let text = load::<Root>(&sources(Some(&file), &[], &[])).unwrap_err().to_string();
    assert!(text.contains("line 2"), "{text}");
    let missing = dir.path().join("absent.toml");
    assert!(matches!(load::<Root>(&sources(Some(&missing), &[], &[])), Err(LoadError::Read { .. })));
}

#[test]
fn bad_values_name_their_source_and_unknown_settings_are_refused() {
    let err = load::<Root>(&sources(None, &[("MERIDIAN_HISTORY_MAX_ITEMS", "lots")], &[])).unwrap_err().to_string();
    assert!(err.contains("MERIDIAN_HISTORY_MAX_ITEMS"), "{err}");
    let err = load::<Root>(&sources(None, &[], &["history.max_items=-1"])).unwrap_err().to_string();
    assert!(err.contains("history.max_items"), "{err}");
    let err = load::<Root>(&sources(None, &[], &["history.max_item=1"])).unwrap_err();
    assert!(matches!(err, LoadError::UnknownSetting { .. }), "{err}");
    assert!(matches!(parse_override("no-equals-sign"), Err(LoadError::InvalidOverride(_))));
    let (_, warnings) = load::<Root>(&sources(None, &[("MERIDIAN_HISTORY_MAX_ITEM", "1"), ("MERIDIAN_REQUIRE_BACKENDS", "1"), ("PATH", "/bin")], &[])).unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("MERIDIAN_HISTORY_MAX_ITEM"));
}

#[test]
fn the_effective_config_masks_secrets() {
    let (root, _): (Root, _) = load(&sources(None, &[("MERIDIAN_MASTER_KEY", "very-secret")], &[])).unwrap();
    let text = masked_toml(&root, &["server.master_key".into()]);
    assert!(!text.contains("very-secret"), "{text}");
    assert!(text.contains("master_key = \"********\""), "{text}");
    assert!(text.contains("[history]\nenabled = true\nmax_items = 200"), "{text}");
    let reparsed: Root = toml::from_str(&text.replace("\"********\"", "\"x\"")).unwrap();
    assert_eq!(reparsed.history, root.history, "the printed config is valid TOML for the same settings");
    let text = masked_toml(&Root::default(), &["server.master_key".into()]);
    assert!(text.contains("# master_key is not set"), "{text}");
}
