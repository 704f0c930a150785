//! Bad input is reported as a `ModelError` naming the problem, never a panic.

// Helpers outside #[test] functions unwrap too: a failed setup should fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use mnist_model::{
    Backend, Device, EngineOptions, Mlp, ModelConfig, ModelError, SgdMomentum, TrainConfig,
};

fn model(backend: Backend) -> Mlp {
    let config = ModelConfig {
        input_dim: 8,
        hidden_units: vec![16],
        num_classes: 3,
        dropout_rate: 0.2,
    };
    let options = EngineOptions {
        threads: Some(2),
        backend,
        ..EngineOptions::default()
    };
    Mlp::new(config, 1, &Device::Cpu, &options).unwrap()
}

const OPT: SgdMomentum = SgdMomentum {
    learning_rate: 0.01,
    momentum: 0.9,
};

#[test]
fn configs_are_validated_field_by_field() {
    let base = ModelConfig::default();
    let cases: Vec<(ModelConfig, &str)> = vec![
        (
            ModelConfig {
                input_dim: 0,
                ..base.clone()
            },
            "input_dim",
        ),
        (
            ModelConfig {
                num_classes: 1,
                ..base.clone()
            },
            "num_classes",
        ),
        (
            ModelConfig {
                num_classes: 300,
                ..base.clone()
            },
            "num_classes",
        ),
        (
            ModelConfig {
                hidden_units: vec![512, 0],
                ..base.clone()
            },
            "hidden_units",
        ),
        (
            ModelConfig {
                hidden_units: vec![usize::MAX],
                ..base.clone()
            },
            "hidden_units",
        ),
        (
            ModelConfig {
                dropout_rate: 1.0,
                ..base.clone()
            },
            "dropout_rate",
        ),
        (
            ModelConfig {
                dropout_rate: -0.1,
                ..base.clone()
            },
            "dropout_rate",
        ),
        (
            ModelConfig {
                dropout_rate: f32::NAN,
                ..base.clone()
            },
            "dropout_rate",
        ),
    ];
    for (config, field) in cases {
        let err = Mlp::new(config, 0, &Device::Cpu, &EngineOptions::default())
            .err()
            .unwrap();
        assert!(err.to_string().contains(field), "{field}: {err}");
    }
    let train = TrainConfig::default();
    assert!(train.validate().is_ok());
    assert_eq!((train.epochs, train.batch_size, train.seed), (1, 32, 0));
    assert_eq!((train.learning_rate, train.momentum), (0.01, 0.9));
    for (bad, field) in [
        (
            TrainConfig {
                epochs: 0,
                ..train.clone()
            },
            "epochs",
        ),
        (
            TrainConfig {
                batch_size: 0,
                ..train.clone()
            },
            "batch_size",
        ),
        (
            TrainConfig {
                learning_rate: f32::NAN,
                ..train.clone()
            },
            "learning_rate",
        ),
        (
            TrainConfig {
                learning_rate: -1.0,
                ..train.clone()
            },
            "learning_rate",
        ),
        (
            TrainConfig {
                momentum: 1.0,
                ..train.clone()
            },
            "momentum",
        ),
    ] {
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.contains(field), "{field}: {err}");
    }
}

#[test]
fn batches_are_checked_before_any_work() {
    for backend in [Backend::Auto, Backend::Candle] {
        let mut m = model(backend);
        let x = vec![0.5f32; 4 * 8];
        assert!(matches!(
            m.train_step(&x[..31], &[0, 1, 2, 0], &OPT),
            Err(ModelError::FeatureShape {
                expected: 32,
                found: 31,
                ..
            })
        ));
        assert!(matches!(
            m.train_step(&x, &[0, 1, 3, 0], &OPT),
            Err(ModelError::LabelOutOfRange {
                row: 2,
                label: 3,
                num_classes: 3
            })
        ));
        assert!(matches!(
            m.train_step(&[], &[], &OPT),
            Err(ModelError::EmptyBatch)
        ));
        assert!(matches!(
            m.train_step(&x, &[0, 1], &OPT),
            Err(ModelError::FeatureShape { .. })
        ));
        let bad_opt = SgdMomentum {
            learning_rate: f32::INFINITY,
            momentum: 0.9,
        };
        let err = m.train_step(&x, &[0, 1, 2, 0], &bad_opt).unwrap_err();
        assert!(err.to_string().contains("learning_rate"), "{err}");
        // Nothing above counted as a step.
        assert_eq!(m.steps_taken(), 0);
        assert!(m.evaluate(&x, &[0, 9, 0, 0]).is_err());
        assert!(matches!(m.evaluate(&x, &[]), Err(ModelError::EmptyBatch)));
        assert!(matches!(
            m.predict(&x[..12]),
            Err(ModelError::FeatureShape { .. })
        ));
        assert!(matches!(m.predict(&[]), Err(ModelError::EmptyBatch)));
        // And valid input still works afterwards.
        assert_eq!(m.train_step(&x, &[0, 1, 2, 0], &OPT).unwrap().examples, 4);
        assert_eq!(m.predict(&x).unwrap().rows(), 4);
    }
}

#[test]
fn non_finite_features_give_nan_loss_not_a_panic() {
    let mut m = model(Backend::Auto);
    let mut x = vec![0.5f32; 2 * 8];
    x[3] = f32::NAN;
    let r = m.train_step(&x, &[0, 1], &OPT).unwrap();
    assert!(r.loss_sum.is_nan());
}

#[test]
fn oversized_batches_are_refused() {
    let mut m = model(Backend::Auto);
    let rows = mnist_model::MAX_BATCH_ROWS + 1;
    let x = vec![0f32; rows * 8];
    let y = vec![0u8; rows];
    let err = m.train_step(&x, &y, &OPT).unwrap_err();
    assert!(err.to_string().contains("batch_size"), "{err}");
}

#[test]
fn the_model_can_move_between_and_be_shared_by_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Mlp>();
    let m = model(Backend::Auto);
    let x = vec![0.25f32; 3 * 8];
    let expected = m.predict(&x).unwrap();
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| assert_eq!(m.predict(&x).unwrap(), expected));
        }
    });
}
