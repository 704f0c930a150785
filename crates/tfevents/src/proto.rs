//! Hand-written `prost` messages for the part of TensorBoard's event schema this crate writes and
//! reads back: `Event`, `Summary`, `Summary.Value`, `SummaryMetadata`
//! (`tensorboard/compat/proto/{event,summary}.proto`). The `TensorProto` inside a value is
//! `savedmodel-format`'s, the one TensorFlow message the workspace already defines.
//!
//! Why hand-written: as in `savedmodel-format`, the schema subset is small and frozen, and
//! generating it would need `protoc` at build time. Fields this crate never writes (images,
//! histograms, audio, graph defs, log messages) are left out; prost skips them when decoding a
//! file TensorFlow wrote, so [`crate::read_events`] still reads such files.

use savedmodel_format::proto::TensorProto;

/// One record of an event file.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Event {
    /// Seconds since the Unix epoch.
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    /// The global step; omitted on the wire when 0, as TensorFlow's writer does.
    #[prost(int64, tag = "2")]
    pub step: i64,
    /// `oneof what`: only the two members this crate uses.
    #[prost(oneof = "event::What", tags = "3, 5")]
    pub what: Option<event::What>,
    #[prost(message, optional, tag = "10")]
    pub source_metadata: Option<SourceMetadata>,
}

pub mod event {
    /// `Event.what`.
    #[derive(Clone, PartialEq, ::prost::Oneof)]
    pub enum What {
        /// `"brain.Event:2"` in the first record of a file.
        #[prost(string, tag = "3")]
        FileVersion(String),
        #[prost(message, tag = "5")]
        Summary(super::Summary),
    }
}

/// `SourceMetadata`: which library wrote the file.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct SourceMetadata {
    #[prost(string, tag = "1")]
    pub writer: String,
}

/// `Summary`: a list of tagged values (Keras writes one per event).
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Summary {
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<SummaryValue>,
}

/// `Summary.Value`.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct SummaryValue {
    #[prost(string, tag = "1")]
    pub tag: String,
    #[prost(string, tag = "7")]
    pub node_name: String,
    #[prost(message, optional, tag = "9")]
    pub metadata: Option<SummaryMetadata>,
    /// `oneof value`: the two scalar carriers (`simple_value`, the TF1 form, and `tensor`).
    #[prost(oneof = "summary_value::Value", tags = "2, 8")]
    pub value: Option<summary_value::Value>,
}

pub mod summary_value {
    /// `Summary.Value.value`.
    // One value is built per scalar written; boxing the tensor would only add an allocation.
    #[allow(clippy::large_enum_variant)]
    #[derive(Clone, PartialEq, ::prost::Oneof)]
    pub enum Value {
        #[prost(float, tag = "2")]
        SimpleValue(f32),
        #[prost(message, tag = "8")]
        Tensor(super::TensorProto),
    }
}

/// `SummaryMetadata`: which TensorBoard plugin owns a value.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct SummaryMetadata {
    #[prost(message, optional, tag = "1")]
    pub plugin_data: Option<PluginData>,
    #[prost(string, tag = "2")]
    pub display_name: String,
    #[prost(string, tag = "3")]
    pub summary_description: String,
    /// `DataClass` enum: 0 unknown, 1 scalar, 2 tensor, 3 blob sequence.
    #[prost(int32, tag = "4")]
    pub data_class: i32,
}

/// `SummaryMetadata.PluginData`.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct PluginData {
    #[prost(string, tag = "1")]
    pub plugin_name: String,
    #[prost(bytes = "vec", tag = "2")]
    pub content: Vec<u8>,
}
