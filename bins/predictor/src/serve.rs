//! `predictor serve`: command-line flags → `serving::ServeConfig`, logging, signals.

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use compute_device::{self as device, DeviceChoice};

const DEFAULT_REGISTRY: &str = "predictor-registry";

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to bind. Only loopback unless told otherwise.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0 picks a free one; the address is printed on stdout).
    #[arg(long, default_value_t = 8501)]
    port: u16,
    /// Serve one SavedModel folder (local path or gs://) as model NAME, version 1.
    #[arg(long = "model", value_name = "NAME=URL")]
    models: Vec<String>,
    /// Serve NAME from numbered version folders under URL, polled for new and removed versions.
    #[arg(long = "model-base-path", value_name = "NAME=URL")]
    base_paths: Vec<String>,
    /// Where models and versions created through the API are stored (local folder or gs://).
    #[arg(long, default_value = DEFAULT_REGISTRY)]
    registry: String,
    /// The project name of the Cloud ML Engine API paths (/v1/projects/NAME/...).
    #[arg(long, default_value = "default")]
    project: String,
    /// File holding a token; mutating API calls must then send `Authorization: Bearer <token>`.
    #[arg(long, value_name = "FILE")]
    auth_token_file: Option<PathBuf>,
    /// Only allow version origins under this prefix (path or URL); repeatable.
    #[arg(long = "allow-origin", value_name = "PREFIX")]
    allow_origins: Vec<String>,
    /// Also serve TF Serving's gRPC API (PredictionService, ModelService) on this port, on the
    /// same host (TF Serving's default is 8500; 0 picks a free one). Off unless given.
    #[arg(long, value_name = "PORT")]
    grpc_port: Option<u16>,
    /// Largest gRPC message accepted, in bytes (RESOURCE_EXHAUSTED above it).
    #[arg(long, value_name = "BYTES", default_value_t = serving::grpc::DEFAULT_MAX_MESSAGE_BYTES)]
    grpc_max_message_bytes: usize,
    /// Largest accepted request body, in bytes (Cloud ML Engine's limit is 1.5 MB).
    #[arg(long, default_value_t = serving::DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,
    /// Requests handled at once; more are refused with 503 and Retry-After.
    #[arg(long, default_value_t = 1024)]
    max_concurrent_requests: usize,
    /// Per-request time limit in milliseconds (answers 504 when exceeded).
    #[arg(long, default_value_t = 30_000)]
    request_timeout_ms: u64,
    /// Run every request on its own instead of merging concurrent ones into one forward pass.
    #[arg(long)]
    no_batching: bool,
    /// Most instances merged into one forward pass.
    #[arg(long, default_value_t = 128)]
    max_batch_size: usize,
    /// Longest a forming batch waits for requests that are still arriving, in microseconds.
    #[arg(long, default_value_t = 500)]
    batch_timeout_micros: u64,
    /// Requests waiting for a batch, per version, before 503.
    #[arg(long, default_value_t = 1024)]
    max_enqueued: usize,
    /// Threads running batches, per version (default: the number of CPUs).
    #[arg(long)]
    batch_threads: Option<usize>,
    /// How often --model-base-path folders are polled, in seconds.
    #[arg(long, default_value_t = 1.0)]
    file_system_poll_wait_seconds: f64,
    /// Threads one forward pass may use. Concurrency already comes from the batch workers and
    /// the request pool, so more than 1 mostly oversubscribes the cores.
    #[arg(long, default_value_t = 1)]
    inference_threads: usize,
    /// How often the registry is re-read to follow other replicas, in seconds.
    #[arg(long, default_value_t = 10.0)]
    registry_poll_seconds: f64,
    /// Longest wait, in seconds, for a client to send a complete request line and headers,
    /// including the wait for the next request on an idle keep-alive connection; the
    /// connection is closed when it runs out (protects against slow-loris clients).
    #[arg(long, value_name = "SECS", default_value_t = serving::DEFAULT_HEADER_READ_TIMEOUT.as_secs_f64())]
    header_read_timeout: f64,
    /// Longest time, in seconds, a request body may take to arrive (408 after that). The
    /// request counts against --max-concurrent-requests only once its body is in.
    #[arg(long, value_name = "SECS", default_value_t = serving::DEFAULT_BODY_READ_TIMEOUT.as_secs_f64())]
    body_read_timeout: f64,
    /// Slowest accepted request body in bytes per second, after a 2 s start (408 below it;
    /// 0 turns the check off).
    #[arg(long, value_name = "BYTES", default_value_t = serving::DEFAULT_MIN_BODY_RATE)]
    min_body_rate: u64,
    /// Request bodies one client address may send slowly (still arriving after 100 ms) at
    /// once; more get 429.
    #[arg(long, value_name = "N", default_value_t = serving::DEFAULT_MAX_SLOW_BODIES_PER_CLIENT)]
    max_slow_bodies_per_client: usize,
    /// A browser origin (`http://host:port`) whose pages may create, delete and re-default
    /// models and versions; repeatable. Other cross-origin requests for those calls are refused.
    #[arg(long = "cors-allow-origin", value_name = "ORIGIN")]
    cors_origins: Vec<String>,
    /// Allow creating, deleting and re-defaulting models and versions without
    /// --auth-token-file on a non-loopback --host (off by default: anyone who can reach the
    /// port could deploy models).
    #[arg(long)]
    allow_unauthenticated_changes: bool,
    /// Most memory one model version may need, in MiB: its constants, variables and the
    /// intermediate tensors of the largest batch, checked before anything is allocated (the
    /// version is FAILED with the largest tensors named when over).
    #[arg(long, value_name = "MIB", default_value_t = savedmodel_runtime::DEFAULT_MEMORY_BUDGET >> 20)]
    memory_budget_mb: u64,
    /// Where the models run.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
    /// The trainer binary training jobs run [default: `trainer` beside this binary].
    #[arg(long, value_name = "FILE")]
    trainer_path: Option<PathBuf>,
    /// Training jobs whose master asks for a GPU this machine or build cannot provide train on
    /// the CPU (the trainer's --allow-cpu) instead of failing.
    #[arg(long)]
    allow_cpu: bool,
    /// Training jobs run on the CPU at once; more wait QUEUED (GPU jobs: one per GPU).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1024))]
    max_concurrent_jobs: u64,
    /// Seconds a cancelled job's trainer has between SIGTERM (it checkpoints) and SIGKILL.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    job_cancel_grace_seconds: f64,
}

fn name_and_url(flag: &str, value: &str) -> Result<(String, String)> {
    match value.split_once('=') {
        Some((name, url)) if !name.is_empty() && !url.is_empty() => {
            Ok((name.to_string(), url.to_string()))
        }
        _ => bail!("{flag} expects NAME=URL, got {value:?}"),
    }
}

/// The Vertex AI custom-container contract (`docs/reference/inference_protocols.md` §3): when
/// Vertex starts the container it sets these, and the server must listen on
/// `0.0.0.0:$AIP_HTTP_PORT`, answer health checks and predictions on the given routes and serve
/// the model copied to `$AIP_STORAGE_URI`.
const VERTEX_VARIABLES: [&str; 4] = [
    "AIP_HTTP_PORT",
    "AIP_HEALTH_ROUTE",
    "AIP_PREDICT_ROUTE",
    "AIP_STORAGE_URI",
];

/// The Vertex settings, when all four `AIP_*` variables are set; an error naming the missing
/// ones when only some are (a half-configured container should not start serving elsewhere).
fn vertex_from_env() -> Result<Option<(u16, serving::VertexRoutes, String)>> {
    let values: Vec<Option<String>> = VERTEX_VARIABLES
        .iter()
        .map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
        .collect();
    if values.iter().all(Option::is_none) {
        return Ok(None);
    }
    let missing: Vec<&str> = VERTEX_VARIABLES
        .iter()
        .zip(&values)
        .filter(|(_, v)| v.is_none())
        .map(|(name, _)| *name)
        .collect();
    if !missing.is_empty() {
        bail!(
            "Vertex AI mode needs {} set, but {} {} missing or empty",
            VERTEX_VARIABLES.join(", "),
            missing.join(", "),
            if missing.len() == 1 { "is" } else { "are" }
        );
    }
    let mut values = values.into_iter().flatten();
    let mut next = || values.next().unwrap_or_default();
    let (port, health, predict, storage) = (next(), next(), next(), next());
    let port: u16 = port
        .parse()
        .with_context(|| format!("AIP_HTTP_PORT={port:?} is not a port number"))?;
    for (name, route) in [
        ("AIP_HEALTH_ROUTE", &health),
        ("AIP_PREDICT_ROUTE", &predict),
    ] {
        if !route.starts_with('/') {
            bail!("{name}={route:?} must be a path starting with '/'");
        }
    }
    Ok(Some((
        port,
        serving::VertexRoutes { health, predict },
        storage,
    )))
}

fn seconds(flag: &str, value: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(value)
        .with_context(|| format!("{flag} must be a non-negative number of seconds"))
}

pub fn run(args: ServeArgs) -> Result<()> {
    // candle sizes its matrix-product parallelism from RAYON_NUM_THREADS, and without it
    // re-reads /proc/cpuinfo on every product (a measurable share of a small forward pass).
    let set_rayon_threads = std::env::var_os("RAYON_NUM_THREADS").is_none();
    if set_rayon_threads {
        // SAFETY: called before the async runtime, the storage I/O runtime or any other thread
        // is started, so no other thread can be reading the environment concurrently.
        unsafe {
            std::env::set_var(
                "RAYON_NUM_THREADS",
                args.inference_threads.max(1).to_string(),
            )
        };
    }
    // Per-request log lines are buffered (see `log_writer`); the guard writes out the rest.
    let (log_writer, _flush_logs_on_exit) = crate::log_writer::BufferedStderr::start();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(log_writer)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init()
        .ok();

    let mut config = serving::ServeConfig::new(args.registry.clone());
    let ip: std::net::IpAddr = args
        .host
        .parse()
        .with_context(|| format!("--host {:?} is not an IP address", args.host))?;
    config.addr = std::net::SocketAddr::new(ip, args.port);
    config.project = args.project;
    config.models = args
        .models
        .iter()
        .map(|v| name_and_url("--model", v))
        .collect::<Result<_>>()?;
    config.base_paths = args
        .base_paths
        .iter()
        .map(|v| name_and_url("--model-base-path", v))
        .collect::<Result<_>>()?;
    if let Some(path) = &args.auth_token_file {
        let token = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read --auth-token-file {}", path.display()))?;
        let token = token.trim();
        if token.is_empty() {
            bail!("--auth-token-file {} is empty", path.display());
        }
        config.auth_token = Some(token.to_string());
    }
    if let Some((port, routes, storage_uri)) = vertex_from_env()? {
        // Vertex health-checks and routes traffic from outside the container.
        config.addr = std::net::SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), port);
        let name = std::env::var("AIP_MODEL_NAME")
            .ok()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "model".to_string());
        config.models.push((name.clone(), storage_uri));
        if args.registry == DEFAULT_REGISTRY {
            // Vertex deploys one model per container: nothing to persist between restarts.
            config.registry = "memory://vertex-registry".to_string();
        }
        config.vertex = Some(serving::VertexModel { name, routes });
    }
    config.allowed_origins = args.allow_origins;
    config.max_body_bytes = args.max_body_bytes;
    config.grpc_max_message_bytes = args.grpc_max_message_bytes.max(1);
    let grpc_addr = args
        .grpc_port
        .map(|port| std::net::SocketAddr::new(config.addr.ip(), port));
    config.max_concurrent_requests = args.max_concurrent_requests;
    config.request_timeout = Duration::from_millis(args.request_timeout_ms.max(1));
    config.poll_interval = seconds(
        "--file-system-poll-wait-seconds",
        args.file_system_poll_wait_seconds,
    )?;
    config.registry_poll_interval = seconds("--registry-poll-seconds", args.registry_poll_seconds)?;
    config.header_read_timeout = seconds("--header-read-timeout", args.header_read_timeout)?;
    if config.header_read_timeout.is_zero() {
        bail!("--header-read-timeout must be more than 0 seconds");
    }
    config.body_read_timeout = seconds("--body-read-timeout", args.body_read_timeout)?;
    if config.body_read_timeout.is_zero() {
        bail!("--body-read-timeout must be more than 0 seconds");
    }
    config.min_body_rate = args.min_body_rate;
    if args.max_slow_bodies_per_client == 0 {
        bail!("--max-slow-bodies-per-client must be at least 1");
    }
    config.max_slow_bodies_per_client = args.max_slow_bodies_per_client;
    for origin in &args.cors_origins {
        let host = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .map(|rest| rest.trim_end_matches('/'));
        let well_formed = host.is_some_and(|h| !h.is_empty() && !h.contains('/'));
        if !well_formed {
            bail!(
                "--cors-allow-origin expects an origin such as http://localhost:3000, got {origin:?}"
            );
        }
    }
    config.cors_origins = args.cors_origins;
    config.allow_unauthenticated_changes = args.allow_unauthenticated_changes;
    config.memory_budget = args.memory_budget_mb.saturating_mul(1 << 20);
    config.device = device::open(args.device, "predictor", "running models")?;
    config.jobs = serving::JobsOptions {
        trainer: args.trainer_path,
        allow_cpu: args.allow_cpu,
        max_concurrent_jobs: usize::try_from(args.max_concurrent_jobs).unwrap_or(1),
        cancel_grace: seconds("--job-cancel-grace-seconds", args.job_cancel_grace_seconds)?,
        // The one-thread setting above is for inference; the trainer picks its own threads.
        env_remove: if set_rayon_threads {
            vec!["RAYON_NUM_THREADS".to_string()]
        } else {
            Vec::new()
        },
    };
    config.batching = (!args.no_batching).then(|| {
        let mut batching = serving::BatchingConfig {
            max_batch_size: args.max_batch_size.max(1),
            batch_timeout: Duration::from_micros(args.batch_timeout_micros),
            max_enqueued: args.max_enqueued.max(1),
            ..serving::BatchingConfig::default()
        };
        if let Some(threads) = args.batch_threads {
            batching.threads = threads.max(1);
        }
        batching
    });

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("predictor-serve")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let addr = config.addr;
        let registry = config.registry.clone();
        let device = device::describe(&config.device);
        // As TF Serving: the configured models load (or fail, and say why in their status)
        // before the ports open, so the first request after "listening on" finds them.
        let server = serving::Server::load(config, None).await?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener.local_addr()?;
        let grpc_listener = match grpc_addr {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen for gRPC on {addr}"))?,
            ),
            None => None,
        };
        {
            let mut stdout = std::io::stdout().lock();
            // The gRPC line comes first: "listening on" is the line that says the server is up.
            if let Some(grpc) = &grpc_listener {
                writeln!(stdout, "grpc listening on {}", grpc.local_addr()?)?;
            }
            writeln!(stdout, "listening on http://{local}")?;
            stdout.flush()?;
        }
        tracing::info!(%local, %registry, %device, "predictor serve started");
        server
            .serve(listener, grpc_listener, shutdown_signal())
            .await?;
        Ok(())
    })
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}
