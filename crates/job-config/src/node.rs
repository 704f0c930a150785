//! A format-neutral document tree that both the YAML and the JSON parser fill in.
//!
//! serde does the lexing and parsing (serde_yaml / serde_json call our visitor); we keep every map
//! entry in document order, duplicates and non-string keys included, so that the validating walk in
//! [`crate::walk`] can report those problems *with their field path* instead of the parser
//! stopping at the first one without saying where in the schema it was.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// One value of a parsed document.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    Null,
    Bool(bool),
    /// Integers are widened to i128 so that both i64 and u64 fit without loss.
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in document order; keys are nodes because YAML allows `1: x` or `[a]: x`.
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// A short description of what was found, used in "expected X, found Y" messages.
    pub(crate) fn describe(&self) -> String {
        match self {
            Node::Null => "null".to_string(),
            Node::Bool(value) => format!("boolean {value}"),
            Node::Int(value) => format!("number {value}"),
            Node::Float(value) => format!("number {}", format_float(*value)),
            Node::Str(value) => format!("string {}", quote(value)),
            Node::Seq(_) => "a list".to_string(),
            Node::Map(_) => "a map".to_string(),
        }
    }
}

/// Formats a float the way a person wrote it where possible (`3.5`, `1e30`), never `3.5000001`.
pub(crate) fn format_float(value: f64) -> String {
    if value.is_finite() && value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.1}")
    } else {
        format!("{value}")
    }
}

/// Formats a number that a schema field holds as a double: `0.1`, and whole numbers without a
/// fraction (`64`), as people write them in a config.
pub(crate) fn format_number(value: f64) -> String {
    if value.is_finite() && value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        format!("{value}")
    }
}

/// Quotes a user-supplied string for an error message, escaping control characters and cutting
/// very long values so a message never turns into a dump of the input.
pub(crate) fn quote(value: &str) -> String {
    const MAX_CHARS: usize = 80;
    let mut shown: String = value.chars().take(MAX_CHARS).collect();
    if value.chars().count() > MAX_CHARS {
        shown.push('…');
    }
    format!("{shown:?}")
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a YAML or JSON value")
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Node, E> {
        Ok(Node::Bool(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Node, E> {
        Ok(Node::Int(i128::from(value)))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Node, E> {
        Ok(Node::Int(i128::from(value)))
    }

    fn visit_i128<E: de::Error>(self, value: i128) -> Result<Node, E> {
        Ok(Node::Int(value))
    }

    fn visit_u128<E: de::Error>(self, value: u128) -> Result<Node, E> {
        // Beyond i128 nothing in the schema could accept it anyway; keep it as a float so the
        // walk reports "expected an integer, found number 3.4e38" rather than wrapping.
        Ok(i128::try_from(value)
            .map(Node::Int)
            .unwrap_or(Node::Float(value as f64)))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Node, E> {
        Ok(Node::Float(value))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Node, E> {
        Ok(Node::Str(value.to_string()))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Node, E> {
        Ok(Node::Str(value))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        Node::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some((key, value)) = map.next_entry::<Node, Node>()? {
            entries.push((key, value));
        }
        Ok(Node::Map(entries))
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<Node, A::Error> {
        // serde_yaml hands explicit tags (`!foo value`) to visit_enum. Nothing in the
        // trainingInput schema uses tags, and silently dropping one could change a value's meaning.
        let (tag, _variant) = data.variant::<String>()?;
        Err(de::Error::custom(format!(
            "YAML tag !{tag} is not supported in a job config; write plain values"
        )))
    }
}

/// Which syntax a document was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceFormat {
    Yaml,
    Json,
}

impl fmt::Display for SourceFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SourceFormat::Yaml => "YAML",
            SourceFormat::Json => "JSON",
        })
    }
}

/// Parses `text` as JSON when it looks like JSON (first non-blank character `{` or `[`), else as
/// YAML.
///
/// There is deliberately no YAML fallback for a document that starts like JSON: YAML would read
/// broken JSON such as `{"scaleTier": }` as a valid flow mapping with a null value, and the
/// mistake would pass silently. A YAML flow mapping at the top level is rare; its JSON error says
/// why it was read as JSON.
pub(crate) fn parse_document(text: &str) -> Result<(Node, SourceFormat), (SourceFormat, String)> {
    let body = text.strip_prefix('\u{feff}').unwrap_or(text);
    let looks_like_json = matches!(body.trim_start().chars().next(), Some('{' | '['));
    if looks_like_json {
        serde_json::from_str::<Node>(body)
            .map(|node| (node, SourceFormat::Json))
            .map_err(|error| {
                (
                    SourceFormat::Json,
                    format!("{error} (a document starting with '{{' or '[' is read as JSON)"),
                )
            })
    } else {
        serde_yaml::from_str::<Node>(body)
            .map(|node| (node, SourceFormat::Yaml))
            .map_err(|error| (SourceFormat::Yaml, error.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_keeps_duplicate_and_non_string_keys_for_the_walk_to_report() {
        let (node, format) = parse_document("a: 1\na: 2\n3: x\n").unwrap();
        assert_eq!(format, SourceFormat::Yaml);
        let Node::Map(entries) = node else {
            panic!("expected a map")
        };
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[2].0, Node::Int(3));
    }

    #[test]
    fn json_is_detected_by_content_and_keeps_duplicates() {
        let (node, format) = parse_document(" \n{\"a\": 1, \"a\": \"2\"}").unwrap();
        assert_eq!(format, SourceFormat::Json);
        assert_eq!(
            node,
            Node::Map(vec![
                (Node::Str("a".into()), Node::Int(1)),
                (Node::Str("a".into()), Node::Str("2".into())),
            ])
        );
    }

    #[test]
    fn document_starting_like_json_is_json_only() {
        // Valid YAML (a flow mapping with a null value), but it starts like JSON and is broken
        // JSON: refusing it beats reading the missing value as null.
        let (format, message) =
            parse_document("{\"trainingInput\": {\"scaleTier\": }}").unwrap_err();
        assert_eq!(format, SourceFormat::Json);
        assert!(message.contains("read as JSON"), "{message}");
        let (format, _) = parse_document("{trainingInput: {scaleTier: BASIC}}").unwrap_err();
        assert_eq!(format, SourceFormat::Json);
        // Flow mappings below a block key stay YAML.
        let (_, format) = parse_document("trainingInput: {scaleTier: BASIC}").unwrap();
        assert_eq!(format, SourceFormat::Yaml);
    }

    #[test]
    fn broken_json_reports_the_json_error_with_position() {
        let (format, message) = parse_document("{\"a\": 1,, }").unwrap_err();
        assert_eq!(format, SourceFormat::Json);
        assert!(message.contains("line 1"), "{message}");
    }

    #[test]
    fn yaml_tags_are_refused() {
        let (format, message) = parse_document("a: !custom 5\n").unwrap_err();
        assert_eq!(format, SourceFormat::Yaml);
        assert!(message.contains("YAML tag !custom"), "{message}");
    }

    #[test]
    fn unquoted_version_is_a_float_and_described_as_written() {
        let (node, _) = parse_document("v: 3.5\nw: 2.0\n").unwrap();
        let Node::Map(entries) = node else {
            panic!("expected a map")
        };
        assert_eq!(entries[0].1.describe(), "number 3.5");
        assert_eq!(entries[1].1.describe(), "number 2.0");
    }
}
