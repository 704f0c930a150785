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
