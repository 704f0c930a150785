//! The [`Planner`]: which trials to run next, given the results so far.
//!
//! * **GRID_SEARCH** walks every combination of the INTEGER, DISCRETE and CATEGORICAL values in
//!   order (the last parameter varies fastest), up to `maxTrials`.
//! * **RANDOM_SEARCH** draws each parameter uniformly on its scale (see `space`), from a seeded
//!   ChaCha8 stream, so a seed gives the same trials.
//! * **Bayesian** (`ALGORITHM_UNSPECIFIED`, the API's default) starts with a few random trials
//!   (`d + 1`, at least 2, at most 5, `d` = number of parameters), then asks `egobox-ego`'s
//!   efficient-global-optimisation service (a Gaussian-process surrogate with a log expected
//!   improvement criterion, Kriging believer for several points at once) for the next points in
//!   the unit cube. Trials still running are given the mean objective seen so far ("constant
//!   liar"), so parallel suggestions spread out instead of piling onto one point. A suggestion
//!   that decodes to parameters already tried, or a surrogate that cannot be fitted (egobox
//!   panics on some degenerate data), falls back to a random untried point and says so in
//!   [`Planner::notes`].
//!
//! Failed trials count towards `maxFailedTrials`; at that many failures the planner stops
//! issuing trials ([`Planner::stop_reason`]). `maxFailedTrials: 0` leaves the number to the
//! service: here, half of `maxTrials` rounded up (at least 1).

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;

use job_config::{Goal, HyperparameterSpec, SearchAlgorithm};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::HypertuneError;
use crate::output::FinalMetric;
use crate::space::{SearchSpace, TrialParams};

/// The search algorithm in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Grid,
    Random,
    Bayesian,
}

impl Algorithm {
    pub fn of(spec: &HyperparameterSpec) -> Algorithm {
        match spec.algorithm {
            Some(SearchAlgorithm::GridSearch) => Algorithm::Grid,
            Some(SearchAlgorithm::RandomSearch) => Algorithm::Random,
            Some(SearchAlgorithm::AlgorithmUnspecified) | None => Algorithm::Bayesian,
        }
    }
}

/// A trial to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Trial {
    /// 1-based, in the order trials are issued.
    pub id: u32,
    pub params: TrialParams,
}

/// How a trial ended, as the planner needs it.
#[derive(Debug, Clone, PartialEq)]
pub enum TrialResult {
    /// The trial ran to the end (or was stopped early on purpose); `final_metric` is `None` when
    /// it reported nothing.
    Completed {
        final_metric: Option<FinalMetric>,
    },
    Failed {
        error: String,
    },
    Cancelled,
}

/// Most attempts at finding an untried random point before accepting a repeat.
const RANDOM_ATTEMPTS: usize = 64;

/// Chooses trials; see the module docs.
pub struct Planner {
    space: SearchSpace,
    goal: Goal,
    algorithm: Algorithm,
    max_trials: u32,
    max_parallel: u32,
    failed_limit: u32,
    seed: u64,
    rng: ChaCha8Rng,
    issued: u32,
    failed: u32,
    /// Grid points in order (grid search only).
    grid: Vec<TrialParams>,
    in_flight: BTreeMap<u32, TrialParams>,
    /// Unit-cube points and objective values (as given, not negated) of completed trials.
    observations: Vec<(Vec<f64>, f64)>,
    tried: Vec<TrialParams>,
    notes: Vec<String>,
}

impl Planner {
    /// A planner for `spec`; `seed` fixes every random choice.
    pub fn new(spec: &HyperparameterSpec, seed: u64) -> Result<Planner, HypertuneError> {
        let space = SearchSpace::new(spec)?;
        let algorithm = Algorithm::of(spec);
        let grid = if algorithm == Algorithm::Grid {
            grid_points(&space, spec.max_trials as usize)?
        } else {
            Vec::new()
        };
        let max_trials = spec.max_trials.max(1);
        let failed_limit = match spec.max_failed_trials {
            0 => max_trials.div_ceil(2).max(1),
            n => n,
        };
        Ok(Planner {
            space,
            goal: spec.goal,
            algorithm,
            max_trials,
            max_parallel: spec.max_parallel_trials.max(1),
            failed_limit,
            seed,
            rng: ChaCha8Rng::seed_from_u64(seed),
            issued: 0,
            failed: 0,
            grid,
            in_flight: BTreeMap::new(),
            observations: Vec::new(),
            tried: Vec::new(),
            notes: Vec::new(),
        })
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub fn goal(&self) -> Goal {
        self.goal
    }

    /// Trials this search will run at most: `maxTrials`, or the grid's size if smaller.
    pub fn trial_budget(&self) -> u32 {
        match self.algorithm {
            Algorithm::Grid => self.max_trials.min(self.grid.len() as u32),
            _ => self.max_trials,
        }
    }

    pub fn max_parallel(&self) -> u32 {
        self.max_parallel
    }

    /// Failed trials that stop the search.
    pub fn failed_trial_limit(&self) -> u32 {
        self.failed_limit
    }

    pub fn issued(&self) -> u32 {
        self.issued
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// What the planner had to work around (surrogate failures, repeated suggestions).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// Why no more trials will be issued although the budget is not spent, if so.
    pub fn stop_reason(&self) -> Option<String> {
        (self.failed >= self.failed_limit).then(|| {
            format!(
                "{} trials failed, reaching maxFailedTrials ({})",
                self.failed, self.failed_limit
            )
        })
    }

    /// Whether every trial has been issued and finished, or the search was stopped and the
    /// trials in flight have finished.
    pub fn is_finished(&self) -> bool {
        self.in_flight.is_empty()
            && (self.issued >= self.trial_budget() || self.stop_reason().is_some())
    }

    /// Up to `count` new trials (fewer once the budget is spent or the search is stopped). The
    /// caller decides how many run at once; [`Planner::max_parallel`] is the spec's limit.
    pub fn next_trials(&mut self, count: usize) -> Vec<Trial> {
        if self.stop_reason().is_some() {
            return Vec::new();
        }
        let remaining = self.trial_budget().saturating_sub(self.issued) as usize;
        let count = count.min(remaining);
        if count == 0 {
            return Vec::new();
        }
        let params: Vec<TrialParams> = match self.algorithm {
            Algorithm::Grid => {
                let start = self.issued as usize;
                self.grid[start..start + count].to_vec()
            }
            Algorithm::Random => (0..count).map(|_| self.random_untried()).collect(),
            Algorithm::Bayesian => self.bayesian(count),
        };
        params
            .into_iter()
            .map(|params| {
                self.issued += 1;
                let id = self.issued;
                self.tried.push(params.clone());
                self.in_flight.insert(id, params.clone());
                Trial { id, params }
            })
            .collect()
    }

    /// Records how trial `id` ended.
    pub fn record(&mut self, id: u32, result: &TrialResult) {
        let Some(params) = self.in_flight.remove(&id) else {
            return;
        };
        match result {
            TrialResult::Completed {
                final_metric: Some(metric),
            } if metric.objective_value.is_finite() => {
                self.observations
                    .push((self.space.encode(&params), metric.objective_value));
            }
            TrialResult::Completed { .. } | TrialResult::Cancelled => {}
            TrialResult::Failed { .. } => self.failed += 1,
        }
    }

    /// Objective values of the completed trials, in completion order.
    pub fn observed_values(&self) -> Vec<f64> {
        self.observations.iter().map(|(_, v)| *v).collect()
    }

    fn random_untried(&mut self) -> TrialParams {
        let mut candidate = self.space.decode(&self.space.random_point(&mut self.rng));
        for _ in 0..RANDOM_ATTEMPTS {
            if !self.tried.contains(&candidate) {
                break;
            }
            candidate = self.space.decode(&self.space.random_point(&mut self.rng));
        }
        candidate
    }

    fn initial_random_trials(&self) -> usize {
        (self.space.len() + 1).clamp(2, 5)
    }

    fn bayesian(&mut self, count: usize) -> Vec<TrialParams> {
        if self.observations.len() < self.initial_random_trials() || self.observations.len() < 2 {
            return (0..count).map(|_| self.random_untried()).collect();
        }
        let suggested = match self.suggest(count) {
            Ok(points) => points,
            Err(reason) => {
                self.notes.push(format!(
                    "trial {}: the Gaussian-process surrogate failed ({reason}); drew random points instead",
                    self.issued + 1
                ));
                Vec::new()
            }
        };
        let mut chosen: Vec<TrialParams> = Vec::with_capacity(count);
        for point in suggested.into_iter().take(count) {
            let params = self.space.decode(&point);
            if self.tried.contains(&params) || chosen.contains(&params) {
                self.notes.push(format!(
                    "trial {}: the surrogate suggested parameters already tried; drew a random point instead",
                    self.issued as usize + chosen.len() + 1
                ));
                let fresh = self.random_untried();
                chosen.push(fresh);
            } else {
                chosen.push(params);
            }
        }
        while chosen.len() < count {
            let fresh = self.random_untried();
            chosen.push(fresh);
        }
        chosen
    }

    /// egobox's next `count` points in the unit cube (it minimises, so a MAXIMIZE objective is
    /// negated; running trials get the mean observed value).
    fn suggest(&mut self, count: usize) -> Result<Vec<Vec<f64>>, String> {
        use egobox_ego::EgorServiceBuilder;
        use ndarray::Array2;

        let d = self.space.len();
        let sign = match self.goal {
            Goal::Maximize => -1.0,
            Goal::Minimize => 1.0,
        };
        let mean =
            self.observations.iter().map(|(_, v)| *v).sum::<f64>() / self.observations.len() as f64;
        let mut xs: Vec<f64> = Vec::new();
        let mut ys: Vec<f64> = Vec::new();
        for (x, y) in &self.observations {
            xs.extend_from_slice(x);
            ys.push(sign * y);
        }
        for params in self.in_flight.values() {
            xs.extend(self.space.encode(params));
            ys.push(sign * mean);
        }
        let rows = ys.len();
        let x = Array2::from_shape_vec((rows, d), xs).map_err(|e| e.to_string())?;
        let y = Array2::from_shape_vec((rows, 1), ys).map_err(|e| e.to_string())?;
        let limits = Array2::from_shape_fn((d, 2), |(_, j)| j as f64);
        // A new seed per call, derived from the planner's: reproducible, not repetitive.
        let seed = self
            .seed
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(u64::from(self.issued));
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let service = EgorServiceBuilder::optimize()
                .configure(|config| {
                    config
                        .seed(seed)
                        .configure_qei(|qei| qei.batch(count.max(1)))
                })
                .min_within(&limits)
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(service.suggest(&x, &y))
        }));
        let suggested = match result {
            Ok(Ok(points)) => points,
            Ok(Err(message)) => return Err(message),
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panicked".to_string());
                return Err(message);
            }
        };
        Ok(suggested
            .rows()
            .into_iter()
            .map(|row| row.iter().map(|v| v.clamp(0.0, 1.0)).collect())
            .collect())
    }
}

fn grid_points(space: &SearchSpace, limit: usize) -> Result<Vec<TrialParams>, HypertuneError> {
    let axes = space.grid_axes()?;
    let names = space.names();
    let mut points = Vec::new();
    let mut index = vec![0usize; axes.len()];
    'outer: loop {
        if points.len() >= limit {
            break;
        }
        points.push(TrialParams(
            names
                .iter()
                .zip(&axes)
                .zip(&index)
                .map(|((name, axis), &i)| (name.clone(), axis[i].clone()))
                .collect(),
        ));
        // Odometer: the last parameter varies fastest.
        for position in (0..axes.len()).rev() {
            index[position] += 1;
            if index[position] < axes[position].len() {
                continue 'outer;
            }
            index[position] = 0;
        }
        break;
    }
    Ok(points)
}
