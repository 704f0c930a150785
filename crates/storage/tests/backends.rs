//! The same storage contract checked on every backend: a local directory, `memory://` and
//! `gs://` on a real fake-gcs-server.

// The shared check functions are not `#[test]`s themselves, but panic on failure like them.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use gcs_emulator::GcsEmulator;
use storage::{Location, StorageError, StorageOptions};

fn bytes(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

/// Round trips, listing, existence, deletion and error kinds under `root` (empty at the start).
async fn check_contract(root: &Location) {
    assert_eq!(
        root.list().await.unwrap(),
        Vec::<String>::new(),
        "{root} should start empty"
    );

    let file = root.join("dir/nested/a.txt");
    assert!(!file.exists().await.unwrap());
    file.write(bytes("first")).await.unwrap();
    assert_eq!(file.read().await.unwrap(), bytes("first"));
    file.write(bytes("second")).await.unwrap();
    assert_eq!(
        file.read().await.unwrap(),
        bytes("second"),
        "write replaces"
    );
    assert!(file.exists().await.unwrap());
    assert!(
        !root.join("dir").exists().await.unwrap(),
        "a prefix is not an object"
    );

    root.join("dir/b.bin")
        .write(Bytes::from(vec![0u8, 255, 7]))
        .await
        .unwrap();
    root.join("dir-sibling/c").write(bytes("c")).await.unwrap();
    root.join("top").write(Bytes::new()).await.unwrap();
    assert_eq!(
        root.join("top").read().await.unwrap(),
        Bytes::new(),
        "empty objects survive"
    );

    assert_eq!(
        root.list().await.unwrap(),
        ["dir-sibling/c", "dir/b.bin", "dir/nested/a.txt", "top"],
        "recursive, relative, sorted"
    );
    assert_eq!(
        root.join("dir").list().await.unwrap(),
        ["b.bin", "nested/a.txt"],
        "listing is per segment: dir-sibling is not under dir"
    );
    assert!(root.join("no-such-dir").list().await.unwrap().is_empty());

    let missing = root.join("missing.txt");
    let error = missing.read().await.unwrap_err();
    assert!(error.is_not_found(), "{error:?}");
    assert_eq!(
        error.to_string(),
        format!("cannot read {missing}: not found")
    );
    assert_eq!(error.location(), missing.to_string());

    file.delete().await.unwrap();
    assert!(!file.exists().await.unwrap());
    file.delete().await.unwrap();
    missing.delete().await.unwrap();

    root.delete_tree().await.unwrap();
    assert!(root.list().await.unwrap().is_empty());
}

/// `write_tree` writes everything, marker included, and `delete_tree_with_marker` removes it.
async fn check_tree(root: &Location) {
    let tree = root.join("model");
    let files = vec![
        ("saved_model.pb".to_string(), bytes("graph")),
        ("variables/variables.index".to_string(), bytes("index")),
        (
            "variables/variables.data-00000-of-00001".to_string(),
            Bytes::from(vec![1u8; 100_000]),
        ),
        ("assets/vocab.txt".to_string(), bytes("a\nb\n")),
    ];
    tree.write_tree(files.clone(), "saved_model.pb")
        .await
        .unwrap();
    let mut expected: Vec<String> = files.iter().map(|(name, _)| name.clone()).collect();
    expected.sort();
    assert_eq!(tree.list().await.unwrap(), expected);
    for (name, data) in &files {
        assert_eq!(&tree.join(name).read().await.unwrap(), data, "{name}");
    }

    // Invalid requests are refused before anything is written or deleted.
    let untouched = root.join("refused");
    for (bad_files, marker) in [
        (vec![("a".to_string(), bytes("a"))], "saved_model.pb"),
        (
            vec![
                ("saved_model.pb".to_string(), bytes("m")),
                ("../escape".to_string(), bytes("x")),
            ],
            "saved_model.pb",
        ),
        (
            vec![
                ("saved_model.pb".to_string(), bytes("m")),
                ("saved_model.pb".to_string(), bytes("n")),
            ],
            "saved_model.pb",
        ),
        (vec![("a".to_string(), bytes("a"))], ""),
    ] {
        let error = untouched.write_tree(bad_files, marker).await.unwrap_err();
        assert!(
            matches!(
                error,
                StorageError::InvalidTree { .. } | StorageError::InvalidLocation { .. }
            ),
            "{error:?}"
        );
    }
    assert!(untouched.list().await.unwrap().is_empty());

    tree.delete_tree_with_marker("saved_model.pb")
        .await
        .unwrap();
    assert!(tree.list().await.unwrap().is_empty());
    assert!(!tree.join("saved_model.pb").exists().await.unwrap());
}

#[tokio::test]
async fn local_directory() {
    let dir = tempfile::tempdir().unwrap();
    let root = Location::parse(dir.path().to_str().unwrap()).unwrap();
    assert_eq!(root.local_path().as_deref(), Some(dir.path()));
    check_contract(&root).await;
    check_tree(&root).await;
    // Deleting a tree also removes the directories it emptied, but not the root's parent.
    assert!(!dir.path().join("model").exists());
    assert!(dir.path().exists());
}

#[tokio::test]
async fn local_file_url() {
    let dir = tempfile::tempdir().unwrap();
    let url = url::Url::from_directory_path(dir.path())
        .unwrap()
        .to_string();
    let root = Location::parse(&url).unwrap();
    check_contract(&root).await;
    root.join("x").write(bytes("via url")).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("x")).unwrap(),
        "via url"
    );
}

#[tokio::test]
async fn memory_store() {
    let root = Location::parse("memory://backends-test/prefix").unwrap();
    check_contract(&root).await;
    check_tree(&root).await;
    // The same name is the same store, wherever it is parsed again.
    root.join("shared").write(bytes("seen")).await.unwrap();
    let again = Location::parse("memory://backends-test/prefix/shared").unwrap();
    assert_eq!(again.read().await.unwrap(), bytes("seen"));
    let other = Location::parse("memory://other-store/prefix/shared").unwrap();
    assert!(!other.exists().await.unwrap());
}

#[tokio::test]
async fn gcs_on_the_emulator() {
    let emulator = GcsEmulator::start_with_buckets(&["contract-bucket"]).unwrap();
    let options = emulator.storage_options();
    let root = Location::parse_with("gs://contract-bucket/runs/run-1", &options).unwrap();
    check_contract(&root).await;
    check_tree(&root).await;

    let whole_bucket = Location::parse_with("gs://contract-bucket", &options).unwrap();
    whole_bucket.join("at-top").write(bytes("t")).await.unwrap();
    assert_eq!(whole_bucket.list().await.unwrap(), ["at-top"]);
    assert!(!whole_bucket.exists().await.unwrap());
    assert!(matches!(
        whole_bucket.read().await.unwrap_err(),
        StorageError::InvalidLocation { .. }
    ));

    // Names that object_store percent-encodes arrive intact.
    let odd = root.join("with space/ünï-cödé+#%.txt");
    odd.write(bytes("odd")).await.unwrap();
    assert_eq!(odd.read().await.unwrap(), bytes("odd"));
    assert_eq!(root.list().await.unwrap(), ["with space/ünï-cödé+#%.txt"]);

    let no_bucket = Location::parse_with("gs://no-such-bucket/x", &options).unwrap();
    let error = no_bucket.write(bytes("x")).await.unwrap_err();
    assert!(error.is_not_found(), "{error:?}");
    assert!(
        error.to_string().contains("gs://no-such-bucket/x"),
        "{error}"
    );
}

#[test]
fn gcs_large_object_round_trip_blocking() {
    let emulator = GcsEmulator::start_with_buckets(&["large"]).unwrap();
    let object = Location::parse_with("gs://large/blob.bin", &emulator.storage_options()).unwrap();
    let data: Vec<u8> = (0..12_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    object.write_blocking(Bytes::from(data.clone())).unwrap();
    assert_eq!(object.read_blocking().unwrap().as_ref(), data.as_slice());
}

/// Writes a new `saved_model.pb` (the marker) and `variables/variables.index` into `tree`, a
/// write that must fail; returns the error's text.
fn failed_model_tree_write(tree: &Location) -> String {
    let files = vec![
        ("saved_model.pb".to_string(), bytes("new")),
        ("variables/variables.index".to_string(), bytes("i")),
    ];
    tree.write_tree_blocking(files, "saved_model.pb")
        .unwrap_err()
        .to_string()
}

#[test]
fn gcs_write_tree_failure_never_writes_the_marker() {
    let emulator = GcsEmulator::start().unwrap();
    // The bucket does not exist, so every write fails: the marker must not be attempted.
    let tree =
        Location::parse_with("gs://missing-bucket/model", &emulator.storage_options()).unwrap();
    let error = failed_model_tree_write(&tree);
    assert!(
        error.contains("gs://missing-bucket/model/variables/variables.index"),
        "{error}"
    );
}

#[test]
fn local_write_tree_failure_leaves_no_marker_even_over_an_old_tree() {
    let dir = tempfile::tempdir().unwrap();
    let tree = Location::parse(dir.path().join("model").to_str().unwrap()).unwrap();
    tree.write_tree_blocking(
        vec![
            ("saved_model.pb".to_string(), bytes("old")),
            ("keep".to_string(), bytes("k")),
        ],
        "saved_model.pb",
    )
    .unwrap();
    // A file where a directory must go makes the write of variables/... fail.
    std::fs::write(dir.path().join("model/variables"), b"in the way").unwrap();
    let error = failed_model_tree_write(&tree);
    assert!(error.contains("model/variables/variables.index"), "{error}");
    assert!(
        !tree.join("saved_model.pb").exists_blocking().unwrap(),
        "the old marker must be gone and the new one never written"
    );
    // Local writes go through a temporary file and a rename: no stray temporary files remain.
    assert_eq!(tree.list_blocking().unwrap(), ["keep", "variables"]);
}

#[test]
fn blocking_twins_work_from_plain_threads_and_inside_runtimes() {
    let root = Location::parse("memory://blocking-twins/x").unwrap();
    root.join("plain").write_blocking(bytes("p")).unwrap();

    let current_thread = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    current_thread.block_on(async {
        root.join("in-current-thread")
            .write_blocking(bytes("c"))
            .unwrap();
        assert_eq!(root.join("plain").read_blocking().unwrap(), bytes("p"));
    });
    let multi_thread = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    multi_thread.block_on(async {
        let inner = root.clone();
        tokio::spawn(async move { inner.join("in-task").write_blocking(bytes("t")).unwrap() })
            .await
            .unwrap();
    });
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let root = root.clone();
            std::thread::spawn(move || {
                root.join(&format!("thread-{i}"))
                    .write_blocking(bytes("x"))
                    .unwrap()
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    assert_eq!(
        root.list_blocking().unwrap(),
        [
            "in-current-thread",
            "in-task",
            "plain",
            "thread-0",
            "thread-1",
            "thread-2",
            "thread-3"
        ]
    );
    root.delete_tree_blocking().unwrap();
    assert!(root.list_blocking().unwrap().is_empty());
}

/// `block_on` runs several async steps as one and hands back their result, errors included,
/// from a plain thread and from inside a runtime.
#[test]
fn block_on_runs_async_work_from_plain_threads_and_inside_runtimes() {
    let root = Location::parse("memory://block-on/x").unwrap();
    root.join("a").write_blocking(bytes("first")).unwrap();
    let read_a_then_missing = |dir: Location| async move {
        let a = dir.join("a").read().await?;
        let missing = dir.join("missing").read().await;
        Ok::<_, storage::StorageError>((a, missing.map_err(|e| e.is_not_found())))
    };

    let (a, missing) = root.block_on("test", read_a_then_missing).unwrap().unwrap();
    assert_eq!(a, bytes("first"));
    assert_eq!(missing, Err(true));

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let inside = runtime.block_on(async { root.block_on("test", read_a_then_missing) });
    assert_eq!(inside.unwrap().unwrap().0, bytes("first"));

    // An error of the work itself comes back inside the `Ok`, untouched.
    let error = root
        .block_on("test", |dir| async move { dir.join("nope").read().await })
        .unwrap()
        .unwrap_err();
    assert!(error.is_not_found(), "{error}");
    assert!(
        error.to_string().contains("memory://block-on/x/nope"),
        "{error}"
    );
    root.delete_tree_blocking().unwrap();
}

#[test]
fn a_gs_store_outlives_the_runtimes_that_used_it() {
    // Each #[tokio::test] has its own runtime; the cached gs:// client must keep working after
    // the runtime that first used it is gone.
    let emulator = GcsEmulator::start_with_buckets(&["runtimes"]).unwrap();
    let object = Location::parse_with("gs://runtimes/obj", &emulator.storage_options()).unwrap();
    for round in 0..3 {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            object
                .write(bytes(&format!("round {round}")))
                .await
                .unwrap();
            assert_eq!(
                object.read().await.unwrap(),
                bytes(&format!("round {round}"))
            );
        });
        drop(runtime);
    }
}

#[test]
fn an_unreachable_emulator_is_a_network_error_reported_quickly() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let options = StorageOptions::with_gcs_emulator(format!("127.0.0.1:{port}"));
    let object = Location::parse_with("gs://bucket/x", &options).unwrap();
    let started = Instant::now();
    let error = object.read_blocking().unwrap_err();
    assert!(matches!(error, StorageError::Network { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .starts_with("cannot read gs://bucket/x: network error"),
        "{error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
}

/// `Location::parse` follows `STORAGE_EMULATOR_HOST`. The variable is set only for a child copy
/// of this test binary, never in this (multi-threaded) process.
#[test]
fn storage_emulator_host_selects_the_emulator() {
    let emulator = GcsEmulator::start_with_buckets(&["from-env"]).unwrap();
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_reads_through_storage_emulator_host",
            "--ignored",
            "--nocapture",
        ])
        .env(storage::STORAGE_EMULATOR_HOST, emulator.endpoint())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("1 passed"), "{stdout}");
    let written = Location::parse_with(
        "gs://from-env/written-by-child",
        &emulator.storage_options(),
    )
    .unwrap();
    assert_eq!(
        written.read_blocking().unwrap(),
        bytes("hello from the child")
    );
}

#[test]
#[ignore = "run by storage_emulator_host_selects_the_emulator in a child process"]
fn child_reads_through_storage_emulator_host() {
    assert!(std::env::var_os(storage::STORAGE_EMULATOR_HOST).is_some());
    let object = Location::parse("gs://from-env/written-by-child").unwrap();
    object
        .write_blocking(bytes("hello from the child"))
        .unwrap();
}
