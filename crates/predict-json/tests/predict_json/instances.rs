//! Instances -> tensors: gcloud's rules, and the exact message for each kind of bad input.

// Test code: a failed unwrap is a failed test.
use std::collections::BTreeMap;

use predict_json::{
    InstanceAt, InstanceBatch, InstanceFormat, MAX_LINE_BYTES, PredictJsonError, RecordBatcher,
    instances_from_json_array, instances_from_json_values, parse_instances, read_instances,
};
use savedmodel_format::{DataType, HostTensor, SignatureInfo, TensorData, TensorSpec};

fn signature(inputs: &[(&str, DataType, Option<Vec<i64>>)]) -> SignatureInfo {
    let spec = |(name, dtype, shape): &(&str, DataType, Option<Vec<i64>>)| {
        (
            name.to_string(),
            TensorSpec {
                tensor_name: format!("{name}:0"),
                dtype: *dtype,
                shape: shape.clone(),
            },
        )
    };
    SignatureInfo {
        name: "serving_default".into(),
        method_name: "tensorflow/serving/predict".into(),
        inputs: inputs.iter().map(spec).collect(),
        outputs: BTreeMap::from([spec(&("y", DataType::Float, Some(vec![-1])))]),
    }
}

fn image_signature() -> SignatureInfo {
    signature(&[("image", DataType::Float, Some(vec![-1, 784]))])
}

fn image_line(len: usize, value: f32) -> String {
    let values: Vec<String> = (0..len).map(|_| value.to_string()).collect();
    format!("[{}]", values.join(", "))
}

fn parse(
    text: &str,
    format: InstanceFormat,
    sig: &SignatureInfo,
) -> Result<InstanceBatch, PredictJsonError> {
    parse_instances(text.as_bytes(), format, sig)
}

fn parse_lines(text: &str, sig: &SignatureInfo) -> Result<InstanceBatch, PredictJsonError> {
    parse(text, InstanceFormat::JsonLines, sig)
}

fn error_text(result: Result<InstanceBatch, PredictJsonError>) -> String {
    match result {
        Ok(batch) => panic!("expected an error, got {} instances", batch.num_instances),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bare_and_named_instances_stack_into_one_tensor() {
    let sig = image_signature();
    let text = format!(
        "{}\n{{\"image\": {}}}\n{}\n",
        image_line(784, 0.5),
        image_line(784, 0.25),
        image_line(784, 1.0)
    );
    let batch = parse_lines(&text, &sig).unwrap();
    assert_eq!(batch.num_instances, 3);
    let image = &batch.inputs["image"];
    assert_eq!(image.shape(), &[3, 784]);
    let TensorData::F32(values) = image.data() else {
        panic!("not f32")
    };
    assert_eq!(
        (values[0], values[784], values[2 * 784 + 783]),
        (0.5, 0.25, 1.0)
    );
}

#[test]
fn floats_are_parsed_as_doubles_then_rounded_like_numpy() {
    let sig = signature(&[("x", DataType::Float, Some(vec![-1, 3]))]);
    // 0.1 as f64 then f32; an integer; a value that is exact in f32.
    let batch = parse_lines("[0.1, 3, 0.0039215688593685627]\n", &sig).unwrap();
    let TensorData::F32(values) = batch.inputs["x"].data() else {
        panic!("not f32")
    };
    assert_eq!(values, &[0.1f64 as f32, 3.0, 1.0f32 / 255.0]);
}

#[test]
fn wrong_length_names_line_input_expected_and_found() {
    let sig = image_signature();
    let text = format!(
        "{}\n{}\n{}\n",
        image_line(784, 0.0),
        image_line(784, 0.0),
        image_line(783, 0.0)
    );
    assert_eq!(
        error_text(parse_lines(&text, &sig)),
        "line 3: input \"image\" expects 784 numbers, found 783"
    );
    let text = format!("{}\n", image_line(785, 0.0));
    assert_eq!(
        error_text(parse_lines(&text, &sig)),
        "line 1: input \"image\" expects 784 numbers, found 785"
    );
}

#[test]
fn string_where_a_number_is_expected() {
    let sig = image_signature();
    let mut values: Vec<String> = (0..784).map(|_| "0".to_string()).collect();
    values[5] = "\"abc\"".into();
    let text = format!("{}\n[{}]\n", image_line(784, 0.0), values.join(","));
    assert_eq!(
        error_text(parse_lines(&text, &sig)),
        "line 2: input \"image\" expects a number (float32) at [5], found the string \"abc\""
    );
}

#[test]
fn nan_and_infinity_tokens_are_rejected_with_their_column() {
    let sig = signature(&[("x", DataType::Float, Some(vec![-1, 3]))]);
    assert_eq!(
        error_text(parse_lines("[1, 2, 3]\n[1, NaN, 3]\n", &sig)),
        "line 2, column 5: NaN is not a JSON number (JSON has no NaN or Infinity, so instances cannot contain them)"
    );
    assert!(matches!(
        parse_lines("[Infinity, 2, 3]\n", &sig),
        Err(PredictJsonError::NonFiniteNumber { at: InstanceAt::Line(1), ref token, column: 2 }) if token == "Infinity"
    ));
    assert!(matches!(
        parse_lines("[1, -Infinity, 3]\n", &sig),
        Err(PredictJsonError::NonFiniteNumber { ref token, column: 5, .. }) if token == "-Infinity"
    ));
    // The same letters inside a string are just a string.
    assert_eq!(
        error_text(parse_lines("[1, \"NaN\", 3]\n", &sig)),
        "line 1: input \"x\" expects a number (float32) at [1], found the string \"NaN\""
    );
}

#[test]
fn invalid_json_names_line_and_column() {
    let sig = signature(&[("x", DataType::Float, Some(vec![-1, 3]))]);
    assert_eq!(
        error_text(parse_lines("[1, 2, 3]\n[1, 2,, 3]\n", &sig)),
        "line 2, column 7: invalid JSON: expected value"
    );
    assert_eq!(
        error_text(parse_lines("[1, 2, 3] [4]\n", &sig)),
        "line 1, column 11: invalid JSON: trailing characters"
    );
    assert_eq!(
        error_text(parse_lines("[1, 2, 3\n", &sig)),
        "line 1, column 8: invalid JSON: EOF while parsing a list"
    );
}

#[test]
fn empty_input_and_empty_lines() {
    let sig = image_signature();
    assert_eq!(
        error_text(parse_lines("", &sig)),
        "no instances: the input is empty"
    );
    assert!(matches!(
        parse_lines("", &sig),
        Err(PredictJsonError::NoInstances)
    ));
    let text = format!("{}\n\n{}\n", image_line(784, 0.0), image_line(784, 0.0));
    assert_eq!(
        error_text(parse_lines(&text, &sig)),
        "line 2 is empty; every line must hold one instance"
    );
    assert_eq!(
        error_text(parse_lines("   \n", &sig)),
        "line 1 is empty; every line must hold one instance"
    );
    assert_eq!(
        error_text(parse("", InstanceFormat::TextLines, &sig)),
        "no instances: the input is empty"
    );
}

#[test]
fn bom_and_crlf_are_tolerated_like_gcloud() {
    let sig = signature(&[("x", DataType::Float, Some(vec![-1, 2]))]);
    let batch = parse_lines("\u{feff}[1, 2]\r\n[3, 4]\r\n", &sig).unwrap();
    assert_eq!(
        batch.inputs["x"].data(),
        &TensorData::F32(vec![1.0, 2.0, 3.0, 4.0])
    );
    // No newline at the end of the last line is fine too.
    assert_eq!(
        parse_lines("[1, 2]\n[3, 4]", &sig).unwrap().num_instances,
        2
    );
}

#[test]
fn unknown_and_missing_input_names() {
    let sig = image_signature();
    assert_eq!(
        error_text(parse_lines(
            &format!("{{\"imag\": {}}}\n", image_line(784, 0.0)),
            &sig
        )),
        "line 1: unknown input \"imag\"; the signature \"serving_default\" has one input, \"image\""
    );
    // gcloud: an object for a single-input model must have exactly that one key.
    assert_eq!(
        error_text(parse_lines(
            &format!("{{\"image\": {}, \"key\": 1}}\n", image_line(784, 0.0)),
            &sig
        )),
        "line 1: unknown input \"key\"; the signature \"serving_default\" has one input, \"image\""
    );
    assert_eq!(
        error_text(parse_lines("{}\n", &sig)),
        "line 1: missing input \"image\"; the signature \"serving_default\" has one input, \"image\""
    );
}

#[test]
fn several_inputs_need_objects_with_exactly_their_names() {
    let sig = signature(&[
        ("a", DataType::Float, Some(vec![-1, 2])),
        ("b", DataType::Int64, Some(vec![-1])),
    ]);
    let batch = parse_lines(
        "{\"a\": [1, 2], \"b\": 7}\n{\"b\": 8, \"a\": [3, 4]}\n",
        &sig,
    )
    .unwrap();
    assert_eq!(batch.inputs["a"].shape(), &[2, 2]);
    assert_eq!(batch.inputs["b"].data(), &TensorData::I64(vec![7, 8]));
    assert_eq!(
        error_text(parse_lines(
            "{\"a\": [1, 2], \"b\": 7}\n{\"a\": [1, 2]}\n",
            &sig
        )),
        "line 2: missing input \"b\"; the signature \"serving_default\" has 2 inputs: \"a\", \"b\""
    );
    assert_eq!(
        error_text(parse_lines("[1, 2]\n", &sig)),
        "line 1: the signature \"serving_default\" has 2 inputs: \"a\", \"b\", so each instance must be a JSON \
         object with exactly those keys"
    );
    assert_eq!(
        error_text(parse_lines(
            "{\"a\": [1, 2], \"a\": [1, 2], \"b\": 1}\n",
            &sig
        )),
        "line 1: input \"a\" appears twice"
    );
}

#[test]
fn nested_shapes_are_checked_level_by_level() {
    let sig = signature(&[("pixels", DataType::Float, Some(vec![-1, 3, 2]))]);
    let batch = parse_lines("[[1, 2], [3, 4], [5, 6]]\n", &sig).unwrap();
    assert_eq!(batch.inputs["pixels"].shape(), &[1, 3, 2]);
    assert_eq!(
        error_text(parse_lines("[[1, 2], [3], [5, 6]]\n", &sig)),
        "line 1: input \"pixels\" expects 2 numbers at [1], found 1"
    );
    assert_eq!(
        error_text(parse_lines("[[1, 2], [3, 4]]\n", &sig)),
        "line 1: input \"pixels\" expects 3 lists, found 2"
    );
    assert_eq!(
        error_text(parse_lines("[1, 2, 3]\n", &sig)),
        "line 1: input \"pixels\" expects a list of 2 numbers at [0], found the number 1"
    );
    assert_eq!(
        error_text(parse_lines("[[1, [2]], [3, 4], [5, 6]]\n", &sig)),
        "line 1: input \"pixels\" expects a number (float32) at [0][1], found a list"
    );
    assert_eq!(
        error_text(parse_lines("5\n", &sig)),
        "line 1: input \"pixels\" expects a list of 3 lists, found the number 5"
    );
}

#[test]
fn unknown_dims_are_fixed_by_the_first_instance() {
    let sig = signature(&[("x", DataType::Float, Some(vec![-1, -1]))]);
    assert_eq!(
        parse_lines("[1, 2, 3]\n[4, 5, 6]\n", &sig).unwrap().inputs["x"].shape(),
        &[2, 3]
    );
    assert_eq!(
        error_text(parse_lines("[1, 2, 3]\n[4, 5]\n", &sig)),
        "line 2: input \"x\" expects 3 numbers (as in the first instance), found 2"
    );
    // Unknown rank: the first instance decides it.
    let any = signature(&[("x", DataType::Float, None)]);
    assert_eq!(
        parse_lines("[[1], [2]]\n[[3], [4]]\n", &any)
            .unwrap()
            .inputs["x"]
            .shape(),
        &[2, 2, 1]
    );
    assert_eq!(
        error_text(parse_lines("[[1], [2]]\n[3, 4]\n", &any)),
        "line 2: input \"x\" expects a list of 1 number at [0], found the number 3"
    );
    // Scalar instances for a [-1] input.
    let scalar = signature(&[("x", DataType::Float, Some(vec![-1]))]);
    assert_eq!(
        parse_lines("1.5\n2\n", &scalar).unwrap().inputs["x"].data(),
        &TensorData::F32(vec![1.5, 2.0])
    );
}

#[test]
fn integer_inputs_reject_fractions_and_out_of_range_values() {
    let sig = signature(&[("n", DataType::Int32, Some(vec![-1]))]);
    assert_eq!(
        parse_lines("1\n-2\n", &sig).unwrap().inputs["n"].data(),
        &TensorData::I32(vec![1, -2])
    );
    assert_eq!(
        error_text(parse_lines("1.5\n", &sig)),
        "line 1: input \"n\" expects an integer (int32), found the number 1.5"
    );
    assert_eq!(
        error_text(parse_lines("3000000000\n", &sig)),
        "line 1: input \"n\" expects an integer (int32), found the number 3000000000, which is out of range"
    );
    let big = signature(&[("x", DataType::Float, Some(vec![-1]))]);
    assert_eq!(
        error_text(parse_lines("1e39\n", &big)),
        "line 1: input \"x\" expects a number (float32), found the number 1e+39, which is out of range"
    );
    let flags = signature(&[("ok", DataType::Bool, Some(vec![-1, 2]))]);
    assert_eq!(
        parse_lines("[true, false]\n", &flags).unwrap().inputs["ok"].data(),
        &TensorData::Bool(vec![true, false])
    );
    assert_eq!(
        error_text(parse_lines("[true, 1]\n", &flags)),
        "line 1: input \"ok\" expects a boolean (bool) at [1], found the number 1"
    );
}

#[test]
fn string_inputs_take_text_and_base64() {
    let sig = signature(&[("text", DataType::String, Some(vec![-1]))]);
    let batch = parse_lines(
        "\"hello\"\n{\"b64\": \"AAH/\"}\n{\"text\": {\"b64\": \"aGk=\"}}\n",
        &sig,
    )
    .unwrap();
    assert_eq!(
        batch.inputs["text"].data(),
        &TensorData::Str(vec![b"hello".to_vec(), vec![0, 1, 255], b"hi".to_vec()])
    );
    assert_eq!(
        error_text(parse_lines("{\"b64\": \"@@@\"}\n", &sig)),
        "line 1: input \"text\": invalid base64 in {\"b64\": ...}: Invalid symbol 64, offset 0."
    );
    assert_eq!(
        error_text(parse_lines("5\n", &sig)),
        "line 1: input \"text\" expects a string or {\"b64\": ...} (string), found the number 5"
    );
    // --text-instances: each line is one string, taken verbatim.
    let batch = parse(
        "107,4.9,2.5\n{\"not\": \"json\"}\r\n",
        InstanceFormat::TextLines,
        &sig,
    )
    .unwrap();
    assert_eq!(
        batch.inputs["text"].data(),
        &TensorData::Str(vec![
            b"107,4.9,2.5".to_vec(),
            b"{\"not\": \"json\"}".to_vec()
        ])
    );
    let numbers = image_signature();
    assert_eq!(
        error_text(parse("0.5\n", InstanceFormat::TextLines, &numbers)),
        "line 1: input \"image\" expects a list of 784 numbers, found the string \"0.5\""
    );
}

#[test]
fn batches_are_cut_at_max_batch_and_keep_learned_shapes() {
    let sig = signature(&[("x", DataType::Float, Some(vec![-1, -1]))]);
    let text = "[1, 2]\n[3, 4]\n[5, 6]\n[7, 8]\n[9, 10]\n";
    let batches: Vec<InstanceBatch> =
        read_instances(text.as_bytes(), InstanceFormat::JsonLines, &sig, 2)
            .unwrap()
            .map(Result::unwrap)
            .collect();
    assert_eq!(
        batches.iter().map(|b| b.num_instances).collect::<Vec<_>>(),
        vec![2, 2, 1]
    );
    assert_eq!(
        batches.iter().map(|b| b.first_instance).collect::<Vec<_>>(),
        vec![0, 2, 4]
    );
    assert_eq!(
        batches[2].inputs["x"].data(),
        &TensorData::F32(vec![9.0, 10.0])
    );
    // A later chunk must match the shape learned in the first.
    let mut stream = read_instances(
        "[1, 2]\n[3, 4]\n[5]\n".as_bytes(),
        InstanceFormat::JsonLines,
        &sig,
        2,
    )
    .unwrap();
    assert!(stream.next().unwrap().is_ok());
    assert_eq!(
        stream.next().unwrap().unwrap_err().to_string(),
        "line 3: input \"x\" expects 2 numbers (as in the first instance), found 1"
    );
    assert!(stream.next().is_none(), "the stream stops after an error");
    // The same instances from a request body, in chunks.
    let request = "{\"instances\": [[1, 2], [3, 4], [5, 6]], \"signature_name\": \"ignored\"}";
    let chunks: Vec<InstanceBatch> =
        read_instances(request.as_bytes(), InstanceFormat::JsonRequest, &sig, 2)
            .unwrap()
            .map(Result::unwrap)
            .collect();
    assert_eq!(chunks.len(), 2);
    assert_eq!(chunks[1].first_instance, 2);
    assert_eq!(
        chunks[1].inputs["x"],
        HostTensor::new(vec![1, 2], TensorData::F32(vec![5.0, 6.0])).unwrap()
    );
}

#[test]
fn json_request_bodies() {
    let sig = signature(&[("x", DataType::Float, Some(vec![-1, 2]))]);
    let request = |text: &str| parse(text, InstanceFormat::JsonRequest, &sig);
    assert_eq!(
        request("{\"instances\": [[1, 2], {\"x\": [3, 4]}]}")
            .unwrap()
            .num_instances,
        2
    );
    assert_eq!(
        error_text(request("{\"inputs\": [[1, 2]]}")),
        "invalid request: the request has no \"instances\" key"
    );
    assert_eq!(
        error_text(request("{\"instances\": {\"x\": 1}}")),
        "invalid request: \"instances\" must be a list, found an object"
    );
    assert_eq!(
        error_text(request("[[1, 2]]")),
        "invalid request: expected a JSON object with an \"instances\" list, found a list"
    );
    assert_eq!(
        error_text(request("{\"instances\": []}")),
        "no instances: the input is empty"
    );
    assert_eq!(
        error_text(request("{\"instances\": [[1, 2], [1, 2, 3]]}")),
        "instances[1]: input \"x\" expects 2 numbers, found 3"
    );
    assert_eq!(
        error_text(request("{\n  \"instances\": [[1, NaN]]\n}")),
        "line 2, column 21: NaN is not a JSON number (JSON has no NaN or Infinity, so instances cannot contain them)"
    );
    assert_eq!(
        error_text(request("")),
        "line 1, column 0: invalid JSON: EOF while parsing a value"
    );
}

#[test]
fn values_and_array_text_convert_like_files() {
    let sig = signature(&[("x", DataType::Float, Some(vec![-1, 2]))]);
    let values: Vec<serde_json::Value> = serde_json::from_str("[[1, 2], {\"x\": [3, 4]}]").unwrap();
    let from_values = instances_from_json_values(&values, &sig).unwrap();
    let from_text = instances_from_json_array(b"[[1, 2], {\"x\": [3, 4]}]", &sig).unwrap();
    assert_eq!(from_values, from_text);
    assert_eq!(
        from_values.inputs["x"].data(),
        &TensorData::F32(vec![1.0, 2.0, 3.0, 4.0])
    );
    let bad: Vec<serde_json::Value> = serde_json::from_str("[[1, 2], [1, \"a\"]]").unwrap();
    assert_eq!(
        instances_from_json_values(&bad, &sig)
            .unwrap_err()
            .to_string(),
        "instances[1]: input \"x\" expects a number (float32) at [1], found the string \"a\""
    );
    assert_eq!(
        instances_from_json_array(b"[[1, 2], [1, \"a\"]]", &sig)
            .unwrap_err()
            .to_string(),
        "instances[1]: input \"x\" expects a number (float32) at [1], found the string \"a\""
    );
    assert!(matches!(
        instances_from_json_values(&[], &sig),
        Err(PredictJsonError::NoInstances)
    ));
}

#[test]
fn signatures_json_cannot_feed_are_refused_up_front() {
    let scalar = signature(&[("x", DataType::Float, Some(vec![]))]);
    assert_eq!(
        error_text(parse_lines("1\n", &scalar)),
        "input \"x\" is a scalar (shape []) in the signature: it has no batch dimension to stack instances along"
    );
    let half = signature(&[("x", DataType::Half, Some(vec![-1]))]);
    assert_eq!(
        error_text(parse_lines("1\n", &half)),
        "input \"x\" has dtype DT_HALF, which JSON instances cannot be converted to"
    );
    let fixed = signature(&[("x", DataType::Float, Some(vec![1, 2]))]);
    assert_eq!(
        error_text(parse_lines("[1, 2]\n[3, 4]\n", &fixed)),
        "instances: input \"x\" has a fixed batch size of 1 in the signature, found 2 instances"
    );
}

#[test]
fn a_huge_wrong_line_does_not_grow_the_buffer_past_the_signature() {
    // 10 million numbers for a 784-wide input: rejected after counting, without storing them.
    let sig = image_signature();
    let mut line = String::with_capacity(20_000_002);
    line.push('[');
    for i in 0..10_000_000 {
        if i > 0 {
            line.push(',');
        }
        line.push('0');
    }
    line.push_str("]\n");
    assert_eq!(
        error_text(parse_lines(&line, &sig)),
        "line 1: input \"image\" expects 784 numbers, found 10000000"
    );
}

/// The per-record reader of batch prediction and `read_instances`' line formats: a bad record is
/// refused alone (the batch is as before it, even when it was the first and would have fixed
/// unknown dims), good ones give exactly the tensors of the general path (the same instances
/// as one JSON array), on the fast path for flat float rows and off it.
#[test]
fn record_batcher_rejects_bad_records_alone_and_matches_the_general_reader() {
    let cases: [(SignatureInfo, &[&str], &[&str]); 3] = [
        (
            signature(&[("x", DataType::Float, Some(vec![-1, 3]))]),
            &[
                "[1, 2.5, -3e-2]",
                " [0.1,0.2 ,0.3] ",
                "{\"x\": [7, 8, 9]}",
                "[16777217, 1e-45, 0]",
            ],
            &["[1, 2]", "[1, 2, NaN]", "[1, 2, 3] x", "[1, 2, 1e39]", ""],
        ),
        (
            signature(&[("x", DataType::Float, Some(vec![-1, -1]))]),
            &["[1, 2]", "[3, 4]"],
            &["[[1]]", "[1, \"a\"]"],
        ),
        (
            signature(&[
                ("a", DataType::Int64, Some(vec![-1])),
                ("b", DataType::String, Some(vec![-1])),
            ]),
            &["{\"a\": 1, \"b\": \"x\"}", "{\"b\": \"y\", \"a\": -2}"],
            &["{\"a\": 1.5, \"b\": \"x\"}", "{\"a\": 1}"],
        ),
    ];
    for (sig, good, bad) in cases {
        let mut batcher = RecordBatcher::new(&sig, InstanceFormat::JsonLines).unwrap();
        // A bad record first: it must not fix the unknown dims of the second case.
        for (i, record) in bad.iter().enumerate() {
            let error = batcher
                .push(record.as_bytes(), InstanceAt::Line(i + 1))
                .unwrap_err();
            assert!(
                error.to_string().starts_with(&format!("line {}", i + 1)),
                "{error}"
            );
            assert!(batcher.is_empty(), "{record} left something behind");
        }
        for (i, record) in good.iter().enumerate() {
            batcher
                .push(record.as_bytes(), InstanceAt::Line(i + 1))
                .unwrap();
            for bad_record in bad {
                assert!(
                    batcher
                        .push(bad_record.as_bytes(), InstanceAt::Line(99))
                        .is_err()
                );
            }
        }
        assert_eq!(batcher.len(), good.len());
        let batch = batcher.take_batch(0).unwrap();
        let array = format!("[{}]", good.join(","));
        let expected = instances_from_json_array(array.as_bytes(), &sig).unwrap();
        assert_eq!(batch.inputs, expected.inputs, "{good:?}");
        assert!(batcher.is_empty());
    }
    let error = RecordBatcher::new(&image_signature(), InstanceFormat::JsonRequest).unwrap_err();
    assert!(
        error.to_string().contains("not a sequence of records"),
        "{error}"
    );
}

/// A line longer than `MAX_LINE_BYTES` is refused as too long, also when it starts with a row
/// of numbers that the fast row reader would take (the reader stops one byte past the limit,
/// so what it holds is a whole row followed by blanks, not the whole line).
#[test]
fn an_overlong_line_is_refused_even_when_it_starts_with_a_good_row() {
    use std::io::Read as _;
    let row = image_line(784, 0.5);
    let line = std::io::Cursor::new(row.into_bytes())
        .chain(std::io::repeat(b' ').take(MAX_LINE_BYTES as u64))
        .chain(std::io::Cursor::new(b"\n".to_vec()));
    let result = read_instances(
        std::io::BufReader::new(line),
        InstanceFormat::JsonLines,
        &image_signature(),
        usize::MAX,
    )
    .unwrap()
    .next()
    .unwrap();
    assert!(
        matches!(
            result,
            Err(PredictJsonError::LineTooLong {
                at: InstanceAt::Line(1),
                ..
            })
        ),
        "{result:?}"
    );
}
