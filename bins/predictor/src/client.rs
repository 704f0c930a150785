//! Client commands mirroring gcloud's (`gcloud ai-platform models|versions|predict`), talking to
//! a `predictor serve` (or any server speaking the Cloud ML Engine API) at `--endpoint`.

use std::io::{BufRead, Read as _};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};

/// Where the server is and how to talk to it (shared by every client command).
#[derive(Debug, clap::Args)]
pub struct Connection {
    /// Base URL of the prediction server.
    #[arg(
        long,
        global = true,
        env = "PREDICTOR_ENDPOINT",
        default_value = "http://127.0.0.1:8501"
    )]
    endpoint: String,
    /// Project name in the API paths.
    #[arg(long, global = true, default_value = "default")]
    project: String,
    /// File holding the bearer token the server requires for mutating calls.
    #[arg(long, global = true, value_name = "FILE")]
    auth_token_file: Option<PathBuf>,
}

/// `predictor models …`
#[derive(Debug, clap::Args)]
pub struct ModelsArgs {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    command: ModelsCommand,
}

/// `predictor versions …`
#[derive(Debug, clap::Args)]
pub struct VersionsArgs {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    command: VersionsCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum ModelsCommand {
    /// List models: NAME and DEFAULT_VERSION_NAME.
    List,
    /// Create a model.
    Create {
        name: String,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        region: Option<String>,
    },
    /// Delete a model (it must have no versions).
    Delete { name: String },
}

#[derive(Debug, clap::Subcommand)]
pub enum VersionsCommand {
    /// List a model's versions: NAME, DEPLOYMENT_URI, STATE.
    List {
        #[arg(long)]
        model: String,
    },
    /// Create a version from a SavedModel folder and wait until it is READY (or FAILED).
    Create {
        name: String,
        #[arg(long)]
        model: String,
        /// The SavedModel folder: a local path or gs:// URL.
        #[arg(long)]
        origin: String,
        #[arg(long)]
        runtime_version: Option<String>,
        #[arg(long)]
        python_version: Option<String>,
        #[arg(long)]
        framework: Option<String>,
        #[arg(long)]
        description: Option<String>,
        /// Return once the server accepted the request, without waiting for READY.
        #[arg(long = "async")]
        no_wait: bool,
        /// How long to wait for the version to become READY, in seconds.
        #[arg(long, default_value_t = 600)]
        timeout_secs: u64,
    },
    /// Delete a version.
    Delete {
        name: String,
        #[arg(long)]
        model: String,
    },
    /// Make a version the model's default.
    SetDefault {
        name: String,
        #[arg(long)]
        model: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct PredictArgs {
    #[command(flatten)]
    connection: Connection,
    #[arg(long)]
    model: String,
    /// Version name; the model's default version when omitted.
    #[arg(long)]
    version: Option<String>,
    /// Newline-delimited JSON instances, one per line (at most 100; `-` reads stdin).
    #[arg(long, value_name = "FILE")]
    json_instances: PathBuf,
    /// Signature to use (the server's default is serving_default).
    #[arg(long)]
    signature_name: Option<String>,
    /// Output layout; gcloud's default table when omitted.
    #[arg(long, value_enum)]
    format: Option<OutputFormat>,
}

/// gcloud's limit for `--json-instances` in online prediction.
const MAX_INSTANCES: usize = 100;

pub(crate) struct Client {
    http: reqwest::Client,
    pub(crate) base: String,
    pub(crate) project: String,
    token: Option<String>,
}

impl Client {
    pub(crate) fn new(connection: &Connection) -> Result<Client> {
        let token = match &connection.auth_token_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read --auth-token-file {}", path.display()))?
                    .trim()
                    .to_string(),
            ),
            None => None,
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .context("cannot create the HTTP client")?;
        Ok(Client {
            http,
            base: connection.endpoint.trim_end_matches('/').to_string(),
            project: connection.project.clone(),
            token,
        })
    }

    fn url(&self, resource: &str) -> String {
        format!("{}/v1/projects/{}/{resource}", self.base, self.project)
    }

    /// Sends a request to a Cloud ML Engine resource (`models/m`); non-2xx answers become errors
    /// carrying the server's message.
    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        resource: &str,
        body: Option<&Value>,
    ) -> Result<Value> {
        self.call_url(method, &self.url(resource), body).await
    }

    /// [`Client::call`] with a whole URL (other APIs on the same server).
    pub(crate) async fn call_url(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<Value> {
        let url = url.to_string();
        let mut request = self.http.request(method, &url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .with_context(|| format!("cannot read the answer of {url}"))?;
        if !status.is_success() {
            bail!("HTTP {status}: {}", error_message(&text));
        }
        if text.trim().is_empty() {
            return Ok(json!({}));
        }
        serde_json::from_str(&text).with_context(|| format!("the server answered non-JSON: {text}"))
    }
}

/// The message of `{"error": "..."}` or Google's `{"error": {"message": ...}}`, else the body.
fn error_message(body: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    match parsed.as_ref().and_then(|v| v.get("error")) {
        Some(Value::String(message)) => message.clone(),
        Some(error) => error
            .get("message")
            .and_then(Value::as_str)
            .map_or_else(|| error.to_string(), str::to_string),
        None => body.trim().to_string(),
    }
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// The last path segment of a resource name (`projects/p/models/m` → `m`).
fn basename(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

/// gcloud's table: upper-case headings, columns left-aligned and two spaces apart.
pub(crate) fn print_table(headings: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headings.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        println!("{}", out.trim_end());
    };
    line(headings.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

pub fn models(args: ModelsArgs) -> Result<()> {
    let connection = &args.connection;
    runtime()?.block_on(async {
        match args.command {
            ModelsCommand::List => {
                let client = Client::new(connection)?;
                let answer = client.call(reqwest::Method::GET, "models", None).await?;
                let models = answer
                    .get("models")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                if models.is_empty() {
                    eprintln!("Listed 0 items.");
                    return Ok(());
                }
                let rows: Vec<Vec<String>> = models
                    .iter()
                    .map(|m| {
                        let name = m
                            .get("name")
                            .and_then(Value::as_str)
                            .map(basename)
                            .unwrap_or_default();
                        let default = m
                            .pointer("/defaultVersion/name")
                            .and_then(Value::as_str)
                            .map(basename)
                            .unwrap_or_default();
                        vec![name.to_string(), default.to_string()]
                    })
                    .collect();
                print_table(&["NAME", "DEFAULT_VERSION_NAME"], &rows);
            }
            ModelsCommand::Create {
                name,
                description,
                region,
            } => {
                let client = Client::new(connection)?;
                let mut body = json!({"name": name});
                if let Some(d) = description {
                    body["description"] = json!(d);
                }
                if let Some(r) = region {
                    body["regions"] = json!([r]);
                }
                client
                    .call(reqwest::Method::POST, "models", Some(&body))
                    .await?;
                eprintln!(
                    "Created ml engine model [projects/{}/models/{name}].",
                    client.project
                );
            }
            ModelsCommand::Delete { name } => {
                let client = Client::new(connection)?;
                client
                    .call(reqwest::Method::DELETE, &format!("models/{name}"), None)
                    .await?;
                eprintln!("Deleted model [projects/{}/models/{name}].", client.project);
            }
        }
        Ok(())
    })
}

/// A local origin is sent as an absolute `file://` URL: the server may run elsewhere.
fn origin_url(origin: &str) -> Result<String> {
    if origin.contains("://") {
        return Ok(origin.to_string());
    }
    let path = std::path::absolute(origin)
        .with_context(|| format!("--origin {origin}: cannot make it absolute"))?;
    if !path.is_dir() {
        bail!("--origin {}: no such directory", path.display());
    }
    Ok(path.display().to_string())
}

pub fn versions(args: VersionsArgs) -> Result<()> {
    let connection = &args.connection;
    runtime()?.block_on(async {
        match args.command {
            VersionsCommand::List { model } => {
                let client = Client::new(connection)?;
                let answer = client
                    .call(
                        reqwest::Method::GET,
                        &format!("models/{model}/versions"),
                        None,
                    )
                    .await?;
                let versions = answer
                    .get("versions")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                if versions.is_empty() {
                    eprintln!("Listed 0 items.");
                    return Ok(());
                }
                let text = |v: &Value, key: &str| {
                    v.get(key)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string()
                };
                let rows: Vec<Vec<String>> = versions
                    .iter()
                    .map(|v| {
                        vec![
                            basename(&text(v, "name")).to_string(),
                            text(v, "deploymentUri"),
                            text(v, "state"),
                        ]
                    })
                    .collect();
                print_table(&["NAME", "DEPLOYMENT_URI", "STATE"], &rows);
            }
            VersionsCommand::Create {
                name,
                model,
                origin,
                runtime_version,
                python_version,
                framework,
                description,
                no_wait,
                timeout_secs,
            } => {
                let client = Client::new(connection)?;
                let mut body = json!({"name": name, "deploymentUri": origin_url(&origin)?});
                for (key, value) in [
                    ("runtimeVersion", runtime_version),
                    ("pythonVersion", python_version),
                    ("framework", framework.map(|f| f.to_ascii_uppercase())),
                    ("description", description),
                ] {
                    if let Some(value) = value {
                        body[key] = json!(value);
                    }
                }
                client
                    .call(
                        reqwest::Method::POST,
                        &format!("models/{model}/versions"),
                        Some(&body),
                    )
                    .await?;
                if no_wait {
                    eprintln!("Creating version [{name}] of model [{model}] (not waiting).");
                    return Ok(());
                }
                eprint!("Creating version (this might take a few minutes)...");
                let deadline = Instant::now() + Duration::from_secs(timeout_secs);
                loop {
                    let version = client
                        .call(
                            reqwest::Method::GET,
                            &format!("models/{model}/versions/{name}"),
                            None,
                        )
                        .await?;
                    match version.get("state").and_then(Value::as_str) {
                        Some("READY") => {
                            eprintln!("done.");
                            break;
                        }
                        Some("FAILED") => {
                            eprintln!("failed.");
                            let why = version
                                .get("errorMessage")
                                .and_then(Value::as_str)
                                .unwrap_or("no message");
                            bail!("version {name} FAILED: {why}");
                        }
                        _ if Instant::now() > deadline => {
                            eprintln!();
                            bail!("version {name} is not READY after {timeout_secs} s");
                        }
                        _ => {
                            eprint!(".");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
            }
            VersionsCommand::Delete { name, model } => {
                let client = Client::new(connection)?;
                client
                    .call(
                        reqwest::Method::DELETE,
                        &format!("models/{model}/versions/{name}"),
                        None,
                    )
                    .await?;
                eprintln!("Deleted version [{name}] of model [{model}].");
            }
            VersionsCommand::SetDefault { name, model } => {
                let client = Client::new(connection)?;
                let version = client
                    .call(
                        reqwest::Method::POST,
                        &format!("models/{model}/versions/{name}:setDefault"),
                        // A JSON body, as gcloud sends: the server refuses other content types
                        // on calls that change deployments.
                        Some(&json!({})),
                    )
                    .await?;
                println!("{}", serde_json::to_string_pretty(&version)?);
            }
        }
        Ok(())
    })
}

/// Reads gcloud's `--json-instances` file: one JSON value per line, UTF-8 BOM tolerated, no
/// empty lines, at most 100 instances.
fn read_instances(path: &PathBuf) -> Result<Vec<Value>> {
    let mut text = String::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read instances from stdin")?;
    } else {
        let file =
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        // Read one line more than allowed, so an oversized file is refused without reading it all.
        for line in std::io::BufReader::new(file)
            .lines()
            .take(MAX_INSTANCES + 1)
        {
            text.push_str(&line.with_context(|| format!("cannot read {}", path.display()))?);
            text.push('\n');
        }
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut instances = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            bail!(
                "{}: line {}: Empty line is not allowed in the instances file.",
                path.display(),
                index + 1
            );
        }
        if instances.len() == MAX_INSTANCES {
            bail!(
                "{}: the CLI can process no more than {MAX_INSTANCES} instances per file; send larger \
                 batches directly to the API",
                path.display()
            );
        }
        let value: Value = serde_json::from_str(line)
            .with_context(|| format!("{}: line {}: not valid JSON", path.display(), index + 1))?;
        instances.push(value);
    }
    if instances.is_empty() {
        bail!("{}: no instances found", path.display());
    }
    Ok(instances)
}

pub fn predict(args: PredictArgs) -> Result<()> {
    let connection = &args.connection;
    let instances = read_instances(&args.json_instances)?;
    let mut body = json!({"instances": instances});
    if let Some(signature) = &args.signature_name {
        body["signature_name"] = json!(signature);
    }
    let resource = match &args.version {
        Some(version) => format!("models/{}/versions/{version}:predict", args.model),
        None => format!("models/{}:predict", args.model),
    };
    let answer = runtime()?.block_on(async {
        let client = Client::new(connection)?;
        client
            .call(reqwest::Method::POST, &resource, Some(&body))
            .await
    })?;
    let text = format_predictions(&answer, args.format)?;
    print!("{text}");
    Ok(())
}

/// gcloud's output for an online prediction answer.
fn format_predictions(answer: &Value, format: Option<OutputFormat>) -> Result<String> {
    let value = predict_json::PyValue::from(answer);
    let format = match format {
        Some(OutputFormat::Json) => predict_json::OutputFormat::Json,
        Some(OutputFormat::Table) | None => predict_json::OutputFormat::Table,
    };
    predict_json::format_online_response(&value, format).map_err(|e| anyhow!("{e}"))
}
