//! The validating walk over a [`Node`] tree: typed getters that, instead of stopping at the first
//! problem, record a [`FieldError`] naming the field path and carry on, so one run reports every
//! mistake in a config.

use std::collections::BTreeMap;

use crate::FieldError;
use crate::node::{Node, format_float, quote};

/// Collects field errors while a document is walked.
#[derive(Debug, Default)]
pub(crate) struct Problems {
    errors: Vec<FieldError>,
}

impl Problems {
    pub(crate) fn push(&mut self, path: &str, message: impl Into<String>) {
        self.errors.push(FieldError {
            path: path.to_string(),
            message: message.into(),
        });
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// How many problems so far; comparing before and after a sub-walk tells whether it failed.
    pub(crate) fn len(&self) -> usize {
        self.errors.len()
    }

    pub(crate) fn into_errors(self) -> Vec<FieldError> {
        self.errors
    }
}

/// `base.key`, or `key` at the document root.
pub(crate) fn child(base: &str, key: &str) -> String {
    if base.is_empty() {
        key.to_string()
    } else {
        format!("{base}.{key}")
    }
}

/// `base[index]`.
pub(crate) fn item(base: &str, index: usize) -> String {
    format!("{base}[{index}]")
}

/// A field known to a map: its name, and an optional message used *instead of* accepting it
/// (for fields the API has but this tool deliberately does not support).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Known<'a> {
    pub(crate) name: &'a str,
    pub(crate) refused_because: Option<&'a str>,
    /// Output-only API fields (`state`, `createTime`, …) are accepted and ignored, so that the
    /// YAML printed by `gcloud ai-platform jobs describe` can be fed back in.
    pub(crate) ignored: bool,
}

pub(crate) const fn field(name: &str) -> Known<'_> {
    Known {
        name,
        refused_because: None,
        ignored: false,
    }
}

pub(crate) const fn refused<'a>(name: &'a str, because: &'a str) -> Known<'a> {
    Known {
        name,
        refused_because: Some(because),
        ignored: false,
    }
}

pub(crate) const fn ignored(name: &str) -> Known<'_> {
    Known {
        name,
        refused_because: None,
        ignored: true,
    }
}

/// The fields of one map, checked against the schema: unknown, duplicate and non-string keys have
/// already been reported when this is built, and null values count as absent (protobuf's JSON
/// mapping treats `null` as "use the default", and YAML writes an empty value as null).
pub(crate) struct Fields<'n> {
    pub(crate) path: String,
    entries: BTreeMap<String, &'n Node>,
}

impl<'n> Fields<'n> {
    /// Opens `node` as a map with the given known fields. Returns `None` (after recording the error)
    /// when `node` is not a map.
    pub(crate) fn open(
        problems: &mut Problems,
        node: &'n Node,
        path: &str,
        known: &[Known<'_>],
    ) -> Option<Self> {
        let Node::Map(raw_entries) = node else {
            problems.push(path, expected("a map", node));
            return None;
        };
        let mut entries = BTreeMap::new();
        for (key, value) in raw_entries {
            let Node::Str(name) = key else {
                problems.push(
                    path,
                    format!("field names must be strings, found {}", key.describe()),
                );
                continue;
            };
            let key_path = child(path, name);
            if entries.contains_key(name.as_str()) {
                problems.push(&key_path, "given more than once");
                continue;
            }
            match known.iter().find(|candidate| candidate.name == name) {
                Some(Known {
                    refused_because: Some(reason),
                    ..
                }) => problems.push(&key_path, *reason),
                Some(Known { ignored: true, .. }) => {}
                Some(_) => {
                    if !matches!(value, Node::Null) {
                        entries.insert(name.clone(), value);
                    }
                }
                None => {
                    let names = known.iter().filter(|k| !k.ignored).map(|k| k.name);
                    match suggest(name, names) {
                        Some(suggestion) => problems.push(
                            &key_path,
                            format!("unknown field; did you mean {suggestion}?"),
                        ),
                        None => problems.push(&key_path, "unknown field"),
                    }
                }
            }
        }
        Some(Fields {
            path: path.to_string(),
            entries,
        })
    }

    pub(crate) fn path_of(&self, name: &str) -> String {
        child(&self.path, name)
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    pub(crate) fn node(&self, name: &str) -> Option<&'n Node> {
        self.entries.get(name).copied()
    }

    pub(crate) fn string(&self, problems: &mut Problems, name: &str) -> Option<String> {
        let node = self.node(name)?;
        as_string(problems, node, &self.path_of(name))
    }

    /// A string field that people commonly write as a bare YAML number (`pythonVersion: 3.5`),
    /// which YAML turns into a float and `2.10` into `2.1`; the message says how to fix it.
    pub(crate) fn version_string(&self, problems: &mut Problems, name: &str) -> Option<String> {
        let node = self.node(name)?;
        let path = self.path_of(name);
        match node {
            Node::Str(value) => Some(value.clone()),
            Node::Int(_) | Node::Float(_) => {
                problems.push(
                    &path,
                    format!(
                        "expected a string, found {}; put the version in quotes so YAML keeps it as text",
                        node.describe()
                    ),
                );
                None
            }
            other => {
                problems.push(&path, expected("a string", other));
                None
            }
        }
    }

    pub(crate) fn boolean(&self, problems: &mut Problems, name: &str) -> Option<bool> {
        match self.node(name)? {
            Node::Bool(value) => Some(*value),
            other => {
                problems.push(&self.path_of(name), expected("a boolean", other));
                None
            }
        }
    }

    /// An int64 field: protobuf's JSON mapping writes int64 as a string of digits (`"3"`), and
    /// accepts plain numbers too, so both are taken.
    pub(crate) fn int64(&self, problems: &mut Problems, name: &str) -> Option<i64> {
        let node = self.node(name)?;
        as_integer(
            problems,
            node,
            &self.path_of(name),
            i64::MIN.into(),
            i64::MAX.into(),
            "int64",
        )
        .and_then(|value| i64::try_from(value).ok())
    }

    /// An int32 field (hyperparameter trial counts, disk size); the same encodings as int64.
    pub(crate) fn int32(&self, problems: &mut Problems, name: &str) -> Option<i32> {
        let node = self.node(name)?;
        as_integer(
            problems,
            node,
            &self.path_of(name),
            i32::MIN.into(),
            i32::MAX.into(),
            "int32",
        )
        .and_then(|value| i32::try_from(value).ok())
    }

    /// A double field: a number, or a numeric string (protobuf JSON accepts both).
    pub(crate) fn double(&self, problems: &mut Problems, name: &str) -> Option<f64> {
        let node = self.node(name)?;
        as_double(problems, node, &self.path_of(name))
    }

    pub(crate) fn string_list(&self, problems: &mut Problems, name: &str) -> Option<Vec<String>> {
        let node = self.node(name)?;
        let path = self.path_of(name);
        let Node::Seq(items) = node else {
            problems.push(&path, expected("a list of strings", node));
            return None;
        };
        let mut values = Vec::with_capacity(items.len());
        let mut all_good = true;
        for (index, value) in items.iter().enumerate() {
            match as_string(problems, value, &item(&path, index)) {
                Some(text) => values.push(text),
                None => all_good = false,
            }
        }
        all_good.then_some(values)
    }

    pub(crate) fn list(&self, problems: &mut Problems, name: &str) -> Option<&'n [Node]> {
        let node = self.node(name)?;
        match node {
            Node::Seq(items) => Some(items),
            other => {
                problems.push(&self.path_of(name), expected("a list", other));
                None
            }
        }
    }

    /// A map of string to string (`labels`).
    pub(crate) fn string_map(
        &self,
        problems: &mut Problems,
        name: &str,
    ) -> Option<BTreeMap<String, String>> {
        let node = self.node(name)?;
        let path = self.path_of(name);
        let Node::Map(entries) = node else {
            problems.push(&path, expected("a map of strings", node));
            return None;
        };
        let mut values = BTreeMap::new();
        let mut all_good = true;
        for (key, value) in entries {
            let Node::Str(key) = key else {
                problems.push(
                    &path,
                    format!("keys must be strings, found {}", key.describe()),
                );
                all_good = false;
                continue;
            };
            let value_path = child(&path, key);
            if values.contains_key(key) {
                problems.push(&value_path, "given more than once");
                all_good = false;
                continue;
            }
            match as_string(problems, value, &value_path) {
                Some(text) => {
                    values.insert(key.clone(), text);
                }
                None => all_good = false,
            }
        }
        all_good.then_some(values)
    }

    /// An enum field written as its API name, with a did-you-mean for near misses.
    pub(crate) fn enumeration<T: ApiEnum>(&self, problems: &mut Problems, name: &str) -> Option<T> {
        let node = self.node(name)?;
        as_enum(problems, node, &self.path_of(name))
    }
}

/// An enum whose values are written as fixed API names (`BASIC_GPU`, `NVIDIA_TESLA_T4`, …).
pub(crate) trait ApiEnum: Sized + Copy + 'static {
    const ALL: &'static [Self];
    fn api_name(self) -> &'static str;
}

pub(crate) fn parse_enum<T: ApiEnum>(text: &str) -> Option<T> {
    T::ALL
        .iter()
        .copied()
        .find(|value| value.api_name() == text)
}

pub(crate) fn as_enum<T: ApiEnum>(problems: &mut Problems, node: &Node, path: &str) -> Option<T> {
    let text = as_string(problems, node, path)?;
    if let Some(value) = parse_enum::<T>(&text) {
        return Some(value);
    }
    let names = T::ALL.iter().map(|value| value.api_name());
    match suggest(&text, names.clone()) {
        Some(suggestion) => problems.push(
            path,
            format!("unknown value {}; did you mean {suggestion}?", quote(&text)),
        ),
        None => problems.push(
            path,
            format!(
                "unknown value {}; expected one of {}",
                quote(&text),
                names.collect::<Vec<_>>().join(", ")
            ),
        ),
    }
    None
}

pub(crate) fn expected(what: &str, found: &Node) -> String {
    format!("expected {what}, found {}", found.describe())
}

pub(crate) fn as_string(problems: &mut Problems, node: &Node, path: &str) -> Option<String> {
    match node {
        Node::Str(value) => Some(value.clone()),
        other => {
            problems.push(path, expected("a string", other));
            None
        }
    }
}

pub(crate) fn as_integer(
    problems: &mut Problems,
    node: &Node,
    path: &str,
    min: i128,
    max: i128,
    kind: &str,
) -> Option<i128> {
    let value = match node {
        Node::Int(value) => *value,
        Node::Str(text) if is_decimal_integer(text) => match text.parse::<i128>() {
            Ok(value) => value,
            Err(_) => {
                problems.push(path, format!("{} is out of range for {kind}", quote(text)));
                return None;
            }
        },
        Node::Str(_) => {
            problems.push(
                path,
                expected("an integer (a number or a string of digits)", node),
            );
            return None;
        }
        other => {
            problems.push(path, expected("an integer", other));
            return None;
        }
    };
    if value < min || value > max {
        problems.push(path, format!("{value} is out of range for {kind}"));
        return None;
    }
    Some(value)
}

fn is_decimal_integer(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    !digits.is_empty() && digits.len() <= 40 && digits.bytes().all(|b| b.is_ascii_digit())
}

pub(crate) fn as_double(problems: &mut Problems, node: &Node, path: &str) -> Option<f64> {
    let value = match node {
        Node::Int(value) => *value as f64,
        Node::Float(value) => *value,
        Node::Str(text) => match text.trim().parse::<f64>() {
            Ok(value) if text.trim() == text && !text.is_empty() => value,
            _ => {
                problems.push(path, expected("a number", node));
                return None;
            }
        },
        other => {
            problems.push(path, expected("a number", other));
            return None;
        }
    };
    if !value.is_finite() {
        problems.push(
            path,
            format!("must be a finite number, found {}", format_float(value)),
        );
        return None;
    }
    Some(value)
}

/// The closest known name to `input`, if one is close enough to be what was meant.
///
/// A name that differs only in case, `_` or `-` (`master_type`, `MASTERTYPE`, `basic_gpu`) is
/// always suggested; otherwise the nearest name by edit distance within about a third of the
/// length (at least 1, at most 3), the first in `candidates` order on ties.
pub(crate) fn suggest<'a>(
    input: &str,
    candidates: impl IntoIterator<Item = &'a str> + Clone,
) -> Option<&'a str> {
    let normalized_input = normalize(input);
    if let Some(exact) = candidates
        .clone()
        .into_iter()
        .find(|candidate| normalize(candidate) == normalized_input)
    {
        return Some(exact);
    }
    let budget = (input.chars().count() / 3).clamp(1, 3);
    let lowered = input.to_lowercase();
    let mut best: Option<(usize, &'a str)> = None;
    for candidate in candidates {
        let distance = edit_distance(&lowered, &candidate.to_lowercase());
        if distance <= budget && best.is_none_or(|(best_distance, _)| distance < best_distance) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, candidate)| candidate)
}

fn normalize(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

/// Levenshtein distance with adjacent transpositions counted as one edit (`mastreType`).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Field names are short; a config key of absurd length is not worth a quadratic table.
    if a.len() > 200 || b.len() > 200 {
        return usize::MAX;
    }
    let width = b.len() + 1;
    let mut table = vec![0usize; (a.len() + 1) * width];
    for (i, cell) in table.iter_mut().step_by(width).enumerate() {
        *cell = i;
    }
    for (j, cell) in table.iter_mut().take(width).enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (table[(i - 1) * width + j] + 1)
                .min(table[i * width + j - 1] + 1)
                .min(table[(i - 1) * width + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(table[(i - 2) * width + j - 2] + 1);
            }
            table[i * width + j] = best;
        }
    }
    table[a.len() * width + b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        let names = ["masterType", "masterConfig", "workerType", "scaleTier"];
        assert_eq!(suggest("masterTyp", names), Some("masterType"));
        assert_eq!(suggest("master_type", names), Some("masterType"));
        assert_eq!(suggest("MASTERTYPE", names), Some("masterType"));
        assert_eq!(suggest("mastreType", names), Some("masterType"));
        assert_eq!(suggest("scale_tier", names), Some("scaleTier"));
        assert_eq!(suggest("gpu", names), None);
        assert_eq!(suggest("region", names), None);
    }

    #[test]
    fn edit_distance_counts_transpositions_once() {
        assert_eq!(edit_distance("abc", "abc"), 0);
        assert_eq!(edit_distance("abc", "acb"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn integers_accept_digit_strings_and_refuse_the_rest() {
        let mut problems = Problems::default();
        let range = (i64::MIN.into(), i64::MAX.into());
        let check = |problems: &mut Problems, node: Node| {
            as_integer(problems, &node, "p", range.0, range.1, "int64")
        };
        assert_eq!(check(&mut problems, Node::Int(3)), Some(3));
        assert_eq!(check(&mut problems, Node::Str("42".into())), Some(42));
        assert_eq!(check(&mut problems, Node::Str("-7".into())), Some(-7));
        assert_eq!(check(&mut problems, Node::Str("4.0".into())), None);
        assert_eq!(check(&mut problems, Node::Float(4.0)), None);
        assert_eq!(
            check(&mut problems, Node::Str("99999999999999999999".into())),
            None
        );
        let messages: Vec<String> = problems
            .into_errors()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            messages,
            [
                "p: expected an integer (a number or a string of digits), found string \"4.0\"",
                "p: expected an integer, found number 4.0",
                "p: 99999999999999999999 is out of range for int64",
            ]
        );
    }
}
