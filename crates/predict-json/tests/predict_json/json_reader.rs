//! The shared JSON reader under gcloud rules against serde_json, the reference for the wording
//! and positions of gcloud-rule syntax errors: on valid and on many randomly broken documents,
//! both must give the same value, or the same error text at the same line and column. Values are
//! read twice, once fully (`serde_json::Value`, every value through `deserialize_any`) and once
//! skipped (`IgnoredAny`, serde_json's separate skipping code).
//!
//! The one deliberate difference: `NaN` / `Infinity` tokens get their own error (serde_json says
//! `expected value` or `invalid number` there), so those cases only check that both fail.

// Test code: a failed unwrap is a failed test.

use predict_json::json::{self, Json, Number, Rules};
use serde::Deserialize as _;
use serde::de::IgnoredAny;
use test_rng::TestRng;

const SEEDS: &[&str] = &[
    r#"{"instances": [[0.0, 0.5, 1e-3, -2, 3.25E+2], [1, 2, 3, 4, 5]]}"#,
    r#"{"instances": [{"image": [1, 2], "key": "a\"b\\c\u00e9\ud83d\ude00"}], "signature_name": "x"}"#,
    "[1, 2, 3]\n",
    "[[1, 2], [3, 4]]",
    r#"{"b64": "AAE="}"#,
    r#"[true, false, null, "s", {}, [], -0, 18446744073709551615, -9223372036854775808]"#,
    r#"{"a": {"b": {"c": [1.5e300, 4.9e-324, 123456789012345678901234567890]}}}"#,
    "  {\n  \"instances\" :\n [ [ 1 ,\t2 ] ]\n}  ",
    r#""plain string""#,
    "12345",
];

const NOISE: &[u8] = b"[]{},:\"\\ -+.eE0159tfnulaxNIy\n\t/u\x01\xc3\xa9\xff";

fn mutate(rng: &mut TestRng, text: &[u8]) -> Vec<u8> {
    let mut out = text.to_vec();
    for _ in 0..1 + rng.below(3) {
        let at = rng.below(out.len() + 1);
        match rng.below(5) {
            0 if at < out.len() => {
                out.remove(at);
            }
            1 => out.insert(at, NOISE[rng.below(NOISE.len())]),
            2 if at < out.len() => out[at] = NOISE[rng.below(NOISE.len())],
            3 => out.truncate(at),
            _ => {
                let end = (at + rng.below(8)).min(out.len());
                let piece = out[at..end].to_vec();
                let to = rng.below(out.len() + 1);
                out.splice(to..to, piece);
            }
        }
    }
    out
}

/// `Ok(text of the value)` or `Err((message, line, column, is_non_finite))`.
type Outcome = Result<String, (String, usize, usize, bool)>;

fn ours_full(text: &[u8]) -> Outcome {
    let mut de = json::Deserializer::new(text, Rules::Gcloud);
    serde_json::Value::deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v.to_string()))
        .map_err(|e| {
            (
                e.reason().to_string(),
                e.line(),
                e.column(),
                e.non_finite_token().is_some(),
            )
        })
}

fn ours_skipped(text: &[u8]) -> Outcome {
    let mut de = json::Deserializer::new(text, Rules::Gcloud);
    IgnoredAny::deserialize(&mut de)
        .and_then(|_| de.end().map(|()| String::new()))
        .map_err(|e| {
            (
                e.reason().to_string(),
                e.line(),
                e.column(),
                e.non_finite_token().is_some(),
            )
        })
}

fn serde_outcome<T: serde::de::DeserializeOwned>(
    text: &[u8],
    show: impl Fn(T) -> String,
) -> Outcome {
    let mut de = serde_json::Deserializer::from_slice(text);
    T::deserialize(&mut de)
        .and_then(|v| de.end().map(|()| show(v)))
        .map_err(|e| {
            let message = e.to_string();
            let message = match message.rfind(" at line ") {
                Some(cut) => message[..cut].to_string(),
                None => message,
            };
            (message, e.line(), e.column(), false)
        })
}

fn agree(ours: &Outcome, reference: &Outcome) -> bool {
    match (ours, reference) {
        (Err((_, _, _, true)), Err(_)) => true,
        (a, b) => a == b,
    }
}

#[test]
fn gcloud_rules_read_like_serde_json() {
    let mut rng = TestRng::new(0x243f_6a88_85a3_08d3);
    let mut cases: Vec<Vec<u8>> = SEEDS.iter().map(|s| s.as_bytes().to_vec()).collect();
    for _ in 0..60_000 {
        let seed = SEEDS[rng.below(SEEDS.len())].as_bytes();
        cases.push(mutate(&mut rng, seed));
    }
    for depth in [126, 127, 128, 129] {
        cases.push(format!("{}1{}", "[".repeat(depth), "]".repeat(depth)).into_bytes());
        cases.push(format!("{}{}", "{\"a\":".repeat(depth), "}".repeat(depth)).into_bytes());
    }
    let mut failures = Vec::new();
    let mut errors = 0;
    for text in &cases {
        let full = ours_full(text);
        let reference = serde_outcome::<serde_json::Value>(text, |v| v.to_string());
        errors += usize::from(reference.is_err());
        if !agree(&full, &reference) {
            failures.push(format!(
                "full read of {:?}: ours {full:?}, serde_json {reference:?}",
                String::from_utf8_lossy(text)
            ));
        }
        let skipped = ours_skipped(text);
        let reference = serde_outcome::<IgnoredAny>(text, |_| String::new());
        if !agree(&skipped, &reference) {
            failures.push(format!(
                "skipping {:?}: ours {skipped:?}, serde_json {reference:?}",
                String::from_utf8_lossy(text)
            ));
        }
    }
    // The mutations must actually produce broken documents of many kinds.
    assert!(
        errors > 20_000,
        "only {errors} of {} cases were invalid",
        cases.len()
    );
    assert!(
        failures.is_empty(),
        "{} disagreements, first: {:#?}",
        failures.len(),
        &failures[..failures.len().min(8)]
    );
}

#[test]
fn tree_and_stream_agree_on_values() {
    let text = br#"{"instances": [[1, -2, 2.5e1, 18446744073709551615], {"k": "v\n"}], "n": null}"#;
    let tree = json::parse(text, Rules::TfServing).unwrap();
    let instances = tree.get("instances").unwrap();
    let Json::Array(items) = instances else {
        panic!("{instances:?}")
    };
    assert_eq!(
        items[0],
        Json::Numbers(vec![
            Number::Int(1),
            Number::Int(-2),
            Number::Float(25.0),
            Number::UInt(u64::MAX)
        ])
    );
    assert_eq!(items[1].get("k"), Some(&Json::Str("v\n".into())));
    let mut de = json::Deserializer::new(text, Rules::Gcloud);
    let value = serde_json::Value::deserialize(&mut de).unwrap();
    assert_eq!(value["instances"][0][3], serde_json::json!(u64::MAX));
    assert_eq!(value["instances"][1]["k"], "v\n");
}

#[test]
fn tf_serving_rules_accept_what_gcloud_rules_refuse() {
    for text in ["[NaN, Infinity, -Infinity, Inf]", "[1] trailing"] {
        assert!(
            json::parse(text.as_bytes(), Rules::TfServing).is_ok(),
            "{text}"
        );
        assert!(
            json::parse(text.as_bytes(), Rules::Gcloud).is_err(),
            "{text}"
        );
    }
    let e = json::parse(b"[1, NaN]", Rules::Gcloud).unwrap_err();
    assert_eq!((e.non_finite_token(), e.column()), (Some("NaN"), 5));
}
