//! The trained model as a TensorFlow SavedModel: `mnist-model`'s weights mapped onto
//! `savedmodel-format`'s MLP writer, published to `<job-dir>/model/` together with job.json.
//!
//! # Publishing: the previous model survives a failed export
//! [`publish`] writes the new SavedModel to a staging prefix (`<job-dir>/model.staging/`,
//! `saved_model.pb` last) while `<job-dir>/model/` still holds the previous one, then writes
//! `job.json`, then switches:
//! * locally the switch is one `renameat2(RENAME_EXCHANGE)` of the two directories (atomic: a
//!   reader sees the old or the new model, never neither), falling back to two renames where
//!   the filesystem cannot exchange, after which the old model is deleted;
//! * on `gs://`, where nothing renames, the staged files are written over `model/` again with
//!   the marker last (the window without a marker is one upload of the files already staged,
//!   instead of the whole export), then the staging prefix is deleted.
//!
//! job.json is written before the switch, so a kill between the two leaves the new job.json
//! beside the previous model (the next run rewrites both), never a new model beside an old
//! job.json. Temp files that the local store leaves when killed mid-write (`name#N`) are removed
//! from the model and staging directories.

use bytes::Bytes;
use mnist_model::DenseWeights;
use savedmodel_format::writer::{self, DenseLayer, MlpExport, SAVED_MODEL_MARKER};
use storage::Location;

use crate::TrainingError;

/// Directory of the live model inside the job directory.
pub const MODEL_DIR: &str = "model";
/// Where a new model is written before it replaces the live one.
pub const STAGING_DIR: &str = "model.staging";
/// The report's name inside the job directory.
pub const JOB_JSON: &str = "job.json";
/// Name of the file [`probe_job_dir`] writes and deletes.
pub const PROBE_FILE: &str = ".trainer-write-probe";

/// Points of [`publish`] a caller can observe (the trainer's fault-injection tests kill there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportStage {
    /// The new model is complete at the staging prefix; the live model is untouched.
    Staged,
    /// job.json describes the new model; the live model is still the previous one.
    Reported,
    /// The new model is live; the previous one is not yet deleted.
    Switched,
}

impl ExportStage {
    pub fn name(self) -> &'static str {
        match self {
            ExportStage::Staged => "staged",
            ExportStage::Reported => "reported",
            ExportStage::Switched => "switched",
        }
    }
}

/// The SavedModel's files (relative path, bytes), `saved_model.pb` last, for these weights
/// (Keras layout and names, input layer first: what [`mnist_model::Mlp::weights`] returns).
pub fn saved_model_files(
    weights: Vec<DenseWeights>,
) -> Result<Vec<(String, Bytes)>, TrainingError> {
    let layers = weights
        .into_iter()
        .map(|w| DenseLayer {
            kernel: w.kernel,
            bias: w.bias,
            in_dim: w.in_dim,
            out_dim: w.out_dim,
            activation: match w.activation {
                mnist_model::Activation::Relu => writer::Activation::Relu,
                mnist_model::Activation::Linear => writer::Activation::Linear,
            },
        })
        .collect();
    writer::export_mlp(&MlpExport::new(layers)).map_err(|e| TrainingError::Export(Box::new(e)))
}

/// Checks, before any data is loaded, that the job directory can be written: writes a small
/// file into it and deletes it again. Fails on a path under a regular file, a read-only
/// location, a bucket that does not exist or refuses us.
pub fn probe_job_dir(job_dir: &Location) -> Result<(), TrainingError> {
    let probe = job_dir.join(PROBE_FILE);
    probe
        .write_blocking(Bytes::from_static(b"trainer write probe\n"))
        .map_err(TrainingError::storage(format!(
            "--job-dir {job_dir} is not writable"
        )))?;
    probe
        .delete_blocking()
        .map_err(TrainingError::storage(format!("deleting {probe}")))
}

/// Publishes a model and its report: stage, write job.json, switch (see the module docs).
/// `at_stage` is called after each [`ExportStage`].
pub fn publish(
    job_dir: &Location,
    weights: Vec<DenseWeights>,
    job_json: &str,
    mut at_stage: impl FnMut(ExportStage),
) -> Result<Location, TrainingError> {
    let files = saved_model_files(weights)?;
    let model_dir = job_dir.join(MODEL_DIR);
    let staging = job_dir.join(STAGING_DIR);
    if let Some(live) = model_dir.local_path() {
        recover_local(&live).map_err(|source| TrainingError::Io {
            context: format!("restoring the previous model at {model_dir}"),
            source,
        })?;
    }
    remove_tree(&staging)?;
    staging
        .write_tree_blocking(files.clone(), SAVED_MODEL_MARKER)
        .map_err(TrainingError::storage(format!(
            "writing the SavedModel to {staging}"
        )))?;
    at_stage(ExportStage::Staged);
    let report = job_dir.join(JOB_JSON);
    report
        .write_blocking(Bytes::from(job_json.to_string()))
        .map_err(TrainingError::storage(format!("writing {report}")))?;
    at_stage(ExportStage::Reported);
    match (model_dir.local_path(), staging.local_path()) {
        (Some(live), Some(staged)) => {
            switch_local(&staged, &live).map_err(|source| TrainingError::Io {
                context: format!("moving {staging} to {model_dir}"),
                source,
            })?;
            at_stage(ExportStage::Switched);
            remove_tree(&staging)?;
            remove_temp_files(&live).map_err(|source| TrainingError::Io {
                context: format!("removing temp files from {model_dir}"),
                source,
            })?;
        }
        _ => {
            model_dir
                .write_tree_blocking(files, SAVED_MODEL_MARKER)
                .map_err(TrainingError::storage(format!(
                    "writing the SavedModel to {model_dir}"
                )))?;
            at_stage(ExportStage::Switched);
            remove_tree(&staging)?;
        }
    }
    Ok(model_dir)
}

/// Deletes a staged or old tree (marker first), locally including the store's temp files.
fn remove_tree(tree: &Location) -> Result<(), TrainingError> {
    if let Some(path) = tree.local_path() {
        return match std::fs::remove_dir_all(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(TrainingError::Io {
                context: format!("deleting {tree}"),
                source,
            }),
        };
    }
    tree.delete_tree_with_marker_blocking(SAVED_MODEL_MARKER)
        .map_err(TrainingError::storage(format!("deleting {tree}")))
}

/// Puts `staged` at `live`: an atomic exchange when `live` exists and the filesystem can do it
/// (then `staged` holds the previous model), else two renames through `<live>.previous`, which
/// [`recover_local`] undoes if a kill lands between them.
fn switch_local(staged: &std::path::Path, live: &std::path::Path) -> std::io::Result<()> {
    if !live.exists() {
        return std::fs::rename(staged, live);
    }
    if exchange(staged, live).is_ok() {
        return Ok(());
    }
    let previous = previous_path(live);
    remove_dir_if_present(&previous)?;
    std::fs::rename(live, &previous)?;
    std::fs::rename(staged, live)?;
    remove_dir_if_present(&previous)
}

fn previous_path(live: &std::path::Path) -> std::path::PathBuf {
    let mut name = live.file_name().unwrap_or_default().to_os_string();
    name.push(".previous");
    live.with_file_name(name)
}

fn remove_dir_if_present(path: &std::path::Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Puts back a previous model that a kill between [`switch_local`]'s two renames left aside.
fn recover_local(live: &std::path::Path) -> std::io::Result<()> {
    let previous = previous_path(live);
    if !live.exists() && previous.join(SAVED_MODEL_MARKER).exists() {
        std::fs::rename(&previous, live)?;
    }
    Ok(())
}

/// `renameat2(a, b, RENAME_EXCHANGE)`: swaps two paths atomically (Linux 3.15+, ext4, xfs,
/// btrfs, tmpfs; not every filesystem).
#[cfg(target_os = "linux")]
fn exchange(a: &std::path::Path, b: &std::path::Path) -> std::io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let a = CString::new(a.as_os_str().as_bytes())?;
    let b = CString::new(b.as_os_str().as_bytes())?;
    // SAFETY: both arguments are valid NUL-terminated paths that outlive the call; the call
    // only reads them.
    let result = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn exchange(_: &std::path::Path, _: &std::path::Path) -> std::io::Result<()> {
    Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
}

/// Removes the local store's temp files (`<name>#<n>`, left by a kill mid-write) under `dir`.
pub fn remove_temp_files(dir: &std::path::Path) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            remove_temp_files(&path)?;
        } else if is_temp_name(&entry.file_name().to_string_lossy()) {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// `object_store`'s local staging names: `<final name>#<digits>`.
fn is_temp_name(name: &str) -> bool {
    name.rsplit_once('#')
        .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}
