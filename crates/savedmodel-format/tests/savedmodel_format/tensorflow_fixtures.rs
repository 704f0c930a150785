//! The reader on SavedModels written by TensorFlow 2.21 itself (testdata/savedmodels/, made by
//! scripts/make-savedmodel-fixtures.py): TF1 builder graphs with ref and resource variables, a
//! TF2 `tf.saved_model.save` module and a Keras 3 export.

// Test helpers outside #[test] functions are not covered by clippy.toml's allow-unwrap-in-tests.
use std::path::PathBuf;

use savedmodel_format::DataType;
use savedmodel_format::bundle::{BundleIndex, VARIABLES_INDEX};
use savedmodel_format::reader::{
    SavedModelFiles, check_variables, is_object_based, signature_keys, validate_signature,
};

const FIXTURES: [&str; 4] = [
    "tf1-training-graph",
    "tf1-tutorial",
    "tf2-module",
    "keras3-export",
];

fn read(fixture: &str, file: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/savedmodels")
        .join(fixture)
        .join(file);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run scripts/make-savedmodel-fixtures.py)",
            path.display()
        )
    })
}

#[test]
fn tensorflow_written_saved_models_parse_validate_and_restore() {
    for fixture in FIXTURES {
        let pb = read(fixture, "saved_model.pb");
        let index = read(fixture, VARIABLES_INDEX);
        let data = read(fixture, "variables/variables.data-00000-of-00001");
        let files = SavedModelFiles::parse(&pb, Some(&index)).unwrap();
        let meta = files.meta_graph(&["serve"]).unwrap();
        assert_eq!(
            is_object_based(meta),
            fixture.starts_with("tf2") || fixture.starts_with("keras"),
            "{fixture}"
        );
        let keys = signature_keys(meta);
        assert!(keys.contains(&"serving_default"), "{fixture}: {keys:?}");
        for key in keys {
            validate_signature(meta, key).unwrap_or_else(|e| panic!("{fixture}: {e}"));
        }
        let bundle = files.variables.as_ref().unwrap();
        let plan = check_variables(meta, bundle).unwrap_or_else(|e| panic!("{fixture}: {e}"));
        // Every model has at least 2 dense layers: >= 4 float variables restored from the bundle.
        let floats = plan
            .iter()
            .filter(|r| r.dtype == Some(DataType::Float))
            .count();
        assert!(floats >= 4, "{fixture}: restore plan {plan:?}");
        for restore in &plan {
            assert!(
                bundle.entry(&restore.checkpoint_key).is_some(),
                "{fixture}: {restore:?}"
            );
        }
        // Every tensor in TF's bundle reads back with a valid checksum.
        let tensors = bundle
            .read_all(&[Some(data.as_slice())])
            .unwrap_or_else(|e| panic!("{fixture}: {e}"));
        assert_eq!(tensors.len(), bundle.len());
    }
}

#[test]
fn tf2_restore_plan_maps_object_keys_to_variable_handles() {
    let files = SavedModelFiles::parse(
        &read("tf2-module", "saved_model.pb"),
        Some(&read("tf2-module", VARIABLES_INDEX)),
    )
    .unwrap();
    let meta = files.meta_graph(&["serve"]).unwrap();
    let plan = check_variables(meta, files.variables.as_ref().unwrap()).unwrap();
    let graph = meta.graph_def.as_ref().unwrap();
    for restore in &plan {
        assert!(
            restore
                .checkpoint_key
                .ends_with("/.ATTRIBUTES/VARIABLE_VALUE"),
            "{restore:?}"
        );
        let node = graph
            .node
            .iter()
            .find(|n| n.name == restore.variable_node)
            .unwrap();
        assert_eq!(node.op, "VarHandleOp", "{restore:?}");
    }
}

#[test]
fn tf1_training_graph_restores_ref_variables_and_slots() {
    let files = SavedModelFiles::parse(
        &read("tf1-training-graph", "saved_model.pb"),
        Some(&read("tf1-training-graph", VARIABLES_INDEX)),
    )
    .unwrap();
    let meta = files.meta_graph(&["serve"]).unwrap();
    let plan = check_variables(meta, files.variables.as_ref().unwrap()).unwrap();
    // The bundle holds the optimizer slots and global step too; the saver restores all of them.
    let bundle = BundleIndex::parse(
        VARIABLES_INDEX,
        &read("tf1-training-graph", VARIABLES_INDEX),
    )
    .unwrap();
    assert_eq!(plan.len(), bundle.len(), "{plan:?}");
}

#[test]
fn truncated_tensorflow_saved_models_are_handled() {
    for fixture in FIXTURES {
        let pb = read(fixture, "saved_model.pb");
        let whole = savedmodel_format::reader::parse_saved_model(&pb).unwrap();
        let step = (pb.len() / 300).max(1);
        for len in (0..pb.len()).step_by(step) {
            if let Ok(model) = savedmodel_format::reader::parse_saved_model(&pb[..len]) {
                assert_ne!(
                    model, whole,
                    "{fixture}: {len}-byte prefix decoded as the whole model"
                );
            }
        }
    }
}
