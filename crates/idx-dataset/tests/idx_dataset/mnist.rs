//! Loading MNIST from local directories, `memory://` and `gs://` (a real fake-gcs-server), and
//! the errors for the damaged fixtures in testdata/idx.

// Helpers shared by the tests panic on failure like the tests themselves.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use bytes::Bytes;
use gcs_emulator::GcsEmulator;
use idx_dataset::{IdxError, IdxKind, MnistSplits, decode_idx, load_mnist, load_mnist_blocking};
use storage::{Location, StorageOptions};

fn testdata(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(relative)
}

fn local(relative: &str) -> Location {
    Location::parse(testdata(relative).to_str().unwrap()).unwrap()
}

fn histogram(labels: &[u8]) -> [usize; 10] {
    let mut counts = [0; 10];
    for &label in labels {
        counts[usize::from(label)] += 1;
    }
    counts
}

/// Published facts about MNIST: sizes, the first labels, and the per-digit counts.
fn assert_is_full_mnist(splits: &MnistSplits) {
    assert_eq!((splits.train.len(), splits.test.len()), (60_000, 10_000));
    assert_eq!(splits.train.image_dims(), (28, 28));
    assert_eq!(splits.train.feature_len(), 784);
    assert_eq!(splits.train.pixels().len(), 60_000 * 784);
    assert_eq!((splits.train.labels()[0], splits.test.labels()[0]), (5, 7));
    assert_eq!(
        histogram(splits.train.labels()),
        [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    );
    assert_eq!(
        histogram(splits.test.labels()),
        [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    );
    assert_eq!(splits.train.max_label(), Some(9));
    assert_eq!(splits.train.pixels().iter().max(), Some(&255));
    splits.train.validate_labels(10).unwrap();
}

#[test]
fn loads_the_real_mnist_files() {
    let splits = load_mnist_blocking(&local("mnist")).unwrap();
    assert_is_full_mnist(&splits);
    assert!(
        splits
            .train
            .images_file()
            .ends_with("train-images-idx3-ubyte.gz")
    );
    let batches = splits.train.batches(32, Some(0), 10).unwrap();
    assert_eq!(batches.num_batches(), 1875);
}

#[test]
fn the_small_fixture_is_the_start_of_mnist() {
    let small = load_mnist_blocking(&local("idx/mnist-small")).unwrap();
    assert_eq!((small.train.len(), small.test.len()), (1000, 200));
    let full = load_mnist_blocking(&local("mnist")).unwrap();
    assert_eq!(small.train.labels(), &full.train.labels()[..1000]);
    assert_eq!(small.train.pixels(), full.train.take(1000).pixels());
    assert_eq!(small.test.pixels(), full.test.take(200).pixels());
}

#[test]
fn accepts_uncompressed_files_with_the_dot_spelling() {
    let tiny = load_mnist_blocking(&local("idx/mnist-tiny-raw")).unwrap();
    assert_eq!((tiny.train.len(), tiny.test.len()), (16, 8));
    assert!(
        tiny.train
            .images_file()
            .ends_with("train-images.idx3-ubyte")
    );
    let small = load_mnist_blocking(&local("idx/mnist-small")).unwrap();
    assert_eq!(tiny.train.pixels(), small.train.take(16).pixels());
}

#[test]
fn a_missing_file_lists_what_was_looked_for_and_where() {
    let empty = tempfile::tempdir().unwrap();
    let dir = Location::parse(empty.path().to_str().unwrap()).unwrap();
    let error = load_mnist_blocking(&dir).unwrap_err();
    let IdxError::MissingFile {
        dir: shown,
        description,
        looked_for,
    } = &error
    else {
        panic!("{error:?}");
    };
    assert_eq!(shown, &dir.to_string());
    assert_eq!(*description, "training images");
    assert_eq!(
        looked_for,
        &[
            "train-images-idx3-ubyte",
            "train-images-idx3-ubyte.gz",
            "train-images.idx3-ubyte",
            "train-images.idx3-ubyte.gz"
        ]
    );
    assert!(
        error
            .to_string()
            .contains(&format!("{}: no training images file: looked for", dir)),
        "{error}"
    );

    // With only the training files present, the test files are reported.
    for name in ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"] {
        std::fs::copy(
            testdata("idx/mnist-small").join(name),
            empty.path().join(name),
        )
        .unwrap();
    }
    let error = load_mnist_blocking(&dir).unwrap_err();
    assert!(
        matches!(
            error,
            IdxError::MissingFile {
                description: "test images",
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn counts_that_disagree_are_refused_naming_both_files() {
    let error = load_mnist_blocking(&local("idx/count-mismatch")).unwrap_err();
    assert!(
        matches!(
            error,
            IdxError::CountMismatch {
                images: 16,
                labels: 15,
                ..
            }
        ),
        "{error}"
    );
    let message = error.to_string();
    assert!(
        message.contains("count-mismatch/train-images-idx3-ubyte has 16 images"),
        "{message}"
    );
    assert!(
        message.contains("count-mismatch/train-labels-idx1-ubyte has 15 labels"),
        "{message}"
    );
}

#[test]
fn damaged_fixture_files_fail_with_their_names() {
    let read = |name: &str| {
        let path = testdata("idx/malformed").join(name);
        (path.display().to_string(), std::fs::read(&path).unwrap())
    };
    type Expectation = fn(&IdxError) -> bool;
    let cases: [(&str, Expectation); 6] = [
        ("labels-magic-in-images-file", |e| {
            matches!(
                e,
                IdxError::WrongMagic {
                    expected: 2051,
                    found: 2049,
                    ..
                }
            )
        }),
        ("float-dtype-images", |e| {
            matches!(e, IdxError::UnsupportedDtype { dtype: 0x0D, .. })
        }),
        ("short-payload-images", |e| {
            matches!(
                e,
                IdxError::PayloadLength {
                    expected: 3136,
                    found: 3135,
                    ..
                }
            )
        }),
        ("long-payload-images", |e| {
            matches!(
                e,
                IdxError::PayloadLength {
                    expected: 3136,
                    found: 3137,
                    ..
                }
            )
        }),
        ("truncated-gzip-images.gz", |e| {
            matches!(e, IdxError::Gzip { .. } | IdxError::PayloadLength { .. })
        }),
        ("huge-count-images", |e| {
            matches!(e, IdxError::TooLarge { .. })
        }),
    ];
    for (name, expected) in cases {
        let (file, bytes) = read(name);
        let error = decode_idx(&file, &bytes, IdxKind::Images).unwrap_err();
        assert!(expected(&error), "{name}: {error:?}");
        assert!(error.to_string().starts_with(&file), "{name}: {error}");
    }
}

async fn upload_dir(local_dir: &str, target: &Location) {
    for entry in std::fs::read_dir(testdata(local_dir)).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        target
            .join(&name)
            .write(Bytes::from(std::fs::read(entry.path()).unwrap()))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn loads_from_memory_storage() {
    let dir = Location::parse("memory://idx-dataset-tests/datasets/mnist-small").unwrap();
    upload_dir("idx/mnist-small", &dir).await;
    let splits = load_mnist(&dir).await.unwrap();
    assert_eq!((splits.train.len(), splits.test.len()), (1000, 200));
    assert_eq!(
        splits.test.images_file(),
        "memory://idx-dataset-tests/datasets/mnist-small/t10k-images-idx3-ubyte.gz"
    );
}

#[tokio::test]
async fn loads_real_mnist_from_gcs_on_the_emulator() {
    let emulator = GcsEmulator::start_with_buckets(&["mnist-data"]).unwrap();
    let dir = Location::parse_with(
        "gs://mnist-data/datasets/mnist",
        &emulator.storage_options(),
    )
    .unwrap();
    upload_dir("mnist", &dir).await;

    let from_gcs = load_mnist(&dir).await.unwrap();
    assert_is_full_mnist(&from_gcs);
    assert_eq!(
        from_gcs.train.images_file(),
        "gs://mnist-data/datasets/mnist/train-images-idx3-ubyte.gz"
    );
    let from_disk = load_mnist_blocking(&local("mnist")).unwrap();
    assert_eq!(from_gcs.train.pixels(), from_disk.train.pixels());
    assert_eq!(from_gcs.test.labels(), from_disk.test.labels());

    // The blocking form works inside an async test too.
    let blocking = load_mnist_blocking(&dir).unwrap();
    assert_eq!(blocking.test.pixels(), from_disk.test.pixels());

    let missing =
        Location::parse_with("gs://mnist-data/nothing-here", &emulator.storage_options()).unwrap();
    let error = load_mnist(&missing).await.unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("gs://mnist-data/nothing-here: no training images file"),
        "{error}"
    );
}

#[test]
fn storage_failures_other_than_not_found_name_the_file() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let options = StorageOptions::with_gcs_emulator(format!("http://127.0.0.1:{port}"));
    let dir = Location::parse_with("gs://bucket/mnist", &options).unwrap();
    let error = load_mnist_blocking(&dir).unwrap_err();
    let IdxError::Storage { file, source } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(file, "gs://bucket/mnist/train-images-idx3-ubyte");
    assert!(
        matches!(**source, storage::StorageError::Network { .. }),
        "{source:?}"
    );
}

/// An 8 GB (sparse) training images file is refused from its length, before it is read: the
/// error (storage's "too large", raised from the file's metadata) names the file, its size and
/// the limit. (Reading it whole used to
/// push RSS past 5 GB before `MAX_IDX_BYTES` was checked.)
#[test]
fn an_oversized_file_is_refused_without_reading_it() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ] {
        std::fs::copy(
            testdata("idx/mnist-small").join(name),
            dir.path().join(name),
        )
        .unwrap();
    }
    let huge = dir.path().join("train-images-idx3-ubyte");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(8 << 30)
        .unwrap();
    let error =
        load_mnist_blocking(&Location::parse(dir.path().to_str().unwrap()).unwrap()).unwrap_err();
    assert!(matches!(error, IdxError::Storage { .. }), "{error:?}");
    let message = format!("{error}: {}", std::error::Error::source(&error).unwrap());
    assert!(message.contains("train-images-idx3-ubyte"), "{message}");
    assert!(
        message.contains(&format!(
            "it is 8589934592 bytes, over the limit of {} bytes",
            idx_dataset::MAX_IDX_BYTES + 16
        )),
        "{message}"
    );
}
