"""A real one-node SLURM cluster for the launcher tests: Debian's ``slurm-wlm`` and ``munge``, installed when
missing (as root, the way CI runs), configured for this machine and started in a temporary folder.

:meth:`SlurmCluster.start` writes ``slurm.conf`` from ``slurmd -C`` (this machine's hostname, CPUs and memory)
with one ``cpu`` partition and no accounting, starts ``munged``, ``slurmctld`` and ``slurmd`` on free ports
with their own socket, pid and log files, and waits until the node is idle; :meth:`SlurmCluster.stop` cancels
what is left in the queue, stops the three daemons it started (by their pid files) and removes the folder.
Commands see the cluster through ``SLURM_CONF`` (:attr:`SlurmCluster.env`); a cluster configured in
``/etc/slurm`` is neither used nor touched.

Settings that only make a test cluster quick (documented in ``slurm.conf``'s man page): the scheduler runs every
second (``sched_interval=1``, ``bf_interval=1``), a requeued job may start again after 5 s
(``cred_expire=5``, default 120 s), and a job that ignores SIGTERM (submitit does) is killed right away
(``KillWait=0``, default 30 s).
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

PACKAGES = ("slurm-wlm", "munge")
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "sinfo", "scontrol", "scancel")
PARTITION = "cpu"
POLICY_RC = Path("/usr/sbin/policy-rc.d")  # asks Debian's maintainer scripts not to start services


def _missing() -> list[str]:
    return [tool for tool in (*DAEMONS, *CLIENTS) if shutil.which(tool) is None
            and not Path("/usr/sbin", tool).exists()]


def install() -> str | None:
    """Install ``slurm-wlm`` and ``munge`` with apt when they are missing.

    Returns:
        None when SLURM is ready to start, else why it cannot be (not root, no apt-get, apt failed).
    """
    if not _missing():
        return None
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return (f"SLURM is not installed ({', '.join(_missing())} missing) and cannot be installed here "
                f"(needs root and apt-get): apt-get install {' '.join(PACKAGES)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES]
    wrote_policy = not POLICY_RC.exists()
    if wrote_policy:  # without it, installing would start the distribution's daemons on their default paths
        POLICY_RC.write_text("#!/bin/sh\nexit 101\n")
        POLICY_RC.chmod(0o755)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        if proc.returncode != 0:  # a fresh machine has no package lists yet
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, text=True, env=env, timeout=600)
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    finally:
        if wrote_policy:
            POLICY_RC.unlink()
    if proc.returncode != 0 or _missing():
        return f"apt-get install {' '.join(PACKAGES)} failed: {(proc.stderr or proc.stdout).strip()[-500:]}"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for a reaper does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _sbin(tool: str) -> str:
    return shutil.which(tool) or str(Path("/usr/sbin", tool))


class SlurmCluster:
    """One controller and one compute node on this machine (see the module docstring)."""

    def __init__(self) -> None:
        # a short path: munge's and SLURM's UNIX sockets live in it
        self.root = Path(tempfile.mkdtemp(prefix="peftbench-slurm-", dir="/tmp" if os.path.isdir("/tmp") else None))
        self.root.chmod(0o755)  # munged wants its socket's folder reachable by everyone
        self.conf = self.root / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.partition = PARTITION
        self.node = ""
        self.cpus = 0
        self._pids: dict[str, int] = {}
        self._stopped = False

    def _node_line(self) -> str:
        """``slurmd -C``: this machine as SLURM sees it (NodeName=<host> CPUs=... RealMemory=...)."""
        out = subprocess.run([_sbin("slurmd"), "-C"], capture_output=True, text=True, timeout=60, check=True).stdout
        line = next(x for x in out.splitlines() if x.startswith("NodeName="))
        fields = dict(part.split("=", 1) for part in line.split())
        self.node, self.cpus = fields["NodeName"], int(fields["CPUs"])
        return line

    def write_config(self) -> None:
        r = self.root
        for sub in ("ctld", "spool", "log"):
            (r / sub).mkdir()
        key = r / "munge.key"
        key.write_bytes(os.urandom(128))
        key.chmod(0o400)
        node = self._node_line()
        mem = int(dict(p.split("=", 1) for p in node.split())["RealMemory"])
        self.conf.write_text("\n".join([
            "ClusterName=peftbenchtest",
            f"SlurmctldHost={self.node}(127.0.0.1)",
            f"SlurmctldPort={_free_port()}",
            f"SlurmdPort={_free_port()}",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={r / 'munge.sock'},cred_expire=5",
            "SlurmUser=root",
            "SlurmdUser=root",
            f"StateSaveLocation={r / 'ctld'}",
            f"SlurmdSpoolDir={r / 'spool'}",
            f"SlurmctldPidFile={r / 'slurmctld.pid'}",
            f"SlurmdPidFile={r / 'slurmd.pid'}",
            f"SlurmctldLogFile={r / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={r / 'log' / 'slurmd.log'}",
            "ProctrackType=proctrack/linuxproc",  # no cgroups needed (containers)
            "TaskPlugin=task/none",
            "MpiDefault=none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_CPU_Memory",
            f"DefMemPerCPU={mem // self.cpus}",
            "AccountingStorageType=accounting_storage/none",  # no database: sacct is unavailable
            "JobAcctGatherType=jobacct_gather/none",
            "JobCompType=jobcomp/none",
            "ReturnToService=2",
            "KillWait=0",
            "SchedulerType=sched/backfill",
            "SchedulerParameters=sched_interval=1,bf_interval=1",
            f"{node} NodeAddr=127.0.0.1 State=UNKNOWN",
            f"PartitionName={PARTITION} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP",
            "",
        ]))

    def start(self, timeout_s: float = 60.0) -> None:
        """Write the configuration, start the daemons and wait until the node accepts jobs."""
        atexit.register(self.stop)
        self.write_config()
        r = self.root
        self._daemon("munged", [_sbin("munged"), f"--key-file={r / 'munge.key'}", f"--socket={r / 'munge.sock'}",
                                f"--pid-file={r / 'munged.pid'}", f"--log-file={r / 'log' / 'munged.log'}",
                                f"--seed-file={r / 'munged.seed'}"], r / "munged.pid")
        self._daemon("slurmctld", [_sbin("slurmctld"), "-f", str(self.conf)], r / "slurmctld.pid")
        self._daemon("slurmd", [_sbin("slurmd"), "-f", str(self.conf), "-N", self.node], r / "slurmd.pid")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            state = self.run("sinfo", "-h", "-n", self.node, "-o", "%t").stdout.strip()
            if state == "idle":
                return
            time.sleep(0.3)
        raise RuntimeError(f"the SLURM node did not become idle in {timeout_s:.0f} s (state {state!r}); "
                           f"logs in {r / 'log'}:\n{self.logs()}")

    def _daemon(self, name: str, cmd: list[str], pid_file: Path) -> None:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=self.env, timeout=60)
        deadline = time.monotonic() + 20
        while proc.returncode == 0 and _read_pid(pid_file) is None and time.monotonic() < deadline:
            time.sleep(0.1)  # the daemon creates the file, then writes its pid
        pid = _read_pid(pid_file)
        if proc.returncode != 0 or pid is None:
            raise RuntimeError(f"{name} did not start ({proc.stderr.strip()}):\n{self.logs()}")
        self._pids[name] = pid

    def _started_late(self, name: str) -> int | None:
        """A daemon whose start was not confirmed (start() failed) but that runs on this cluster's files."""
        pid = _read_pid(self.root / f"{name}.pid")
        try:
            return pid if pid is not None and str(self.root) in Path(f"/proc/{pid}/cmdline").read_text() else None
        except OSError:
            return None

    def run(self, *cmd: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
        """A SLURM client command against this cluster."""
        return subprocess.run(list(cmd), capture_output=True, text=True, env=self.env, timeout=timeout)

    def logs(self) -> str:
        """The last lines of the daemons' logs (for failure messages)."""
        parts = []
        for log in sorted((self.root / "log").glob("*.log")):
            parts.append(f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-15:]))
        return "\n".join(parts)

    def stop(self) -> None:
        """Cancel the queue, stop the daemons this object started, remove the folder (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        if "slurmctld" in self._pids:
            self.run("scancel", "--full", "--quiet", *self.run("squeue", "-h", "-o", "%A").stdout.split())
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and self.run("squeue", "-h", "-o", "%i").stdout.strip():
                time.sleep(0.3)
        for name in reversed(DAEMONS):  # slurmd, slurmctld, then munged
            pid = self._pids.pop(name, None) or self._started_late(name)
            if pid is None:
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.1)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)
