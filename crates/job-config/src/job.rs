//! The config document: a `Job` resource (`trainingInput: {...}`, what `gcloud ... --config`
//! reads) or a bare `TrainingInput`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde::Serialize;

use crate::JobConfigError;
use crate::node::{Node, SourceFormat, parse_document, quote};
use crate::resolve::{ResolvedJob, resolve};
use crate::training_input::{TRAINING_INPUT_FIELDS, TrainingInput, parse_training_input};
use crate::walk::{Fields, Known, Problems, field, ignored, refused};

/// Config files are a few hundred bytes; anything past this is not a job config, and reading it
/// whole would only waste memory.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// How the document was laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DocumentShape {
    /// A `Job` resource: `trainingInput: {...}`, optionally with `jobId` and `labels` — the file
    /// shape `gcloud ai-platform jobs submit training --config` reads.
    Job,
    /// The fields of `trainingInput` at the top level (the shape of `TF_CONFIG`'s `job`). Field
    /// paths in errors then start at the field itself (`masterType`, not
    /// `trainingInput.masterType`), because that is where it is in the document.
    BareTrainingInput,
}

/// Top-level keys that mark a document as a `Job` resource rather than a bare `TrainingInput`.
const JOB_MARKERS: &[&str] = &[
    "trainingInput",
    "jobId",
    "labels",
    "predictionInput",
    "explanationInput",
];

const JOB_FIELDS: &[Known<'static>] = &[
    field("jobId"),
    field("labels"),
    field("trainingInput"),
    refused(
        "predictionInput",
        "batch prediction jobs are not run by this trainer; only trainingInput is used",
    ),
    refused(
        "explanationInput",
        "explanation jobs are not run by this trainer; only trainingInput is used",
    ),
    // Output-only fields, present in `gcloud ai-platform jobs describe` output.
    ignored("state"),
    ignored("createTime"),
    ignored("startTime"),
    ignored("endTime"),
    ignored("errorMessage"),
    ignored("etag"),
    ignored("jobPosition"),
    ignored("trainingOutput"),
    ignored("predictionOutput"),
    ignored("explanationOutput"),
];

/// A validated job config: the document as written and what it resolves to.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobConfig {
    /// Where the document came from (a file path, or what the caller named it).
    pub source: String,
    pub format: SourceFormat,
    pub shape: DocumentShape,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    pub training_input: TrainingInput,
    /// What the machines must provide.
    pub resolved: ResolvedJob,
}

impl JobConfig {
    /// Reads and validates a config file (YAML or JSON, told apart by content).
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, JobConfigError> {
        let path = path.as_ref();
        let read_error = |source| JobConfigError::Read {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read_error)?;
        let mut bytes = Vec::new();
        file.take(MAX_CONFIG_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(read_error)?;
        if bytes.len() as u64 > MAX_CONFIG_BYTES {
            return Err(JobConfigError::TooLarge {
                source_name: path.display().to_string(),
                limit: MAX_CONFIG_BYTES,
            });
        }
        let text = String::from_utf8(bytes).map_err(|error| JobConfigError::NotUtf8 {
            source_name: path.display().to_string(),
            byte_offset: error.utf8_error().valid_up_to(),
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Validates a config document held in memory; `source_name` names it in errors.
    pub fn parse(text: &str, source_name: &str) -> Result<Self, JobConfigError> {
        if text.len() as u64 > MAX_CONFIG_BYTES {
            return Err(JobConfigError::TooLarge {
                source_name: source_name.to_string(),
                limit: MAX_CONFIG_BYTES,
            });
        }
        let (root, format) =
            parse_document(text).map_err(|(format, message)| JobConfigError::Syntax {
                source_name: source_name.to_string(),
                format,
                message,
            })?;
        let mut problems = Problems::default();
        let parsed = walk_document(&mut problems, &root);
        match parsed {
            Some((shape, job_id, labels, training_input, resolved)) if problems.is_empty() => {
                Ok(JobConfig {
                    source: source_name.to_string(),
                    format,
                    shape,
                    job_id,
                    labels,
                    training_input,
                    resolved,
                })
            }
            _ => Err(JobConfigError::Invalid {
                source_name: source_name.to_string(),
                errors: problems.into_errors(),
            }),
        }
    }

    /// The path prefix of `trainingInput` fields in this document: `trainingInput`, or empty for
    /// a bare `TrainingInput`.
    pub fn training_input_path(&self) -> &'static str {
        match self.shape {
            DocumentShape::Job => "trainingInput",
            DocumentShape::BareTrainingInput => "",
        }
    }
}

type Walked = (
    DocumentShape,
    Option<String>,
    BTreeMap<String, String>,
    TrainingInput,
    ResolvedJob,
);

fn walk_document(problems: &mut Problems, root: &Node) -> Option<Walked> {
    let Node::Map(entries) = root else {
        if matches!(root, Node::Null) {
            problems.push("", "the document is empty; expected trainingInput: {...}");
        } else {
            problems.push(
                "",
                crate::walk::expected("a map such as trainingInput: {...}", root),
            );
        }
        return None;
    };
    let is_job = entries
        .iter()
        .any(|(key, _)| matches!(key, Node::Str(name) if JOB_MARKERS.contains(&name.as_str())));
    if !is_job {
        // The Job keys are never present here (they would make this a Job), but listing them lets
        // a misspelt wrapper such as `trainingInpt:` get "did you mean trainingInput?".
        let mut known = TRAINING_INPUT_FIELDS.to_vec();
        known.extend(JOB_MARKERS.iter().map(|name| field(name)));
        let fields = Fields::open(problems, root, "", &known)?;
        let input = parse_training_input(problems, &fields);
        let resolved = resolve(problems, &fields, &input);
        return Some((
            DocumentShape::BareTrainingInput,
            None,
            BTreeMap::new(),
            input,
            resolved?,
        ));
    }
    let job = Fields::open(problems, root, "", JOB_FIELDS)?;
    let job_id = job.string(problems, "jobId");
    if let Some(job_id) = &job_id
        && !is_job_id(job_id)
    {
        problems.push(
            "jobId",
            format!(
                "must start with a letter and contain only letters, digits and underscores, found {}",
                quote(job_id)
            ),
        );
    }
    let labels = job.string_map(problems, "labels").unwrap_or_default();
    // A Job without trainingInput is a BASIC job with every default, as gcloud would submit it
    // with only command-line flags.
    let empty = Node::Map(Vec::new());
    let input_node = job.node("trainingInput").unwrap_or(&empty);
    let fields = Fields::open(problems, input_node, "trainingInput", TRAINING_INPUT_FIELDS)?;
    let input = parse_training_input(problems, &fields);
    let resolved = resolve(problems, &fields, &input);
    Some((DocumentShape::Job, job_id, labels, input, resolved?))
}

/// `[A-Za-z][A-Za-z0-9_]*`, the API's rule for job ids.
pub(crate) fn is_job_id(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
