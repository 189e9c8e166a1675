//! Catalog tests: loading JSON lines (with unknown fields, blank lines, bad lines) and lookups.

use meridian_catalog::{load_dir, CatalogLookup, Error, InMemoryCatalog, PassThroughCatalog};

#[test]
fn a_directory_loads_and_answers_lookups_in_order() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("catalog")).unwrap();
    let lines = [
        r#"{"id":"100","spu":7,"name":"Red shoe","image":"/i/100.jpg","price":1999,"brand":"x"}"#,
        "",
        r#"{"id":"101","spu":7,"name":"Blue shoe","image":"/i/101.jpg"}"#,
        r#"{"id":"sku-x","spu":8,"name":"Not numeric","image":""}"#,
    ];
    std::fs::write(dir.path().join("catalog/skus.jsonl"), lines.join("\n")).unwrap();
    let records = load_dir(dir.path()).unwrap();
    assert_eq!(records.len(), 3);
    assert_eq!(records[0].price, 1999);
    let catalog = InMemoryCatalog::from_records(&records);
    assert_eq!(catalog.len(), 2, "the non-numeric id is skipped");
    let infos = catalog.lookup(&[101, 5, 100]);
    assert_eq!(&*infos[0].as_ref().unwrap().name, "Blue shoe");
    assert!(infos[1].is_none());
    assert_eq!(infos[2].as_ref().unwrap().spu, 7);
}

#[test]
fn bad_lines_and_missing_files_say_where() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(load_dir(dir.path()), Err(Error::NotFound(_))));
    std::fs::write(dir.path().join("skus.jsonl"), "{\"id\":\"1\",\"spu\":1,\"name\":\"a\",\"image\":\"\"}\n{\"id\":2}\n").unwrap();
    let err = load_dir(dir.path()).unwrap_err();
    assert!(matches!(err, Error::InvalidRecord { line: 2, .. }), "{err}");
    assert!(err.to_string().contains("line 2"), "{err}");
}

#[test]
fn pass_through_shows_every_sku_as_its_own_spu() {
    let infos = PassThroughCatalog::default().lookup(&[3, 4]);
    assert_eq!(infos.iter().map(|i| i.as_ref().unwrap().spu).collect::<Vec<_>>(), vec![3, 4]);
}
