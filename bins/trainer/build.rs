//! Records the versions of the crates the trainer is built from (read from the workspace's
//! Cargo.lock) so that `job.json` can say exactly what produced a model.

use std::path::Path;

/// Crates whose versions go into `job.json`.
const TRACKED: [&str; 7] = [
    "mnist-model",
    "idx-dataset",
    "storage",
    "savedmodel-format",
    "candle-core",
    "object_store",
    "rand_chacha",
];

fn main() {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let lock_path = Path::new(&manifest_dir).join("../../Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock_path.display());
    let lock = std::fs::read_to_string(&lock_path).unwrap_or_default();
    let mut found = Vec::new();
    let mut name: Option<&str> = None;
    for line in lock.lines() {
        if let Some(n) = line.strip_prefix("name = ") {
            name = Some(n.trim_matches('"'));
        } else if let (Some(v), Some(n)) = (line.strip_prefix("version = "), name.take())
            && TRACKED.contains(&n)
            && !found.iter().any(|(f, _): &(String, String)| f == n)
        {
            found.push((n.to_string(), v.trim_matches('"').to_string()));
        }
    }
    let listing: Vec<String> = TRACKED
        .iter()
        .map(|t| {
            let version = found
                .iter()
                .find(|(n, _)| n == t)
                .map_or("unknown", |(_, v)| v.as_str());
            format!("{t}={version}")
        })
        .collect();
    println!(
        "cargo:rustc-env=TRAINER_CRATE_VERSIONS={}",
        listing.join(",")
    );
}
