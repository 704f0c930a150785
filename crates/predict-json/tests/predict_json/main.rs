//! The integration tests of this package, one test binary (each binary is a link step).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod instances;
mod json_reader;
mod python_float_parity;
