//! Bounce, auto-reply, complaint and reply samples in the styles of Postfix, Exim,
//! Exchange/Outlook, Gmail, qmail and Sendmail (written for these tests), with the
//! classification each must get (`corpus/expected.json`).

use std::path::Path;

use coldsend_core::classify::{Kind, classify};
use serde_json::Value;

#[test]
fn every_sample_gets_its_expected_classification() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let expected: serde_json::Map<String, Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).expect("expected.json"))
            .expect("json");
    assert!(expected.len() >= 14);
    for (file, want) in &expected {
        let raw = std::fs::read(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let got = classify(&raw);
        let kind = serde_json::to_value(got.kind).expect("kind");
        assert_eq!(kind, want["kind"], "{file}: {got:?}");
        if got.kind == Kind::Bounce {
            let b = got.bounce.as_ref().expect("bounce details");
            assert_eq!(Value::Bool(b.hard), want["hard"], "{file}: {b:?}");
            assert_eq!(serde_json::to_value(b.reason).expect("reason"), want["reason"], "{file}: {b:?}");
            assert_eq!(b.status.as_deref(), want["status"].as_str(), "{file}: {b:?}");
            if let Some(r) = want.get("recipient") {
                assert_eq!(b.recipient.as_deref(), r.as_str(), "{file}: {b:?}");
            }
            if let Some(o) = want.get("original") {
                assert_eq!(b.original_message_id.as_deref(), o.as_str(), "{file}: {b:?}");
            }
        }
        if let Some(d) = want.get("returns_on") {
            assert_eq!(got.returns_on.map(|d| d.to_string()).as_deref(), d.as_str(), "{file}");
        }
    }
}
