//! Models built to exhaust memory are refused before they allocate it: a 4 KB `saved_model.pb`
//! whose graph sums eight 1 GiB `Fill`s (the probe's memory bomb), a 6 GB sparse
//! `saved_model.pb`, and an oversized sparse variables shard. Each run of `predictor local` must
//! fail with a message naming the problem, and its peak RSS (from `wait4`) stay under 1 GB.
// Helpers outside #[test] functions panic on failed setup too, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};

use crate::serve_support::*;
use prost::Message;
use savedmodel_format::proto::{
    AttrValue, GraphDef, MetaGraphDef, MetaInfoDef, NodeDef, SavedModel, SignatureDef, TensorInfo,
    TensorProto, TensorShapeProto, tensor_info,
};
use savedmodel_runtime::DataType;

const ONE_GB: u64 = 1 << 30;

fn node(name: &str, op: &str, inputs: &[&str], attrs: Vec<(&str, AttrValue)>) -> NodeDef {
    NodeDef {
        name: name.into(),
        op: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        attr: attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        ..Default::default()
    }
}

fn constant(name: &str, tensor: TensorProto) -> NodeDef {
    let dtype = DataType::from_tf(tensor.dtype).unwrap();
    node(
        name,
        "Const",
        &[],
        vec![
            ("dtype", AttrValue::from_type(dtype)),
            ("value", AttrValue::from_tensor(tensor)),
        ],
    )
}

fn info(name: &str, dtype: DataType, dims: &[i64]) -> TensorInfo {
    TensorInfo {
        encoding: Some(tensor_info::Encoding::Name(name.into())),
        dtype: dtype as i32,
        tensor_shape: Some(TensorShapeProto::from_dims(dims)),
    }
}

/// The memory bomb: `y = AddN(Fill([16384, 16384], 1.0) × 8)` (8 GiB of f32 plus the sum),
/// beside an unused input `x`, as signature `serving_default`.
fn memory_bomb() -> Vec<u8> {
    let float = || AttrValue::from_type(DataType::Float);
    let mut nodes = vec![
        node(
            "x",
            "Placeholder",
            &[],
            vec![
                ("dtype", float()),
                (
                    "shape",
                    AttrValue::from_shape(TensorShapeProto::from_dims(&[-1, 1])),
                ),
            ],
        ),
        constant(
            "dims",
            TensorProto {
                int_val: vec![16384, 16384],
                ..TensorProto::with_shape(DataType::Int32, &[2])
            },
        ),
        constant(
            "one",
            TensorProto {
                float_val: vec![1.0],
                ..TensorProto::with_shape(DataType::Float, &[])
            },
        ),
    ];
    let fills: Vec<String> = (0..8).map(|i| format!("fill_{i}")).collect();
    for name in &fills {
        nodes.push(node(
            name,
            "Fill",
            &["dims", "one"],
            vec![
                ("T", float()),
                ("index_type", AttrValue::from_type(DataType::Int32)),
            ],
        ));
    }
    let inputs: Vec<&str> = fills.iter().map(String::as_str).collect();
    nodes.push(node(
        "sum",
        "AddN",
        &inputs,
        vec![("T", float()), ("N", AttrValue::from_int(8))],
    ));
    let signature = SignatureDef {
        inputs: [("x".to_string(), info("x:0", DataType::Float, &[-1, 1]))].into(),
        outputs: [(
            "y".to_string(),
            info("sum:0", DataType::Float, &[16384, 16384]),
        )]
        .into(),
        method_name: "tensorflow/serving/predict".into(),
        ..Default::default()
    };
    SavedModel {
        saved_model_schema_version: 1,
        meta_graphs: vec![MetaGraphDef {
            meta_info_def: Some(MetaInfoDef {
                tags: vec!["serve".into()],
                ..Default::default()
            }),
            graph_def: Some(GraphDef {
                node: nodes,
                ..Default::default()
            }),
            signature_def: [("serving_default".to_string(), signature)].into(),
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

/// Runs `predictor local` on `model_dir` with one instance; returns (success, stderr, peak RSS
/// in bytes). The child is reaped with `wait4`, whose rusage holds its own peak RSS.
// The child is reaped by wait4 (which also gives its rusage), not by std's wait.
#[allow(clippy::zombie_processes)]
fn predict_local(model_dir: &Path, instance: &str, extra: &[&str]) -> (bool, String, u64) {
    let scratch = tempfile::tempdir().unwrap();
    let instances = scratch.path().join("instances.json");
    std::fs::write(&instances, format!("{instance}\n")).unwrap();
    let mut child = Command::new(PREDICTOR)
        .arg("local")
        .arg("--model-dir")
        .arg(model_dir)
        .arg("--json-instances")
        .arg(&instances)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid value; wait4 writes the child's status and usage into the
    // locals passed, for a child of this process that nothing else waits for.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        let waited = libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage);
        assert_eq!(waited, child.id() as libc::pid_t);
        usage
    };
    let success = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    // ru_maxrss is in kilobytes on Linux.
    (success, stderr, usage.ru_maxrss as u64 * 1024)
}

#[test]
fn memory_bomb_is_refused_before_allocating() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bomb");
    std::fs::create_dir_all(&dir).unwrap();
    let pb = memory_bomb();
    assert!(pb.len() < 4096, "the bomb is {} bytes", pb.len());
    std::fs::write(dir.join("saved_model.pb"), pb).unwrap();

    let (success, stderr, peak) = predict_local(&dir, "[0.5]", &[]);
    assert!(!success, "the bomb loaded");
    assert!(
        stderr.contains("over the memory budget of 4.0 GiB"),
        "{stderr}"
    );
    assert!(stderr.contains("largest tensors: `"), "{stderr}");
    assert!(stderr.contains("[16384, 16384] (1.0 GiB)"), "{stderr}");
    assert!(peak < ONE_GB, "peak RSS {peak} bytes");
    println!("memory bomb refused; peak RSS {:.1} MB", peak as f64 / 1e6);

    // The real tutorial model is refused too under a budget below what it needs for its batch,
    // and loads under the default one.
    let (success, stderr, _) = predict_local(
        &fixture("tf1-tutorial"),
        &serde_json::to_string(&vec![0.5f32; 784]).unwrap(),
        &["--memory-budget-mb", "1"],
    );
    assert!(!success);
    assert!(
        stderr.contains("over the memory budget of 1.0 MiB"),
        "{stderr}"
    );
    assert!(stderr.contains("for a batch of 16384"), "{stderr}");
    assert!(
        // MatMul, BiasAdd and Relu run fused as one step, whose output is the chain's last node.
        stderr.contains("`dense/Relu` [16384, 16]"),
        "names the largest tensor: {stderr}"
    );
    let (success, stderr, _) = predict_local(
        &fixture("tf1-tutorial"),
        &serde_json::to_string(&vec![0.5f32; 784]).unwrap(),
        &[],
    );
    assert!(success, "{stderr}");
}

#[test]
fn oversized_files_are_refused_without_reading_them() {
    let tmp = tempfile::tempdir().unwrap();
    // A 6 GB saved_model.pb (sparse: no disk space used).
    let huge_pb = tmp.path().join("huge-pb");
    std::fs::create_dir_all(&huge_pb).unwrap();
    std::fs::File::create(huge_pb.join("saved_model.pb"))
        .unwrap()
        .set_len(6 << 30)
        .unwrap();
    let started = std::time::Instant::now();
    let (success, stderr, peak) = predict_local(&huge_pb, "[0.5]", &[]);
    assert!(!success);
    assert!(
        stderr.contains("saved_model.pb: it is 6442450944 bytes, over the limit of"),
        "{stderr}"
    );
    assert!(peak < ONE_GB, "peak RSS {peak} bytes");
    println!(
        "6 GB saved_model.pb refused in {:?}; peak RSS {:.1} MB",
        started.elapsed(),
        peak as f64 / 1e6
    );

    // The real tutorial model with its variables shard grown (sparse) past the budget.
    let huge_data = tmp.path().join("huge-data");
    copy_dir(&fixture("tf1-tutorial"), &huge_data);
    let shard = huge_data.join("variables/variables.data-00000-of-00001");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&shard)
        .unwrap()
        .set_len(5 << 30)
        .unwrap();
    let (success, stderr, peak) = predict_local(
        &huge_data,
        &serde_json::to_string(&vec![0.5f32; 784]).unwrap(),
        &[],
    );
    assert!(!success);
    assert!(
        stderr.contains("variables.data-00000-of-00001: it is 5368709120 bytes, over the limit"),
        "{stderr}"
    );
    assert!(peak < ONE_GB, "peak RSS {peak} bytes");
}
