//! Real TensorFlow (2.21, from the project's virtualenv) loads what we write.
//!
//! * `export_mlp` models of several shapes are loaded with `tf.saved_model.load`, the TF1
//!   session loader and `saved_model_cli show --all`; their outputs must match our own f64
//!   computation, and TF's checkpoint reader must see exactly our weights.
//! * A bundle with thousands of tensors (several data blocks) written by TF's `SaveV2` must be
//!   reproduced byte for byte by our writer.
//!
//! The interpreter is `$PYTHON`, or `<workspace>/.venv/bin/python`. Without it these tests fail
//! (they must not pass silently): run `scripts/setup-python.sh`.

// Test helpers outside #[test] functions are not covered by clippy.toml's allow-unwrap-in-tests.
use std::path::{Path, PathBuf};
use std::process::Command;

use savedmodel_format::bundle::{BundleIndex, write_bundle};
use savedmodel_format::writer::{Activation, DenseLayer, MlpExport, export_mlp};
use savedmodel_format::{HostTensor, TensorData};
use serde_json::{Value, json};
use test_rng::TestRng;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn python() -> PathBuf {
    let python = std::env::var_os("PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(".venv/bin/python"));
    let probe = Command::new(&python)
        .args(["-c", "import tensorflow"])
        .output();
    match probe {
        Ok(out) if out.status.success() => python,
        Ok(out) => panic!(
            "{} cannot import tensorflow ({}): run scripts/setup-python.sh (or set PYTHON)",
            python.display(),
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or_default()
        ),
        Err(e) => panic!(
            "cannot run {} ({e}): run scripts/setup-python.sh (or set PYTHON)",
            python.display()
        ),
    }
}

fn run_helper(args: &[&str]) -> Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/tf_check.py");
    let out = Command::new(python())
        .arg(&script)
        .args(args)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "tf_check.py {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "bad JSON from tf_check.py ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn random_mlp(rng: &mut TestRng, dims: &[usize], activations: &[Activation]) -> MlpExport {
    let layers = dims
        .windows(2)
        .zip(activations)
        .map(|(pair, &activation)| {
            let (in_dim, out_dim) = (pair[0], pair[1]);
            let scale = (2.0 / in_dim as f32).sqrt();
            DenseLayer {
                kernel: (0..in_dim * out_dim)
                    .map(|_| rng.symmetric(scale))
                    .collect(),
                bias: (0..out_dim).map(|_| rng.symmetric(0.1)).collect(),
                in_dim,
                out_dim,
                activation,
            }
        })
        .collect();
    MlpExport::new(layers)
}

/// Our reference: the forward pass in f64.
fn forward(model: &MlpExport, row: &[f32]) -> Vec<f64> {
    let mut x: Vec<f64> = row.iter().map(|&v| f64::from(v)).collect();
    for layer in &model.layers {
        let mut y: Vec<f64> = layer.bias.iter().map(|&b| f64::from(b)).collect();
        for (i, xi) in x.iter().enumerate() {
            for (j, yj) in y.iter_mut().enumerate() {
                *yj += xi * f64::from(layer.kernel[i * layer.out_dim + j]);
            }
        }
        if layer.activation == Activation::Relu {
            y.iter_mut().for_each(|v| *v = v.max(0.0));
        }
        x = y;
    }
    let max = x.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let exp: Vec<f64> = x.iter().map(|v| (v - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.iter().map(|e| e / sum).collect()
}

fn write_model(dir: &Path, model: &MlpExport) {
    for (relative, bytes) in export_mlp(model).unwrap() {
        let path = dir.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

fn as_f64s(value: &Value) -> Vec<f64> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

#[test]
fn tensorflow_loads_and_runs_exported_mlps() {
    let mut rng = TestRng::new(0x5eed_1234_abcd_0001);
    use Activation::{Linear, Relu};
    let models = [
        random_mlp(&mut rng, &[784, 32, 16, 10], &[Relu, Relu, Linear]),
        random_mlp(&mut rng, &[5, 3], &[Linear]),
        random_mlp(&mut rng, &[7, 6, 6, 6, 2], &[Relu, Linear, Relu, Linear]),
    ];
    let temp = tempfile::tempdir().unwrap();
    let mut case_models = Vec::new();
    let mut batches = Vec::new();
    for (i, model) in models.iter().enumerate() {
        let dir = temp.path().join(format!("model-{i}"));
        write_model(&dir, model);
        let input_dim = model.layers[0].in_dim;
        let batch: Vec<Vec<f32>> = (0..6)
            .map(|_| (0..input_dim).map(|_| rng.unit()).collect())
            .collect();
        case_models.push(json!({"dir": dir.to_str().unwrap(), "inputs": batch}));
        batches.push(batch);
    }
    let case_path = temp.path().join("case.json");
    std::fs::write(
        &case_path,
        serde_json::to_vec(&json!({"models": case_models})).unwrap(),
    )
    .unwrap();

    let report = run_helper(&["models", case_path.to_str().unwrap()]);
    let results = report["results"].as_array().unwrap();
    assert_eq!(results.len(), models.len());
    for ((model, batch), result) in models.iter().zip(&batches).zip(results) {
        let classes = model.layers.last().unwrap().out_dim;
        // The checkpoint TF reads holds exactly our weights, under Keras names, kernels [in, out].
        let checkpoint = result["checkpoint"].as_object().unwrap();
        assert_eq!(checkpoint.len(), 2 * model.layers.len());
        for (index, layer) in model.layers.iter().enumerate() {
            let prefix = savedmodel_format::writer::keras_layer_name(index);
            let kernel = &checkpoint[&format!("{prefix}/kernel")];
            assert_eq!(kernel["shape"], json!([layer.in_dim, layer.out_dim]));
            let values: Vec<f32> = as_f64s(&kernel["values"])
                .iter()
                .map(|&v| v as f32)
                .collect();
            assert_eq!(values, layer.kernel, "{prefix}/kernel");
            let bias: Vec<f32> = as_f64s(&checkpoint[&format!("{prefix}/bias")]["values"])
                .iter()
                .map(|&v| v as f32)
                .collect();
            assert_eq!(bias, layer.bias, "{prefix}/bias");
        }
        assert_eq!(
            result["tf2_output_dtypes"],
            json!({"probabilities": "float32", "class": "int64"})
        );
        for loader in ["tf2", "tf1"] {
            let probabilities = result[loader]["probabilities"].as_array().unwrap();
            let class = result[loader]["class"].as_array().unwrap();
            assert_eq!(probabilities.len(), batch.len(), "{loader}");
            for (row, (input, tf_row)) in batch.iter().zip(probabilities).enumerate() {
                let ours = forward(model, input);
                let theirs = as_f64s(tf_row);
                assert_eq!(theirs.len(), classes);
                for (a, b) in ours.iter().zip(&theirs) {
                    assert!(
                        (a - b).abs() <= 1e-5 * a.abs().max(1e-2),
                        "{loader} row {row}: ours {ours:?} TF {theirs:?}"
                    );
                }
                let our_class = ours
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .unwrap()
                    .0;
                assert_eq!(
                    class[row].as_i64().unwrap() as usize,
                    our_class,
                    "{loader} row {row}"
                );
            }
        }
        assert_eq!(result["cli_returncode"], 0, "{}", result["cli"]);
        let cli = result["cli"].as_str().unwrap();
        let input_dim = model.layers[0].in_dim;
        for expected in [
            "signature_def['serving_default']:".to_string(),
            "inputs['image'] tensor_info:".to_string(),
            format!("shape: (-1, {input_dim})"),
            "outputs['class'] tensor_info:".to_string(),
            "dtype: DT_INT64".to_string(),
            format!("shape: (-1, {classes})"),
            "name: probabilities:0".to_string(),
            "Method name is: tensorflow/serving/predict".to_string(),
        ] {
            assert!(
                cli.contains(&expected),
                "saved_model_cli output lacks {expected:?}:\n{cli}"
            );
        }
    }
}

#[test]
fn multi_block_index_is_byte_identical_to_tensorflows() {
    let temp = tempfile::tempdir().unwrap();
    let prefix = temp.path().join("many");
    let count = 7000;
    let report = run_helper(&["bundle", prefix.to_str().unwrap(), &count.to_string()]);
    let names: Vec<String> = report["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect();
    let tensors: Vec<HostTensor> = (0..count)
        .map(|i| {
            HostTensor::new(vec![2], TensorData::F32(vec![i as f32, -0.5 * i as f32])).unwrap()
        })
        .collect();
    let ours = write_bundle(names.iter().map(String::as_str).zip(&tensors)).unwrap();
    let tf_index = std::fs::read(prefix.with_extension("index")).unwrap();
    let tf_data = std::fs::read(temp.path().join("many.data-00000-of-00001")).unwrap();
    let index = BundleIndex::parse("many.index", &tf_index).unwrap();
    assert_eq!(index.len(), count);
    let table = savedmodel_format::sstable::Table::open("many.index", &tf_index).unwrap();
    assert!(
        table.num_data_blocks() >= 2,
        "the test needs several data blocks, TF wrote {}",
        table.num_data_blocks()
    );
    assert_eq!(ours.data, tf_data);
    assert!(
        ours.index == tf_index,
        "index differs (ours {} bytes, TF {} bytes)",
        ours.index.len(),
        tf_index.len()
    );
}
