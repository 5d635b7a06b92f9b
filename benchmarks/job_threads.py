"""Thread layouts of the workflow's jobs on a small machine, side by side in one run.

After a ``make run`` (or any finished run of a config), this replays some of its jobs with the
commands the workflow runs (from ``snakemake -n -p --forceall``), reading the run's checkpoints and
cached real-image statistics and writing into a temporary folder:

* two fine-tuning jobs one after the other at ``--threads`` threads each vs the same two side by
  side at 1 thread each (what ``workflow.finetune_threads: 1`` lets Snakemake do on 2 cores);
* the original's evaluation at 1 thread vs at ``--threads`` threads (every sweep and evaluation job
  waits for it, so it runs alone).

Each layout is timed ``--repeat`` times, interleaved, and the medians and their ratio printed.

    python benchmarks/job_threads.py --configfile config/wav2lip_demo.yaml
    python benchmarks/job_threads.py --configfile config/config.yaml --repeat 3
"""

from __future__ import annotations

import argparse
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def dry_run_commands(configfile: str) -> dict[str, list[str]]:
    """rule -> the shell commands of its jobs, from a forced dry run (nothing is run)."""
    out = subprocess.run(
        [
            str(Path(sys.executable).parent / "snakemake"),
            "-n",
            "-p",
            "--forceall",
            "--cores",
            "2",
            "--configfile",
            configfile,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    jobs: dict[str, list[str]] = {}
    for block in out.split("\n\n"):
        rule = re.search(r"^(?:local)?rule (\w+):", block, re.M)
        shell = re.search(r"^Shell command: (.+)$", block, re.M)
        if rule and shell:
            jobs.setdefault(rule.group(1), []).append(shell.group(1))
    return jobs


def with_threads(cmd: str, threads: int, out_dir: Path, name: str) -> str:
    """``cmd`` at ``threads`` threads, its outputs and log redirected into ``out_dir``."""
    cmd = re.sub(r"OMP_NUM_THREADS=\d+", f"OMP_NUM_THREADS={threads}", cmd)
    cmd = re.sub(r"--set train\.threads=\d+", f"--set train.threads={threads}", cmd)
    if "OMP_NUM_THREADS=" not in cmd:
        cmd = f"OMP_NUM_THREADS={threads} {cmd}"
    target = shlex.quote(str(out_dir / name))
    cmd = re.sub(r"--out \S+", f"--out {target}", cmd)
    cmd = re.sub(r"--resume ", "", cmd)
    return re.sub(r"> \S+ 2>&1$", f"> {target}.log 2>&1", cmd)


def timed(cmds: list[str]) -> float:
    """Seconds until every command (started together) has finished; a failure stops the run."""
    t = time.perf_counter()
    procs = [subprocess.Popen(c, shell=True, cwd=REPO) for c in cmds]
    for p, c in zip(procs, cmds):
        if p.wait() != 0:
            raise SystemExit(f"failed: {c}")
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--configfile", default="config/wav2lip_demo.yaml", help="a config whose run has finished"
    )
    ap.add_argument("--threads", type=int, default=2, help="the machine's cores (default 2)")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()

    jobs = dry_run_commands(args.configfile)
    finetunes, original = jobs["finetune_variant"][:2], jobs["evaluate_original"][0]
    tmp = Path(tempfile.mkdtemp(prefix="unetprune-threads-bench-"))
    layouts = {
        f"2 fine-tunes in turn at {args.threads} threads": lambda i: (
            timed([with_threads(finetunes[0], args.threads, tmp, f"a{i}")])
            + timed([with_threads(finetunes[1], args.threads, tmp, f"b{i}")])
        ),
        "2 fine-tunes side by side at 1 thread": lambda i: timed(
            [with_threads(c, 1, tmp, f"{n}{i}") for c, n in zip(finetunes, "cd")]
        ),
        "the original's evaluation at 1 thread": lambda i: timed(
            [with_threads(original, 1, tmp, f"e{i}.json")]
        ),
        f"the original's evaluation at {args.threads} threads": lambda i: timed(
            [with_threads(original, args.threads, tmp, f"f{i}.json")]
        ),
    }
    times: dict[str, list[float]] = {k: [] for k in layouts}
    for i in range(args.repeat):
        for name, run in layouts.items():
            times[name].append(run(i))
            print(f"  {name}: {times[name][-1]:.1f} s", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    names = list(layouts)
    print(f"\n{args.configfile}, medians of {args.repeat} (interleaved):")
    for a, b in ((names[0], names[1]), (names[2], names[3])):
        print(f"  {b}: {med[b]:.1f} s vs {a}: {med[a]:.1f} s -> x{med[a] / med[b]:.2f} faster")
    print(f"(outputs in {tmp})")


if __name__ == "__main__":
    main()
