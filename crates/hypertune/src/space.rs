//! The search space: each parameter of a `HyperparameterSpec` mapped to and from the unit
//! interval, so every algorithm (random draws, the grid, the Gaussian process) works on
//! `[0, 1]^d` and the scaling rules live in one place.
//!
//! | type | value from `u` in [0, 1] |
//! |---|---|
//! | DOUBLE | `min..max` on the parameter's scale (linear; log: `exp` of linear in `ln`; reverse log: mirrored log, dense near `max`) |
//! | INTEGER | as DOUBLE over `min - 0.5 .. max + 0.5`, rounded and clamped, so every integer gets an equal share |
//! | DISCRETE | the value nearest to the DOUBLE mapping over `first..last` (with its scale) |
//! | CATEGORICAL | value `floor(u * k)` of the k values |

use std::collections::BTreeMap;
use std::fmt;

use job_config::{HyperparameterSpec, ParameterSpec, ParameterType, ScaleType};
use rand::Rng;

use crate::HypertuneError;

/// One parameter's value in a trial.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    Double(f64),
    Integer(i64),
    Discrete(f64),
    Categorical(String),
}

impl ParamValue {
    /// The text a trial receives (`--name=<text>`) and `trainingOutput` records: integers and
    /// integral discrete values without a decimal point (`64`, not `64.0`), doubles as their
    /// shortest round-tripping decimal.
    pub fn to_arg(&self) -> String {
        match self {
            ParamValue::Integer(i) => i.to_string(),
            ParamValue::Double(x) | ParamValue::Discrete(x) => format_number(*x),
            ParamValue::Categorical(s) => s.clone(),
        }
    }

    /// The value as a number (a categorical value has none).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            ParamValue::Integer(i) => Some(*i as f64),
            ParamValue::Double(x) | ParamValue::Discrete(x) => Some(*x),
            ParamValue::Categorical(_) => None,
        }
    }
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_arg())
    }
}

/// A whole number prints without a fraction; anything else as Rust's shortest round-trip text.
fn format_number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// A trial's parameters, in the spec's order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TrialParams(pub Vec<(String, ParamValue)>);

impl TrialParams {
    /// `--name=value` for each parameter, to append to the job's `args`.
    pub fn to_args(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|(name, value)| format!("--{name}={}", value.to_arg()))
            .collect()
    }

    /// `trainingOutput.trials[].hyperparameters`: name -> value text.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.0
            .iter()
            .map(|(name, value)| (name.clone(), value.to_arg()))
            .collect()
    }

    pub fn get(&self, name: &str) -> Option<&ParamValue> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

/// Most values one INTEGER parameter may contribute to a grid.
pub const MAX_GRID_AXIS: usize = 100_000;

/// One parameter's range, validated for sampling.
#[derive(Debug, Clone)]
enum Dimension {
    Double { min: f64, max: f64, scale: Scale },
    Integer { min: i64, max: i64, scale: Scale },
    Discrete { values: Vec<f64>, scale: Scale },
    Categorical { values: Vec<String> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scale {
    Linear,
    Log,
    ReverseLog,
}

/// The parameters of a spec, ready to map unit-cube points to trial parameters.
#[derive(Debug, Clone)]
pub struct SearchSpace {
    names: Vec<String>,
    dims: Vec<Dimension>,
}

impl SearchSpace {
    /// Checks what sampling needs beyond `job-config`'s validation (it has already checked
    /// types, ranges and log scales on a config it parsed; a spec built in code is checked
    /// again here).
    pub fn new(spec: &HyperparameterSpec) -> Result<SearchSpace, HypertuneError> {
        if spec.params.is_empty() {
            return Err(HypertuneError::InvalidSpec(
                "hyperparameters.params: must list at least one parameter to tune".to_string(),
            ));
        }
        let mut names = Vec::with_capacity(spec.params.len());
        let mut dims = Vec::with_capacity(spec.params.len());
        for (index, param) in spec.params.iter().enumerate() {
            names.push(param.parameter_name.clone());
            dims.push(dimension(param).map_err(|reason| {
                HypertuneError::InvalidSpec(format!(
                    "hyperparameters.params[{index}] ({}): {reason}",
                    param.parameter_name
                ))
            })?);
        }
        Ok(SearchSpace { names, dims })
    }

    pub fn len(&self) -> usize {
        self.dims.len()
    }

    pub fn is_empty(&self) -> bool {
        self.dims.is_empty()
    }

    /// The trial parameters at unit-cube point `u` (one coordinate per parameter, clamped to
    /// [0, 1]).
    pub fn decode(&self, u: &[f64]) -> TrialParams {
        TrialParams(
            self.names
                .iter()
                .zip(&self.dims)
                .zip(u.iter().copied().chain(std::iter::repeat(0.5)))
                .map(|((name, dim), u)| (name.clone(), decode_one(dim, u.clamp(0.0, 1.0))))
                .collect(),
        )
    }

    /// The unit-cube point of `params` (the centre of an integer's, discrete or categorical
    /// value's share), the inverse of [`SearchSpace::decode`] for values it produced.
    pub fn encode(&self, params: &TrialParams) -> Vec<f64> {
        self.names
            .iter()
            .zip(&self.dims)
            .map(|(name, dim)| params.get(name).map_or(0.5, |value| encode_one(dim, value)))
            .collect()
    }

    /// A uniform draw in the unit cube.
    pub fn random_point(&self, rng: &mut impl Rng) -> Vec<f64> {
        (0..self.dims.len()).map(|_| rng.random::<f64>()).collect()
    }

    /// The values a grid search walks for each parameter, or an error naming a DOUBLE parameter
    /// (which has no grid).
    pub fn grid_axes(&self) -> Result<Vec<Vec<ParamValue>>, HypertuneError> {
        self.names
            .iter()
            .zip(&self.dims)
            .map(|(name, dim)| match dim {
                Dimension::Integer { min, max, .. } if max - min < MAX_GRID_AXIS as i64 => {
                    Ok((*min..=*max).map(ParamValue::Integer).collect())
                }
                Dimension::Integer { min, max, .. } => Err(HypertuneError::InvalidSpec(format!(
                    "GRID_SEARCH: {name} spans {min}..={max}, more than {MAX_GRID_AXIS} values; narrow the range or use another algorithm"
                ))),
                Dimension::Discrete { values, .. } => {
                    Ok(values.iter().copied().map(ParamValue::Discrete).collect())
                }
                Dimension::Categorical { values } => {
                    Ok(values.iter().cloned().map(ParamValue::Categorical).collect())
                }
                Dimension::Double { .. } => Err(HypertuneError::InvalidSpec(format!(
                    "GRID_SEARCH needs every parameter to be INTEGER, CATEGORICAL or DISCRETE, but {name} is DOUBLE"
                ))),
            })
            .collect()
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }
}

fn scale_of(param: &ParameterSpec) -> Scale {
    match param.scale_type {
        Some(ScaleType::UnitLogScale) => Scale::Log,
        Some(ScaleType::UnitReverseLogScale) => Scale::ReverseLog,
        Some(ScaleType::None | ScaleType::UnitLinearScale) | None => Scale::Linear,
    }
}

fn dimension(param: &ParameterSpec) -> Result<Dimension, String> {
    let scale = scale_of(param);
    let range = || -> Result<(f64, f64), String> {
        match (param.min_value, param.max_value) {
            (Some(min), Some(max)) if min.is_finite() && max.is_finite() && min < max => {
                if scale != Scale::Linear && min <= 0.0 {
                    return Err(format!("a log scale needs minValue > 0, found {min}"));
                }
                Ok((min, max))
            }
            (Some(min), Some(max)) => Err(format!(
                "needs finite minValue < maxValue, found {min} and {max}"
            )),
            _ => Err("needs minValue and maxValue".to_string()),
        }
    };
    Ok(match param.parameter_type {
        ParameterType::Double => {
            let (min, max) = range()?;
            Dimension::Double { min, max, scale }
        }
        ParameterType::Integer => {
            let (min, max) = range()?;
            if min.fract() != 0.0 || max.fract() != 0.0 || min.abs() > 1e15 || max.abs() > 1e15 {
                return Err(format!(
                    "INTEGER bounds must be whole numbers, found {min} and {max}"
                ));
            }
            Dimension::Integer {
                min: min as i64,
                max: max as i64,
                scale,
            }
        }
        ParameterType::Discrete => {
            let values = param.discrete_values.clone();
            if values.is_empty() || values.windows(2).any(|w| w[0] >= w[1]) {
                return Err("discreteValues must be a non-empty increasing list".to_string());
            }
            if scale != Scale::Linear && values[0] <= 0.0 {
                return Err("a log scale needs positive discreteValues".to_string());
            }
            Dimension::Discrete { values, scale }
        }
        ParameterType::Categorical => {
            if param.categorical_values.is_empty() {
                return Err("categoricalValues must not be empty".to_string());
            }
            Dimension::Categorical {
                values: param.categorical_values.clone(),
            }
        }
    })
}

/// `u` in [0, 1] -> a value in `[min, max]` on `scale`.
fn scaled(min: f64, max: f64, scale: Scale, u: f64) -> f64 {
    match scale {
        Scale::Linear => min + u * (max - min),
        Scale::Log => (min.ln() + u * (max.ln() - min.ln())).exp(),
        // Mirror of the log scale: points crowd towards max instead of min.
        Scale::ReverseLog => max + min - (min.ln() + (1.0 - u) * (max.ln() - min.ln())).exp(),
    }
    .clamp(min, max)
}

/// Inverse of [`scaled`].
fn unscaled(min: f64, max: f64, scale: Scale, x: f64) -> f64 {
    let x = x.clamp(min, max);
    let u = match scale {
        Scale::Linear => (x - min) / (max - min),
        Scale::Log => (x.ln() - min.ln()) / (max.ln() - min.ln()),
        Scale::ReverseLog => 1.0 - ((max + min - x).ln() - min.ln()) / (max.ln() - min.ln()),
    };
    if u.is_finite() {
        u.clamp(0.0, 1.0)
    } else {
        0.5
    }
}

fn decode_one(dim: &Dimension, u: f64) -> ParamValue {
    match dim {
        Dimension::Double { min, max, scale } => ParamValue::Double(scaled(*min, *max, *scale, u)),
        Dimension::Integer { min, max, scale } => {
            let value = match scale {
                // Each integer owns an equal slice of u.
                Scale::Linear => {
                    let span = (*max - *min + 1) as f64;
                    *min + ((u * span).floor() as i64).min(*max - *min)
                }
                _ => scaled(*min as f64, *max as f64, *scale, u).round() as i64,
            };
            ParamValue::Integer(value.clamp(*min, *max))
        }
        Dimension::Discrete { values, scale } => {
            let target = scaled(values[0], values[values.len() - 1], *scale, u);
            let nearest = values
                .iter()
                .copied()
                .min_by(|a, b| (a - target).abs().total_cmp(&(b - target).abs()))
                .unwrap_or(values[0]);
            ParamValue::Discrete(nearest)
        }
        Dimension::Categorical { values } => {
            let index = ((u * values.len() as f64).floor() as usize).min(values.len() - 1);
            ParamValue::Categorical(values[index].clone())
        }
    }
}

fn encode_one(dim: &Dimension, value: &ParamValue) -> f64 {
    match (dim, value) {
        (Dimension::Categorical { values }, ParamValue::Categorical(v)) => {
            let index = values.iter().position(|c| c == v).unwrap_or(0);
            (index as f64 + 0.5) / values.len() as f64
        }
        (Dimension::Integer { min, max, scale }, v) => {
            let x = v.as_f64().unwrap_or(*min as f64);
            match scale {
                Scale::Linear => (x - *min as f64 + 0.5) / ((*max - *min + 1) as f64),
                _ => unscaled(*min as f64, *max as f64, *scale, x),
            }
        }
        (Dimension::Double { min, max, scale }, v) => {
            unscaled(*min, *max, *scale, v.as_f64().unwrap_or(*min))
        }
        (Dimension::Discrete { values, scale }, v) => unscaled(
            values[0],
            values[values.len() - 1],
            *scale,
            v.as_f64().unwrap_or(values[0]),
        ),
        (Dimension::Categorical { .. }, _) => 0.5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(text: &str) -> ParameterSpec {
        let yaml = format!(
            "trainingInput:\n  hyperparameters:\n    goal: MAXIMIZE\n    params:\n    - {text}\n"
        );
        job_config::JobConfig::parse(&yaml, "t.yaml")
            .unwrap()
            .training_input
            .hyperparameters
            .unwrap()
            .params
            .remove(0)
    }

    #[test]
    fn integers_get_equal_shares_and_round_trip() {
        let dim = dimension(&param(
            "{parameterName: n, type: INTEGER, minValue: 1, maxValue: 4}",
        ))
        .unwrap();
        let values: Vec<ParamValue> = [0.0, 0.24, 0.26, 0.74, 0.76, 1.0]
            .iter()
            .map(|&u| decode_one(&dim, u))
            .collect();
        assert_eq!(values, [1, 1, 2, 3, 4, 4].map(ParamValue::Integer).to_vec());
        for i in 1..=4 {
            let u = encode_one(&dim, &ParamValue::Integer(i));
            assert_eq!(decode_one(&dim, u), ParamValue::Integer(i));
        }
    }

    #[test]
    fn log_scales_crowd_the_right_end() {
        let log = dimension(&param(
            "{parameterName: lr, type: DOUBLE, minValue: 0.0001, maxValue: 1, scaleType: UNIT_LOG_SCALE}",
        ))
        .unwrap();
        let ParamValue::Double(mid) = decode_one(&log, 0.5) else {
            panic!()
        };
        assert!((mid - 0.01).abs() < 1e-12, "{mid}");
        let reverse = dimension(&param(
            "{parameterName: m, type: DOUBLE, minValue: 0.0001, maxValue: 1, scaleType: UNIT_REVERSE_LOG_SCALE}",
        ))
        .unwrap();
        let ParamValue::Double(mid) = decode_one(&reverse, 0.5) else {
            panic!()
        };
        assert!((mid - (1.0001 - 0.01)).abs() < 1e-12, "{mid}");
        for u in [0.0, 0.1, 0.5, 0.9, 1.0] {
            for dim in [&log, &reverse] {
                let back = encode_one(dim, &decode_one(dim, u));
                assert!((back - u).abs() < 1e-9, "{u} -> {back}");
            }
        }
    }

    #[test]
    fn values_print_as_trial_flags() {
        let params = TrialParams(vec![
            ("hidden-units".to_string(), ParamValue::Discrete(64.0)),
            ("learning-rate".to_string(), ParamValue::Double(0.05)),
            ("epochs".to_string(), ParamValue::Integer(3)),
            (
                "opt".to_string(),
                ParamValue::Categorical("adam".to_string()),
            ),
        ]);
        assert_eq!(
            params.to_args(),
            [
                "--hidden-units=64",
                "--learning-rate=0.05",
                "--epochs=3",
                "--opt=adam"
            ]
        );
    }
}
