//! Unit tests of the writer: byte layout against a Keras run, and flush / rotation behaviour on
//! the in-memory store and a local directory.

use std::time::Duration;

use prost::Message;
use storage::Location;

use crate::writer::scalar_event;
use crate::{EventWriter, FILE_VERSION, WriterOptions, read_events, scalars};

fn hex(text: &str) -> Vec<u8> {
    text.split_whitespace()
        .map(|byte| u8::from_str_radix(byte, 16).unwrap())
        .collect()
}

/// The record data of a `batch_loss` event from a Keras 3.15 / TF 2.21 run
/// (`TensorBoard(update_freq=2)`, step 2), decoded with TensorFlow's own protobufs.
const KERAS_BATCH_LOSS: &str = "09 12 c2 b0 f8 a5 c4 da 41 10 02 2a 27 0a 25 0a 0a 62 61 74 63 68 \
     5f 6c 6f 73 73 42 0a 08 01 12 00 22 04 fc 02 13 40 4a 0b 0a 09 0a 07 73 63 61 6c 61 72 73";

/// The first record of the same Keras run's `train/` file.
const KERAS_FILE_VERSION: &str = "09 00 00 40 f8 a5 c4 da 41 1a 0d 62 72 61 69 6e 2e 45 76 65 \
     6e 74 3a 32 52 24 0a 22 74 65 6e 73 6f 72 66 6c 6f 77 2e 63 6f 72 65 2e 75 74 69 6c 2e 65 76 \
     65 6e 74 73 5f 77 72 69 74 65 72";

#[test]
fn scalar_events_are_byte_identical_to_keras() {
    let keras = hex(KERAS_BATCH_LOSS);
    let wall_time = f64::from_le_bytes(keras[1..9].try_into().unwrap());
    let value = f32::from_le_bytes([0xfc, 0x02, 0x13, 0x40]);
    let ours = scalar_event("batch_loss", 2, value, wall_time).encode_to_vec();
    assert_eq!(ours, keras);
}

#[test]
fn step_zero_is_omitted_like_keras() {
    let encoded = scalar_event("epoch_loss", 0, 1.5, 100.0).encode_to_vec();
    // wall_time (tag 1) is followed directly by the summary (tag 5, byte 0x2a): no step field.
    assert_eq!(encoded[9], 0x2a);
}

fn memory_dir(name: &str) -> Location {
    Location::parse(&format!("memory://tfevents-unit/{name}")).unwrap()
}

fn only_file(dir: &Location) -> (Location, Vec<u8>) {
    let names = dir.list_blocking().unwrap();
    assert_eq!(names.len(), 1, "{names:?}");
    let file = dir.join(&names[0]);
    let bytes = file.read_blocking().unwrap().to_vec();
    (file, bytes)
}

#[test]
fn a_new_file_starts_with_the_file_version_record_like_keras() {
    let dir = memory_dir("version");
    let writer = EventWriter::create(&dir).unwrap();
    let (file, bytes) = only_file(&dir);
    let name = file.to_string();
    assert!(
        name.contains("/events.out.tfevents.") && name.ends_with(".v2"),
        "{name}"
    );
    assert_eq!(writer.file(), name);

    let events = read_events(&bytes, &name).unwrap();
    assert_eq!(events.len(), 1);
    let keras = crate::proto::Event::decode(hex(KERAS_FILE_VERSION).as_slice()).unwrap();
    let ours = &events[0];
    assert_eq!(
        ours.wall_time.fract(),
        0.0,
        "whole seconds, as TF writes them"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - ours.wall_time).abs() < 60.0, "{}", ours.wall_time);
    assert_eq!(
        ours.encode_to_vec()[9..],
        keras.encode_to_vec()[9..],
        "all but the time"
    );
    match &ours.what {
        Some(crate::proto::event::What::FileVersion(version)) => assert_eq!(version, FILE_VERSION),
        other => panic!("{other:?}"),
    }
    writer.close().unwrap();
}

#[test]
fn object_store_files_grow_by_whole_uploads_that_extend_the_previous_one() {
    let dir = memory_dir("uploads");
    let options = WriterOptions {
        upload_interval: Duration::from_secs(3600),
        ..WriterOptions::default()
    };
    let mut writer = EventWriter::create_with(&dir, options).unwrap();
    let (file, first) = only_file(&dir);

    writer.write_scalar("epoch_loss", 0, 0.5).unwrap();
    writer.write_scalar("epoch_loss", 1, 0.25).unwrap();
    assert_eq!(
        file.read_blocking().unwrap().to_vec(),
        first,
        "nothing uploaded before the interval or a flush"
    );

    writer.flush().unwrap();
    let second = file.read_blocking().unwrap().to_vec();
    assert!(second.len() > first.len() && second.starts_with(&first));
    let points = scalars(&read_events(&second, "f").unwrap());
    assert_eq!(
        points
            .iter()
            .map(|point| (point.step, point.value))
            .collect::<Vec<_>>(),
        [(0, 0.5), (1, 0.25)]
    );

    writer.write_scalar("epoch_loss", 2, 0.125).unwrap();
    drop(writer);
    let third = file.read_blocking().unwrap().to_vec();
    assert!(third.starts_with(&second), "drop flushes what is pending");
    assert_eq!(scalars(&read_events(&third, "f").unwrap()).len(), 3);
}

#[test]
fn an_elapsed_upload_interval_uploads_on_the_next_write() {
    let dir = memory_dir("interval");
    let options = WriterOptions {
        upload_interval: Duration::ZERO,
        ..WriterOptions::default()
    };
    let mut writer = EventWriter::create_with(&dir, options).unwrap();
    writer.write_scalar("batch_loss", 7, 2.0).unwrap();
    let (_, bytes) = only_file(&dir);
    let points = scalars(&read_events(&bytes, "f").unwrap());
    assert_eq!((points[0].step, points[0].value), (7, 2.0));
    writer.close().unwrap();
}

#[test]
fn full_objects_rotate_to_a_later_name_and_lose_nothing() {
    let dir = memory_dir("rotation");
    let options = WriterOptions {
        upload_interval: Duration::ZERO,
        max_object_bytes: 300,
    };
    let mut writer = EventWriter::create_with(&dir, options).unwrap();
    for step in 0..40 {
        writer
            .write_scalar("batch_loss", step, step as f32)
            .unwrap();
    }
    writer.close().unwrap();

    let names = dir.list_blocking().unwrap();
    assert!(names.len() > 3, "{names:?}");
    let mut steps = Vec::new();
    for name in &names {
        let bytes = dir.join(name).read_blocking().unwrap();
        assert!(bytes.len() < 300 + 100, "{name}: {} bytes", bytes.len());
        let events = read_events(&bytes, name).unwrap();
        assert!(
            matches!(
                events[0].what,
                Some(crate::proto::event::What::FileVersion(_))
            ),
            "{name} starts with file_version"
        );
        steps.extend(scalars(&events).into_iter().map(|point| point.step));
    }
    // `list` sorts by name, the order TensorBoard reads a run's files in.
    assert_eq!(steps, (0..40).collect::<Vec<_>>());
}

#[test]
fn local_files_are_appended_in_place_at_every_write() {
    let temp = tempfile::tempdir().unwrap();
    let dir = Location::parse(temp.path().join("logs/train").to_str().unwrap()).unwrap();
    let mut writer = EventWriter::create(&dir).unwrap();
    let path = std::path::PathBuf::from(writer.file());
    let inode = |path: &std::path::Path| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).unwrap().ino()
    };
    let first_inode = inode(&path);
    let mut previous = std::fs::read(&path).unwrap();
    for step in 1..=3 {
        writer
            .write_scalar("batch_accuracy", step * 100, 0.5)
            .unwrap();
        let now = std::fs::read(&path).unwrap();
        assert!(now.len() > previous.len() && now.starts_with(&previous));
        previous = now;
    }
    assert_eq!(inode(&path), first_inode, "never replaced by rename");
    writer.close().unwrap();
    let points = scalars(&read_events(&previous, "f").unwrap());
    assert_eq!(points.len(), 3);
    assert_eq!(points[2].step, 300);
}

#[test]
fn two_writers_in_one_directory_never_share_a_file() {
    let temp = tempfile::tempdir().unwrap();
    let dir = Location::parse(temp.path().to_str().unwrap()).unwrap();
    let first = EventWriter::create(&dir).unwrap();
    let second = EventWriter::create(&dir).unwrap();
    assert_ne!(first.file(), second.file());
    assert_eq!(std::fs::read_dir(temp.path()).unwrap().count(), 2);
}

#[test]
fn bad_input_is_refused_with_the_file_named() {
    let dir = memory_dir("bad-tag");
    let mut writer = EventWriter::create(&dir).unwrap();
    let error = writer.write_scalar("", 1, 1.0).unwrap_err().to_string();
    assert!(
        error.contains(&writer.file()) && error.contains("empty"),
        "{error}"
    );

    let not_a_dir = tempfile::NamedTempFile::new().unwrap();
    let below_file = Location::parse(not_a_dir.path().join("run").to_str().unwrap()).unwrap();
    let error = EventWriter::create(&below_file).err().unwrap();
    let message = error.to_string();
    assert!(
        message.contains(&not_a_dir.path().display().to_string()),
        "{message}"
    );

    let error = read_events(b"\x05\x00\x00", "run/events.out.tfevents.x").unwrap_err();
    assert!(
        error.to_string().contains("run/events.out.tfevents.x"),
        "{error}"
    );
    let mut not_an_event = Vec::new();
    crate::record::append_record(&mut not_an_event, &[0xff, 0xff, 0xff]);
    let error = read_events(&not_an_event, "g").unwrap_err().to_string();
    assert!(
        error.contains("g: record 0 is not a TensorBoard Event"),
        "{error}"
    );
}

#[test]
fn every_float_value_round_trips_exactly() {
    let dir = memory_dir("floats");
    let mut writer = EventWriter::create(&dir).unwrap();
    let values = [0.0f32, -0.0, 1e-45, f32::MAX, -3.5, f32::INFINITY, f32::NAN];
    for (step, value) in values.iter().enumerate() {
        writer.write_scalar("v", step as i64, *value).unwrap();
    }
    writer.close().unwrap();
    let (_, bytes) = only_file(&dir);
    let read: Vec<u32> = scalars(&read_events(&bytes, "f").unwrap())
        .iter()
        .map(|point| point.value.to_bits())
        .collect();
    assert_eq!(read, values.map(f32::to_bits));
}
