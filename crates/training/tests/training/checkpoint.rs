//! Checkpoint bundles, the state file and the manager, against an in-memory store.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use mnist_model::{BatchMetrics, Device, EngineOptions, Mlp, ModelConfig, TrainConfig};
use storage::Location;
use training::checkpoint::{
    CheckpointManager, CheckpointProblem, CheckpointState, RunFingerprint, TrainingState,
};
use training::{EpochRecord, Position};

fn fingerprint() -> RunFingerprint {
    RunFingerprint {
        input_dim: 16,
        hidden_units: vec![8, 6],
        num_classes: 3,
        dropout_rate: 0.2,
        batch_size: 8,
        learning_rate: 0.05,
        momentum: 0.9,
        seed: 4,
        train_examples: 40,
        validation_examples: 0,
        image_dims: [4, 4],
        train_data_crc32c: 0x1234_5678,
    }
}

/// A state after 2 epochs and 3 batches of 5-batch epochs.
fn state() -> TrainingState {
    let config = ModelConfig {
        input_dim: 16,
        hidden_units: vec![8, 6],
        num_classes: 3,
        dropout_rate: 0.2,
    };
    let mut model = Mlp::new(config, 4, &Device::Cpu, &EngineOptions::default()).unwrap();
    let optimizer = TrainConfig::default().optimizer();
    let features: Vec<f32> = (0..8 * 16).map(|i| (i % 7) as f32 / 7.0).collect();
    let labels: Vec<u8> = (0..8).map(|i| (i % 3) as u8).collect();
    for _ in 0..13 {
        model.train_step(&features, &labels, &optimizer).unwrap();
    }
    let record = |epoch| EpochRecord {
        epoch,
        loss: 1.0 / epoch as f64,
        accuracy: 0.5,
        steps: 5,
        val_loss: None,
        val_accuracy: None,
    };
    TrainingState {
        weights: model.weights().unwrap(),
        slots: model.momentum_slots().unwrap(),
        global_step: 13,
        position: Position {
            epoch: 2,
            batch: 3,
            running: BatchMetrics {
                loss_sum: 12.5,
                correct: 11,
                examples: 24,
            },
            epoch_seconds: 0.25,
            history: vec![record(1), record(2)],
            history_seconds: vec![1.5, 1.25],
        },
        fingerprint: fingerprint(),
    }
}

#[test]
fn a_bundle_round_trips_exactly() {
    let state = state();
    assert!(
        state
            .slots
            .iter()
            .any(|s| s.kernel.iter().any(|&v| v != 0.0))
    );
    let files = state.to_bundle().unwrap();
    let back =
        TrainingState::from_bundle("ckpt-13", &files.index, &files.data, &fingerprint()).unwrap();
    assert_eq!(back, state);
}

#[test]
fn another_configuration_is_named_field_by_field() {
    let files = state().to_bundle().unwrap();
    let mut other = fingerprint();
    other.hidden_units = vec![8, 5];
    other.seed = 5;
    let problem =
        TrainingState::from_bundle("ckpt-13", &files.index, &files.data, &other).unwrap_err();
    assert_eq!(
        problem,
        CheckpointProblem::OtherRun(vec![
            "hidden_units: checkpoint [8,6], this run [8,5]".to_string(),
            "seed: checkpoint 4, this run 5".to_string(),
        ])
    );
}

#[test]
fn every_flipped_byte_or_truncation_is_caught() {
    let files = state().to_bundle().unwrap();
    let expected = fingerprint();
    // Every 7th byte of the data file, and every byte of the index: a changed byte either
    // fails a checksum or makes the index unreadable, never a silently different state.
    for at in (0..files.data.len()).step_by(7) {
        let mut data = files.data.clone();
        data[at] ^= 0x01;
        match TrainingState::from_bundle("ckpt-13", &files.index, &data, &expected) {
            Err(CheckpointProblem::Corrupt(_)) => {}
            other => panic!("data byte {at}: {other:?}"),
        }
    }
    for at in 0..files.index.len() {
        let mut index = files.index.clone();
        index[at] ^= 0x01;
        if let Ok(state) = TrainingState::from_bundle("ckpt-13", &index, &files.data, &expected) {
            // Bytes that carry no meaning (e.g. the footer's padding) may change freely, but the
            // state read must still be the one written.
            assert_eq!(state, self::state(), "index byte {at}");
        }
    }
    for len in [0, 10, files.data.len() / 2, files.data.len() - 1] {
        assert!(
            TrainingState::from_bundle("ckpt-13", &files.index, &files.data[..len], &expected)
                .is_err()
        );
    }
}

#[test]
fn the_state_file_is_tensorflows_text_format() {
    let state = CheckpointState {
        latest: Some("ckpt-20".to_string()),
        all: vec!["ckpt-10".to_string(), "ckpt-20".to_string()],
    };
    let text = state.to_text();
    assert_eq!(
        text,
        "model_checkpoint_path: \"ckpt-20\"\nall_model_checkpoint_paths: \"ckpt-10\"\nall_model_checkpoint_paths: \"ckpt-20\"\n"
    );
    let with_timestamps = format!("{text}all_model_checkpoint_timestamps: 1796372121.02\n");
    assert_eq!(CheckpointState::parse(&with_timestamps).unwrap(), state);
    assert!(CheckpointState::parse("model_checkpoint_path ckpt").is_err());
}

#[test]
fn the_manager_keeps_the_last_k_and_loads_the_latest() {
    let dir = Location::parse("memory://checkpoint-tests/keep/checkpoints").unwrap();
    let mut manager = CheckpointManager::open(dir.clone(), 2).unwrap();
    assert!(manager.load_latest(&fingerprint()).unwrap().is_none());
    let mut state = state();
    for step in [13, 18, 23] {
        // Same batch (3) of epochs 2, 3 and 4.
        state.global_step = step;
        state.position.epoch = (step / 5) as usize;
        while state.position.history.len() < state.position.epoch {
            let last = state.position.history.len() + 1;
            state.position.history.push(EpochRecord {
                epoch: last,
                ..state.position.history[0].clone()
            });
            state.position.history_seconds.push(1.0);
        }
        assert_eq!(
            manager.save(&state).unwrap().as_deref(),
            Some(format!("ckpt-{step}").as_str())
        );
    }
    // The same step again is not rewritten.
    assert_eq!(manager.save(&state).unwrap(), None);
    let mut files = dir.list_blocking().unwrap();
    files.sort();
    assert_eq!(
        files,
        [
            "checkpoint",
            "ckpt-18.data-00000-of-00001",
            "ckpt-18.index",
            "ckpt-23.data-00000-of-00001",
            "ckpt-23.index"
        ]
    );
    let reopened = CheckpointManager::open(dir, 2).unwrap();
    let (prefix, loaded) = reopened.load_latest(&fingerprint()).unwrap().unwrap();
    assert!(prefix.url().ends_with("checkpoints/ckpt-23"), "{prefix}");
    assert_eq!(loaded, state);
}
