//! Batch prediction jobs (`predictionInput`): the request checked with every bad field named, the
//! model resolved to a SavedModel directory, and the run.
//!
//! **A prediction job runs `predictor batch-predict …` as a child process**: the server's own
//! binary (found with `current_exe`), with the flags `gcloud ai-platform jobs submit prediction`
//! takes, i.e. the very command a user can run by hand (the job log shows it). The
//! `batch-prediction` crate is a library and could run inside the server; a process is better
//! here because
//! - a model that crashes, or runs out of memory, while loading or predicting takes the child
//!   down, never the server with its online models and other jobs;
//! - cancelling works exactly as for training: SIGTERM (batch-predict then stops before writing
//!   anything), SIGKILL after the grace period; a thread inside the server could only be asked;
//! - the pipeline uses every core with threads of its own, and its memory goes back to the
//!   system when it ends, whatever the model was.
//!
//! The cost, a process start and one model load per job, is small next to reading thousands of
//! records. What the command prints is the job log: one `error: FILE line N: …` line per bad
//! record (its file and line, or TFRecord record number), its summary, and the
//! `predictionCount:` / `errorCount:` lines that `predictionOutput` is filled from.
//!
//! **Models** are named as in the API: `uri` (a SavedModel directory, gcloud's `--model-dir`),
//! `modelName` (the model's default version) or `versionName`. Only the server knows its model
//! registry, so it passes a [`ModelResolver`] in [`crate::JobsConfig`] and this crate stays free
//! of HTTP and the registry. Names are resolved when the job is created (an unknown model is a
//! 400 that names the field) and again when it starts, since the version may have changed or
//! gone while the job was queued.
//!
//! **No partial results**: batch-predict writes its two files only at the end, errors first and
//! results last, each one whole (a local file is renamed into place, a `gs://` object appears
//! when its upload completes). A job that fails or is cancelled leaves no results file.

use std::process::ExitStatus;
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::watch;

use crate::logs::Severity;
use crate::runner::{Outcome, last_lines, run_process, signal_of, stopped};
use crate::{JobState, Jobs, JobsConfig, JobsError, PredictionOutput, Stop, valid_job_id};

/// What a prediction job's model is, as `predictionInput` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// `uri`: a SavedModel directory (local path or URL).
    Uri(String),
    /// `modelName` (`version: None`: the model's default version) or `versionName`, parsed
    /// from `projects/{project}/models/{model}[/versions/{version}]`.
    Registry {
        project: String,
        model: String,
        version: Option<String>,
    },
}

impl ModelSource {
    /// The API field it came from (for messages).
    fn field(&self) -> &'static str {
        match self {
            ModelSource::Uri(_) => "uri",
            ModelSource::Registry { version: None, .. } => "model_name",
            ModelSource::Registry { .. } => "version_name",
        }
    }
}

/// Turns a [`ModelSource`] into the SavedModel directory to load; the server implements it over
/// its model registry (and its `--allow-origin` rules for `uri`).
pub trait ModelResolver: Send + Sync + std::fmt::Debug {
    /// The directory (local path or URL), or why there is none, in words for the user.
    fn model_dir(&self, source: &ModelSource) -> Result<String, String>;
}

/// A checked `predictionInput`: what the run needs.
#[derive(Debug, Clone)]
pub(crate) struct PredictionSpec {
    /// `--data-format` of `predictor batch-predict` (gcloud's spelling).
    data_format: &'static str,
    input_paths: Vec<String>,
    output_path: String,
    model: ModelSource,
    batch_size: Option<u64>,
    signature_name: Option<String>,
    /// Fields that are recorded but change nothing on this server, said in the job log.
    ignored: Vec<String>,
}

/// The fields of `PredictionInput` (API v1); anything else is refused, as the API does.
const KNOWN_FIELDS: &[&str] = &[
    "dataFormat",
    "outputDataFormat",
    "inputPaths",
    "outputPath",
    "region",
    "runtimeVersion",
    "maxWorkerCount",
    "initialWorkerCount",
    "batchSize",
    "signatureName",
    "tagsOverride",
    "modelName",
    "versionName",
    "uri",
    "framework",
    "workerType",
    "accelerator",
];

/// `dataFormat` → `predictor batch-predict --data-format`.
const DATA_FORMATS: &[(&str, &str)] = &[
    ("JSON", "json"),
    ("TEXT", "text"),
    ("TF_RECORD", "tf-record"),
    ("TF_RECORD_GZIP", "tf-record-gzip"),
];

/// `Field: job.prediction_input.<field> Error: <message>` (the API's wording, snake_case names).
fn invalid(field: &str, message: impl std::fmt::Display) -> JobsError {
    let path = if field.is_empty() {
        "job.prediction_input".to_string()
    } else {
        format!("job.prediction_input.{field}")
    };
    JobsError::InvalidArgument(format!("Field: {path} Error: {message}"))
}

fn snake_case(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 4);
    for c in camel.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The fields of one `predictionInput` object, read with their API types.
struct Fields<'a>(&'a serde_json::Map<String, Value>);

impl Fields<'_> {
    fn string(&self, name: &str) -> Result<Option<&str>, JobsError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.as_str())),
            Some(other) => Err(invalid(
                &snake_case(name),
                format!("must be a string, not {other}"),
            )),
        }
    }

    fn required_string(&self, name: &str, what: &str) -> Result<&str, JobsError> {
        match self.string(name)? {
            Some(text) if !text.trim().is_empty() => Ok(text),
            _ => Err(invalid(&snake_case(name), format!("required: {what}"))),
        }
    }

    /// An int64 field: a JSON number or, as gcloud sends them, a decimal string.
    fn count(&self, name: &str) -> Result<Option<u64>, JobsError> {
        let parsed = match self.0.get(name) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(text)) => text.trim().parse::<u64>().ok(),
            Some(_) => None,
        };
        match parsed {
            Some(n) => Ok(Some(n)),
            None => Err(invalid(
                &snake_case(name),
                format!(
                    "{} is not a whole number of 0 or more",
                    self.0.get(name).map(Value::to_string).unwrap_or_default()
                ),
            )),
        }
    }

    fn strings(&self, name: &str) -> Result<Option<Vec<&str>>, JobsError> {
        let field = snake_case(name);
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    item.as_str().ok_or_else(|| {
                        invalid(
                            &format!("{field}[{i}]"),
                            format!("must be a string, not {item}"),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(other) => Err(invalid(
                &field,
                format!("must be a list of strings, not {other}"),
            )),
        }
    }
}

/// `projects/{p}/models/{m}` or, with `with_version`, `projects/{p}/models/{m}/versions/{v}`.
fn parse_model_name(field: &str, name: &str, with_version: bool) -> Result<ModelSource, JobsError> {
    let parts: Vec<&str> = name.split('/').collect();
    let (project, model, version) = match parts.as_slice() {
        ["projects", project, "models", model] if !with_version => (*project, *model, None),
        ["projects", project, "models", model, "versions", version] if with_version => {
            (*project, *model, Some(*version))
        }
        _ => {
            let form = if with_version {
                "projects/PROJECT/models/MODEL/versions/VERSION"
            } else {
                "projects/PROJECT/models/MODEL"
            };
            return Err(invalid(field, format!("{name:?} is not a {form} name")));
        }
    };
    for (what, value) in [("model", model), ("version", version.unwrap_or("v"))] {
        if !valid_job_id(value) {
            return Err(invalid(
                field,
                format!(
                    "{value:?} is not a valid {what} name: it must start with a letter and \
                     contain only letters, digits and underscores"
                ),
            ));
        }
    }
    Ok(ModelSource::Registry {
        project: project.to_string(),
        model: model.to_string(),
        version: version.map(str::to_string),
    })
}

fn check_location(field: &str, path: &str) -> Result<(), JobsError> {
    storage::Location::parse(path)
        .map(|_| ())
        .map_err(|e| invalid(field, format!("{path:?}: {e}")))
}

/// Checks a `predictionInput` and resolves its model once (an unknown model, or a `uri` outside
/// the server's allowed origins, is refused now, not when the job runs). Every refusal names the
/// field.
pub(crate) fn validate(
    input: &Value,
    resolver: Option<&dyn ModelResolver>,
) -> Result<PredictionSpec, JobsError> {
    let Some(object) = input.as_object() else {
        return Err(invalid("", "must be an object"));
    };
    if let Some(unknown) = object.keys().find(|k| !KNOWN_FIELDS.contains(&k.as_str())) {
        return Err(invalid(
            &snake_case(unknown),
            format!("unknown field {unknown:?} in predictionInput"),
        ));
    }
    let fields = Fields(object);
    let mut ignored = Vec::new();

    let data_format = match fields.string("dataFormat")? {
        None | Some("DATA_FORMAT_UNSPECIFIED") => {
            return Err(invalid(
                "data_format",
                "required: JSON (or TEXT), TF_RECORD or TF_RECORD_GZIP (gcloud: --data-format)",
            ));
        }
        Some(name) => match DATA_FORMATS.iter().find(|(api, _)| *api == name) {
            Some((_, flag)) => *flag,
            None if matches!(name, "CSV" | "FILE_LIST") => {
                return Err(invalid(
                    "data_format",
                    format!(
                        "{name} is not supported by this server; use JSON (or TEXT), TF_RECORD \
                         or TF_RECORD_GZIP"
                    ),
                ));
            }
            None => {
                return Err(invalid(
                    "data_format",
                    format!(
                        "unknown value {name:?}; expected JSON, TEXT, TF_RECORD or TF_RECORD_GZIP"
                    ),
                ));
            }
        },
    };
    match fields.string("outputDataFormat")? {
        None | Some("JSON" | "DATA_FORMAT_UNSPECIFIED") => {}
        Some(other) => {
            return Err(invalid(
                "output_data_format",
                format!("{other} is not supported by this server; results are written as JSON"),
            ));
        }
    }

    let input_paths: Vec<String> = fields
        .strings("inputPaths")?
        .unwrap_or_default()
        .into_iter()
        .map(str::to_string)
        .collect();
    if input_paths.is_empty() {
        return Err(invalid(
            "input_paths",
            "required: at least one file or wildcard pattern (gcloud: --input-paths)",
        ));
    }
    for (i, path) in input_paths.iter().enumerate() {
        if path.trim().is_empty() {
            return Err(invalid(&format!("input_paths[{i}]"), "is empty"));
        }
        check_location(&format!("input_paths[{i}]"), path)?;
    }
    let output_path = fields
        .required_string(
            "outputPath",
            "the folder the results go to (gcloud: --output-path)",
        )?
        .to_string();
    check_location("output_path", &output_path)?;
    fields.required_string("region", "the region to run in (gcloud: --region)")?;
    if let Some(version) = fields.string("runtimeVersion")? {
        let well_formed = !version.is_empty()
            && version
                .split('.')
                .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()));
        if !well_formed {
            return Err(invalid(
                "runtime_version",
                format!("{version:?} is not a runtime version such as 1.15 or 2.11"),
            ));
        }
        ignored.push(format!(
            "runtimeVersion {version} (this server's own runtime runs the model)"
        ));
    }

    let named: Vec<&str> = ["modelName", "versionName", "uri"]
        .into_iter()
        .filter(|name| object.get(*name).is_some_and(|v| !v.is_null()))
        .collect();
    let model = match named.as_slice() {
        ["modelName"] => parse_model_name(
            "model_name",
            fields.required_string("modelName", "projects/PROJECT/models/MODEL")?,
            false,
        )?,
        ["versionName"] => parse_model_name(
            "version_name",
            fields.required_string(
                "versionName",
                "projects/PROJECT/models/MODEL/versions/VERSION",
            )?,
            true,
        )?,
        ["uri"] => {
            let uri = fields.required_string("uri", "the SavedModel directory")?;
            check_location("uri", uri)?;
            ModelSource::Uri(uri.to_string())
        }
        [] => {
            return Err(invalid(
                "",
                "one of modelName, versionName or uri is required (gcloud: --model [--version] \
                 or --model-dir)",
            ));
        }
        _ => {
            return Err(invalid(
                "",
                format!(
                    "only one of modelName, versionName or uri may be given, not {}",
                    named.join(" and ")
                ),
            ));
        }
    };

    let batch_size = fields.count("batchSize")?;
    if batch_size == Some(0) {
        return Err(invalid("batch_size", "must be at least 1"));
    }
    let signature_name = fields.string("signatureName")?.map(str::to_string);
    if signature_name.as_deref().is_some_and(str::is_empty) {
        return Err(invalid("signature_name", "is empty"));
    }
    if let Some(tags) = fields.strings("tagsOverride")?
        && !tags.is_empty()
        && tags != ["serve"]
    {
        return Err(invalid(
            "tags_override",
            format!(
                "{tags:?}: this server loads the MetaGraph tagged [\"serve\"] only; leave \
                 tagsOverride out"
            ),
        ));
    }
    match fields.string("framework")? {
        None | Some("TENSORFLOW" | "FRAMEWORK_UNSPECIFIED") => {}
        Some(other) => {
            return Err(invalid(
                "framework",
                format!("{other} is not supported by this server; it runs TensorFlow SavedModels"),
            ));
        }
    }
    for name in ["maxWorkerCount", "initialWorkerCount"] {
        if let Some(count) = fields.count(name)? {
            ignored.push(format!("{name} {count} (one process on this machine)"));
        }
    }
    if let Some(worker) = fields.string("workerType")? {
        ignored.push(format!("workerType {worker} (this machine runs the job)"));
    }
    if let Some(accelerator) = object.get("accelerator").filter(|v| !v.is_null()) {
        if !accelerator.is_object() {
            return Err(invalid(
                "accelerator",
                format!(
                    "must be an object such as {{\"count\": \"1\", \"type\": \"NVIDIA_TESLA_T4\"}}, not {accelerator}"
                ),
            ));
        }
        ignored.push(format!(
            "accelerator {accelerator} (prediction jobs run on the CPU)"
        ));
    }

    let spec = PredictionSpec {
        data_format,
        input_paths,
        output_path,
        model,
        batch_size,
        signature_name,
        ignored,
    };
    resolve(resolver, &spec.model)?;
    Ok(spec)
}

/// The SavedModel directory of `source`: a `uri` as given (checked by the resolver when there
/// is one), a name through the resolver.
fn resolve(
    resolver: Option<&dyn ModelResolver>,
    source: &ModelSource,
) -> Result<String, JobsError> {
    match (resolver, source) {
        (Some(resolver), source) => resolver
            .model_dir(source)
            .map_err(|message| invalid(source.field(), message)),
        (None, ModelSource::Uri(uri)) => Ok(uri.clone()),
        (None, ModelSource::Registry { .. }) => Err(invalid(
            source.field(),
            "this server has no model registry to look the model up in; give the SavedModel \
             directory as uri (gcloud: --model-dir)",
        )),
    }
}

impl PredictionSpec {
    /// Says in the job log which fields are recorded but change nothing here.
    pub(crate) fn note_ignored(&self, jobs: &Jobs, id: &str) {
        if !self.ignored.is_empty() {
            jobs.service_line(
                id,
                Severity::Info,
                &format!(
                    "Recorded, without effect on this server: {}.",
                    self.ignored.join("; ")
                ),
            );
        }
    }

    /// `predictor batch-predict` arguments for the model in `model_dir`.
    fn arguments(&self, model_dir: &str) -> Vec<String> {
        let mut args = vec![
            "batch-predict".to_string(),
            "--model-dir".to_string(),
            model_dir.to_string(),
            "--data-format".to_string(),
            self.data_format.to_string(),
            "--output-path".to_string(),
            self.output_path.clone(),
        ];
        for path in &self.input_paths {
            args.push("--input-paths".to_string());
            args.push(path.clone());
        }
        if let Some(size) = self.batch_size {
            args.push("--batch-size".to_string());
            args.push(size.to_string());
        }
        if let Some(name) = &self.signature_name {
            args.push("--signature-name".to_string());
            args.push(name.clone());
        }
        // Jobs take CPU slots in the queue; a GPU is left to training jobs.
        args.extend(["--device".to_string(), "cpu".to_string()]);
        args
    }
}

/// The program prediction jobs run: `JobsConfig::batch_predictor`, else this executable.
fn batch_predictor(config: &JobsConfig) -> Result<std::path::PathBuf, String> {
    match &config.batch_predictor {
        Some(path) => Ok(path.clone()),
        None => std::env::current_exe().map_err(|e| {
            format!("cannot find this executable to run `predictor batch-predict` with: {e}")
        }),
    }
}

/// Quotes an argument for the log line when a shell would need it.
fn shell_word(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=,@%+".contains(&b));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// Runs one prediction job to its end (the caller holds the slot and saw no stop request).
pub(crate) async fn run(
    jobs: &Arc<Jobs>,
    id: &str,
    spec: &PredictionSpec,
    stop: &mut watch::Receiver<Stop>,
) -> Outcome {
    jobs.update(id, |job| {
        job.prediction_output = Some(PredictionOutput {
            output_path: spec.output_path.clone(),
            ..PredictionOutput::default()
        });
    })
    .await;
    let model_dir = match resolve(jobs.config.model_resolver.as_deref(), &spec.model) {
        Ok(dir) => dir,
        Err(error) => return Outcome::failed(format!("The model cannot be found: {error}")),
    };
    if let ModelSource::Registry { model, version, .. } = &spec.model {
        jobs.service_line(
            id,
            Severity::Info,
            &format!(
                "Model {model}, version {}: deploymentUri {model_dir}",
                version.as_deref().unwrap_or("(the default)")
            ),
        );
    }
    let program = match batch_predictor(&jobs.config) {
        Ok(path) => path,
        Err(message) => return Outcome::failed(message),
    };
    let args = spec.arguments(&model_dir);
    let mut command = tokio::process::Command::new(&program);
    command.args(&args);
    let shown: Vec<String> = args.iter().map(|a| shell_word(a)).collect();
    jobs.service_line(
        id,
        Severity::Info,
        &format!("Running: {} {}", program.display(), shown.join(" ")),
    );
    let names = ("batch prediction", " (it stops without writing results)");
    let ended = match run_process(jobs, id, command, None, stopped(stop), names).await {
        Ok(ended) => ended,
        Err(error) => {
            return Outcome::failed(format!(
                "cannot start batch prediction ({}): {error}",
                program.display()
            ));
        }
    };
    let status = match ended.status {
        Ok(status) => status,
        Err(error) => {
            return Outcome::failed(format!("cannot wait for batch prediction: {error}"));
        }
    };
    if status.success() {
        return succeeded(jobs, id, &ended.stdout_tail, ended.stop).await;
    }
    match ended.stop {
        Stop::Cancel => Outcome {
            state: JobState::Cancelled,
            error: None,
        },
        Stop::ServerStopping => Outcome::failed(
            "The server stopped while the job was RUNNING; batch prediction was stopped before \
             writing results. Submit the job again to rerun it.",
        ),
        Stop::Running => Outcome::failed(failure_message(status, &ended.stderr_tail)),
    }
}

/// Fills `predictionOutput` from the command's `predictionCount:` / `errorCount:` lines.
async fn succeeded(jobs: &Jobs, id: &str, printed: &[String], stop: Stop) -> Outcome {
    let count = |key: &str| {
        printed
            .iter()
            .rev()
            .find_map(|line| line.strip_prefix(key)?.trim().parse::<i64>().ok())
    };
    let (Some(predictions), Some(errors)) = (count("predictionCount:"), count("errorCount:"))
    else {
        return Outcome::failed(
            "batch prediction ended without printing its predictionCount and errorCount",
        );
    };
    jobs.update(id, |job| {
        let output = job
            .prediction_output
            .get_or_insert_with(PredictionOutput::default);
        output.prediction_count = predictions;
        output.error_count = errors;
    })
    .await;
    if stop == Stop::Cancel {
        jobs.service_line(
            id,
            Severity::Warning,
            "Batch prediction finished before the cancel took effect; the job SUCCEEDED.",
        );
    }
    Outcome {
        state: JobState::Succeeded,
        error: None,
    }
}

/// The command's `ERROR: (predictor batch-predict) …` line says why it failed; without one, how
/// it ended and its last lines.
fn failure_message(status: ExitStatus, errors: &[String]) -> String {
    const PREFIX: &str = "ERROR: (predictor batch-predict) ";
    let reasons: Vec<&str> = errors
        .iter()
        .filter_map(|line| line.strip_prefix(PREFIX))
        .collect();
    if !reasons.is_empty() {
        return reasons.join("\n");
    }
    let how = match (status.code(), signal_of(&status)) {
        (Some(code), _) => format!("Batch prediction exited with status {code}."),
        (None, Some(signal)) => format!("Batch prediction was killed by signal {signal}."),
        (None, None) => format!("Batch prediction ended abnormally ({status})."),
    };
    let last = last_lines(errors, 5);
    if last.is_empty() {
        how
    } else {
        format!("{how} \n{}", last.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Value {
        json!({
            "dataFormat": "TEXT",
            "inputPaths": ["gs://bkt/in/*"],
            "outputPath": "gs://bkt/out",
            "region": "us-central1",
            "uri": "gs://bkt/model",
        })
    }

    /// The refusal of the base input with `remove`d fields and `set` ones.
    fn refusal(remove: &[&str], set: Value) -> String {
        let mut input = base();
        let fields = input.as_object_mut().unwrap();
        for name in remove {
            fields.remove(*name);
        }
        for (name, value) in set.as_object().unwrap() {
            fields.insert(name.clone(), value.clone());
        }
        validate(&input, None).unwrap_err().to_string()
    }

    #[test]
    fn a_good_input_becomes_the_batch_predict_command() {
        let mut input = base();
        input["batchSize"] = json!("32");
        input["signatureName"] = json!("serving_default");
        input["runtimeVersion"] = json!("1.15");
        input["inputPaths"] = json!(["gs://bkt/in/a*", "gs://bkt/in/b"]);
        input["dataFormat"] = json!("TF_RECORD_GZIP");
        let spec = validate(&input, None).unwrap();
        assert_eq!(
            spec.arguments("gs://bkt/model").join(" "),
            "batch-predict --model-dir gs://bkt/model --data-format tf-record-gzip --output-path \
             gs://bkt/out --input-paths gs://bkt/in/a* --input-paths gs://bkt/in/b --batch-size 32 \
             --signature-name serving_default --device cpu"
        );
        assert_eq!(spec.ignored.len(), 1, "{:?}", spec.ignored);
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases: Vec<(&[&str], Value, &str)> = vec![
            (
                &["dataFormat"],
                json!({}),
                "Field: job.prediction_input.data_format Error: required",
            ),
            (
                &[],
                json!({"dataFormat": "CSV"}),
                "data_format Error: CSV is not supported",
            ),
            (
                &[],
                json!({"dataFormat": "PARQUET"}),
                "data_format Error: unknown value \"PARQUET\"",
            ),
            (
                &[],
                json!({"inputPaths": []}),
                "input_paths Error: required",
            ),
            (
                &[],
                json!({"inputPaths": ["a", 3]}),
                "input_paths[1] Error: must be a string",
            ),
            (
                &[],
                json!({"inputPaths": "a"}),
                "input_paths Error: must be a list",
            ),
            (&["outputPath"], json!({}), "output_path Error: required"),
            (&["region"], json!({}), "region Error: required"),
            (
                &["uri"],
                json!({}),
                "one of modelName, versionName or uri is required",
            ),
            (
                &[],
                json!({"modelName": "projects/p/models/m"}),
                "only one of modelName, versionName or uri may be given, not modelName and uri",
            ),
            (
                &["uri"],
                json!({"modelName": "m"}),
                "model_name Error: \"m\" is not a projects/PROJECT/models/MODEL name",
            ),
            (
                &["uri"],
                json!({"versionName": "projects/p/models/m/versions/1x"}),
                "version_name Error: \"1x\" is not a valid version name",
            ),
            (
                &["uri"],
                json!({"modelName": "projects/p/models/m"}),
                "model_name Error: this server has no model registry",
            ),
            (
                &[],
                json!({"batchSize": "0"}),
                "batch_size Error: must be at least 1",
            ),
            (
                &[],
                json!({"batchSize": "many"}),
                "batch_size Error: \"many\" is not a whole number",
            ),
            (
                &[],
                json!({"signatureName": 7}),
                "signature_name Error: must be a string",
            ),
            (
                &[],
                json!({"runtimeVersion": "latest"}),
                "runtime_version Error: \"latest\" is not a runtime version",
            ),
            (&[], json!({"tagsOverride": ["gpu"]}), "tags_override Error"),
            (
                &[],
                json!({"framework": "XGBOOST"}),
                "framework Error: XGBOOST is not supported",
            ),
            (
                &[],
                json!({"outputDataFormat": "CSV"}),
                "output_data_format Error",
            ),
            (
                &[],
                json!({"inputPath": "x"}),
                "input_path Error: unknown field \"inputPath\"",
            ),
            (
                &[],
                json!({"uri": "s3://bkt/model"}),
                "Field: job.prediction_input.uri Error: \"s3://bkt/model\"",
            ),
        ];
        for (remove, set, expected) in cases {
            let message = refusal(remove, set);
            assert!(message.contains(expected), "{message:?} lacks {expected:?}");
        }
        let not_object = validate(&json!([1]), None).unwrap_err().to_string();
        assert_eq!(
            not_object,
            "Field: job.prediction_input Error: must be an object"
        );
    }

    #[derive(Debug)]
    struct OneModel;

    impl ModelResolver for OneModel {
        fn model_dir(&self, source: &ModelSource) -> Result<String, String> {
            match source {
                ModelSource::Registry { model, version, .. } if model == "mnist" => {
                    Ok(format!("/models/{}", version.as_deref().unwrap_or("v1")))
                }
                ModelSource::Registry { model, .. } => Err(format!("model {model} not found")),
                ModelSource::Uri(uri) => Ok(uri.clone()),
            }
        }
    }

    #[test]
    fn names_are_resolved_when_the_job_is_created() {
        let mut input = base();
        input.as_object_mut().unwrap().remove("uri");
        input["versionName"] = json!("projects/default/models/mnist/versions/v2");
        let spec = validate(&input, Some(&OneModel)).unwrap();
        assert_eq!(resolve(Some(&OneModel), &spec.model).unwrap(), "/models/v2");
        input.as_object_mut().unwrap().remove("versionName");
        input["modelName"] = json!("projects/default/models/fashion");
        let error = validate(&input, Some(&OneModel)).unwrap_err().to_string();
        assert_eq!(
            error,
            "Field: job.prediction_input.model_name Error: model fashion not found"
        );
    }

    #[test]
    fn the_failure_is_the_commands_error_line() {
        use std::os::unix::process::ExitStatusExt as _;
        let lines = vec![
            "error: file:///in.json line 3: column 2: invalid JSON".to_string(),
            "ERROR: (predictor batch-predict) predictionInput.inputPaths [\"/x/*\"] match no files"
                .to_string(),
        ];
        assert_eq!(
            failure_message(ExitStatus::from_raw(1 << 8), &lines),
            "predictionInput.inputPaths [\"/x/*\"] match no files"
        );
        assert_eq!(
            failure_message(ExitStatus::from_raw(9), &lines[..1]),
            "Batch prediction was killed by signal 9. \nerror: file:///in.json line 3: column 2: invalid JSON"
        );
        assert_eq!(shell_word("gs://bkt/in/*"), "'gs://bkt/in/*'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }
}
