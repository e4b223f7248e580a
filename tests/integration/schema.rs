//! docs/schema/<kind>.json is the JSON Schema of each report's `-o json` document, derived
//! from the report types (src/schema.rs): this test keeps the files current
//! (`KDB_UPDATE_SCHEMA=1` rewrites them); every report a test reads with `common::json` is
//! checked against them ([`assert_valid`]).

use serde_json::Value;

use crate::common::schema_dir;

fn text_of(schema: &Value) -> String {
    let mut text = serde_json::to_string_pretty(schema).unwrap();
    text.push('\n');
    text
}

pub use crate::common::assert_valid;

#[test]
fn schemas_in_docs_are_derived_from_the_report_types() {
    let dir = schema_dir();
    let update = std::env::var("KDB_UPDATE_SCHEMA").is_ok();
    let mut stale = Vec::new();
    for (kind, schema) in kubectl_db::schema::all() {
        jsonschema::meta::validate(&schema).unwrap_or_else(|e| panic!("{kind}: {e}"));
        let path = dir.join(format!("{kind}.json"));
        let text = text_of(&schema);
        if update {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, text).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            stale.push(kind);
        }
    }
    assert!(
        stale.is_empty(),
        "docs/schema is out of date ({}): run KDB_UPDATE_SCHEMA=1 cargo test --test integration schema::",
        stale.join(", ")
    );
}

#[test]
fn an_offline_report_validates_and_a_wrong_one_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("empty.sql");
    std::fs::write(&file, "").unwrap();
    let mut cmd = crate::common::clean_bin("kubectl-dbbackup");
    cmd.arg("verify").arg(&file).args(["-o", "json"]);
    let (_, stdout, _) = crate::common::output(&mut cmd);
    let mut report: Value = serde_json::from_str(&stdout).unwrap();
    assert_valid(&report);
    // The schema does constrain: a changed apiVersion or a field of the wrong type fails.
    report["ok"] = Value::String("no".into());
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(schema_dir().join("VerifyReport.json")).unwrap(),
    )
    .unwrap();
    assert!(!jsonschema::is_valid(&schema, &report));
    report["ok"] = Value::Bool(false);
    report["apiVersion"] = Value::String("kubectl-db/v2".into());
    assert!(!jsonschema::is_valid(&schema, &report));
}
