//! Fuzz-style robustness: random, truncated and bit-flipped inputs to every parser must give an
//! `Err` or an `Ok`, never a panic, hang or runaway allocation.

// Test helpers outside #[test] functions are not covered by clippy.toml's allow-unwrap-in-tests.
use proptest::prelude::*;
use savedmodel_format::bundle::{BundleIndex, VARIABLES_INDEX, write_bundle};
use savedmodel_format::reader::{
    SavedModelFiles, check_variables, parse_saved_model, restore_plan, validate_signature,
};
use savedmodel_format::sstable::Table;
use savedmodel_format::writer::{Activation, DenseLayer, MlpExport, export_mlp};
use savedmodel_format::{HostTensor, TensorData};

fn exported() -> Vec<(String, bytes::Bytes)> {
    let layers = vec![
        DenseLayer {
            kernel: vec![0.5; 12],
            bias: vec![0.1; 3],
            in_dim: 4,
            out_dim: 3,
            activation: Activation::Relu,
        },
        DenseLayer {
            kernel: vec![-0.5; 6],
            bias: vec![0.2; 2],
            in_dim: 3,
            out_dim: 2,
            activation: Activation::Linear,
        },
    ];
    export_mlp(&MlpExport::new(layers)).unwrap()
}

/// Runs every reader entry point on a (possibly damaged) SavedModel; only panics matter.
fn exercise(pb: &[u8], index: &[u8], data: &[u8]) {
    let _ = Table::open(VARIABLES_INDEX, index).and_then(|t| t.entries());
    if let Ok(bundle) = BundleIndex::parse(VARIABLES_INDEX, index) {
        let _ = bundle.read_all(&[Some(data)]);
    }
    if let Ok(files) = SavedModelFiles::parse(pb, None) {
        for meta in &files.saved_model.meta_graphs {
            for key in meta.signature_def.keys() {
                let _ = validate_signature(meta, key);
            }
            let _ = restore_plan(meta);
            if let Ok(bundle) = BundleIndex::parse(VARIABLES_INDEX, index) {
                let _ = check_variables(meta, &bundle);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        exercise(&bytes, &bytes, &bytes);
        let _ = parse_saved_model(&bytes);
    }

    #[test]
    fn random_bytes_with_a_valid_footer_never_panic(
        body in proptest::collection::vec(any::<u8>(), 0..512),
        handles in proptest::collection::vec(any::<u8>(), 40),
    ) {
        // Garbage that gets past the magic check, so the block parser sees it.
        let mut bytes = body;
        bytes.extend_from_slice(&handles);
        bytes.extend_from_slice(&[0x57, 0xfb, 0x80, 0x8b, 0x24, 0x75, 0x47, 0xdb]);
        let _ = Table::open("x.index", &bytes).and_then(|t| t.entries());
        let _ = BundleIndex::parse("x.index", &bytes);
    }

    #[test]
    fn bit_flips_in_real_files_never_panic(
        which in 0usize..3,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..8),
    ) {
        let files = exported();
        let mut contents: Vec<Vec<u8>> = files.iter().map(|(_, b)| b.to_vec()).collect();
        let target = &mut contents[which];
        for (position, mask) in flips {
            let i = position.index(target.len());
            target[i] ^= mask;
        }
        exercise(&contents[2], &contents[0], &contents[1]);
    }

    #[test]
    fn truncated_real_files_never_panic(which in 0usize..3, keep in any::<prop::sample::Index>()) {
        let files = exported();
        let mut contents: Vec<Vec<u8>> = files.iter().map(|(_, b)| b.to_vec()).collect();
        let len = keep.index(contents[which].len());
        contents[which].truncate(len);
        exercise(&contents[2], &contents[0], &contents[1]);
    }

    #[test]
    fn random_bundle_entries_never_panic(entry in proptest::collection::vec(any::<u8>(), 0..64), data in proptest::collection::vec(any::<u8>(), 0..64)) {
        // A well-formed table holding a header and one arbitrary entry value.
        let header = [0x08, 0x01, 0x1a, 0x02, 0x08, 0x01];
        let table = savedmodel_format::sstable::build_table(
            Default::default(),
            [(b"".as_slice(), header.as_slice()), (b"t".as_slice(), entry.as_slice())],
        ).unwrap();
        if let Ok(index) = BundleIndex::parse("x.index", &table) {
            let _ = index.read_tensor("t", &[Some(&data)]);
        }
    }
}

#[test]
fn every_truncation_of_a_real_saved_model_is_handled() {
    let files = exported();
    let pb = &files[2].1;
    for len in 0..pb.len() {
        // A prefix may happen to be a valid (smaller) message; what matters is no panic, and that
        // the cut-off graph is never mistaken for the whole one.
        if let Ok(model) = parse_saved_model(&pb[..len]) {
            assert_ne!(
                model,
                parse_saved_model(pb).unwrap(),
                "prefix of {len} bytes decoded as the whole model"
            );
        }
    }
    let index = &files[0].1;
    for len in 0..index.len() {
        assert!(
            BundleIndex::parse(VARIABLES_INDEX, &index[..len]).is_err(),
            "truncated index of {len} bytes accepted"
        );
    }
    let data = &files[1].1;
    let bundle = BundleIndex::parse(VARIABLES_INDEX, index).unwrap();
    for len in 0..data.len() {
        assert!(
            bundle.read_all(&[Some(&data[..len])]).is_err(),
            "truncated data of {len} bytes accepted"
        );
    }
}

#[test]
fn deeply_nested_saved_model_is_an_error_not_a_stack_overflow() {
    // GraphDef.library.function[0].signature... is not recursive, but AttrValue.func.attr is:
    // nest it 10 000 levels deep inside a NodeDef inside a SavedModel.
    fn wrap(tag: u8, inner: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let mut len = inner.len();
        while len >= 0x80 {
            out.push((len as u8) | 0x80);
            len >>= 7;
        }
        out.push(len as u8);
        out.extend_from_slice(inner);
        out
    }
    let mut attr = Vec::new();
    for _ in 0..10_000 {
        let entry = wrap(0x12, &attr); // map entry value
        let list = wrap(0x12, &entry); // NameAttrList.attr
        attr = wrap(0x52, &list); // AttrValue.func
    }
    let node = wrap(0x2a, &wrap(0x12, &attr)); // NodeDef.attr entry value
    let graph = wrap(0x0a, &node); // GraphDef.node
    let meta = wrap(0x12, &graph); // MetaGraphDef.graph_def
    let model = wrap(0x12, &meta); // SavedModel.meta_graphs
    let err = parse_saved_model(&model).unwrap_err().to_string();
    assert!(err.contains("recursion limit"), "{err}");
}

#[test]
fn huge_declared_sizes_do_not_allocate() {
    // A string tensor claiming a billion elements in 8 bytes, and a float tensor claiming 2^40.
    let small = HostTensor::new(vec![1], TensorData::Str(vec![b"ab".to_vec()])).unwrap();
    let files = write_bundle([("s", &small)]).unwrap();
    let index = BundleIndex::parse(VARIABLES_INDEX, &files.index).unwrap();
    assert!(index.read_tensor("s", &[Some(&files.data)]).is_ok());
    let mut entry = index.entry("s").unwrap().clone();
    entry.shape = Some(savedmodel_format::convert::shape_to_proto(&[1_000_000_000]));
    let header = [0x08, 0x01, 0x1a, 0x02, 0x08, 0x01];
    let encoded = prost::Message::encode_to_vec(&entry);
    let table = savedmodel_format::sstable::build_table(
        Default::default(),
        [
            (b"".as_slice(), header.as_slice()),
            (b"s".as_slice(), encoded.as_slice()),
        ],
    )
    .unwrap();
    let index = BundleIndex::parse(VARIABLES_INDEX, &table).unwrap();
    let err = index
        .read_tensor("s", &[Some(&files.data)])
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot fit"), "{err}");
}
