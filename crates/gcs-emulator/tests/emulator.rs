//! The emulator starts, serves object_store's GCS client through `storage`, and stops on drop.

use bytes::Bytes;
use gcs_emulator::GcsEmulator;
use storage::Location;

#[test]
fn serves_gs_locations_and_stops_when_dropped() {
    let emulator = GcsEmulator::start_with_buckets(&["harness-bucket"]).unwrap();
    assert!(
        emulator.endpoint().starts_with("http://127.0.0.1:"),
        "{}",
        emulator.endpoint()
    );

    let object = Location::parse_with(
        "gs://harness-bucket/dir/hello.txt",
        &emulator.storage_options(),
    )
    .unwrap();
    object.write_blocking(Bytes::from_static(b"hello")).unwrap();
    assert_eq!(
        object.read_blocking().unwrap(),
        Bytes::from_static(b"hello")
    );

    let missing_bucket =
        Location::parse_with("gs://no-such-bucket/x", &emulator.storage_options()).unwrap();
    assert!(missing_bucket.read_blocking().unwrap_err().is_not_found());

    let pid = emulator.pid();
    let address = emulator
        .endpoint()
        .trim_start_matches("http://")
        .to_string();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    drop(emulator);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "emulator process {pid} still running"
    );
    assert!(
        std::net::TcpStream::connect(&address).is_err(),
        "{address} still accepts connections"
    );
}

#[test]
fn two_emulators_are_independent() {
    let first = GcsEmulator::start_with_buckets(&["shared-name"]).unwrap();
    let second = GcsEmulator::start_with_buckets(&["shared-name"]).unwrap();
    assert_ne!(first.endpoint(), second.endpoint());
    let in_first =
        Location::parse_with("gs://shared-name/only-here", &first.storage_options()).unwrap();
    in_first.write_blocking(Bytes::from_static(b"1")).unwrap();
    let in_second =
        Location::parse_with("gs://shared-name/only-here", &second.storage_options()).unwrap();
    assert!(!in_second.exists_blocking().unwrap());
}

/// Kills a process that owns an emulator (SIGKILL: no destructor runs) and checks that the
/// emulator goes away with it.
#[test]
fn the_emulator_dies_with_its_owning_process() {
    use std::io::{BufRead, BufReader};
    let mut owner = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_owns_an_emulator_until_killed",
            "--ignored",
            "--nocapture",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(owner.stdout.take().unwrap());
    let pid = stdout
        .lines()
        .map_while(Result::ok)
        .find_map(|line| line.strip_prefix("EMULATOR PID ").map(str::to_string))
        .expect("the child reports its emulator's pid");
    let proc_dir = format!("/proc/{pid}");
    assert!(std::path::Path::new(&proc_dir).exists());
    owner.kill().unwrap();
    owner.wait().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::path::Path::new(&proc_dir).exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "emulator {pid} outlived its owner"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
#[ignore = "run by the_emulator_dies_with_its_owning_process in a child process"]
fn child_owns_an_emulator_until_killed() {
    let emulator = GcsEmulator::start().unwrap();
    println!("EMULATOR PID {}", emulator.pid());
    std::thread::sleep(std::time::Duration::from_secs(60));
    drop(emulator);
}
