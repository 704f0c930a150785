//! Runs fake-gcs-server for manual `gs://` experiments, until Enter, end of input or Ctrl-C.
//!
//! ```text
//! cargo run -p gcs-emulator -- --bucket demo --upload testdata/mnist=gs://demo/mnist
//! STORAGE_EMULATOR_HOST=http://127.0.0.1:PORT cargo run -p trainer -- --train-file gs://demo/mnist ...
//! ```

use std::process::ExitCode;

use gcs_emulator::GcsEmulator;

const USAGE: &str =
    "usage: gcs-emulator [--bucket NAME]... [--upload LOCAL_DIR=gs://BUCKET/PREFIX]...";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("gcs-emulator: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let mut buckets = Vec::new();
    let mut uploads = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bucket" => buckets.push(args.next().ok_or(USAGE)?),
            "--upload" => {
                let spec = args.next().ok_or(USAGE)?;
                let (dir, url) = spec.split_once('=').ok_or(USAGE)?;
                uploads.push((dir.to_string(), url.to_string()));
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    let bucket_names: Vec<&str> = buckets.iter().map(String::as_str).collect();
    let emulator =
        GcsEmulator::start_with_buckets(&bucket_names).map_err(|error| error.to_string())?;
    for (dir, url) in &uploads {
        upload(&emulator, dir, url)?;
    }
    println!("STORAGE_EMULATOR_HOST={}", emulator.endpoint());
    eprintln!(
        "fake-gcs-server is running (pid {}); press Enter or Ctrl-D to stop it.",
        emulator.pid()
    );
    let mut line = String::new();
    // Any outcome (a line, end of input, an error) means stop.
    let _ = std::io::stdin().read_line(&mut line);
    Ok(())
}

/// Copies the files directly inside `dir` to `url` in the emulator.
fn upload(emulator: &GcsEmulator, dir: &str, url: &str) -> Result<(), String> {
    let target = storage::Location::parse_with(url, &emulator.storage_options())
        .map_err(|error| error.to_string())?;
    let entries = std::fs::read_dir(dir).map_err(|error| format!("cannot list {dir}: {error}"))?;
    for entry in entries {
        let path = entry
            .map_err(|error| format!("cannot list {dir}: {error}"))?
            .path();
        if !path.is_file() {
            continue;
        }
        let name = path
            .file_name()
            .and_then(|name| name.to_str())
            .ok_or_else(|| format!("{} has a name that is not UTF-8", path.display()))?;
        let data = std::fs::read(&path)
            .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
        target
            .try_join(name)
            .and_then(|object| object.write_blocking(data.into()))
            .map_err(|error| error.to_string())?;
        eprintln!("uploaded {} to {}", path.display(), target.join(name));
    }
    Ok(())
}
