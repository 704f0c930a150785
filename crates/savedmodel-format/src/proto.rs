//! Hand-written `prost` messages for the subset of TensorFlow's protobuf schema that a
//! SavedModel and its variables bundle use.
//!
//! Why hand-written: generating code needs `protoc` (or a pure-Rust compiler) at build time, and
//! the schema we need is small and frozen. Field numbers and wire types follow TensorFlow's
//! `.proto` files (`saved_model.proto`, `meta_graph.proto`, `graph.proto`, `node_def.proto`,
//! `attr_value.proto`, `tensor.proto`, `tensor_shape.proto`, `op_def.proto`, `function.proto`,
//! `saver.proto`, `variable.proto`, `versions.proto`, `saved_object_graph.proto`,
//! `trackable_object_graph.proto`, `tensor_bundle.proto`, `tensor_slice.proto`).
//!
//! Conventions:
//! * Enum-typed fields (`DataType`, `SaverDef.version`, …) are plain `i32`: an enum is a varint on
//!   the wire, and an `i32` keeps values this crate does not know (e.g. `DT_COMPLEX64`) instead
//!   of failing the whole decode. Use [`crate::DataType::from_tf`] to interpret them.
//! * Message fields are `Option<…>` so that *presence* survives a round trip. This matters:
//!   `tf.saved_model.load` treats a meta graph whose `object_graph_def` is present (even empty)
//!   as a TF2 model, so a TF1-style writer must leave it `None`.
//! * Maps are `BTreeMap`s so that encoding is deterministic (same model → same bytes).
//! * Sub-messages that nothing in this project interprets (`StructuredValue`, `FullTypeDef`,
//!   `GraphDebugInfo`, `ResourceHandleProto`, …) are kept as opaque serialized bytes: a message
//!   and a `bytes` field share the length-delimited wire type, so they round-trip unchanged.
//! * prost drops unknown fields when decoding; re-encoding a TF-written file is therefore not
//!   guaranteed to be byte-identical, only semantically equal for the fields listed here.

use std::collections::BTreeMap;

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Any {
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

// ---------------------------------------------------------------------------------------------
// saved_model.proto, meta_graph.proto, saver.proto
// ---------------------------------------------------------------------------------------------

/// The content of `saved_model.pb`.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct SavedModel {
    #[prost(int64, tag = "1")]
    pub saved_model_schema_version: i64,
    #[prost(message, repeated, tag = "2")]
    pub meta_graphs: Vec<MetaGraphDef>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct MetaGraphDef {
    #[prost(message, optional, tag = "1")]
    pub meta_info_def: Option<MetaInfoDef>,
    #[prost(message, optional, tag = "2")]
    pub graph_def: Option<GraphDef>,
    #[prost(message, optional, tag = "3")]
    pub saver_def: Option<SaverDef>,
    #[prost(btree_map = "string, message", tag = "4")]
    pub collection_def: BTreeMap<String, CollectionDef>,
    #[prost(btree_map = "string, message", tag = "5")]
    pub signature_def: BTreeMap<String, SignatureDef>,
    #[prost(message, repeated, tag = "6")]
    pub asset_file_def: Vec<AssetFileDef>,
    /// Present only in TF2 (object-based) SavedModels; see the module doc about presence.
    #[prost(message, optional, tag = "7")]
    pub object_graph_def: Option<SavedObjectGraph>,
}

/// `MetaGraphDef.MetaInfoDef`.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct MetaInfoDef {
    #[prost(string, tag = "1")]
    pub meta_graph_version: String,
    #[prost(message, optional, tag = "2")]
    pub stripped_op_list: Option<OpList>,
    #[prost(message, optional, tag = "3")]
    pub any_info: Option<Any>,
    #[prost(string, repeated, tag = "4")]
    pub tags: Vec<String>,
    #[prost(string, tag = "5")]
    pub tensorflow_version: String,
    #[prost(string, tag = "6")]
    pub tensorflow_git_version: String,
    #[prost(bool, tag = "7")]
    pub stripped_default_attrs: bool,
    #[prost(btree_map = "string, string", tag = "8")]
    pub function_aliases: BTreeMap<String, String>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct CollectionDef {
    #[prost(oneof = "collection_def::Kind", tags = "1, 2, 3, 4, 5")]
    pub kind: Option<collection_def::Kind>,
}

pub mod collection_def {
    #[derive(Clone, PartialEq, ::prost::Oneof)]
    pub enum Kind {
        #[prost(message, tag = "1")]
        NodeList(NodeList),
        #[prost(message, tag = "2")]
        BytesList(BytesList),
        #[prost(message, tag = "3")]
        Int64List(Int64List),
        #[prost(message, tag = "4")]
        FloatList(FloatList),
        #[prost(message, tag = "5")]
        AnyList(AnyList),
    }

    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct NodeList {
        #[prost(string, repeated, tag = "1")]
        pub value: Vec<String>,
    }

    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct BytesList {
        #[prost(bytes = "vec", repeated, tag = "1")]
        pub value: Vec<Vec<u8>>,
    }

    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct Int64List {
        #[prost(int64, repeated, tag = "1")]
        pub value: Vec<i64>,
    }

    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct FloatList {
        #[prost(float, repeated, tag = "1")]
        pub value: Vec<f32>,
    }

    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct AnyList {
        #[prost(message, repeated, tag = "1")]
        pub value: Vec<super::Any>,
    }
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct SignatureDef {
    #[prost(btree_map = "string, message", tag = "1")]
    pub inputs: BTreeMap<String, TensorInfo>,
    #[prost(btree_map = "string, message", tag = "2")]
    pub outputs: BTreeMap<String, TensorInfo>,
    #[prost(string, tag = "3")]
    pub method_name: String,
    #[prost(btree_map = "string, message", tag = "4")]
    pub defaults: BTreeMap<String, TensorProto>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct TensorInfo {
    #[prost(oneof = "tensor_info::Encoding", tags = "1, 4, 5")]
    pub encoding: Option<tensor_info::Encoding>,
    /// `DataType` enum number.
    #[prost(int32, tag = "2")]
    pub dtype: i32,
    #[prost(message, optional, tag = "3")]
    pub tensor_shape: Option<TensorShapeProto>,
}

impl TensorInfo {
    /// The dense tensor name (`"node:index"`), or `None` for sparse/composite encodings.
    pub fn dense_name(&self) -> Option<&str> {
        match &self.encoding {
            Some(tensor_info::Encoding::Name(name)) => Some(name),
            _ => None,
        }
    }
}

pub mod tensor_info {
    #[derive(Clone, PartialEq, ::prost::Oneof)]
    pub enum Encoding {
        #[prost(string, tag = "1")]
        Name(String),
        #[prost(message, tag = "4")]
        CooSparse(CooSparse),
        #[prost(message, tag = "5")]
        CompositeTensor(CompositeTensor),
    }

    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct CooSparse {
        #[prost(string, tag = "1")]
        pub values_tensor_name: String,
        #[prost(string, tag = "2")]
        pub indices_tensor_name: String,
        #[prost(string, tag = "3")]
        pub dense_shape_tensor_name: String,
    }

    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct CompositeTensor {
        /// Serialized `TypeSpecProto` (kept opaque).
        #[prost(bytes = "vec", optional, tag = "1")]
        pub type_spec: Option<Vec<u8>>,
        #[prost(message, repeated, tag = "2")]
        pub components: Vec<super::TensorInfo>,
    }
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct AssetFileDef {
    #[prost(message, optional, tag = "1")]
    pub tensor_info: Option<TensorInfo>,
    #[prost(string, tag = "2")]
    pub filename: String,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct SaverDef {
    #[prost(string, tag = "1")]
    pub filename_tensor_name: String,
    #[prost(string, tag = "2")]
    pub save_tensor_name: String,
    #[prost(string, tag = "3")]
    pub restore_op_name: String,
    #[prost(int32, tag = "4")]
    pub max_to_keep: i32,
    #[prost(bool, tag = "5")]
    pub sharded: bool,
    #[prost(float, tag = "6")]
    pub keep_checkpoint_every_n_hours: f32,
    /// `CheckpointFormatVersion`: LEGACY = 0, V1 = 1, V2 = 2.
    #[prost(int32, tag = "7")]
    pub version: i32,
}

impl SaverDef {
    /// `SaverDef.CheckpointFormatVersion.V2`, the only format this crate reads and writes.
    pub const VERSION_V2: i32 = 2;
}

// ---------------------------------------------------------------------------------------------
// graph.proto, versions.proto, node_def.proto, attr_value.proto
// ---------------------------------------------------------------------------------------------

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct GraphDef {
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeDef>,
    #[prost(message, optional, tag = "2")]
    pub library: Option<FunctionDefLibrary>,
    /// Deprecated single version number; ignored by TF.
    #[prost(int32, tag = "3")]
    pub version: i32,
    #[prost(message, optional, tag = "4")]
    pub versions: Option<VersionDef>,
    /// Serialized `GraphDebugInfo` (kept opaque).
    #[prost(bytes = "vec", optional, tag = "5")]
    pub debug_info: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct VersionDef {
    #[prost(int32, tag = "1")]
    pub producer: i32,
    #[prost(int32, tag = "2")]
    pub min_consumer: i32,
    #[prost(int32, repeated, tag = "3")]
    pub bad_consumers: Vec<i32>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct NodeDef {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub op: String,
    /// Data inputs (`"node"`, `"node:k"`, or `"node:out_arg:k"` inside functions), then control
    /// inputs (`"^node"`).
    #[prost(string, repeated, tag = "3")]
    pub input: Vec<String>,
    #[prost(string, tag = "4")]
    pub device: String,
    #[prost(btree_map = "string, message", tag = "5")]
    pub attr: BTreeMap<String, AttrValue>,
    /// Serialized `NodeDef.ExperimentalDebugInfo` (kept opaque).
    #[prost(bytes = "vec", optional, tag = "6")]
    pub experimental_debug_info: Option<Vec<u8>>,
    /// Serialized `FullTypeDef` (kept opaque).
    #[prost(bytes = "vec", optional, tag = "7")]
    pub experimental_type: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct AttrValue {
    #[prost(oneof = "attr_value::Value", tags = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10")]
    pub value: Option<attr_value::Value>,
}

pub mod attr_value {
    // Boxing `Tensor` would shrink the enum but make matching on it awkward for every user;
    // attrs are few per node, so the size does not matter.
    #[allow(clippy::large_enum_variant)]
    #[derive(Clone, PartialEq, ::prost::Oneof)]
    pub enum Value {
        #[prost(message, tag = "1")]
        List(ListValue),
        #[prost(bytes = "vec", tag = "2")]
        S(Vec<u8>),
        #[prost(int64, tag = "3")]
        I(i64),
        #[prost(float, tag = "4")]
        F(f32),
        #[prost(bool, tag = "5")]
        B(bool),
        /// `DataType` enum number.
        #[prost(int32, tag = "6")]
        Type(i32),
        #[prost(message, tag = "7")]
        Shape(super::TensorShapeProto),
        #[prost(message, tag = "8")]
        Tensor(super::TensorProto),
        #[prost(string, tag = "9")]
        Placeholder(String),
        #[prost(message, tag = "10")]
        Func(super::NameAttrList),
    }

    /// `AttrValue.ListValue`.
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct ListValue {
        #[prost(bytes = "vec", repeated, tag = "2")]
        pub s: Vec<Vec<u8>>,
        #[prost(int64, repeated, tag = "3")]
        pub i: Vec<i64>,
        #[prost(float, repeated, tag = "4")]
        pub f: Vec<f32>,
        #[prost(bool, repeated, tag = "5")]
        pub b: Vec<bool>,
        /// `DataType` enum numbers.
        #[prost(int32, repeated, tag = "6")]
        pub r#type: Vec<i32>,
        #[prost(message, repeated, tag = "7")]
        pub shape: Vec<super::TensorShapeProto>,
        #[prost(message, repeated, tag = "8")]
        pub tensor: Vec<super::TensorProto>,
        #[prost(message, repeated, tag = "9")]
        pub func: Vec<super::NameAttrList>,
    }
}

impl AttrValue {
    pub fn from_type(dtype: crate::DataType) -> AttrValue {
        AttrValue {
            value: Some(attr_value::Value::Type(dtype as i32)),
        }
    }
    pub fn from_shape(shape: TensorShapeProto) -> AttrValue {
        AttrValue {
            value: Some(attr_value::Value::Shape(shape)),
        }
    }
    pub fn from_tensor(tensor: TensorProto) -> AttrValue {
        AttrValue {
            value: Some(attr_value::Value::Tensor(tensor)),
        }
    }
    pub fn from_string(s: impl Into<Vec<u8>>) -> AttrValue {
        AttrValue {
            value: Some(attr_value::Value::S(s.into())),
        }
    }
    pub fn from_int(i: i64) -> AttrValue {
        AttrValue {
            value: Some(attr_value::Value::I(i)),
        }
    }
    pub fn from_bool(b: bool) -> AttrValue {
        AttrValue {
            value: Some(attr_value::Value::B(b)),
        }
    }
    pub fn from_list(list: attr_value::ListValue) -> AttrValue {
        AttrValue {
            value: Some(attr_value::Value::List(list)),
        }
    }

    /// The `DataType` enum number if this is a `type` attr.
    pub fn as_type(&self) -> Option<i32> {
        match &self.value {
            Some(attr_value::Value::Type(t)) => Some(*t),
            _ => None,
        }
    }
    pub fn as_shape(&self) -> Option<&TensorShapeProto> {
        match &self.value {
            Some(attr_value::Value::Shape(s)) => Some(s),
            _ => None,
        }
    }
    pub fn as_tensor(&self) -> Option<&TensorProto> {
        match &self.value {
            Some(attr_value::Value::Tensor(t)) => Some(t),
            _ => None,
        }
    }
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match &self.value {
            Some(attr_value::Value::S(s)) => Some(s),
            _ => None,
        }
    }
    pub fn as_int(&self) -> Option<i64> {
        match &self.value {
            Some(attr_value::Value::I(i)) => Some(*i),
            _ => None,
        }
    }
    pub fn as_float(&self) -> Option<f32> {
        match &self.value {
            Some(attr_value::Value::F(f)) => Some(*f),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match &self.value {
            Some(attr_value::Value::B(b)) => Some(*b),
            _ => None,
        }
    }
    pub fn as_list(&self) -> Option<&attr_value::ListValue> {
        match &self.value {
            Some(attr_value::Value::List(l)) => Some(l),
            _ => None,
        }
    }
    pub fn as_func(&self) -> Option<&NameAttrList> {
        match &self.value {
            Some(attr_value::Value::Func(f)) => Some(f),
            _ => None,
        }
    }
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct NameAttrList {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(btree_map = "string, message", tag = "2")]
    pub attr: BTreeMap<String, AttrValue>,
}

// ---------------------------------------------------------------------------------------------
// tensor.proto, tensor_shape.proto, tensor_slice.proto, resource_handle.proto
// ---------------------------------------------------------------------------------------------

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct TensorProto {
    /// `DataType` enum number.
    #[prost(int32, tag = "1")]
    pub dtype: i32,
    #[prost(message, optional, tag = "2")]
    pub tensor_shape: Option<TensorShapeProto>,
    #[prost(int32, tag = "3")]
    pub version_number: i32,
    /// Raw row-major little-endian buffer (fixed-size dtypes only).
    #[prost(bytes = "vec", tag = "4")]
    pub tensor_content: Vec<u8>,
    /// DT_HALF / DT_BFLOAT16 bit patterns.
    #[prost(int32, repeated, tag = "13")]
    pub half_val: Vec<i32>,
    #[prost(float, repeated, tag = "5")]
    pub float_val: Vec<f32>,
    #[prost(double, repeated, tag = "6")]
    pub double_val: Vec<f64>,
    /// DT_INT32, DT_INT16, DT_UINT16, DT_INT8, DT_UINT8.
    #[prost(int32, repeated, tag = "7")]
    pub int_val: Vec<i32>,
    #[prost(bytes = "vec", repeated, tag = "8")]
    pub string_val: Vec<Vec<u8>>,
    #[prost(float, repeated, tag = "9")]
    pub scomplex_val: Vec<f32>,
    #[prost(int64, repeated, tag = "10")]
    pub int64_val: Vec<i64>,
    #[prost(bool, repeated, tag = "11")]
    pub bool_val: Vec<bool>,
    #[prost(double, repeated, tag = "12")]
    pub dcomplex_val: Vec<f64>,
    /// Serialized `ResourceHandleProto`s (kept opaque).
    #[prost(bytes = "vec", repeated, tag = "14")]
    pub resource_handle_val: Vec<Vec<u8>>,
    /// Serialized `VariantTensorDataProto`s (kept opaque).
    #[prost(bytes = "vec", repeated, tag = "15")]
    pub variant_val: Vec<Vec<u8>>,
    #[prost(uint32, repeated, tag = "16")]
    pub uint32_val: Vec<u32>,
    #[prost(uint64, repeated, tag = "17")]
    pub uint64_val: Vec<u64>,
    #[prost(bytes = "vec", tag = "18")]
    pub float8_val: Vec<u8>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct TensorShapeProto {
    #[prost(message, repeated, tag = "2")]
    pub dim: Vec<tensor_shape_proto::Dim>,
    #[prost(bool, tag = "3")]
    pub unknown_rank: bool,
}

pub mod tensor_shape_proto {
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct Dim {
        /// `-1` for an unknown dimension.
        #[prost(int64, tag = "1")]
        pub size: i64,
        #[prost(string, tag = "2")]
        pub name: String,
    }
}

impl TensorProto {
    /// A tensor of `dtype` and shape `dims` with no values yet: set a typed list (`float_val`,
    /// …) or `tensor_content` next.
    pub fn with_shape(dtype: crate::DataType, dims: &[i64]) -> TensorProto {
        TensorProto {
            dtype: dtype as i32,
            tensor_shape: Some(TensorShapeProto::from_dims(dims)),
            ..Default::default()
        }
    }
}

impl TensorShapeProto {
    /// A known-rank shape; use `-1` for unknown dimensions.
    pub fn from_dims(dims: &[i64]) -> TensorShapeProto {
        TensorShapeProto {
            dim: dims
                .iter()
                .map(|&size| tensor_shape_proto::Dim {
                    size,
                    name: String::new(),
                })
                .collect(),
            unknown_rank: false,
        }
    }

    /// The dimension sizes, or `None` when the rank is unknown.
    pub fn dims(&self) -> Option<Vec<i64>> {
        if self.unknown_rank {
            None
        } else {
            Some(self.dim.iter().map(|d| d.size).collect())
        }
    }
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct TensorSliceProto {
    #[prost(message, repeated, tag = "1")]
    pub extent: Vec<tensor_slice_proto::Extent>,
}

pub mod tensor_slice_proto {
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct Extent {
        #[prost(int64, tag = "1")]
        pub start: i64,
        /// `oneof has_length { int64 length = 2; }`; absent means "all of this dimension".
        #[prost(int64, optional, tag = "2")]
        pub length: Option<i64>,
    }
}

/// `ResourceHandleProto.DtypeAndShape` (used by `ArgDef.handle_data`).
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct DtypeAndShape {
    #[prost(int32, tag = "1")]
    pub dtype: i32,
    #[prost(message, optional, tag = "2")]
    pub shape: Option<TensorShapeProto>,
}

// ---------------------------------------------------------------------------------------------
// op_def.proto, function.proto
// ---------------------------------------------------------------------------------------------

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct OpList {
    #[prost(message, repeated, tag = "1")]
    pub op: Vec<OpDef>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct OpDef {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, repeated, tag = "2")]
    pub input_arg: Vec<op_def::ArgDef>,
    #[prost(message, repeated, tag = "3")]
    pub output_arg: Vec<op_def::ArgDef>,
    #[prost(string, repeated, tag = "20")]
    pub control_output: Vec<String>,
    #[prost(message, repeated, tag = "4")]
    pub attr: Vec<op_def::AttrDef>,
    #[prost(message, optional, tag = "8")]
    pub deprecation: Option<op_def::OpDeprecation>,
    #[prost(string, tag = "5")]
    pub summary: String,
    #[prost(string, tag = "6")]
    pub description: String,
    #[prost(bool, tag = "18")]
    pub is_commutative: bool,
    #[prost(bool, tag = "16")]
    pub is_aggregate: bool,
    #[prost(bool, tag = "17")]
    pub is_stateful: bool,
    #[prost(bool, tag = "19")]
    pub allows_uninitialized_input: bool,
    #[prost(bool, tag = "21")]
    pub is_distributed_communication: bool,
}

pub mod op_def {
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct ArgDef {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub description: String,
        /// Fixed `DataType` enum number (0 when `type_attr`/`type_list_attr` is used).
        #[prost(int32, tag = "3")]
        pub r#type: i32,
        #[prost(string, tag = "4")]
        pub type_attr: String,
        #[prost(string, tag = "5")]
        pub number_attr: String,
        #[prost(string, tag = "6")]
        pub type_list_attr: String,
        #[prost(message, repeated, tag = "7")]
        pub handle_data: Vec<super::DtypeAndShape>,
        #[prost(bool, tag = "16")]
        pub is_ref: bool,
        /// Serialized `FullTypeDef` (kept opaque).
        #[prost(bytes = "vec", optional, tag = "17")]
        pub experimental_full_type: Option<Vec<u8>>,
    }

    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct AttrDef {
        #[prost(string, tag = "1")]
        pub name: String,
        /// `"type"`, `"shape"`, `"list(type)"`, …
        #[prost(string, tag = "2")]
        pub r#type: String,
        #[prost(message, optional, tag = "3")]
        pub default_value: Option<super::AttrValue>,
        #[prost(string, tag = "4")]
        pub description: String,
        #[prost(bool, tag = "5")]
        pub has_minimum: bool,
        #[prost(int64, tag = "6")]
        pub minimum: i64,
        #[prost(message, optional, tag = "7")]
        pub allowed_values: Option<super::AttrValue>,
    }

    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct OpDeprecation {
        #[prost(int32, tag = "1")]
        pub version: i32,
        #[prost(string, tag = "2")]
        pub explanation: String,
    }
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct FunctionDefLibrary {
    #[prost(message, repeated, tag = "1")]
    pub function: Vec<FunctionDef>,
    #[prost(message, repeated, tag = "2")]
    pub gradient: Vec<GradientDef>,
    #[prost(message, repeated, tag = "3")]
    pub registered_gradients: Vec<RegisteredGradient>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct FunctionDef {
    /// Name, input/output args and attrs of the function.
    #[prost(message, optional, tag = "1")]
    pub signature: Option<OpDef>,
    #[prost(btree_map = "string, message", tag = "5")]
    pub attr: BTreeMap<String, AttrValue>,
    #[prost(btree_map = "uint32, message", tag = "7")]
    pub arg_attr: BTreeMap<u32, function_def::ArgAttrs>,
    #[prost(btree_map = "uint32, uint32", tag = "8")]
    pub resource_arg_unique_id: BTreeMap<u32, u32>,
    #[prost(message, repeated, tag = "3")]
    pub node_def: Vec<NodeDef>,
    /// Output arg name → `"node:out_arg:index"` (or an input arg name).
    #[prost(btree_map = "string, string", tag = "4")]
    pub ret: BTreeMap<String, String>,
    /// Control output name → node name.
    #[prost(btree_map = "string, string", tag = "6")]
    pub control_ret: BTreeMap<String, String>,
}

pub mod function_def {
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct ArgAttrs {
        #[prost(btree_map = "string, message", tag = "1")]
        pub attr: std::collections::BTreeMap<String, super::AttrValue>,
    }
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct GradientDef {
    #[prost(string, tag = "1")]
    pub function_name: String,
    #[prost(string, tag = "2")]
    pub gradient_func: String,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct RegisteredGradient {
    #[prost(string, tag = "1")]
    pub gradient_func: String,
    #[prost(string, tag = "2")]
    pub registered_op_type: String,
}

// ---------------------------------------------------------------------------------------------
// variable.proto
// ---------------------------------------------------------------------------------------------

/// Entries of the `variables` / `trainable_variables` collections (bytes_list values).
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct VariableDef {
    #[prost(string, tag = "1")]
    pub variable_name: String,
    #[prost(string, tag = "6")]
    pub initial_value_name: String,
    #[prost(string, tag = "2")]
    pub initializer_name: String,
    #[prost(string, tag = "3")]
    pub snapshot_name: String,
    /// Serialized `SaveSliceInfoDef` (kept opaque).
    #[prost(bytes = "vec", optional, tag = "4")]
    pub save_slice_info_def: Option<Vec<u8>>,
    #[prost(bool, tag = "5")]
    pub is_resource: bool,
    #[prost(bool, tag = "7")]
    pub trainable: bool,
    #[prost(int32, tag = "8")]
    pub synchronization: i32,
    #[prost(int32, tag = "9")]
    pub aggregation: i32,
}

// ---------------------------------------------------------------------------------------------
// saved_object_graph.proto (enough to detect TF2 models and find variables/functions)
// ---------------------------------------------------------------------------------------------

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct SavedObjectGraph {
    /// Node 0 is the root object.
    #[prost(message, repeated, tag = "1")]
    pub nodes: Vec<SavedObject>,
    #[prost(btree_map = "string, message", tag = "2")]
    pub concrete_functions: BTreeMap<String, SavedConcreteFunction>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct SavedObject {
    #[prost(message, repeated, tag = "1")]
    pub children: Vec<ObjectReference>,
    #[prost(message, repeated, tag = "15")]
    pub dependencies: Vec<ObjectReference>,
    #[prost(message, repeated, tag = "3")]
    pub slot_variables: Vec<SlotVariableReference>,
    #[prost(oneof = "saved_object::Kind", tags = "4, 5, 6, 7, 8, 9, 10, 12")]
    pub kind: Option<saved_object::Kind>,
    #[prost(btree_map = "string, message", tag = "11")]
    pub saveable_objects: BTreeMap<String, SaveableObject>,
    #[prost(string, tag = "13")]
    pub registered_name: String,
    #[prost(message, optional, tag = "14")]
    pub serialized_user_proto: Option<Any>,
    #[prost(string, tag = "16")]
    pub registered_saver: String,
}

pub mod saved_object {
    #[derive(Clone, PartialEq, ::prost::Oneof)]
    pub enum Kind {
        #[prost(message, tag = "4")]
        UserObject(super::SavedUserObject),
        #[prost(message, tag = "5")]
        Asset(super::SavedAsset),
        #[prost(message, tag = "6")]
        Function(super::SavedFunction),
        #[prost(message, tag = "7")]
        Variable(super::SavedVariable),
        #[prost(message, tag = "8")]
        BareConcreteFunction(super::SavedBareConcreteFunction),
        #[prost(message, tag = "9")]
        Constant(super::SavedConstant),
        #[prost(message, tag = "10")]
        Resource(super::SavedResource),
        #[prost(message, tag = "12")]
        CapturedTensor(super::CapturedTensor),
    }
}

/// `TrackableObjectGraph.TrackableObject.ObjectReference` (same shape in both object graphs).
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ObjectReference {
    #[prost(int32, tag = "1")]
    pub node_id: i32,
    #[prost(string, tag = "2")]
    pub local_name: String,
}

/// `TrackableObjectGraph.TrackableObject.SlotVariableReference`.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct SlotVariableReference {
    #[prost(int32, tag = "1")]
    pub original_variable_node_id: i32,
    #[prost(string, tag = "2")]
    pub slot_name: String,
    #[prost(int32, tag = "3")]
    pub slot_variable_node_id: i32,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct SaveableObject {
    #[prost(int32, tag = "2")]
    pub save_function: i32,
    #[prost(int32, tag = "3")]
    pub restore_function: i32,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct SavedUserObject {
    /// e.g. `_tf_keras_sequential`, `signature_map`, `trackable_list_wrapper`.
    #[prost(string, tag = "1")]
    pub identifier: String,
    #[prost(message, optional, tag = "2")]
    pub version: Option<VersionDef>,
    #[prost(string, tag = "3")]
    pub metadata: String,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct SavedAsset {
    #[prost(int32, tag = "1")]
    pub asset_file_def_index: i32,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct SavedFunction {
    #[prost(string, repeated, tag = "1")]
    pub concrete_functions: Vec<String>,
    /// Serialized `FunctionSpec` (kept opaque).
    #[prost(bytes = "vec", optional, tag = "2")]
    pub function_spec: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct SavedVariable {
    #[prost(int32, tag = "1")]
    pub dtype: i32,
    #[prost(message, optional, tag = "2")]
    pub shape: Option<TensorShapeProto>,
    #[prost(bool, tag = "3")]
    pub trainable: bool,
    #[prost(int32, tag = "4")]
    pub synchronization: i32,
    #[prost(int32, tag = "5")]
    pub aggregation: i32,
    #[prost(string, tag = "6")]
    pub name: String,
    #[prost(string, tag = "7")]
    pub device: String,
    #[prost(message, repeated, tag = "8")]
    pub experimental_distributed_variable_components: Vec<SavedVariable>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct SavedBareConcreteFunction {
    #[prost(string, tag = "1")]
    pub concrete_function_name: String,
    #[prost(string, repeated, tag = "2")]
    pub argument_keywords: Vec<String>,
    #[prost(int64, tag = "3")]
    pub allowed_positional_arguments: i64,
    /// Serialized `FunctionSpec` (kept opaque).
    #[prost(bytes = "vec", optional, tag = "4")]
    pub function_spec: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct SavedConstant {
    #[prost(string, tag = "1")]
    pub operation: String,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct SavedResource {
    #[prost(string, tag = "1")]
    pub device: String,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct CapturedTensor {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub concrete_function: String,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct SavedConcreteFunction {
    /// Object-graph node ids of captured variables/resources, in the order of the function's
    /// trailing inputs.
    #[prost(int32, repeated, tag = "2")]
    pub bound_inputs: Vec<i32>,
    /// Serialized `StructuredValue` (kept opaque).
    #[prost(bytes = "vec", optional, tag = "3")]
    pub canonicalized_input_signature: Option<Vec<u8>>,
    /// Serialized `StructuredValue` (kept opaque).
    #[prost(bytes = "vec", optional, tag = "4")]
    pub output_signature: Option<Vec<u8>>,
}

// ---------------------------------------------------------------------------------------------
// trackable_object_graph.proto (the `_CHECKPOINTABLE_OBJECT_GRAPH` string in TF2 bundles)
// ---------------------------------------------------------------------------------------------

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct TrackableObjectGraph {
    #[prost(message, repeated, tag = "1")]
    pub nodes: Vec<TrackableObject>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct TrackableObject {
    #[prost(message, repeated, tag = "1")]
    pub children: Vec<ObjectReference>,
    #[prost(message, repeated, tag = "2")]
    pub attributes: Vec<SerializedTensor>,
    #[prost(message, repeated, tag = "3")]
    pub slot_variables: Vec<SlotVariableReference>,
    /// Serialized `RegisteredSaver` (kept opaque).
    #[prost(bytes = "vec", optional, tag = "4")]
    pub registered_saver: Option<Vec<u8>>,
    /// Serialized `google.protobuf.BoolValue` (kept opaque).
    #[prost(bytes = "vec", optional, tag = "5")]
    pub has_checkpoint_values: Option<Vec<u8>>,
}

/// `TrackableObjectGraph.TrackableObject.SerializedTensor`.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct SerializedTensor {
    /// e.g. `VARIABLE_VALUE`.
    #[prost(string, tag = "1")]
    pub name: String,
    /// e.g. `dense/kernel`.
    #[prost(string, tag = "2")]
    pub full_name: String,
    /// e.g. `layer_with_weights-0/kernel/.ATTRIBUTES/VARIABLE_VALUE`.
    #[prost(string, tag = "3")]
    pub checkpoint_key: String,
}

// ---------------------------------------------------------------------------------------------
// tensor_bundle.proto
// ---------------------------------------------------------------------------------------------

/// Value of the header entry (empty key) of a bundle's `.index` table.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct BundleHeaderProto {
    #[prost(int32, tag = "1")]
    pub num_shards: i32,
    /// `Endianness`: LITTLE = 0, BIG = 1.
    #[prost(int32, tag = "2")]
    pub endianness: i32,
    #[prost(message, optional, tag = "3")]
    pub version: Option<VersionDef>,
}

impl BundleHeaderProto {
    pub const LITTLE_ENDIAN: i32 = 0;
    pub const BIG_ENDIAN: i32 = 1;
}

/// Value of a tensor entry of a bundle's `.index` table.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct BundleEntryProto {
    /// `DataType` enum number.
    #[prost(int32, tag = "1")]
    pub dtype: i32,
    #[prost(message, optional, tag = "2")]
    pub shape: Option<TensorShapeProto>,
    #[prost(int32, tag = "3")]
    pub shard_id: i32,
    #[prost(int64, tag = "4")]
    pub offset: i64,
    #[prost(int64, tag = "5")]
    pub size: i64,
    /// Masked CRC-32C of the tensor's bytes in the data file.
    #[prost(fixed32, tag = "6")]
    pub crc32c: u32,
    /// Non-empty only for partitioned variables.
    #[prost(message, repeated, tag = "7")]
    pub slices: Vec<TensorSliceProto>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// The NodeDef bytes of docs/reference/savedmodel.md §3 (verified against TF).
    #[test]
    fn placeholder_node_encodes_like_tensorflow() {
        let mut node = NodeDef {
            name: "x".into(),
            op: "Placeholder".into(),
            ..Default::default()
        };
        node.attr
            .insert("dtype".into(), AttrValue::from_type(crate::DataType::Float));
        node.attr.insert(
            "shape".into(),
            AttrValue::from_shape(TensorShapeProto::from_dims(&[-1, 4])),
        );
        let mut expected = vec![0x0a, 0x01, b'x', 0x12, 0x0b];
        expected.extend_from_slice(b"Placeholder");
        expected.extend_from_slice(&[0x2a, 0x0b, 0x0a, 0x05]);
        expected.extend_from_slice(b"dtype");
        expected.extend_from_slice(&[0x12, 0x02, 0x30, 0x01]);
        expected.extend_from_slice(&[0x2a, 0x1c, 0x0a, 0x05]);
        expected.extend_from_slice(b"shape");
        expected.extend_from_slice(&[0x12, 0x13, 0x3a, 0x11, 0x12, 0x0b, 0x08]);
        expected.extend_from_slice(&[0xff; 9]);
        expected.push(0x01);
        expected.extend_from_slice(&[0x12, 0x02, 0x08, 0x04]);
        assert_eq!(node.encode_to_vec(), expected);
        assert_eq!(NodeDef::decode(expected.as_slice()).unwrap(), node);
    }

    #[test]
    fn graph_versions_encode_like_tensorflow() {
        let graph = GraphDef {
            versions: Some(VersionDef {
                producer: 1087,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(graph.encode_to_vec(), [0x22, 0x03, 0x08, 0xbf, 0x08]);
    }

    #[test]
    fn empty_object_graph_keeps_presence() {
        let with = MetaGraphDef {
            object_graph_def: Some(SavedObjectGraph::default()),
            ..Default::default()
        };
        let without = MetaGraphDef::default();
        assert_eq!(with.encode_to_vec(), [0x3a, 0x00]);
        assert!(without.encode_to_vec().is_empty());
        let back = MetaGraphDef::decode([0x3a, 0x00].as_slice()).unwrap();
        assert!(back.object_graph_def.is_some());
    }

    #[test]
    fn bundle_entry_crc_is_fixed32() {
        // dense/bias entry of docs/reference/tensor_bundle.md §3.7.
        let entry = BundleEntryProto {
            dtype: 1,
            shape: Some(TensorShapeProto::from_dims(&[3])),
            size: 12,
            crc32c: 0x0d3d_4199,
            ..Default::default()
        };
        assert_eq!(
            entry.encode_to_vec(),
            [
                0x08, 0x01, 0x12, 0x04, 0x12, 0x02, 0x08, 0x03, 0x28, 0x0c, 0x35, 0x99, 0x41, 0x3d,
                0x0d
            ]
        );
    }

    #[test]
    fn unpacked_repeated_scalars_are_accepted() {
        // int_val (7) written unpacked: two varint fields instead of one packed field.
        let unpacked = [0x38, 0x01, 0x38, 0x02];
        let tensor = TensorProto::decode(unpacked.as_slice()).unwrap();
        assert_eq!(tensor.int_val, vec![1, 2]);
    }

    #[test]
    fn deeply_nested_attr_values_hit_the_recursion_limit_not_the_stack() {
        // AttrValue{func: NameAttrList{attr: {"": AttrValue{func: …}}}} nested far beyond
        // prost's recursion limit (100): decoding must fail cleanly.
        let mut bytes: Vec<u8> = Vec::new();
        for _ in 0..2000 {
            // map entry { value(2) = AttrValue(bytes) }
            let mut entry = vec![0x12];
            encode_len(&mut entry, bytes.len());
            entry.extend_from_slice(&bytes);
            // NameAttrList { attr(2) = entry }
            let mut list = vec![0x12];
            encode_len(&mut list, entry.len());
            list.extend_from_slice(&entry);
            // AttrValue { func(10) = list }
            let mut attr = vec![0x52];
            encode_len(&mut attr, list.len());
            attr.extend_from_slice(&list);
            bytes = attr;
        }
        assert!(AttrValue::decode(bytes.as_slice()).is_err());
    }

    fn encode_len(out: &mut Vec<u8>, mut len: usize) {
        while len >= 0x80 {
            out.push((len as u8) | 0x80);
            len >>= 7;
        }
        out.push(len as u8);
    }
}
