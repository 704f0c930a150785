//! `trainingInput.hyperparameters` (`HyperparameterSpec`): parsed and validated so a tuning
//! config is checked before anything runs. Running the search itself is not part of this crate.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::machine::api_enum;
use crate::node::{Node, format_number, quote};
use crate::walk::{Fields, Problems, as_double, as_string, field, item};

api_enum! {
    /// `hyperparameters.goal`.
    pub enum Goal {
        Maximize => "MAXIMIZE",
        Minimize => "MINIMIZE",
    }
}

api_enum! {
    /// `hyperparameters.algorithm`.
    pub enum SearchAlgorithm {
        AlgorithmUnspecified => "ALGORITHM_UNSPECIFIED",
        GridSearch => "GRID_SEARCH",
        RandomSearch => "RANDOM_SEARCH",
    }
}

api_enum! {
    /// `params[].type`.
    pub enum ParameterType {
        Double => "DOUBLE",
        Integer => "INTEGER",
        Categorical => "CATEGORICAL",
        Discrete => "DISCRETE",
    }
}

api_enum! {
    /// `params[].scaleType`.
    pub enum ScaleType {
        None => "NONE",
        UnitLinearScale => "UNIT_LINEAR_SCALE",
        UnitLogScale => "UNIT_LOG_SCALE",
        UnitReverseLogScale => "UNIT_REVERSE_LOG_SCALE",
    }
}

/// `HyperparameterSpec`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HyperparameterSpec {
    pub goal: Goal,
    pub params: Vec<ParameterSpec>,
    /// Defaults to 1 in the API.
    pub max_trials: u32,
    /// Defaults to 1 in the API.
    pub max_parallel_trials: u32,
    /// 0: the service decides when the tuning job has failed.
    pub max_failed_trials: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hyperparameter_metric_tag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_trial_early_stopping: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resume_previous_job_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<SearchAlgorithm>,
}

/// One entry of `params[]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ParameterSpec {
    pub parameter_name: String,
    #[serde(rename = "type")]
    pub parameter_type: ParameterType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_value: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub categorical_values: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub discrete_values: Vec<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scale_type: Option<ScaleType>,
}

/// The API's limit on `discreteValues`.
const MAX_DISCRETE_VALUES: usize = 1000;

pub(crate) fn parse_hyperparameters(
    problems: &mut Problems,
    node: &Node,
    path: &str,
) -> Option<HyperparameterSpec> {
    let fields = Fields::open(
        problems,
        node,
        path,
        &[
            field("goal"),
            field("params"),
            field("maxTrials"),
            field("maxParallelTrials"),
            field("maxFailedTrials"),
            field("hyperparameterMetricTag"),
            field("enableTrialEarlyStopping"),
            field("resumePreviousJobId"),
            field("algorithm"),
        ],
    )?;
    let goal = fields.enumeration::<Goal>(problems, "goal");
    if !fields.has("goal") {
        problems.push(&fields.path_of("goal"), "required (MAXIMIZE or MINIMIZE)");
    }
    let mut trial_count = |name: &str, minimum: i32, default: u32| -> Option<u32> {
        match fields.int32(problems, name) {
            None if fields.has(name) => None,
            None => Some(default),
            Some(value) if value < minimum => {
                problems.push(
                    &fields.path_of(name),
                    format!("must be ≥ {minimum}, found {value}"),
                );
                None
            }
            Some(value) => u32::try_from(value).ok(),
        }
    };
    let max_trials = trial_count("maxTrials", 1, 1);
    let max_parallel_trials = trial_count("maxParallelTrials", 1, 1);
    let max_failed_trials = trial_count("maxFailedTrials", 0, 0);
    let hyperparameter_metric_tag = fields.string(problems, "hyperparameterMetricTag");
    if hyperparameter_metric_tag.as_deref() == Some("") {
        problems.push(
            &fields.path_of("hyperparameterMetricTag"),
            "must not be empty; leave it out to use the default training/hptuning/metric",
        );
    }
    let resume_previous_job_id = fields.string(problems, "resumePreviousJobId");
    if let Some(job_id) = &resume_previous_job_id
        && !crate::job::is_job_id(job_id)
    {
        problems.push(
            &fields.path_of("resumePreviousJobId"),
            format!(
                "expected a job id (a letter, then letters, digits or underscores), found {}",
                quote(job_id)
            ),
        );
    }
    let algorithm = fields.enumeration::<SearchAlgorithm>(problems, "algorithm");

    let params_path = fields.path_of("params");
    let params = match fields.list(problems, "params") {
        Some([]) => {
            problems.push(&params_path, "must list at least one parameter to tune");
            None
        }
        Some(items) => {
            let mut params = Vec::with_capacity(items.len());
            let mut all_good = true;
            for (index, node) in items.iter().enumerate() {
                match parse_parameter(problems, node, &item(&params_path, index)) {
                    Some(param) => params.push(param),
                    None => all_good = false,
                }
            }
            check_unique_names(problems, items, &params_path);
            all_good.then_some(params)
        }
        None => {
            if !fields.has("params") {
                problems.push(&params_path, "required: list the parameters to tune");
            }
            None
        }
    };
    if let (Some(SearchAlgorithm::GridSearch), Some(params)) = (algorithm, &params)
        && let Some((index, param)) = params
            .iter()
            .enumerate()
            .find(|(_, param)| param.parameter_type == ParameterType::Double)
    {
        problems.push(
            &fields.path_of("algorithm"),
            format!(
                "GRID_SEARCH needs every parameter to be INTEGER, CATEGORICAL or DISCRETE, but {} ({}) is DOUBLE",
                item(&params_path, index),
                param.parameter_name
            ),
        );
    }
    Some(HyperparameterSpec {
        goal: goal?,
        params: params?,
        max_trials: max_trials?,
        max_parallel_trials: max_parallel_trials?,
        max_failed_trials: max_failed_trials?,
        hyperparameter_metric_tag,
        enable_trial_early_stopping: fields.boolean(problems, "enableTrialEarlyStopping"),
        resume_previous_job_id,
        algorithm,
    })
}

/// Parameter names become `--name=value` flags of each trial, so two with one name would clash.
fn check_unique_names(problems: &mut Problems, items: &[Node], params_path: &str) {
    let mut first_seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (index, node) in items.iter().enumerate() {
        let Node::Map(entries) = node else { continue };
        let name = entries.iter().find_map(|(key, value)| match (key, value) {
            (Node::Str(key), Node::Str(name)) if key == "parameterName" => Some(name.as_str()),
            _ => None,
        });
        let Some(name) = name else { continue };
        if let Some(first) = first_seen.get(name) {
            problems.push(
                &format!("{}.parameterName", item(params_path, index)),
                format!(
                    "duplicate name {} (also used by {})",
                    quote(name),
                    item(params_path, *first)
                ),
            );
        } else {
            first_seen.insert(name, index);
        }
    }
}

fn parse_parameter(problems: &mut Problems, node: &Node, path: &str) -> Option<ParameterSpec> {
    let fields = Fields::open(
        problems,
        node,
        path,
        &[
            field("parameterName"),
            field("type"),
            field("minValue"),
            field("maxValue"),
            field("categoricalValues"),
            field("discreteValues"),
            field("scaleType"),
        ],
    )?;
    let errors_before = problems.len();
    let parameter_name = fields.string(problems, "parameterName");
    match &parameter_name {
        None if !fields.has("parameterName") => {
            problems.push(&fields.path_of("parameterName"), "required");
        }
        Some(name) if !is_flag_name(name) => problems.push(
            &fields.path_of("parameterName"),
            format!(
                "expected a name usable as a --flag (letters, digits, '_' or '-', starting with a letter), found {}",
                quote(name)
            ),
        ),
        _ => {}
    }
    let parameter_type = fields.enumeration::<ParameterType>(problems, "type");
    if !fields.has("type") {
        problems.push(
            &fields.path_of("type"),
            "required (DOUBLE, INTEGER, CATEGORICAL or DISCRETE)",
        );
    }
    let min_value = fields.double(problems, "minValue");
    let max_value = fields.double(problems, "maxValue");
    let scale_type = fields.enumeration::<ScaleType>(problems, "scaleType");
    let categorical_values = fields.node("categoricalValues").and_then(|node| {
        let values_path = fields.path_of("categoricalValues");
        let Node::Seq(items) = node else {
            problems.push(
                &values_path,
                crate::walk::expected("a list of strings", node),
            );
            return None;
        };
        let mut values: Vec<String> = Vec::with_capacity(items.len());
        for (index, value) in items.iter().enumerate() {
            let value_path = item(&values_path, index);
            let Some(text) = as_string(problems, value, &value_path) else {
                continue;
            };
            if let Some(first) = values.iter().position(|seen| *seen == text) {
                problems.push(
                    &value_path,
                    format!(
                        "duplicate value {} (also {})",
                        quote(&text),
                        item(&values_path, first)
                    ),
                );
            }
            values.push(text);
        }
        Some(values)
    });
    let discrete_values = fields.node("discreteValues").and_then(|node| {
        let values_path = fields.path_of("discreteValues");
        let Node::Seq(items) = node else {
            problems.push(
                &values_path,
                crate::walk::expected("a list of numbers", node),
            );
            return None;
        };
        if items.len() > MAX_DISCRETE_VALUES {
            problems.push(
                &values_path,
                format!(
                    "at most {MAX_DISCRETE_VALUES} values are allowed, found {}",
                    items.len()
                ),
            );
            return None;
        }
        let mut values: Vec<f64> = Vec::with_capacity(items.len());
        for (index, value) in items.iter().enumerate() {
            let value_path = item(&values_path, index);
            let Some(number) = as_double(problems, value, &value_path) else {
                continue;
            };
            if let Some(previous) = values.last()
                && number <= *previous
            {
                problems.push(
                    &value_path,
                    format!(
                        "values must be strictly increasing, found {} after {}",
                        format_number(number),
                        format_number(*previous)
                    ),
                );
            }
            values.push(number);
        }
        Some(values)
    });

    if let Some(parameter_type) = parameter_type {
        check_parameter_shape(
            problems,
            &fields,
            parameter_type,
            min_value,
            max_value,
            scale_type,
        );
    }
    if problems.len() != errors_before {
        return None;
    }
    Some(ParameterSpec {
        parameter_name: parameter_name?,
        parameter_type: parameter_type?,
        min_value,
        max_value,
        categorical_values: categorical_values.unwrap_or_default(),
        discrete_values: discrete_values.unwrap_or_default(),
        scale_type,
    })
}

/// Which fields each parameter type takes, and the rules on its range.
fn check_parameter_shape(
    problems: &mut Problems,
    fields: &Fields<'_>,
    parameter_type: ParameterType,
    min_value: Option<f64>,
    max_value: Option<f64>,
    scale_type: Option<ScaleType>,
) {
    let type_name = parameter_type.api_name();
    let only_for = |problems: &mut Problems, name: &str, allowed: &str| {
        if fields.has(name) {
            problems.push(
                &fields.path_of(name),
                format!("only allowed for type {allowed}, not {type_name}"),
            );
        }
    };
    // CATEGORICAL and DISCRETE parameters are their list of values.
    let required_values = |problems: &mut Problems, name: &str| {
        if !fields.has(name) {
            problems.push(
                &fields.path_of(name),
                format!("required for type {type_name}"),
            );
        } else if matches!(fields.node(name), Some(Node::Seq(items)) if items.is_empty()) {
            problems.push(&fields.path_of(name), "must list at least one value");
        }
    };
    match parameter_type {
        ParameterType::Double | ParameterType::Integer => {
            only_for(problems, "categoricalValues", "CATEGORICAL");
            only_for(problems, "discreteValues", "DISCRETE");
            for name in ["minValue", "maxValue"] {
                if !fields.has(name) {
                    problems.push(
                        &fields.path_of(name),
                        format!("required for type {type_name}"),
                    );
                }
            }
            if parameter_type == ParameterType::Integer {
                for (name, value) in [("minValue", min_value), ("maxValue", max_value)] {
                    if let Some(value) = value
                        && value.fract() != 0.0
                    {
                        problems.push(
                            &fields.path_of(name),
                            format!(
                                "must be a whole number for type INTEGER, found {}",
                                format_number(value)
                            ),
                        );
                    }
                }
            }
            if let (Some(min), Some(max)) = (min_value, max_value) {
                if max <= min {
                    problems.push(
                        &fields.path_of("maxValue"),
                        format!(
                            "must be greater than minValue ({}), found {}",
                            format_number(min),
                            format_number(max)
                        ),
                    );
                } else if matches!(
                    scale_type,
                    Some(ScaleType::UnitLogScale | ScaleType::UnitReverseLogScale)
                ) && min <= 0.0
                {
                    problems.push(
                        &fields.path_of("minValue"),
                        format!(
                            "{} needs a strictly positive range, found minValue {}",
                            scale_type.map(ScaleType::api_name).unwrap_or_default(),
                            format_number(min)
                        ),
                    );
                }
            }
        }
        ParameterType::Categorical => {
            only_for(problems, "minValue", "DOUBLE or INTEGER");
            only_for(problems, "maxValue", "DOUBLE or INTEGER");
            only_for(problems, "discreteValues", "DISCRETE");
            only_for(problems, "scaleType", "DOUBLE, INTEGER or DISCRETE");
            required_values(problems, "categoricalValues");
        }
        ParameterType::Discrete => {
            only_for(problems, "minValue", "DOUBLE or INTEGER");
            only_for(problems, "maxValue", "DOUBLE or INTEGER");
            only_for(problems, "categoricalValues", "CATEGORICAL");
            required_values(problems, "discreteValues");
        }
    }
}

/// A parameter name is passed to each trial as `--name=value`.
fn is_flag_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}
