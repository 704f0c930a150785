//! TF Serving's gRPC API (`docs/reference/inference_protocols.md` §1), served on `--grpc-port`
//! for clients of `tensorflow-serving-api`:
//!
//! | method | answer |
//! |---|---|
//! | `PredictionService/Predict` | the signature's outputs, in typed fields (`float_val`, …) as TF Serving writes them; `model_spec` echoes name, version and signature |
//! | `PredictionService/GetModelMetadata` | `signature_def`: the version's `SignatureDefMap` packed in an `Any` |
//! | `ModelService/GetModelStatus` | the state of one or every version |
//!
//! Models, versions and labels resolve through the same [`ModelTable`](crate::lifecycle::table)
//! as REST, and default-signature predictions go through the same batcher. Inputs are read from
//! `tensor_content` or the typed `*_val` fields by the decoder savedmodel-format uses for graph
//! constants (TF's rules: a short typed list is filled up with its last value). Errors are gRPC
//! statuses with TF Serving's codes and texts. Messages may be up to `--grpc-max-message-bytes`;
//! a larger one is refused with RESOURCE_EXHAUSTED as soon as its 5-byte gRPC header arrives
//! ([`MessageCap`]), before its body is buffered.
//!
//! Like REST, every call takes an in-flight permit (UNAVAILABLE when none is left), runs under
//! the request timeout (DEADLINE_EXCEEDED) and is counted in the Prometheus metrics.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use prost::Message;
use savedmodel_format::proto::{
    SignatureDef, TensorInfo, TensorProto, TensorShapeProto, tensor_info, tensor_shape_proto,
};
use savedmodel_format::{DEFAULT_SIGNATURE, DataType, HostTensor, SignatureInfo, TensorSpec};
use tonic::{Request, Response, Status};

use crate::ServingError;
use crate::lifecycle::table::{ServedVersion, Slot, VersionSpec};
use crate::server::AppState;
use crate::status::{ApiError, Code};

/// The generated messages, services and clients of `tensorflow.serving` (proto/README.md).
pub mod proto {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("tensorflow.serving");
}

use proto::model_service_server::{ModelService, ModelServiceServer};
use proto::model_spec::VersionChoice;
use proto::model_version_status::State;
use proto::prediction_service_server::{PredictionService, PredictionServiceServer};
use proto::{
    GetModelMetadataRequest, GetModelMetadataResponse, GetModelStatusRequest,
    GetModelStatusResponse, ModelSpec, ModelVersionStatus, PredictRequest, PredictResponse,
    SignatureDefMap, StatusProto,
};

/// 64 MiB: room for 10,000 MNIST images (31 MB of floats) per request. TF Serving itself
/// accepts up to 2 GiB; gRPC clients default to sending and receiving at most 4 MiB.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Serves the gRPC API on `listener` until `shutdown` resolves.
pub(crate) async fn serve(
    state: Arc<AppState>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServingError> {
    let cap = state.config.grpc_max_message_bytes;
    let service = TfServingGrpc { state };
    // tonic's own limit answers OUT_OF_RANGE; MessageCap answers first, as gRPC does.
    let prediction = PredictionServiceServer::new(service.clone())
        .max_decoding_message_size(cap.saturating_add(1))
        .max_encoding_message_size(usize::MAX);
    let model = ModelServiceServer::new(service)
        .max_decoding_message_size(cap.saturating_add(1))
        .max_encoding_message_size(usize::MAX);
    // The builder's `tcp_nodelay` is ignored for a listener we pass in, so the incoming stream
    // sets it: without it, small answers wait for the peer's delayed ACK (a flat ~40 ms p99).
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .layer(tower::layer::layer_fn(move |inner| CapRequests {
            inner,
            cap,
        }))
        .add_service(prediction)
        .add_service(model)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|e| ServingError::Config(format!("gRPC server: {e}")))
}

#[derive(Clone)]
struct TfServingGrpc {
    state: Arc<AppState>,
}

#[tonic::async_trait]
impl PredictionService for TfServingGrpc {
    async fn predict(
        &self,
        request: Request<PredictRequest>,
    ) -> Result<Response<PredictResponse>, Status> {
        self.call("Predict", self.run_predict(request.into_inner()))
            .await
    }

    async fn get_model_metadata(
        &self,
        request: Request<GetModelMetadataRequest>,
    ) -> Result<Response<GetModelMetadataResponse>, Status> {
        let request = request.into_inner();
        self.call("GetModelMetadata", async move { self.metadata(request) })
            .await
    }
}

#[tonic::async_trait]
impl ModelService for TfServingGrpc {
    async fn get_model_status(
        &self,
        request: Request<GetModelStatusRequest>,
    ) -> Result<Response<GetModelStatusResponse>, Status> {
        let request = request.into_inner();
        self.call("GetModelStatus", async move { self.status(request) })
            .await
    }
}

impl TfServingGrpc {
    /// Runs one call under REST's limits (in-flight permit, timeout), counts and logs it.
    async fn call<T>(
        &self,
        method: &'static str,
        work: impl std::future::Future<Output = Result<T, ApiError>>,
    ) -> Result<Response<T>, Status> {
        let started = Instant::now();
        let result = match self.state.in_flight.clone().try_acquire_owned() {
            Err(_) => Err(ApiError::unavailable(
                "The server is overloaded: too many requests in flight; retry later",
            )),
            Ok(_permit) => {
                let timeout = self.state.config.request_timeout;
                tokio::time::timeout(timeout, work)
                    .await
                    .unwrap_or_else(|_| {
                        Err(ApiError::new(
                            Code::DeadlineExceeded,
                            format!("Request timed out after {} ms", timeout.as_millis()),
                        ))
                    })
            }
        };
        let elapsed = started.elapsed();
        // The metrics count statuses as REST's HTTP codes, so one table covers both.
        let status = match &result {
            Ok(_) => 200,
            Err(error) => error.code.http_status().as_u16(),
        };
        self.state
            .metrics
            .observe_request(status, elapsed.as_secs_f64());
        tracing::info!(
            target: "predictor::grpc",
            method,
            status,
            latency_ms = elapsed.as_secs_f64() * 1e3,
            "request"
        );
        result.map(Response::new).map_err(grpc_status)
    }

    fn resolve(&self, spec: &ModelSpec) -> Result<Arc<ServedVersion>, ApiError> {
        self.state
            .models
            .table
            .resolve(&spec.name, &version_spec(spec))
    }

    async fn run_predict(&self, request: PredictRequest) -> Result<PredictResponse, ApiError> {
        let spec = request
            .model_spec
            .ok_or_else(|| ApiError::invalid("Missing ModelSpec"))?;
        let served = self.resolve(&spec)?;
        let signature_name = signature_name(&spec);
        let signature = served
            .predictor
            .signatures()
            .get(signature_name)
            .ok_or_else(|| {
                ApiError::failed_precondition(format!(
                    "Serving signature key \"{signature_name}\" not found."
                ))
            })?;
        let wanted = output_filter(signature, &request.output_filter)?;
        // Announce the request to the batcher before converting it, so a batch being formed waits.
        let arrival = served.batcher.as_ref().map(|b| b.arrival());
        let limit = self.state.config.grpc_max_message_bytes;
        let inputs = convert_inputs(signature, request.inputs, limit)?;
        let metrics = self.state.metrics.clone();
        let outputs = match batch_rows(&inputs) {
            Some(rows) if signature_name == DEFAULT_SIGNATURE => {
                served.infer_rows(inputs, rows, arrival, metrics).await?
            }
            rows => {
                drop(arrival);
                served
                    .run_direct(signature_name.to_string(), inputs, metrics, rows)
                    .await?
            }
        };
        let outputs = outputs
            .into_iter()
            .filter(|(name, _)| wanted.contains(name.as_str()))
            .map(|(name, tensor)| (name, tensor.to_typed_tensor_proto()))
            .collect();
        Ok(PredictResponse {
            model_spec: Some(answered_spec(&served, signature_name)),
            outputs,
        })
    }

    fn metadata(
        &self,
        request: GetModelMetadataRequest,
    ) -> Result<GetModelMetadataResponse, ApiError> {
        let spec = request
            .model_spec
            .ok_or_else(|| ApiError::invalid("Missing ModelSpec"))?;
        if request.metadata_field.is_empty() {
            return Err(ApiError::invalid(
                "GetModelMetadataRequest must specify at least one metadata_field",
            ));
        }
        if let Some(field) = request
            .metadata_field
            .iter()
            .find(|f| f.as_str() != "signature_def")
        {
            return Err(ApiError::invalid(format!(
                "Metadata field {field} is not supported"
            )));
        }
        let served = self.resolve(&spec)?;
        let map = SignatureDefMap {
            signature_def: served
                .predictor
                .signatures()
                .iter()
                .map(|(name, signature)| (name.clone(), signature_def(signature)))
                .collect(),
        };
        let any = prost_types::Any {
            type_url: "type.googleapis.com/tensorflow.serving.SignatureDefMap".into(),
            value: map.encode_to_vec(),
        };
        Ok(GetModelMetadataResponse {
            model_spec: Some(answered_spec(&served, "")),
            metadata: HashMap::from([("signature_def".to_string(), any)]),
        })
    }

    fn status(&self, request: GetModelStatusRequest) -> Result<GetModelStatusResponse, ApiError> {
        let spec = request
            .model_spec
            .ok_or_else(|| ApiError::invalid("Missing ModelSpec"))?;
        let slots = self
            .state
            .models
            .table
            .status(&spec.name, &version_spec(&spec))?;
        Ok(GetModelStatusResponse {
            model_version_status: slots
                .iter()
                .map(|(version, slot)| {
                    let (state, error_code, error_message) = match slot {
                        Slot::Loading => (State::Loading, 0, String::new()),
                        Slot::Available(_) => (State::Available, 0, String::new()),
                        // tensorflow.error.Code UNKNOWN (2), as REST reports "UNKNOWN".
                        Slot::Failed(message) => (State::End, 2, message.clone()),
                    };
                    ModelVersionStatus {
                        version: *version,
                        state: state as i32,
                        status: Some(StatusProto {
                            error_code,
                            error_message,
                        }),
                    }
                })
                .collect(),
        })
    }
}

/// A request's version choice: a number, a label, or (neither) the default version.
fn version_spec(spec: &ModelSpec) -> VersionSpec {
    match &spec.version_choice {
        Some(VersionChoice::Version(number)) => VersionSpec::Number(*number),
        Some(VersionChoice::VersionLabel(label)) => VersionSpec::Label(label.clone()),
        None => VersionSpec::Default,
    }
}

fn signature_name(spec: &ModelSpec) -> &str {
    if spec.signature_name.is_empty() {
        DEFAULT_SIGNATURE
    } else {
        &spec.signature_name
    }
}

/// The `model_spec` of an answer: the model, the version that answered, the signature.
fn answered_spec(served: &ServedVersion, signature_name: &str) -> ModelSpec {
    ModelSpec {
        name: served.model.clone(),
        version_choice: Some(VersionChoice::Version(served.version)),
        signature_name: signature_name.to_string(),
    }
}

/// The outputs to return: all of the signature's, or the filter's (each named once, each in
/// the signature).
fn output_filter<'a>(
    signature: &'a SignatureInfo,
    filter: &'a [String],
) -> Result<BTreeSet<&'a str>, ApiError> {
    if filter.is_empty() {
        return Ok(signature.outputs.keys().map(String::as_str).collect());
    }
    let mut wanted = BTreeSet::new();
    for alias in filter {
        if !signature.outputs.contains_key(alias) {
            return Err(ApiError::invalid(format!(
                "output tensor alias not found in signature: {alias} Outputs expected to be in \
                 the set {{{}}}.",
                join(signature.outputs.keys())
            )));
        }
        if !wanted.insert(alias.as_str()) {
            return Err(ApiError::invalid(format!(
                "duplicate output tensor alias: {alias}"
            )));
        }
    }
    Ok(wanted)
}

fn join<'a>(names: impl Iterator<Item = &'a String>) -> String {
    names.map(String::as_str).collect::<Vec<_>>().join(",")
}

/// The request's tensors as the signature's inputs: the same names, each of the declared dtype
/// and of a shape the declared one allows, decoded to at most `limit` bytes.
fn convert_inputs(
    signature: &SignatureInfo,
    inputs: HashMap<String, TensorProto>,
    limit: usize,
) -> Result<BTreeMap<String, HostTensor>, ApiError> {
    let sent: BTreeSet<&String> = inputs.keys().collect();
    let expected: BTreeSet<&String> = signature.inputs.keys().collect();
    if sent != expected {
        return Err(ApiError::invalid(format!(
            "input size does not match signature: {}!={} len({{{}}}) != len({{{}}}). Sent extra: \
             {{{}}}. Missing but required: {{{}}}.",
            sent.len(),
            expected.len(),
            join(sent.iter().copied()),
            join(expected.iter().copied()),
            join(sent.difference(&expected).copied()),
            join(expected.difference(&sent).copied()),
        )));
    }
    let mut converted = BTreeMap::new();
    for (alias, proto) in inputs {
        let Some(spec) = signature.inputs.get(&alias) else {
            continue;
        };
        let tensor = convert_input(&alias, spec, &proto, limit)?;
        converted.insert(alias, tensor);
    }
    Ok(converted)
}

fn convert_input(
    alias: &str,
    spec: &TensorSpec,
    proto: &TensorProto,
    limit: usize,
) -> Result<HostTensor, ApiError> {
    if proto.dtype != spec.dtype as i32 {
        return Err(ApiError::invalid(format!(
            "input \"{alias}\": expects {} but {} is provided",
            spec.dtype.tf_name(),
            savedmodel_format::convert::dtype_name(proto.dtype)
        )));
    }
    // A typed list shorter than the shape is filled up (TF's rule); bound what that may allocate.
    let dims = proto.tensor_shape.as_ref().map_or(&[][..], |s| &s.dim[..]);
    let elements = dims.iter().try_fold(1u64, |n, d| {
        u64::try_from(d.size).ok().and_then(|d| n.checked_mul(d))
    });
    let element_bytes = match spec.dtype {
        DataType::Double | DataType::Int64 => 8,
        DataType::Int16 | DataType::Half => 2,
        DataType::Int8 | DataType::UInt8 | DataType::Bool => 1,
        // A string element is a Vec of its bytes (which the message itself bounds).
        DataType::String => std::mem::size_of::<Vec<u8>>() as u64,
        _ => 4,
    };
    if elements.is_none_or(|n| n.saturating_mul(element_bytes) > limit as u64) {
        return Err(ApiError::invalid(format!(
            "input \"{alias}\": shape {:?} is larger than a request may be ({limit} bytes)",
            dims.iter().map(|d| d.size).collect::<Vec<_>>()
        )));
    }
    let tensor = HostTensor::from_tensor_proto(proto, &format!("input \"{alias}\""))
        .map_err(|e| ApiError::invalid(format!("tensor parsing error: {alias}: {e}")))?;
    if let Some(declared) = &spec.shape {
        let shape = tensor.shape();
        let fits = shape.len() == declared.len()
            && shape
                .iter()
                .zip(declared)
                .all(|(&got, &want)| want < 0 || got as i64 == want);
        if !fits {
            return Err(ApiError::invalid(format!(
                "input \"{alias}\": shape {shape:?} does not match the signature's {declared:?} \
                 (-1: any size)"
            )));
        }
    }
    Ok(tensor)
}

/// The batch size when every input has the same first dimension.
fn batch_rows(inputs: &BTreeMap<String, HostTensor>) -> Option<usize> {
    let mut rows = inputs.values().map(|t| t.shape().first().copied());
    let first = rows.next()??;
    rows.all(|r| r == Some(first)).then_some(first)
}

fn signature_def(signature: &SignatureInfo) -> SignatureDef {
    let infos = |specs: &BTreeMap<String, TensorSpec>| {
        specs
            .iter()
            .map(|(alias, spec)| {
                // -1: a dimension of any size; no dims and unknown_rank: any rank.
                let tensor_shape = TensorShapeProto {
                    dim: spec
                        .shape
                        .iter()
                        .flatten()
                        .map(|&size| tensor_shape_proto::Dim {
                            size,
                            name: String::new(),
                        })
                        .collect(),
                    unknown_rank: spec.shape.is_none(),
                };
                let info = TensorInfo {
                    encoding: Some(tensor_info::Encoding::Name(spec.tensor_name.clone())),
                    dtype: spec.dtype as i32,
                    tensor_shape: Some(tensor_shape),
                };
                (alias.clone(), info)
            })
            .collect()
    };
    SignatureDef {
        inputs: infos(&signature.inputs),
        outputs: infos(&signature.outputs),
        method_name: signature.method_name.clone(),
        defaults: BTreeMap::new(),
    }
}

/// The gRPC status of a request failure (TF's codes are gRPC's).
fn grpc_status(error: ApiError) -> Status {
    let code = match error.code {
        Code::Cancelled => tonic::Code::Cancelled,
        Code::Unknown => tonic::Code::Unknown,
        Code::InvalidArgument => tonic::Code::InvalidArgument,
        Code::DeadlineExceeded => tonic::Code::DeadlineExceeded,
        Code::NotFound => tonic::Code::NotFound,
        Code::AlreadyExists => tonic::Code::AlreadyExists,
        Code::PermissionDenied => tonic::Code::PermissionDenied,
        Code::ResourceExhausted => tonic::Code::ResourceExhausted,
        Code::FailedPrecondition => tonic::Code::FailedPrecondition,
        Code::Aborted => tonic::Code::Aborted,
        Code::OutOfRange => tonic::Code::OutOfRange,
        Code::Unimplemented => tonic::Code::Unimplemented,
        Code::Internal => tonic::Code::Internal,
        Code::Unavailable => tonic::Code::Unavailable,
        Code::DataLoss => tonic::Code::DataLoss,
        Code::Unauthenticated => tonic::Code::Unauthenticated,
    };
    Status::new(code, error.message)
}

/// Wraps every request body in a [`MessageCap`].
#[derive(Clone)]
struct CapRequests<S> {
    inner: S,
    cap: usize,
}

impl<S> tower::Service<http::Request<tonic::body::Body>> for CapRequests<S>
where
    S: tower::Service<http::Request<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let cap = self.cap;
        self.inner.call(request.map(|body| {
            tonic::body::Body::new(MessageCap {
                inner: body,
                cap,
                header: Vec::with_capacity(5),
            })
        }))
    }
}

/// A request body that fails with RESOURCE_EXHAUSTED ("Received message larger than max", as
/// gRPC's own servers say) once a message's 5-byte header announces more than `cap` bytes, so
/// an oversized message is refused before it is buffered. Requests here are unary: only the
/// first message's header is looked at.
struct MessageCap {
    inner: tonic::body::Body,
    cap: usize,
    /// The first 5 bytes of the body (compression flag, big-endian length).
    header: Vec<u8>,
}

impl http_body::Body for MessageCap {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Status>>> {
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            other => return other,
        };
        if self.header.len() < 5
            && let Some(data) = frame.data_ref()
        {
            let take = (5 - self.header.len()).min(data.len());
            let head = data.slice(..take);
            self.header.extend_from_slice(&head);
            if self.header.len() == 5 {
                let len = u32::from_be_bytes([
                    self.header[1],
                    self.header[2],
                    self.header[3],
                    self.header[4],
                ]) as usize;
                if len > self.cap {
                    return Poll::Ready(Some(Err(Status::resource_exhausted(format!(
                        "Received message larger than max ({len} vs. {})",
                        self.cap
                    )))));
                }
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
