//! Our float printers against CPython's, on many random values: `repr(float)` (gcloud's JSON and
//! list cells), gcloud's `TransformFloat` (float table cells, copied here as the 8-line Python
//! function gcloud 528 uses, `lib/googlecloudsdk/core/resource/resource_transform.py`) and TF
//! Serving's `WriteDecimal` rule expressed with C's `%g` through Python's `%` operator.
//!
//! Needs `python3` on PATH (standard library only); fails, rather than skips, without it.

// Test code: a failed unwrap is a failed test.

use std::io::Write as _;
use std::process::{Command, Stdio};

use predict_json::{NonFinite, gcloud_table_float, python_repr, tf_serving_f32, tf_serving_f64};
use test_rng::TestRng;

const PYTHON: &str = r#"
import struct, sys
def transform_float(r, precision=6):
    number = float(r)
    representation = '{{number:.{precision}}}'.format(precision=precision).format(number=number)
    exponent_index = representation.find('e+')
    if exponent_index >= 0:
        exponent = int(representation[exponent_index + 2:])
        if exponent < 9:
            return '{number:.1f}'.format(number=number)
    return representation
for line in sys.stdin:
    kind, bits = line.split()
    if kind == 'f':
        x = struct.unpack('<f', struct.pack('<I', int(bits, 16)))[0]
        tfs = '%g' % x
        if struct.unpack('<f', struct.pack('<f', float(tfs)))[0] != x:
            tfs = '%.9g' % x
    else:
        x = struct.unpack('<d', struct.pack('<Q', int(bits, 16)))[0]
        tfs = '%g' % x
        if float(tfs) != x:
            tfs = '%.17g' % x
    if '.' not in tfs and 'e' not in tfs:
        tfs += '.0'
    print(repr(x), transform_float(x), tfs)
"#;

#[test]
fn float_text_matches_cpython() {
    let mut rng = TestRng::new(0x9e37_79b9_7f4a_7c15);
    // (line for python, the value, whether it is a float32)
    let mut values: Vec<(String, f64, bool)> = Vec::new();
    for i in 0..40_000 {
        let bits = rng.next_u64();
        if i % 2 == 0 {
            // Random float32 bit patterns, plus probabilities-like values in (0, 1).
            let f = if i % 4 == 0 {
                f32::from_bits(bits as u32)
            } else {
                (bits >> 40) as f32 / (1u64 << 24) as f32
            };
            if f.is_finite() {
                values.push((format!("f {:08x}", f.to_bits()), f64::from(f), true));
            }
        } else {
            let d = if i % 4 == 1 {
                f64::from_bits(bits)
            } else {
                (bits >> 11) as f64 / (1u64 << 53) as f64 * 1e6
            };
            if d.is_finite() {
                values.push((format!("d {:016x}", d.to_bits()), d, false));
            }
        }
    }
    for special in [
        0.0, -0.0, 1.0, 0.1, 1e16, 1e15, 1e-5, 1e-4, 123456.25, 999999.5, 1e9, 99999.95,
    ] {
        values.push((format!("d {:016x}", f64::to_bits(special)), special, false));
    }
    let mut child = Command::new("python3")
        .args(["-c", PYTHON])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 must be on PATH for this test (standard library only)");
    let mut stdin = child.stdin.take().unwrap();
    let input: String = values
        .iter()
        .map(|(line, _, _)| format!("{line}\n"))
        .collect();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(output.status.success(), "python3 failed");
    let text = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), values.len());
    let mut mismatches = Vec::new();
    for ((input, value, is_f32), line) in values.iter().zip(&lines) {
        let tf_serving = if *is_f32 {
            tf_serving_f32(*value as f32)
        } else {
            tf_serving_f64(*value)
        };
        let ours = format!(
            "{} {} {tf_serving}",
            python_repr(*value, NonFinite::Repr),
            gcloud_table_float(*value)
        );
        if ours != *line {
            mismatches.push(format!("{input}: python `{line}`, ours `{ours}`"));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches, first: {:?}",
        mismatches.len(),
        &mismatches[..mismatches.len().min(10)]
    );
}
