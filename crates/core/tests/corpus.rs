//! Data-driven classification tests: every `tests/corpus/<case>.eml` has a
//! `<case>.json` saying what it must be classified as (`kind`; for bounces `reason`,
//! `class`, `hard`, `status` and, when given, `recipient` and `original`; for auto-replies
//! `returns_on` when given). Add a case by adding the two files.

use std::path::Path;

use coldsend_core::classify::classify;
use serde_json::Value;

#[test]
fn every_sample_gets_its_expected_classification() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .expect("corpus dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 14, "cases: {}", cases.len());
    let mut failures = Vec::new();
    for eml in &cases {
        let name = eml.file_name().and_then(|n| n.to_str()).unwrap_or("?").to_owned();
        let want: Value = serde_json::from_str(
            &std::fs::read_to_string(eml.with_extension("json")).unwrap_or_else(|e| panic!("{name}: no .json: {e}")),
        )
        .unwrap_or_else(|e| panic!("{name}.json: {e}"));
        let raw = std::fs::read(eml).unwrap_or_else(|e| panic!("{name}: {e}"));
        let got = classify(&raw);
        let mut check = |what: &str, got: Value, want: &Value| {
            if &got != want {
                failures.push(format!("{name}: {what} is {got}, expected {want}"));
            }
        };
        check("kind", serde_json::to_value(got.kind()).expect("kind"), &want["kind"]);
        if let Some(b) = got.bounce() {
            check("reason", serde_json::to_value(b.reason).expect("reason"), &want["reason"]);
            check("class", serde_json::to_value(b.class).expect("class"), &want["class"]);
            check("hard", Value::Bool(b.hard), &want["hard"]);
            check("status", serde_json::to_value(&b.status).expect("status"), &want["status"]);
            for (field, value) in [("recipient", &b.recipient), ("original", &b.original_message_id)] {
                if let Some(w) = want.get(field) {
                    check(field, serde_json::to_value(value).expect("value"), w);
                }
            }
        }
        if let Some(d) = want.get("returns_on") {
            check("returns_on", serde_json::to_value(got.returns_on().map(|d| d.to_string())).expect("date"), d);
        }
    }
    assert!(failures.is_empty(), "{} of {} cases differ:\n{}", failures.len(), cases.len(), failures.join("\n"));
}
