//! Property tests: no input makes the manifest decoder panic, and every failure is a
//! located error, not a crash.

use hostkit_api::AnyObject;
use hostkit_api::manifest::parse_documents;
use proptest::prelude::*;
use serde_json::Value;

const SEED: &str = include_str!("../../manifests/examples/toys.yaml");

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[a-zA-Z0-9 ${}./:_-]{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("Service"),
            Just("Host"),
            Just("hostkit.dev/v1alpha1"),
            Just("spec"),
            Just("0750")
        ]
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("apiVersion".to_string()),
                    Just("kind".to_string()),
                    Just("metadata".to_string()),
                    Just("name".to_string()),
                    Just("spec".to_string()),
                    Just("daemon".to_string()),
                    Just("exec".to_string()),
                    Just("storage".to_string()),
                    "[a-z]{1,8}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
        for result in parse_documents("fuzz.yaml", &text) {
            if let Err(errors) = result {
                prop_assert!(!errors.is_empty());
                for e in errors {
                    prop_assert!(e.line >= 1);
                    prop_assert!(!e.message.is_empty());
                }
            }
        }
    }

    #[test]
    fn mutated_manifests_never_panic(cuts in prop::collection::vec((0usize..SEED.len(), "[\\[\\]{}:\\-#'\" \\n\\ta-z0-9]{0,3}"), 1..6)) {
        let mut text = SEED.to_string();
        for (at, insert) in cuts {
            let at = at.min(text.len());
            if text.is_char_boundary(at) {
                text.insert_str(at, &insert);
            }
        }
        let _ = parse_documents("fuzz.yaml", &text);
    }

    #[test]
    fn arbitrary_json_objects_never_panic(mut value in arb_json(), kind in prop_oneof![Just("Service"), Just("Host"), Just("PolicyWindow"), Just("GitSource"), Just("Rollback")]) {
        if let Value::Object(map) = &mut value {
            map.insert("apiVersion".into(), Value::String("hostkit.dev/v1alpha1".into()));
            map.insert("kind".into(), Value::String(kind.into()));
        }
        if let Ok(object) = AnyObject::from_value(value) {
            let _ = object.validate();
            let mut object = object;
            object.apply_defaults();
            let _ = object.to_value();
        }
    }
}
