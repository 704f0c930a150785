//! Shared helpers for the `predictor serve` tests: a real server process on a free port, the
//! client CLI, fixtures, and small HTTP calls.
// Test support: a failed setup step should stop the test with its panic message.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub const PREDICTOR: &str = env!("CARGO_BIN_EXE_predictor");

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// A SavedModel fixture made by TensorFlow 2.21 (testdata/savedmodels/<name>).
pub fn fixture(name: &str) -> PathBuf {
    workspace_root().join("testdata/savedmodels").join(name)
}

pub fn sample_json() -> PathBuf {
    workspace_root().join("testdata/sample.json")
}

/// Writes `path` as a `{"instances": [...]}` request body holding the newline-delimited
/// instances of `lines` (the `--json-request` form of a `--json-instances` file).
pub fn write_json_request(lines: &str, path: &Path) {
    let instances: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    std::fs::write(
        path,
        serde_json::json!({ "instances": instances }).to_string(),
    )
    .unwrap();
}

/// MNIST's labels of the first ten test images, the digits drawn in testdata/sample.json.
pub const SAMPLE_LABELS: [i64; 10] = [7, 2, 1, 0, 4, 1, 4, 9, 5, 9];

/// The `trainer` binary of this tree. Cargo builds a package's tests with that package's binaries
/// only, so it is built (or found up to date) with `cargo build -p trainer` once per test process:
/// a test serving "the model the trainer wrote" then really runs this tree's trainer code.
pub fn trainer_binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let predictor = PathBuf::from(PREDICTOR);
            let trainer =
                predictor.with_file_name(format!("trainer{}", std::env::consts::EXE_SUFFIX));
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut build = Command::new(cargo);
            build
                .args(["build", "--quiet", "-p", "trainer"])
                .current_dir(workspace_root());
            if predictor.parent().is_some_and(|d| d.ends_with("release")) {
                build.arg("--release");
            }
            let status = build.status().expect("running cargo build -p trainer");
            assert!(
                status.success() && trainer.exists(),
                "could not build the trainer at {}",
                trainer.display()
            );
            trainer
        })
        .clone()
}

/// Trains the tutorial network with the real trainer on testdata/idx/mnist-small (1,000 images;
/// seed 1, one thread, so every run writes the same weights) and returns the SavedModel it
/// exported, `<dir>/job/model`. Three epochs are enough to classify most of sample.json.
pub fn trainer_model(dir: &Path, epochs: u32) -> PathBuf {
    let job_dir = dir.join("job");
    let mut trainer = Command::new(trainer_binary());
    trainer
        .arg("--train-file")
        .arg(workspace_root().join("testdata/idx/mnist-small"))
        .arg("--job-dir")
        .arg(&job_dir)
        .args([
            "--epochs",
            &epochs.to_string(),
            "--seed",
            "1",
            "--threads",
            "1",
        ]);
    succeeded(&mut trainer, "the trainer");
    job_dir.join("model")
}

/// Runs a command to its end and asserts that it succeeded; `what` names it in the failure.
pub fn succeeded(command: &mut Command, what: &str) -> Output {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// `predictor local --format json` on testdata/sample.json: the reference answer for a model.
pub fn local_predictions(model_dir: &Path) -> serde_json::Value {
    let mut local = Command::new(PREDICTOR);
    local
        .arg("local")
        .arg("--model-dir")
        .arg(model_dir)
        .arg("--json-instances")
        .arg(sample_json())
        .args(["--format", "json"]);
    let output = succeeded(&mut local, "predictor local");
    json(&String::from_utf8(output.stdout).unwrap())["predictions"].clone()
}

/// The `class` of each prediction in a list of `{"class": …, "probabilities": […]}`.
pub fn classes(predictions: &serde_json::Value) -> Vec<i64> {
    predictions
        .as_array()
        .unwrap_or_else(|| panic!("not a list of predictions: {predictions}"))
        .iter()
        .map(|p| p["class"].as_i64().unwrap())
        .collect()
}

/// Copies a local SavedModel folder to a `gs://` URL on the emulator, `saved_model.pb` last.
pub async fn upload_to_gcs(emulator: &gcs_emulator::GcsEmulator, dir: &Path, url: &str) {
    fn walk(root: &Path, dir: &Path, files: &mut Vec<(String, bytes::Bytes)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, files);
            } else {
                let relative = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .to_string();
                files.push((relative, bytes::Bytes::from(std::fs::read(&path).unwrap())));
            }
        }
    }
    let location = storage::Location::parse_with(url, &emulator.storage_options()).unwrap();
    let mut files = Vec::new();
    walk(dir, dir, &mut files);
    location.write_tree(files, "saved_model.pb").await.unwrap();
}

/// TF's own outputs for the fixture's instances (expected.json, written with the fixture).
pub fn expected(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(fixture(name).join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// TF's classes for the 10 sample images (the first rows of the fixture's expected.json).
pub fn fixture_classes(name: &str) -> Vec<i64> {
    expected(name)["outputs"]["class"]["values"]
        .as_array()
        .unwrap()[..10]
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect()
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A `predictor serve` child process; killed when dropped.
pub struct Server {
    child: Child,
    pub url: String,
    /// `HOST:PORT` of the gRPC API, when started with `--grpc-port`.
    pub grpc: Option<String>,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `predictor serve --port 0 <args>` and waits for its `listening on` line.
    pub fn start(args: &[&str], envs: &[(&str, &str)]) -> Server {
        let mut command = Command::new(PREDICTOR);
        command
            .args(["serve", "--port", "0"])
            .args(args)
            .env("RUST_LOG", "info")
            .env_remove("STORAGE_EMULATOR_HOST");
        for (key, value) in envs {
            command.env(key, value);
        }
        Server::spawn(command)
    }

    /// Runs a prepared `predictor serve` command and waits for its `listening on` line.
    pub fn spawn(mut command: Command) -> Server {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("cannot start predictor serve");
        let log = Arc::new(Mutex::new(String::new()));
        let mut stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        // With --grpc-port, the gRPC address comes on the line before.
        let grpc = line
            .trim()
            .strip_prefix("grpc listening on ")
            .map(str::to_string);
        if grpc.is_some() {
            line.clear();
            stdout.read_line(&mut line).unwrap();
        }
        let Some(url) = line.trim().strip_prefix("listening on ") else {
            let _ = child.kill();
            std::thread::sleep(Duration::from_millis(200));
            panic!(
                "server did not start: stdout {line:?}; log:\n{}",
                log.lock().unwrap()
            );
        };
        let url = url.to_string();
        // Keep draining stdout so the server never blocks on it.
        std::thread::spawn(move || {
            let mut sink = String::new();
            let _ = stdout.read_to_string(&mut sink);
        });
        Server {
            child,
            url,
            grpc,
            log,
        }
    }

    /// Starts a server whose registry is the folder `<dir>/reg`.
    pub fn start_in(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Server {
        let registry = dir.join("reg");
        let mut all = vec!["--registry", registry.to_str().unwrap()];
        all.extend_from_slice(args);
        Server::start(&all, envs)
    }

    /// `predictor models create MODEL` then `predictor versions create VERSION --origin ORIGIN`;
    /// `auth` (such as `--auth-token-file F`) is passed to both.
    pub fn deploy(&self, model: &str, version: &str, origin: &str, auth: &[&str]) {
        let mut create = vec!["models", "create", model];
        create.extend_from_slice(auth);
        self.cli_ok(&create);
        self.create_version(model, version, origin, auth);
    }

    /// `predictor versions create VERSION --model MODEL --origin ORIGIN`, which waits for READY.
    pub fn create_version(&self, model: &str, version: &str, origin: &str, auth: &[&str]) {
        let mut create = vec![
            "versions", "create", version, "--model", model, "--origin", origin,
        ];
        create.extend_from_slice(auth);
        self.cli_ok(&create);
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits (at most `limit`) for the process to exit.
    pub fn terminate(&mut self, limit: Duration) -> Option<ExitStatus> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        self.wait_exit(limit)
    }

    /// Waits (at most `limit`) for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Runs a client command against this server.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(PREDICTOR)
            .args(args)
            .args(["--endpoint", &self.url])
            .env_remove("PREDICTOR_ENDPOINT")
            .output()
            .unwrap()
    }

    /// Runs a client command and asserts it succeeded; returns stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "predictor {args:?} failed: {}\nstdout: {}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout),
            self.log()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let response = reqwest::Client::new()
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    pub async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> (u16, String) {
        self.try_post(path, body).await.unwrap()
    }

    /// Like `post`, but hands back transport errors instead of panicking.
    pub async fn try_post(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
    ) -> Result<(u16, String), reqwest::Error> {
        let response = reqwest::Client::new()
            .post(format!("{}{path}", self.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        Ok((response.status().as_u16(), response.text().await?))
    }

    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<String>,
    ) -> (u16, String) {
        let mut request = reqwest::Client::new().request(method, format!("{}{path}", self.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let response = request.send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// Polls TF Serving's status route until `check` accepts the body (at most `limit`).
    pub async fn wait_for_status(
        &self,
        model: &str,
        limit: Duration,
        check: impl Fn(&str) -> bool,
    ) -> String {
        let started = Instant::now();
        loop {
            let (_, body) = self.get(&format!("/v1/models/{model}")).await;
            if check(&body) {
                return body;
            }
            assert!(
                started.elapsed() < limit,
                "status of {model} never matched; last: {body}\nlog:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The `error` string of a TF Serving / online prediction error body.
pub fn error_of(body: &str) -> String {
    match json(body).get("error") {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other["message"].as_str().unwrap_or_default().to_string(),
        None => panic!("no error in {body}"),
    }
}

/// The first `rows` instances of a fixture's expected.json input, as JSON rows.
pub fn fixture_rows(name: &str, input: &str, rows: usize) -> Vec<serde_json::Value> {
    let expected = expected(name);
    let values = expected["inputs"][input]["values"].as_array().unwrap();
    let shape: Vec<usize> = expected["inputs"][input]["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    let per_row: usize = shape[1..].iter().product();
    (0..rows)
        .map(|r| serde_json::Value::Array(values[r * per_row..(r + 1) * per_row].to_vec()))
        .collect()
}

pub fn sample_instances() -> Vec<serde_json::Value> {
    std::fs::read_to_string(sample_json())
        .unwrap()
        .lines()
        .map(json)
        .collect()
}

pub fn free_port_is_loopback(url: &str) -> bool {
    url.starts_with("http://127.0.0.1:")
}
