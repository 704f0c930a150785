//! `--device` on `predictor local` and `predictor serve`: `cpu` and the default `auto` work
//! everywhere; `cuda` where the build or the machine cannot provide a GPU is an error that names
//! the flag and says why, before anything is loaded or bound.
// Helpers outside #[test] functions panic on failed setup too, like the tests themselves.

use std::process::Command;
use std::time::Duration;

use crate::serve_support::*;

fn local(device: &str) -> std::process::Output {
    Command::new(PREDICTOR)
        .arg("local")
        .arg("--model-dir")
        .arg(fixture("tf1-tutorial"))
        .arg("--json-instances")
        .arg(sample_json())
        .args(["--format", "json", "--device", device])
        .output()
        .unwrap()
}

#[test]
fn cpu_and_auto_predict_the_same() {
    let cpu = local("cpu");
    let auto = local("auto");
    assert!(
        cpu.status.success(),
        "{}",
        String::from_utf8_lossy(&cpu.stderr)
    );
    assert!(
        auto.status.success(),
        "{}",
        String::from_utf8_lossy(&auto.stderr)
    );
    let cpu_classes = classes(&json(&String::from_utf8_lossy(&cpu.stdout))["predictions"]);
    let auto_classes = classes(&json(&String::from_utf8_lossy(&auto.stdout))["predictions"]);
    assert_eq!(cpu_classes, auto_classes);
    assert_eq!(cpu_classes, fixture_classes("tf1-tutorial"));
    if !cfg!(feature = "cuda") {
        // Nothing to choose from in a CPU-only build: gcloud's output, nothing else.
        assert_eq!(String::from_utf8_lossy(&auto.stderr), "");
    }
}

/// Without a usable GPU, `--device cuda` fails with the flag named and the reason given.
fn assert_cuda_refused(what: &str, output: &std::process::Output) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{what} succeeded: {stderr}");
    assert!(
        stderr.contains("--device cuda: "),
        "{what} does not name the flag: {stderr}"
    );
    let reason = if cfg!(feature = "cuda") {
        "no usable CUDA GPU"
    } else {
        "built without the `cuda` feature"
    };
    assert!(stderr.contains(reason), "{what}: {stderr}");
}

/// A `cuda` build on a machine with a GPU would accept the flag; this checks the refusal, so it
/// only runs where no GPU can be used.
#[test]
fn cuda_without_a_usable_gpu_is_a_clear_error() {
    if cfg!(feature = "cuda") && std::path::Path::new("/dev/nvidia0").exists() {
        eprintln!("a GPU is present: the refusal cannot be shown here");
        return;
    }
    let output = local("cuda");
    assert_cuda_refused("predictor local --device cuda", &output);
    assert!(
        output.stdout.is_empty(),
        "no predictions may be printed: {}",
        String::from_utf8_lossy(&output.stdout)
    );

    let tmp = tempfile::tempdir().unwrap();
    let mut serve = Command::new(PREDICTOR)
        .args(["serve", "--port", "0", "--device", "cuda", "--registry"])
        .arg(tmp.path().join("reg"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while serve.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(20) {
            let _ = serve.kill();
            panic!("predictor serve --device cuda kept running");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = serve.wait_with_output().unwrap();
    assert_cuda_refused("predictor serve --device cuda", &output);
    assert!(
        !String::from_utf8_lossy(&output.stdout).contains("listening on"),
        "the server must not start listening"
    );
}
