//! The Cloud ML Engine API under `/v1/projects/{project}/…`: models and versions created,
//! listed, defaulted and deleted through the API and persisted in the lifecycle's registry;
//! `…/models/{m}[/versions/{v}]:predict` answers like TF Serving's row format
//! (`{"predictions": …}`), resource methods answer in Google's error envelope.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::Method;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::http::{
    google_error, ok_json, percent_decode, read_body, refusal_response, with_payload_status,
};
use crate::lifecycle::registry::{
    ModelRecord, VersionRecord, VersionState, now_rfc3339, valid_resource_name,
};
use crate::lifecycle::table::{ServedVersion, Source, VersionSpec};
use crate::server::AppState;
use crate::status::{ApiError, Code};
use crate::tf_serving::predict;

pub(crate) async fn handle(state: &Arc<AppState>, request: Request, path: &str) -> Response {
    let method = request.method().clone();
    let query = request.uri().query().unwrap_or_default().to_string();
    let rest = &path["/v1/projects/".len()..];
    let (rest, verb) = match rest.rsplit_once(':') {
        Some((r, v)) if !v.contains('/') => (r, Some(v)),
        _ => (rest, None),
    };
    let segments: Vec<String> = match rest
        .split('/')
        .map(percent_decode)
        .collect::<Option<Vec<_>>>()
    {
        Some(s) => s,
        None => {
            return google_error(&ApiError::invalid(format!(
                "Malformed request: {method} {path}"
            )));
        }
    };
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let Some((&project, resource)) = segments.split_first() else {
        return google_error(&ApiError::invalid(format!(
            "Malformed request: {method} {path}"
        )));
    };
    if project != state.config.project {
        return google_error(&ApiError::not_found(format!(
            "Project {project:?} not found: this server serves project {:?}",
            state.config.project
        )));
    }
    let is_predict = verb == Some("predict");
    // Names become registry file names: refuse anything the API would not accept as a name
    // before it gets near the store (predictions may address file-system models by any name).
    if !is_predict && let Err(error) = check_resource_names(resource) {
        return google_error(&error);
    }
    if !is_predict
        && method != Method::GET
        && let Err(refusal) = state.access.check_change(&method, request.headers())
    {
        return refusal_response(path, &refusal);
    }
    let result = match (&method, resource, verb) {
        (&Method::POST, ["models", model], Some("predict")) => {
            let served = cmle_resolve(state, model, None);
            return predict(state, request, served).await;
        }
        (&Method::POST, ["models", model, "versions", version], Some("predict")) => {
            let served = cmle_resolve(state, model, Some(version));
            return predict(state, request, served).await;
        }
        (&Method::GET, ["models"], None) => Ok(list_models(state)),
        (&Method::POST, ["models"], None) => create_model(state, request).await,
        (&Method::GET, ["models", model], None) => get_model(state, model),
        (&Method::DELETE, ["models", model], None) => delete_model(state, model).await,
        (&Method::GET, ["models", model, "versions"], None) => list_versions(state, model),
        (&Method::POST, ["models", model, "versions"], None) => {
            create_version(state, model, request).await
        }
        (&Method::GET, ["models", model, "versions", version], None) => {
            get_version(state, model, version)
        }
        (&Method::DELETE, ["models", model, "versions", version], None) => {
            delete_version(state, model, version).await
        }
        (&Method::POST, ["models", model, "versions", version], Some("setDefault")) => {
            set_default(state, model, version).await
        }
        (&Method::GET, ["operations", operation], None) => get_operation(state, operation),
        (&Method::GET, ["jobs"], None) => crate::jobs_api::list(state, &query),
        (&Method::POST, ["jobs"], None) => crate::jobs_api::create(state, request).await,
        (&Method::GET, ["jobs", job], None) => crate::jobs_api::get(state, job),
        (&Method::POST, ["jobs", job], Some("cancel")) => crate::jobs_api::cancel(state, job).await,
        _ => Err(ApiError::invalid(format!(
            "Malformed request: {method} {path}"
        ))),
    };
    match result {
        Ok(value) => ok_json(&value),
        Err(error) => with_payload_status(google_error(&error), &error),
    }
}

/// The version a Cloud ML Engine predict call addresses (by name; the model's default when
/// none is given), with the API's own answers for versions that cannot serve.
fn cmle_resolve(
    state: &AppState,
    model: &str,
    version: Option<&str>,
) -> Result<Arc<ServedVersion>, ApiError> {
    let source = state
        .models
        .table
        .with(|m| m.get(model).map(|s| s.source.clone()));
    match source {
        None => Err(model_not_found(state, model)),
        // File-system models name their versions by number.
        Some(Source::BasePath(_) | Source::Single(_)) => {
            let spec = match version {
                None => VersionSpec::Default,
                Some(v) => {
                    VersionSpec::Number(v.parse().map_err(|_| version_not_found(state, model, v))?)
                }
            };
            state.models.table.resolve(model, &spec)
        }
        // A concurrent setDefault + delete can retire the version between reading the registry
        // and looking it up in the served table; one fresh look then finds the new default.
        Some(Source::Registry) => match cmle_resolve_registry(state, model, version) {
            Err(error) if error.code == Code::Unavailable => {
                cmle_resolve_registry(state, model, version)
            }
            resolved => resolved,
        },
    }
}

fn cmle_resolve_registry(
    state: &AppState,
    model: &str,
    version: Option<&str>,
) -> Result<Arc<ServedVersion>, ApiError> {
    let record = state
        .models
        .registry
        .get(model)
        .ok_or_else(|| model_not_found(state, model))?;
    let Some(name) = version.or(record.default_version.as_deref()) else {
        return Err(ApiError::failed_precondition(format!(
            "Model {:?} has no default version; create a version first",
            model_path(state, model)
        )));
    };
    let v = record
        .versions
        .get(name)
        .ok_or_else(|| version_not_found(state, model, name))?;
    let full = || format!("{}/versions/{name}", model_path(state, model));
    match v.state {
        VersionState::Creating => Err(ApiError::unavailable(format!(
            "Version {:?} is still being created; retry later",
            full()
        ))),
        VersionState::Failed => Err(ApiError::failed_precondition(format!(
            "Version {:?} failed to deploy: {}",
            full(),
            v.error_message.clone().unwrap_or_default()
        ))),
        VersionState::Ready => state
            .models
            .table
            .resolve(model, &VersionSpec::Number(v.serving_version))
            .map_err(|_| {
                ApiError::unavailable(format!(
                    "Version {:?} is being loaded by this server; retry later",
                    full()
                ))
            }),
    }
}

fn model_path(state: &AppState, model: &str) -> String {
    format!("projects/{}/models/{model}", state.config.project)
}

fn version_json(state: &AppState, model: &ModelRecord, version: &VersionRecord) -> Value {
    let mut v = json!({
        "name": format!("{}/versions/{}", model_path(state, &model.name), version.name),
        "deploymentUri": version.deployment_uri,
        "createTime": version.create_time,
        "state": version.state.name(),
        "framework": if version.framework.is_empty() { "TENSORFLOW" } else { &version.framework },
        "machineType": "mls1-c1-m2",
    });
    let fields = [
        ("runtimeVersion", &version.runtime_version),
        ("pythonVersion", &version.python_version),
        ("description", &version.description),
    ];
    for (key, value) in fields {
        if !value.is_empty() {
            v[key] = json!(value);
        }
    }
    if model.default_version.as_deref() == Some(version.name.as_str()) {
        v["isDefault"] = json!(true);
    }
    if let Some(message) = &version.error_message {
        v["errorMessage"] = json!(message);
    }
    if !version.labels.is_empty() {
        v["labels"] = json!(version.labels);
    }
    v
}

fn model_json(state: &AppState, model: &ModelRecord) -> Value {
    let mut v = json!({
        "name": model_path(state, &model.name),
        "regions": if model.regions.is_empty() { vec!["us-central1".to_string()] } else { model.regions.clone() },
    });
    if !model.description.is_empty() {
        v["description"] = json!(model.description);
    }
    if model.online_prediction_logging {
        v["onlinePredictionLogging"] = json!(true);
    }
    if !model.labels.is_empty() {
        v["labels"] = json!(model.labels);
    }
    if let Some(default) = model
        .default_version
        .as_ref()
        .and_then(|d| model.versions.get(d))
    {
        v["defaultVersion"] = version_json(state, model, default);
    }
    v
}

fn model_not_found(state: &AppState, model: &str) -> ApiError {
    ApiError::not_found(format!("Model {:?} not found", model_path(state, model)))
}

fn version_not_found(state: &AppState, model: &str, version: &str) -> ApiError {
    ApiError::not_found(format!(
        "Version {:?} not found",
        format!("{}/versions/{version}", model_path(state, model))
    ))
}

fn list_models(state: &AppState) -> Value {
    let models: Vec<Value> = state
        .models
        .registry
        .list()
        .iter()
        .map(|m| model_json(state, m))
        .collect();
    if models.is_empty() {
        json!({})
    } else {
        json!({"models": models})
    }
}

fn get_model(state: &AppState, model: &str) -> Result<Value, ApiError> {
    let record = state
        .models
        .registry
        .get(model)
        .ok_or_else(|| model_not_found(state, model))?;
    Ok(model_json(state, &record))
}

fn list_versions(state: &AppState, model: &str) -> Result<Value, ApiError> {
    let record = state
        .models
        .registry
        .get(model)
        .ok_or_else(|| model_not_found(state, model))?;
    let versions: Vec<Value> = record
        .versions
        .values()
        .map(|v| version_json(state, &record, v))
        .collect();
    Ok(if versions.is_empty() {
        json!({})
    } else {
        json!({"versions": versions})
    })
}

fn get_version(state: &AppState, model: &str, version: &str) -> Result<Value, ApiError> {
    let record = state
        .models
        .registry
        .get(model)
        .ok_or_else(|| model_not_found(state, model))?;
    let v = record
        .versions
        .get(version)
        .ok_or_else(|| version_not_found(state, model, version))?;
    Ok(version_json(state, &record, v))
}

fn parse_json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("Invalid JSON payload received. {e}")))
}

/// The model and version names in a Cloud ML Engine resource path must be valid names.
fn check_resource_names(resource: &[&str]) -> Result<(), ApiError> {
    let mut named = resource.iter().zip(resource.iter().skip(1));
    named.try_for_each(|(kind, name)| match *kind {
        "models" | "versions" | "jobs" if !valid_resource_name(name) => {
            Err(ApiError::invalid(format!(
                "{name:?} is not a valid {} name: it must start with a letter and contain only \
             letters, digits and underscores (at most 128)",
                kind.trim_end_matches('s')
            )))
        }
        _ => Ok(()),
    })
}

fn check_name(field: &str, name: &str) -> Result<(), ApiError> {
    if valid_resource_name(name) {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "Field: {field} Error: {name:?} is not a valid name: it must start with a letter and \
             contain only letters, digits and underscores (at most 128)"
        )))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ModelBody {
    name: Option<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    regions: Vec<String>,
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    online_prediction_logging: bool,
}

async fn create_model(state: &Arc<AppState>, request: Request) -> Result<Value, ApiError> {
    let body: ModelBody = parse_json_body(&read_body(state, request).await?)?;
    let name = body
        .name
        .ok_or_else(|| ApiError::invalid("Field: model.name Error: A name is required"))?;
    check_name("model.name", &name)?;
    if body.regions.len() > 1 {
        return Err(ApiError::invalid(
            "Field: model.regions Error: Only one region may be given",
        ));
    }
    let taken_by_files = state
        .models
        .table
        .with(|m| m.get(&name).is_some_and(|s| s.source != Source::Registry));
    if taken_by_files {
        return Err(ApiError::new(
            Code::AlreadyExists,
            format!(
                "Field: model.name Error: {name:?} is served from the file system (--model / --model-base-path)"
            ),
        ));
    }
    let record = ModelRecord {
        name: name.clone(),
        description: body.description,
        regions: body.regions,
        labels: body.labels,
        online_prediction_logging: body.online_prediction_logging,
        create_time: now_rfc3339(),
        default_version: None,
        versions: Default::default(),
        last_serving_version: 0,
    };
    let created = state
        .models
        .registry
        .mutate(&name, |current| {
            if current.is_some() {
                return Err(ApiError::new(
                    Code::AlreadyExists,
                    "Field: model.name Error: A model with the same name already exists.",
                ));
            }
            Ok((Some(record.clone()), record))
        })
        .await?;
    state.models.sync_registry_models(false);
    Ok(model_json(state, &created))
}

async fn delete_model(state: &Arc<AppState>, model: &str) -> Result<Value, ApiError> {
    state
        .models
        .registry
        .mutate(model, |current| {
            let record = current.ok_or_else(|| model_not_found(state, model))?;
            if !record.versions.is_empty() {
                return Err(ApiError::failed_precondition(format!(
                    "Model {:?} has versions ({}); delete them first",
                    model_path(state, model),
                    record
                        .versions
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            Ok((None, ()))
        })
        .await?;
    state.models.sync_registry_models(false);
    Ok(done_operation(state, "delete_model", model, None))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct VersionBody {
    name: Option<String>,
    deployment_uri: Option<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    runtime_version: String,
    #[serde(default)]
    python_version: String,
    #[serde(default)]
    framework: String,
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
}

async fn create_version(
    state: &Arc<AppState>,
    model: &str,
    request: Request,
) -> Result<Value, ApiError> {
    let body: VersionBody = parse_json_body(&read_body(state, request).await?)?;
    let name = body
        .name
        .ok_or_else(|| ApiError::invalid("Field: version.name Error: A name is required"))?;
    check_name("version.name", &name)?;
    let uri = body
        .deployment_uri
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            ApiError::invalid("Field: version.deployment_uri Error: A deployment URI is required")
        })?;
    state.models.check_origin(&uri)?;
    let framework = body.framework.to_ascii_uppercase();
    if !framework.is_empty() && framework != "TENSORFLOW" {
        return Err(ApiError::invalid(format!(
            "Field: version.framework Error: {framework} is not supported: this server serves TensorFlow SavedModels"
        )));
    }
    let (record, version) = state
        .models
        .registry
        .mutate(model, |current| {
            let mut record = current.cloned().ok_or_else(|| model_not_found(state, model))?;
            if record.versions.contains_key(&name) {
                return Err(ApiError::new(
                    Code::AlreadyExists,
                    format!("Field: version.name Error: A version with the name {name:?} already exists."),
                ));
            }
            record.last_serving_version += 1;
            let version = VersionRecord {
                name: name.clone(),
                description: body.description.clone(),
                deployment_uri: uri.clone(),
                runtime_version: body.runtime_version.clone(),
                python_version: body.python_version.clone(),
                framework: "TENSORFLOW".into(),
                labels: body.labels.clone(),
                state: VersionState::Creating,
                error_message: None,
                create_time: now_rfc3339(),
                serving_version: record.last_serving_version,
            };
            // As in Cloud ML Engine, a model's first version becomes its default.
            if record.default_version.is_none() {
                record.default_version = Some(name.clone());
            }
            record.versions.insert(name.clone(), version.clone());
            Ok((Some(record.clone()), (record, version)))
        })
        .await?;
    // Registers the CREATING slot and starts the load, which records READY or FAILED.
    state.models.sync_registry_models(true);
    Ok(json!({
        "name": format!("projects/{}/operations/create_version-{model}-{name}-{}", state.config.project, version.serving_version),
        "metadata": {
            "@type": "type.googleapis.com/google.cloud.ml.v1.OperationMetadata",
            "createTime": version.create_time,
            "operationType": "CREATE_VERSION",
            "modelName": model_path(state, model),
            "version": version_json(state, &record, &version),
        },
    }))
}

fn done_operation(state: &AppState, kind: &str, model: &str, version: Option<&str>) -> Value {
    let target = match version {
        Some(v) => format!("{model}-{v}"),
        None => model.to_string(),
    };
    json!({
        "name": format!("projects/{}/operations/{kind}-{target}", state.config.project),
        "metadata": {
            "@type": "type.googleapis.com/google.cloud.ml.v1.OperationMetadata",
            "createTime": now_rfc3339(),
            "endTime": now_rfc3339(),
            "operationType": if version.is_some() { "DELETE_VERSION" } else { "DELETE_MODEL" },
            "modelName": model_path(state, model),
        },
        "done": true,
        "response": {"@type": "type.googleapis.com/google.protobuf.Empty"},
    })
}

/// `create_version-<model>-<version>-<n>`: done once the version left CREATING.
fn get_operation(state: &AppState, operation: &str) -> Result<Value, ApiError> {
    let not_found = || ApiError::not_found(format!("Operation {operation:?} not found"));
    let rest = operation
        .strip_prefix("create_version-")
        .ok_or_else(not_found)?;
    let mut parts = rest.split('-');
    let (Some(model), Some(version), Some(number), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(not_found());
    };
    let record = state.models.registry.get(model).ok_or_else(not_found)?;
    let v = record
        .versions
        .get(version)
        .filter(|v| v.serving_version.to_string() == number)
        .ok_or_else(not_found)?;
    let mut op = json!({
        "name": format!("projects/{}/operations/{operation}", state.config.project),
        "metadata": {
            "@type": "type.googleapis.com/google.cloud.ml.v1.OperationMetadata",
            "operationType": "CREATE_VERSION",
            "modelName": model_path(state, model),
            "version": version_json(state, &record, v),
        },
    });
    match v.state {
        VersionState::Creating => {}
        VersionState::Ready => {
            op["done"] = json!(true);
            let mut response = version_json(state, &record, v);
            response["@type"] = json!("type.googleapis.com/google.cloud.ml.v1.Version");
            op["response"] = response;
        }
        VersionState::Failed => {
            op["done"] = json!(true);
            op["error"] =
                json!({"code": 3, "message": v.error_message.clone().unwrap_or_default()});
        }
    }
    Ok(op)
}

async fn delete_version(
    state: &Arc<AppState>,
    model: &str,
    version: &str,
) -> Result<Value, ApiError> {
    state
        .models
        .registry
        .mutate(model, |current| {
            let mut record = current
                .cloned()
                .ok_or_else(|| model_not_found(state, model))?;
            if !record.versions.contains_key(version) {
                return Err(version_not_found(state, model, version));
            }
            if record.default_version.as_deref() == Some(version) && record.versions.len() > 1 {
                return Err(ApiError::failed_precondition(format!(
                    "Version {version:?} is the default version of model {model:?}; set another \
                     version as default before deleting it"
                )));
            }
            record.versions.remove(version);
            if record.default_version.as_deref() == Some(version) {
                record.default_version = None;
            }
            Ok((Some(record), ()))
        })
        .await?;
    state.models.sync_registry_models(false);
    Ok(done_operation(
        state,
        "delete_version",
        model,
        Some(version),
    ))
}

async fn set_default(state: &Arc<AppState>, model: &str, version: &str) -> Result<Value, ApiError> {
    let record = state
        .models
        .registry
        .mutate(model, |current| {
            let mut record = current
                .cloned()
                .ok_or_else(|| model_not_found(state, model))?;
            let v = record
                .versions
                .get(version)
                .ok_or_else(|| version_not_found(state, model, version))?;
            if v.state == VersionState::Failed {
                return Err(ApiError::failed_precondition(format!(
                    "Version {version:?} failed to deploy and cannot be the default: {}",
                    v.error_message.clone().unwrap_or_default()
                )));
            }
            record.default_version = Some(version.to_string());
            Ok((Some(record.clone()), record))
        })
        .await?;
    state.models.sync_registry_models(false);
    let v = record
        .versions
        .get(version)
        .ok_or_else(|| version_not_found(state, model, version))?;
    Ok(version_json(state, &record, v))
}
