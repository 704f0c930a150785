//! The integration tests of this package, one test binary (each binary is a link step).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod serve_support;

mod batch_predict;
mod cnn_models;
mod device_flag;
mod gcloud_parity;
mod jobs_gcloud;
mod jobs_http;
mod jobs_tuning_gcloud;
mod load_limits;
mod local_cli;
mod prediction_gcloud;
mod serve_bad_requests;
mod serve_e2e;
mod serve_grpc;
mod serve_hardening;
mod serve_model_base_path;
mod serve_slow_bodies;
mod serve_startup;
mod serve_v2;
mod serve_vertex;
