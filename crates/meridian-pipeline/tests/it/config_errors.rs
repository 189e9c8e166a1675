//! Config errors are precise: they name the line, the section entry and the field.

use crate::config_error;
use meridian_pipeline::{Error, Pipeline};

#[test]
fn bad_toml_gives_line_and_column() {
    let err = config_error("[[routes]]\ntopic = \"a\"\nformat = json\n");
    assert!(err.starts_with("pipeline config line 3 column 10"), "{err}");
}

#[test]
fn unknown_transformer_type_is_named() {
    let err = config_error("[[routes]]\ntopic = \"a\"\n\n[[transformers]]\ntype = \"lookpu\"\ntable = \"x\"\n");
    assert!(err.contains("line 4") || err.contains("line 5"), "{err}");
    assert!(err.contains("unknown variant `lookpu`") && err.contains("lookup"), "{err}");
}

#[test]
fn unknown_field_is_named() {
    let err = config_error("[[transformers]]\ntype = \"drop\"\npaths = [\"device\"]\n\n[[transformers]]\ntype = \"rename\"\nfrom = \"props.a\"\nto = \"props.b\"\ntoo = 1\n");
    assert!(err.starts_with("line 5, transformers[1]: unknown field `too`, expected one of"), "{err}");
    let err = config_error("[[routes]]\ntopic = \"a\"\n[[routes]]\nfields = []\n");
    assert!(err.starts_with("line 3, routes[1]: missing field `topic`"), "{err}");
    let err = config_error("[[routes]]\ntopic = \"a\"\nformt = \"json\"\n");
    assert!(err.contains("line 3") && err.contains("unknown field `formt`"), "{err}");
}

#[test]
fn bad_topic_name() {
    let err = config_error("[[routes]]\ntopic = \"ok\"\n\n# second\n[[routes]]\ntopic = \"Bad Topic\"\n");
    assert!(err.starts_with("line 5, routes[1].topic: "), "{err}");
    assert!(err.contains("invalid topic name \"Bad Topic\"") && err.contains("[a-z0-9_.-]"), "{err}");
}

#[test]
fn missing_table_file() {
    let dir = tempfile::tempdir().unwrap();
    let err = Pipeline::from_toml_str("[[tables]]\nname = \"sku\"\npath = \"dims/nope.csv\"\nkey = \"sku_id\"\n", dir.path()).unwrap_err();
    assert!(matches!(err, Error::TableIo { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.starts_with("table \"sku\": cannot read ") && text.contains("dims/nope.csv"), "{text}");
}

#[test]
fn bad_expression() {
    let err = config_error("[[routes]]\ntopic = \"a\"\nwhen = 'action == \"view\" &&'\n");
    assert!(err.starts_with("line 1, routes[0].when: invalid expression"), "{err}");
    assert!(err.contains("needs 2 operand(s)"), "{err}");
    let err = config_error("[[transformers]]\ntype = \"filter\"\nwhen = 'contxt.city == 1'\n");
    assert!(err.contains("transformers[0].when") && err.contains("unknown event path \"contxt.city\""), "{err}");
    let err = config_error("[[transformers]]\ntype = \"filter\"\nwhen = { \"context.planet\" = 1 }\n");
    assert!(err.contains("unknown context field \"planet\""), "{err}");
}

#[test]
fn bad_paths_and_references() {
    let err = config_error("[[transformers]]\ntype = \"lookup\"\ntable = \"sku\"\nkey = \"target.id\"\nfields = { spu = \"props.spu\" }\n");
    assert!(err.contains("transformers[0].table") && err.contains("unknown table \"sku\""), "{err}");
    let err = config_error("[[transformers]]\ntype = \"drop\"\npaths = [\"time\"]\n");
    assert!(err.contains("transformers[0].paths") && err.contains("cannot be removed"), "{err}");
    let err = config_error("[[transformers]]\ntype = \"set\"\nvalues = { \"context.version\" = \"latest\" }\n");
    assert!(err.contains("transformers[0].values.context.version") && err.contains("semver"), "{err}");
    let err = config_error("[[parsers]]\ntime_zone = \"Europe/Paris\"\n");
    assert!(err.contains("parsers[0].time_zone") && err.contains("+08:00"), "{err}");
    let err = config_error("[[routes]]\ntopic = \"a\"\nfields = [\"colour\"]\n");
    assert!(err.contains("routes[0].fields") && err.contains("unknown event path \"colour\""), "{err}");
}

#[test]
fn from_file_names_the_file_and_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pipeline.toml");
    std::fs::write(&path, "[[routes]]\ntopic = \"a\"\n[[routes]]\ntopic = \"B\"\n").unwrap();
    let err = Pipeline::from_file(&path).unwrap_err().to_string();
    assert!(err.starts_with(&format!("{} line 3, routes[1].topic", path.display())), "{err}");
    let err = Pipeline::from_file(&dir.path().join("absent.toml")).unwrap_err().to_string();
    assert!(err.starts_with("cannot read pipeline config") && err.contains("absent.toml"), "{err}");
}
