//! The integration tests of this package, one test binary (each binary is a link step).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

mod cli;
mod gcs;
mod job_config;
mod resume;
mod tensorboard;
mod tensorflow_parity;
