//! The fit loop and its observer contract on a tiny synthetic dataset.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use idx_dataset::Dataset;
use mnist_model::{Device, EngineOptions, Mlp, ModelConfig, RunningMetrics, TrainConfig};
use training::{
    Control, ControlResult, EpochBegin, EpochEnd, EvalPass, FitContext, FitObserver, FitPlan,
    HookResult, Position, TrainBatchEnd, TrainBegin,
};

/// 50 random 4x4 "images" with labels 0..3.
fn dataset(seed: u8, n: usize) -> Dataset {
    let mut rng = test_rng::TestRng::new(u64::from(seed));
    let pixels = rng.bytes(n * 16);
    let labels = (0..n).map(|_| rng.below(3) as u8).collect();
    Dataset::from_parts(pixels, labels, 4, 4).unwrap()
}

fn config() -> ModelConfig {
    ModelConfig {
        input_dim: 16,
        hidden_units: vec![8, 6],
        num_classes: 3,
        dropout_rate: 0.2,
    }
}

fn train_config() -> TrainConfig {
    TrainConfig {
        epochs: 3,
        batch_size: 8,
        learning_rate: 0.05,
        momentum: 0.9,
        seed: 4,
    }
}

fn model() -> Mlp {
    Mlp::new(config(), 4, &Device::Cpu, &EngineOptions::default()).unwrap()
}

/// Records every hook as a line, and stops at a given global step.
#[derive(Default)]
struct Recorder {
    events: Vec<String>,
    stop_at: Option<u64>,
    stopped_position: Option<Position>,
}

impl FitObserver for Recorder {
    fn on_train_begin(&mut self, begin: &TrainBegin<'_>) -> HookResult {
        self.events.push(format!(
            "train_begin epochs={} steps={} val={:?} start=({},{})",
            begin.epochs,
            begin.steps_per_epoch,
            begin.validation_examples,
            begin.start.epoch,
            begin.start.batch
        ));
        Ok(())
    }
    fn on_epoch_begin(&mut self, begin: &EpochBegin) -> HookResult {
        self.events.push(format!(
            "epoch_begin {} first={}",
            begin.epoch, begin.first_batch
        ));
        Ok(())
    }
    fn on_train_batch_end(
        &mut self,
        end: &TrainBatchEnd,
        context: &FitContext<'_>,
    ) -> ControlResult {
        assert_eq!(context.model().steps_taken(), end.global_step);
        assert_eq!(context.position().batch, end.batch + 1);
        self.events.push(format!(
            "batch {} {} step={}",
            end.epoch, end.batch, end.global_step
        ));
        if Some(end.global_step) == self.stop_at {
            self.stopped_position = Some(context.position().clone());
            return Ok(Control::Stop);
        }
        Ok(Control::Continue)
    }
    fn on_epoch_end(&mut self, end: &EpochEnd<'_>, context: &FitContext<'_>) -> ControlResult {
        assert_eq!(context.position().epoch, end.epoch + 1);
        assert_eq!(context.position().batch, 0);
        self.events.push(format!(
            "epoch_end {} val={}",
            end.epoch,
            end.record.val_loss.is_some()
        ));
        Ok(Control::Continue)
    }
    fn on_train_end(&mut self, _: &FitContext<'_>) -> HookResult {
        self.events.push("train_end".to_string());
        Ok(())
    }
    fn on_test_begin(&mut self, pass: EvalPass, batches: usize) -> HookResult {
        self.events.push(format!("test_begin {pass:?} {batches}"));
        Ok(())
    }
    fn on_test_end(&mut self, pass: EvalPass, metrics: &RunningMetrics) -> HookResult {
        self.events
            .push(format!("test_end {pass:?} {}", metrics.examples()));
        Ok(())
    }
}

#[test]
fn hooks_come_in_keras_order_with_validation() {
    let all = dataset(1, 50);
    let (train, validation) = training::split_validation(&all, 0.2).unwrap();
    assert_eq!((train.len(), validation.len()), (40, 10));
    let mut recorder = Recorder::default();
    let mut m = model();
    let config = train_config();
    let plan = FitPlan {
        train: &train,
        validation: Some(&validation),
        config: &config,
    };
    let result = training::fit(&mut m, &plan, Position::default(), &mut [&mut recorder]).unwrap();
    assert!(!result.stopped);
    assert_eq!(result.position.epoch, 3);
    assert_eq!(result.position.history.len(), 3);
    assert!(
        result
            .position
            .history
            .iter()
            .all(|r| r.val_accuracy.is_some())
    );
    let e = &recorder.events;
    assert_eq!(
        e[0],
        "train_begin epochs=3 steps=5 val=Some(10) start=(0,0)"
    );
    assert_eq!(e[1], "epoch_begin 0 first=0");
    assert_eq!(e[2], "batch 0 0 step=1");
    assert_eq!(e[6], "batch 0 4 step=5");
    assert_eq!(e[7], "test_begin Validation { epoch: 0, global_step: 5 } 2");
    assert_eq!(e[8], "test_end Validation { epoch: 0, global_step: 5 } 10");
    assert_eq!(e[9], "epoch_end 0 val=true");
    assert_eq!(e.last().unwrap(), "train_end");
    assert_eq!(m.steps_taken(), 15);
}

#[test]
fn a_stopped_run_continued_from_its_position_ends_bit_identical() {
    let train = dataset(2, 43);
    let config = train_config();
    let plan = FitPlan {
        train: &train,
        validation: None,
        config: &config,
    };
    let mut whole = model();
    let straight = training::fit(&mut whole, &plan, Position::default(), &mut []).unwrap();

    for stop_at in [1u64, 5, 6, 7, 11, 17] {
        let mut first = model();
        let mut recorder = Recorder {
            stop_at: Some(stop_at),
            ..Recorder::default()
        };
        let stopped =
            training::fit(&mut first, &plan, Position::default(), &mut [&mut recorder]).unwrap();
        assert!(stopped.stopped, "stop at {stop_at}");
        assert_eq!(Some(&stopped.position), recorder.stopped_position.as_ref());
        assert!(!recorder.events.contains(&"train_end".to_string()));
        // Continue in a new model built from the saved state only (as a new process would).
        let mut second = Mlp::resume(
            config_for_resume(),
            &first.weights().unwrap(),
            &first.momentum_slots().unwrap(),
            first.steps_taken(),
            4,
            &Device::Cpu,
            &EngineOptions::default(),
        )
        .unwrap();
        let mut recorder = Recorder::default();
        let rest = training::fit(
            &mut second,
            &plan,
            stopped.position.clone(),
            &mut [&mut recorder],
        )
        .unwrap();
        assert!(recorder.events[0].ends_with(&format!(
            "start=({},{})",
            stopped.position.epoch, stopped.position.batch
        )));
        assert_eq!(
            second.weights().unwrap(),
            whole.weights().unwrap(),
            "stop at {stop_at}"
        );
        assert_eq!(
            second.momentum_slots().unwrap(),
            whole.momentum_slots().unwrap()
        );
        assert_eq!(
            rest.position.history, straight.position.history,
            "stop at {stop_at}"
        );
    }
}

fn config_for_resume() -> ModelConfig {
    config()
}

#[test]
fn an_observer_error_names_the_hook() {
    struct Failing;
    impl FitObserver for Failing {
        fn on_epoch_begin(&mut self, _: &EpochBegin) -> HookResult {
            Err("disk full".into())
        }
    }
    let train = dataset(3, 20);
    let config = train_config();
    let plan = FitPlan {
        train: &train,
        validation: None,
        config: &config,
    };
    let error = training::fit(
        &mut model(),
        &plan,
        Position::default(),
        &mut [&mut Failing],
    )
    .unwrap_err();
    assert_eq!(error.to_string(), "on_epoch_begin: disk full");
}

#[test]
fn validation_split_is_keras_floor_and_refuses_empty_parts() {
    let all = dataset(4, 10);
    let (train, validation) = training::split_validation(&all, 0.25).unwrap();
    assert_eq!((train.len(), validation.len()), (7, 3));
    assert_eq!(validation.labels(), &all.labels()[7..]);
    assert!(training::split_validation(&all, 1e-17).is_err());
    assert!(training::split_validation(&all, 1.0).is_err());
    assert!(training::split_validation(&all, f64::NAN).is_err());
}
