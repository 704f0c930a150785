"""Driver for bench/epoch.sh: runs the contenders, interleaved, and prints a comparison table.

Each contender trains one epoch of the reference network (batch 32, SGD momentum 0.9,
lr 0.01, dropout 0.2) on testdata/mnist with the same number of CPU threads, then evaluates on
the test set. The time compared is the epoch's training loop alone (data already in memory),
as each program measures it: the Rust trainer's `timings_seconds.train_epochs[0]` from job.json,
PyTorch's loop around its batches, Keras's on_epoch_begin/on_epoch_end callback.
"""

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown"


def run_ours(args, work, extra=()):
    job_dir = tempfile.mkdtemp(prefix="job-", dir=work)
    trainer = args.trainer or os.path.join(ROOT, "target", "release", "trainer")
    cmd = [trainer, "--train-file", args.data, "--job-dir", job_dir,
           "--threads", str(args.threads), "--seed", str(args.seed), *extra]
    time_bin = shutil.which("time") or "/usr/bin/time"
    proc = subprocess.run([time_bin, "-v"] + cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"trainer failed:\n{proc.stdout}\n{proc.stderr}")
    with open(os.path.join(job_dir, "job.json")) as f:
        job = json.load(f)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    # "Wrote K checkpoints in S s" (stderr), when checkpoints were written.
    written = re.search(r"Wrote (\d+) checkpoints in ([0-9.]+)s", proc.stderr)
    shutil.rmtree(job_dir, ignore_errors=True)
    return {
        "epoch_seconds": job["timings_seconds"]["train_epochs"][0],
        "test_accuracy": job["metrics"]["test_accuracy"],
        "peak_rss_mib": int(rss.group(1)) / 1024 if rss else None,
        "version": "trainer " + job["versions"]["trainer"] + ", " + job["device"],
        "checkpoints": int(written.group(1)) if written else 0,
        "checkpoint_seconds": float(written.group(2)) if written else 0.0,
    }


def run_peer(args, script):
    python = os.path.join(args.venv, "bin", "python")
    cmd = [python, os.path.join(ROOT, "bench", "peers", script), "--data", args.data,
           "--threads", str(args.threads), "--seed", str(args.seed)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.exit(f"{script} failed:\n{proc.stdout}\n{proc.stderr}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return {
        "epoch_seconds": result["epoch_seconds"][0],
        "test_accuracy": result["test_accuracy"],
        "peak_rss_mib": None,
        "version": result["version"],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--data", default=os.path.join(ROOT, "testdata", "mnist"))
    parser.add_argument("--venv", default=os.path.join(ROOT, ".venv-peers"))
    parser.add_argument("--no-keras", action="store_true")
    parser.add_argument("--json", help="also write the raw results here")
    parser.add_argument("--trainer", help="trainer binary [default: target/release/trainer]")
    parser.add_argument("--checkpoint-every", type=int, default=0,
                        help="also run the trainer with --checkpoint-every-steps N (contender "
                             "'ours+ckpt'); the plain contender writes only its epoch-end checkpoint")
    args = parser.parse_args()
    if not os.path.exists(os.path.join(args.venv, "bin", "python")):
        sys.exit(f"{args.venv} missing: run bench/peers/setup.sh first")

    contenders = [("ours", lambda: run_ours(args, work))]
    if args.checkpoint_every:
        every = ["--checkpoint-every-steps", str(args.checkpoint_every)]
        contenders.append(("ours+ckpt", lambda: run_ours(args, work, every)))
    contenders.append(("pytorch", lambda: run_peer(args, "pytorch_mlp.py")))
    if not args.no_keras:
        contenders.append(("keras", lambda: run_peer(args, "keras_mlp.py")))

    results = {name: [] for name, _ in contenders}
    with tempfile.TemporaryDirectory() as work:
        for run in range(args.runs):
            for name, fn in contenders:
                r = fn()
                results[name].append(r)
                print(f"run {run + 1}/{args.runs} {name:8s} {r['epoch_seconds']:7.3f} s/epoch  "
                      f"test accuracy {r['test_accuracy']:.4f}", file=sys.stderr, flush=True)

    print(f"\nMachine: {cpu_model()}, {os.cpu_count()} CPUs; {args.threads} threads per "
          f"contender; batch 32; seed {args.seed}; {args.runs} runs each, interleaved\n")
    header = "| contender | " + " | ".join(f"run {i + 1} (s)" for i in range(args.runs)) + \
        " | median (s) | median / PyTorch | test accuracy |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    torch_median = statistics.median(r["epoch_seconds"] for r in results["pytorch"])
    for name, _ in contenders:
        times = [r["epoch_seconds"] for r in results[name]]
        median = statistics.median(times)
        accs = ", ".join(f"{r['test_accuracy']:.4f}" for r in results[name])
        print(f"| {name} ({results[name][0]['version']}) | "
              + " | ".join(f"{t:.3f}" for t in times)
              + f" | {median:.3f} | {median / torch_median:.2f} | {accs} |")
    rss = [r["peak_rss_mib"] for r in results["ours"] if r["peak_rss_mib"] is not None]
    if rss:
        print(f"\nTrainer peak RSS (whole process, /usr/bin/time -v): {max(rss):.1f} MiB")
    ratio = statistics.median(r["epoch_seconds"] for r in results["ours"]) / torch_median
    print(f"Ratio ours / PyTorch (medians): {ratio:.2f}")
    if args.checkpoint_every:
        plain = statistics.median(r["epoch_seconds"] for r in results["ours"])
        with_ckpt = statistics.median(r["epoch_seconds"] for r in results["ours+ckpt"])
        writes = statistics.median(r["checkpoint_seconds"] for r in results["ours+ckpt"])
        count = results["ours+ckpt"][0]["checkpoints"]
        print(f"Checkpoint every {args.checkpoint_every} steps: {count} checkpoints, writing them "
              f"took {writes:.3f} s = {100 * writes / with_ckpt:.1f}% of the epoch; epoch "
              f"{with_ckpt:.3f} s vs {plain:.3f} s without ({100 * (with_ckpt / plain - 1):+.1f}%); "
              f"ours+ckpt / PyTorch {with_ckpt / torch_median:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": args.threads, "seed": args.seed, "cpu": cpu_model(),
                       "results": results, "ratio_vs_pytorch": ratio}, f, indent=2)


if __name__ == "__main__":
    main()
