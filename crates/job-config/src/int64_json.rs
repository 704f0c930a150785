//! Serde helpers for the v1 API's int64 fields (`trainingStep`, `completedTrialCount`,
//! `jobPosition`, …): protobuf's JSON mapping writes them as strings and accepts a string or a
//! number. The job resources of `jobs` and the tuning output of `hypertune` both use them, as
//! `#[serde(with = "job_config::int64_string")]`.

/// An `i64` as a JSON string; a string or a number on input.
pub mod int64_string {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &i64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&value.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Number(i64),
            Text(String),
        }
        match Either::deserialize(deserializer)? {
            Either::Number(n) => Ok(n),
            Either::Text(text) => text.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// An optional `i64` as a JSON string (or null); a string, a number or null on input.
pub mod int64_string_option {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<i64>, serializer: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(v) => super::int64_string::serialize(v, serializer),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<i64>, D::Error> {
        #[derive(Deserialize)]
        struct Wrapped(#[serde(with = "super::int64_string")] i64);
        Ok(Option::<Wrapped>::deserialize(deserializer)?.map(|w| w.0))
    }
}
