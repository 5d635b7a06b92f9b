"""The SLURM profile against a real single-node SLURM (Debian's `slurm-wlm` + `munge`).

A module fixture starts munged, slurmctld and slurmd (as root, from a slurm.conf written in a
temporary folder: this host as the only node, its CPUs and memory, no accounting), waits for
the node to be idle, and at teardown cancels what is left in the queue and stops exactly the
daemons it started, by PID.  The test runs `config/tiny.yaml` through `profiles/slurm-local`
(the cluster profile `profiles/slurm` plus single-node settings), prints the SLURM job ids of
the sbatch submissions, and compares the outputs with a local run of the same workflow.

Skipped, with the reason, where SLURM cannot be started here (not root, binaries missing);
`.ci/run` installs the Debian packages, so it runs in CI.
"""

import csv
import fcntl
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from test_workflow import ENV, workflow_copy

pytestmark = [pytest.mark.slow, pytest.mark.slurm]

BIN = Path(sys.executable).parent
DAEMONS = ("munged", "mungekey", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "sinfo", "scontrol", "scancel", "srun")
SUBMITTED = re.compile(r"has been submitted with SLURM jobid (\d+)")
# The executor's job steps call `srun` without SLURM_CONF (it drops every inherited SLURM_*
# variable), so the config must be at the default path; the fixture writes it there, marked,
# and removes it at teardown.  A config that is not ours is never touched.
SLURM_CONF = Path("/etc/slurm/slurm.conf")
MARK = "# written by unetprune tests/test_slurm.py (removed at teardown)"
# one such SLURM per machine: a second pytest process here skips instead of
# overwriting the config or cancelling the first one's jobs
LOCK = Path(tempfile.gettempdir()) / "unetprune-test-slurm.lock"


def _which(name: str) -> str | None:
    return shutil.which(name) or next(
        (str(p) for d in ("/usr/sbin", "/sbin") if (p := Path(d) / name).exists()), None
    )


def why_not() -> str | None:
    """Why a single-node SLURM cannot be started here (None: it can)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "starting slurmctld/slurmd/munged needs root (CI runs as root)"
    missing = [n for n in (*DAEMONS, *CLIENTS) if _which(n) is None]
    if missing:
        return (
            f"SLURM/munge not installed (missing {', '.join(missing)}): "
            "apt-get install -y --no-install-recommends slurm-wlm munge"
        )
    if SLURM_CONF.exists() and not SLURM_CONF.read_text(errors="replace").startswith(MARK):
        return f"{SLURM_CONF} exists (a configured SLURM); this test only starts its own on a bare machine"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SingleNodeSlurm:
    """munged + slurmctld + slurmd in the foreground, state and logs under ``root``."""

    def __init__(self, root: Path):
        self.root = root
        self.procs: dict[str, subprocess.Popen] = {}
        self.host = subprocess.run(
            ["hostname", "-s"], capture_output=True, text=True, check=True
        ).stdout.strip()
        self.conf = SLURM_CONF
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    # -- configuration ------------------------------------------------------------------------
    def node_line(self) -> str:
        """This host as slurmd sees it (CPUs, sockets, RealMemory), minus some memory for the OS."""
        out = subprocess.run([_which("slurmd"), "-C"], capture_output=True, text=True, check=True).stdout
        line = out.splitlines()[0].split()
        fields = dict(f.split("=", 1) for f in line)
        fields["NodeName"] = self.host
        fields["RealMemory"] = str(max(1000, int(fields["RealMemory"]) - 1024))
        return " ".join(f"{k}={v}" for k, v in fields.items()) + " State=UNKNOWN"

    def write_config(self) -> None:
        r = self.root
        for d in ("state", "spool", "munge"):
            (r / d).mkdir(mode=0o700)
        self.munge_socket = r / "munge" / "munge.socket"
        self.conf.parent.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(
            "\n".join(
                [
                    MARK,
                    f"# state and logs: {r}",
                    "ClusterName=unetprune",
                    f"SlurmctldHost={self.host}",
                    "SlurmUser=root",
                    "SlurmdUser=root",
                    "AuthType=auth/munge",
                    f"AuthInfo=socket={self.munge_socket}",
                    f"SlurmctldPort={_free_port()}",
                    f"SlurmdPort={_free_port()}",
                    f"StateSaveLocation={r / 'state'}",
                    f"SlurmdSpoolDir={r / 'spool'}",
                    f"SlurmctldPidFile={r / 'slurmctld.pid'}",
                    f"SlurmdPidFile={r / 'slurmd.pid'}",
                    f"SlurmctldLogFile={r / 'slurmctld.log'}",
                    f"SlurmdLogFile={r / 'slurmd.log'}",
                    "SlurmctldDebug=info",
                    "SlurmdDebug=info",
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "MpiDefault=none",
                    "SchedulerType=sched/backfill",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_CPU_Memory",
                    "AccountingStorageType=accounting_storage/none",
                    "JobAcctGatherType=jobacct_gather/none",
                    "JobCompType=jobcomp/none",
                    "ReturnToService=2",
                    "MinJobAge=3600",  # squeue reports finished jobs (the profile's status command; the test's check)
                    "SchedulerParameters=sched_interval=2",
                    "InactiveLimit=0",
                    "KillWait=5",
                    self.node_line(),
                    f"PartitionName=debug Nodes={self.host} Default=YES MaxTime=INFINITE State=UP",
                    "",
                ]
            )
        )

    # -- daemons ------------------------------------------------------------------------------
    def _start(self, name: str, argv: list[str]) -> None:
        with open(self.root / f"{name}.out", "wb") as log:
            self.procs[name] = subprocess.Popen(
                argv,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def _wait(self, what: str, ok, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            for name, p in self.procs.items():
                if p.poll() is not None:
                    raise RuntimeError(
                        f"{name} exited ({p.returncode}) while waiting for {what}:\n{self.logs()}"
                    )
            if ok():
                return
            time.sleep(0.5)
        raise RuntimeError(f"timed out waiting for {what}:\n{self.logs()}")

    def start(self) -> None:
        self.write_config()
        key = self.root / "munge" / "munge.key"
        subprocess.run([_which("mungekey"), "--create", f"--keyfile={key}"], check=True, capture_output=True)
        key.chmod(0o600)
        m = self.root / "munge"
        self._start(
            "munged",
            [
                _which("munged"),
                "--foreground",
                "--force",
                f"--socket={self.munge_socket}",
                f"--key-file={key}",
                f"--pid-file={m / 'munged.pid'}",
                f"--log-file={m / 'munged.log'}",
                f"--seed-file={m / 'munged.seed'}",
            ],
        )
        self._wait("munged", self.munge_socket.exists, 30)
        self._start("slurmctld", [_which("slurmctld"), "-D", "-i", "-f", str(self.conf)])
        self._wait("slurmctld", lambda: self._ok(["scontrol", "ping"], "UP"), 60)
        self._start("slurmd", [_which("slurmd"), "-D", "-f", str(self.conf)])
        self._wait("the node to be idle", lambda: self._ok(["sinfo", "-h", "-N", "-o", "%T"], "idle"), 90)

    def _ok(self, argv: list[str], word: str) -> bool:
        p = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=30, check=False)
        return p.returncode == 0 and word in p.stdout

    def queue(self) -> list[str]:
        p = subprocess.run(
            ["squeue", "-h", "-o", "%i %T"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        active = ("PENDING", "RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED")
        return [
            line for line in p.stdout.splitlines() if len(line.split()) == 2 and line.split()[1] in active
        ]

    def stop(self) -> None:
        """Cancel what is still queued, then stop the daemons this object started (by PID)."""
        try:
            if self.procs.get("slurmctld") and self.procs["slurmctld"].poll() is None:
                subprocess.run(
                    ["scancel", "--full", "--user=root"],
                    env=self.env,
                    capture_output=True,
                    timeout=30,
                    check=False,
                )
                deadline = time.time() + 60
                while self.queue() and time.time() < deadline:
                    time.sleep(1)
        except (OSError, subprocess.SubprocessError) as e:  # the daemons are stopped whatever the queue says
            print(f"SLURM teardown: could not drain the queue: {e}")
        for name in ("slurmd", "slurmctld", "munged"):
            p = self.procs.get(name)
            if p is None or p.poll() is not None:
                continue
            os.kill(p.pid, signal.SIGTERM)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(timeout=30)
        if self.conf.exists() and self.conf.read_text(errors="replace").startswith(MARK):
            self.conf.unlink()

    def logs(self) -> str:
        out = []
        for f in (
            sorted(self.root.glob("*.log"))
            + sorted(self.root.glob("*.out"))
            + [self.root / "munge" / "munged.log"]
        ):
            if f.exists():
                out.append(f"--- {f.name}\n{f.read_text(errors='replace')[-2000:]}")
        return "\n".join(out)


def say(config, line: str) -> None:
    """A line in the test log even when output is captured (CI's log shows the job ids)."""
    tr = config.pluginmanager.get_plugin("terminalreporter")
    capman = config.pluginmanager.get_plugin("capturemanager")
    if tr is None or capman is None:
        print(line)
        return
    with capman.global_and_fixture_disabled():
        tr.write_line(line)


@pytest.fixture(scope="module")
def slurm(pytestconfig):
    reason = why_not()
    if reason:
        pytest.skip(reason)
    lock = open(LOCK, "w")  # noqa: SIM115 (held for the module, closed at teardown)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        pytest.skip(f"another tests/test_slurm.py runs a SLURM on this machine ({LOCK} is locked)")
    root = Path(tempfile.mkdtemp(prefix="unetprune-slurm-"))
    cluster = SingleNodeSlurm(root)
    try:
        t0 = time.time()
        cluster.start()
        say(
            pytestconfig,
            f"\nSLURM 22.05 up in {time.time() - t0:.1f}s; started daemons (PIDs): "
            + ", ".join(f"{n}={p.pid}" for n, p in cluster.procs.items()),
        )
        yield cluster
    finally:
        cluster.stop()
        alive = [n for n, p in cluster.procs.items() if p.poll() is None]
        shutil.rmtree(root, ignore_errors=True)
        lock.close()
        say(
            pytestconfig,
            "SLURM stopped: "
            + ", ".join(f"{n}={p.pid} exit {p.returncode}" for n, p in cluster.procs.items()),
        )
        assert not alive, f"daemons still running: {alive}"


# ------------------------------------------------------------------------------------------
# the tiny config through the SLURM profile, compared with a local run
# ------------------------------------------------------------------------------------------


def _tensors(obj, prefix=""):
    """Every tensor in a loaded checkpoint, by its path in the nested dicts/lists."""
    import torch

    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _tensors(v, f"{prefix}/{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _tensors(v, f"{prefix}/{i}")


def _main_table(path: Path) -> list[dict]:
    """The main table without its machine-load-dependent columns (CPU latency: PyTorch, ONNX Runtime)."""
    with open(path) as f:
        return [
            {k: v for k, v in row.items() if k not in ("latency_ms", "latency_ort_ms")}
            for row in csv.DictReader(f)
        ]


@pytest.mark.timeout(1800)
def test_tiny_config_through_slurm_equals_a_local_run(slurm, pytestconfig):
    import torch

    from unetprune.config import load_config
    from unetprune.layout import Layout

    with tempfile.TemporaryDirectory(prefix="unetprune-slurm-wf-") as tmp:
        tmp = Path(tmp)
        on_slurm, local = workflow_copy(tmp / "slurm"), workflow_copy(tmp / "local")
        tiny = ["--configfile", "config/tiny.yaml"]

        def env(wf: Path) -> dict:
            return {**ENV, **slurm.env, "PATH": ENV["PATH"], "PYTHONPATH": str(wf / "src")}

        # the local reference runs beside the SLURM run (the SLURM run mostly waits on the queue)
        t0 = time.time()
        with open(tmp / "local.log", "w") as log:
            ref = subprocess.Popen(
                [str(BIN / "snakemake"), "--cores", "1", *tiny],
                cwd=local,
                env=env(local),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            p = subprocess.run(
                [
                    str(BIN / "snakemake"),
                    "--profile",
                    "profiles/slurm",
                    "--workflow-profile",
                    "profiles/slurm-local",
                    *tiny,
                ],
                cwd=on_slurm,
                env=env(on_slurm),
                capture_output=True,
                text=True,
                timeout=1500,
                check=False,
            )
        finally:
            ref_rc = ref.wait(timeout=1200)
        out = p.stdout + p.stderr
        say(pytestconfig, f"SLURM run {time.time() - t0:.0f}s (exit {p.returncode})")
        if p.returncode != 0:
            job_logs = "\n".join(
                f"--- {f}\n{f.read_text(errors='replace')[-3000:]}"
                for f in sorted((on_slurm / ".snakemake" / "slurm_logs").rglob("*.log"))
            )
            raise AssertionError(f"snakemake on SLURM failed:\n{out[-6000:]}\n{job_logs}\n{slurm.logs()}")
        assert ref_rc == 0, (tmp / "local.log").read_text()[-4000:]

        # every non-local job went through sbatch, and SLURM ran each of them to completion
        ids = SUBMITTED.findall(out)
        say(pytestconfig, f"sbatch job ids ({len(ids)}): {' '.join(ids)}")
        assert ids and len(set(ids)) == len(ids)
        q = subprocess.run(
            ["squeue", "--states=all", "-h", "-o", "%i %T"],
            env=slurm.env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        states = dict(line.split() for line in q.splitlines())
        say(pytestconfig, "squeue: " + ", ".join(f"{i}={states.get(i)}" for i in ids))
        assert {states.get(i) for i in ids} == {"COMPLETED"}, states
        n_local = sum(1 for line in out.splitlines() if line.strip().startswith("localrule "))
        total = re.search(r"(\d+) of (\d+) steps \(100%\) done", out)
        assert total and int(total.group(1)) == len(ids) + n_local, out[-3000:]

        # the same results as the local run: the main table (but CPU latency) and every checkpoint
        lay = {
            wf: Layout.from_config(load_config(wf / "config" / "tiny.yaml"), wf / "results")
            for wf in (on_slurm, local)
        }
        assert _main_table(lay[on_slurm].table("main")) == _main_table(lay[local].table("main"))
        ckpts = {
            wf: sorted(f.relative_to(wf) for f in (wf / "results").rglob("*.pt")) for wf in (on_slurm, local)
        }
        assert (
            ckpts[on_slurm] == ckpts[local] and len(ckpts[local]) >= 13
        )  # original + 6 pruned + 6 fine-tuned
        for rel in ckpts[local]:
            a = dict(_tensors(torch.load(on_slurm / rel, map_location="cpu", weights_only=True)))
            b = dict(_tensors(torch.load(local / rel, map_location="cpu", weights_only=True)))
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), rel
        say(pytestconfig, f"outputs equal to the local run: main table, {len(ckpts[local])} checkpoints")
