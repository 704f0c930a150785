//! `inputPaths` → the files to read.

use glob::{MatchOptions, Pattern};
use storage::{Location, StorageOptions};

use crate::BatchPredictionError;

/// `*` stays within a path segment, as in gsutil and Cloud ML Engine.
const MATCH: MatchOptions = MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: false,
};

fn has_wildcard(text: &str) -> bool {
    text.contains(['*', '?', '['])
}

/// Every file the patterns name, sorted and without repeats. A pattern without wildcards must
/// be an existing file; a wildcard pattern may match nothing as long as some pattern matches
/// something. Errors name the pattern.
pub fn expand_input_paths(
    patterns: &[String],
    options: &StorageOptions,
) -> Result<Vec<Location>, BatchPredictionError> {
    if patterns.is_empty() {
        return Err(BatchPredictionError::Request(
            "predictionInput.inputPaths: at least one path is required".to_string(),
        ));
    }
    let mut files: Vec<Location> = Vec::new();
    for pattern in patterns {
        let parse = |text: &str| {
            Location::parse_with(text, options).map_err(BatchPredictionError::storage(format!(
                "inputPaths {pattern:?}"
            )))
        };
        if !has_wildcard(pattern) {
            let location = parse(pattern)?;
            let exists = location
                .exists_blocking()
                .map_err(BatchPredictionError::storage(format!(
                    "checking {location}"
                )))?;
            if !exists {
                return Err(BatchPredictionError::Request(format!(
                    "predictionInput.inputPaths: {pattern} does not exist"
                )));
            }
            files.push(location);
            continue;
        }
        // List the directory above the first wildcard and match the rest against each key.
        let wildcard_at = pattern.find(['*', '?', '[']).unwrap_or(pattern.len());
        let split = pattern[..wildcard_at].rfind('/').map_or(0, |i| i + 1);
        let (base, relative) = pattern.split_at(split);
        let matcher = Pattern::new(relative).map_err(|e| {
            BatchPredictionError::Request(format!(
                "predictionInput.inputPaths: {pattern:?} is not a valid wildcard pattern: {e}"
            ))
        })?;
        let base_location = if base.is_empty() {
            parse(".")?
        } else {
            parse(base.trim_end_matches('/'))?
        };
        let keys = base_location
            .list_blocking()
            .map_err(BatchPredictionError::storage(format!(
                "listing {base_location}"
            )))?;
        for key in keys {
            if matcher.matches_with(&key, MATCH) {
                files.push(base_location.join(&key));
            }
        }
    }
    files.sort_by_key(Location::url);
    files.dedup_by(|a, b| a.url() == b.url());
    if files.is_empty() {
        return Err(BatchPredictionError::NoInputs {
            patterns: patterns.to_vec(),
        });
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_within_a_segment() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a1.json", "a2.json", "b.json", "sub/a3.json"] {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "{}\n").unwrap();
        }
        let root = dir.path().display().to_string();
        let options = StorageOptions::from_env();
        let names = |patterns: &[String]| -> Vec<String> {
            expand_input_paths(patterns, &options)
                .unwrap()
                .iter()
                .map(|l| {
                    l.local_path()
                        .unwrap()
                        .strip_prefix(dir.path())
                        .unwrap()
                        .display()
                        .to_string()
                })
                .collect()
        };
        assert_eq!(names(&[format!("{root}/a*")]), ["a1.json", "a2.json"]);
        assert_eq!(
            names(&[
                format!("{root}/a*"),
                format!("{root}/b.json"),
                format!("{root}/a1.json")
            ]),
            ["a1.json", "a2.json", "b.json"]
        );
        assert_eq!(names(&[format!("{root}/*/a?.json")]), ["sub/a3.json"]);
        let none = expand_input_paths(&[format!("{root}/z*")], &options).unwrap_err();
        assert!(none.to_string().contains("match no files"), "{none}");
        let missing = expand_input_paths(&[format!("{root}/c.json")], &options).unwrap_err();
        assert!(
            missing.to_string().ends_with("c.json does not exist"),
            "{missing}"
        );
    }
}
