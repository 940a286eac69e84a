"""What the SLURM launcher asks the cluster (``sinfo``, ``squeue``, ``scancel``) and how it explains
the cluster's answers: which ``hydra.launcher.*`` key to change and which command lists the valid values.

No submitit and no torch here: plain subprocess calls whose output formats are fixed with ``-o``, and tables of
SLURM's own messages (``sbatch`` errors, pending reasons) matched by substring.
"""

from __future__ import annotations

import dataclasses
import subprocess
from collections.abc import Iterable, Sequence

# job states after which a job never runs again
ENDED_STATES = frozenset({
    "COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "BOOT_FAIL", "DEADLINE", "OUT_OF_MEMORY",
    "REVOKED", "SPECIAL_EXIT",
})
LIST_RESOURCES = "`sinfo -o '%P %D %c %m %G %l'` lists each partition's nodes, CPUs, memory (MB), GPUs and time limit"
LIST_ASSOCIATIONS = "`sacctmgr show associations user=$USER format=account,partition,qos` lists yours"


@dataclasses.dataclass(frozen=True)
class Advice:
    """Which launcher settings a SLURM message is about, and how to fix or look them up."""

    keys: tuple[str, ...]  # hydra.launcher.<key> (none when no setting is at fault)
    fix: str

    def text(self) -> str:
        keys = " / ".join(f"hydra.launcher.{k}" for k in self.keys)
        return f"change {keys}: {self.fix}" if keys else self.fix


# sbatch's messages (lower-cased substrings of slurm_errno.c's texts) -> advice; first match wins
REFUSALS: tuple[tuple[str, Advice], ...] = (
    ("invalid partition", Advice(("partition",), "`sinfo -s` lists the partitions you can use")),
    ("invalid generic resource", Advice(
        ("gpus_per_node", "gres"),
        "the partition has no such GPUs; on a CPU partition set hydra.launcher.gpus_per_node=0 (null asks for a "
        f"GPU only where the partition has them); {LIST_RESOURCES}")),
    ("invalid account", Advice(("account",), LIST_ASSOCIATIONS)),
    ("invalid qos", Advice(("qos",), f"{LIST_ASSOCIATIONS}; `sacctmgr show qos format=name,maxwall` all of them")),
    ("memory specification can not be satisfied", Advice(("mem_gb", "mem_per_cpu", "mem_per_gpu"), LIST_RESOURCES)),
    ("requested time limit is invalid", Advice(("timeout_min",), LIST_RESOURCES)),
    ("invalid feature specification", Advice(("constraint",), "`sinfo -o '%P %f'` lists the node features")),
    ("node count specification invalid", Advice(("nodes",), LIST_RESOURCES)),
    ("more processors requested than permitted", Advice(("cpus_per_task", "tasks_per_node", "nodes"), LIST_RESOURCES)),
    ("requested node configuration is not available", Advice(
        ("cpus_per_task", "mem_gb", "gpus_per_node", "constraint"), LIST_RESOURCES)),
    ("job violates accounting/qos policy", Advice(
        ("account", "qos", "timeout_min", "array_parallelism"),
        f"the account's or QOS's limits (jobs, time, resources) forbid this; {LIST_ASSOCIATIONS}, "
        "`sacctmgr show qos format=name,maxwall,maxsubmitpu,maxtrespu` their limits")),
    ("invalid job array specification", Advice(
        ("array_parallelism",), "the sweep has more jobs than the cluster's MaxArraySize "
        "(`scontrol show config | grep MaxArraySize`); split it into smaller sweeps")),
    ("unable to contact slurm controller", Advice(
        (), "no SLURM controller answered from this machine; run the command on the cluster's login node, or use "
        "hydra/launcher=local to run here")),
)
DEFAULT_REFUSAL = Advice(
    ("partition", "account", "qos", "gpus_per_node", "cpus_per_task", "mem_gb", "timeout_min"),
    f"`sinfo -s` lists the partitions, {LIST_RESOURCES}; `scontrol show partition <name>` shows a partition's limits")

# pending reasons (squeue %r) under which a job waits forever as submitted -> advice
BLOCKING_REASONS: dict[str, Advice] = {
    "PartitionConfig": Advice(("cpus_per_task", "mem_gb", "gpus_per_node", "nodes"),
                              f"the jobs ask for more than any node of the partition has; {LIST_RESOURCES}"),
    "BadConstraints": Advice(("cpus_per_task", "mem_gb", "gpus_per_node", "constraint"),
                             f"no node of the partition can satisfy the request; {LIST_RESOURCES}"),
    "PartitionTimeLimit": Advice(("timeout_min",), f"it exceeds the partition's time limit; {LIST_RESOURCES}"),
    "PartitionNodeLimit": Advice(("nodes",), LIST_RESOURCES),
    "InvalidAccount": Advice(("account",), LIST_ASSOCIATIONS),
    "AccountNotAllowed": Advice(("account", "partition"), LIST_ASSOCIATIONS),
    "InvalidQOS": Advice(("qos",), LIST_ASSOCIATIONS),
    "QOSNotAllowed": Advice(("qos", "partition"), LIST_ASSOCIATIONS),
    "QOSMaxWallDurationPerJobLimit": Advice(("timeout_min", "qos"),
                                            "`sacctmgr show qos format=name,maxwall` lists each QOS's time limit"),
}


def refusal_advice(message: str) -> Advice:
    """The advice for an ``sbatch`` error message (the catch-all when no entry of :data:`REFUSALS` matches)."""
    low = message.lower()
    return next((advice for needle, advice in REFUSALS if needle in low), DEFAULT_REFUSAL)


def _run(cmd: Sequence[str], timeout: float = 60.0) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(list(cmd), 1, "", str(exc))


def partitions() -> list[str] | None:
    """The partitions ``sinfo`` lists (the default one without its ``*``); None when sinfo fails."""
    proc = _run(["sinfo", "-h", "-o", "%P"])
    if proc.returncode != 0:
        return None
    return sorted({line.strip().rstrip("*") for line in proc.stdout.splitlines() if line.strip()})


def partition_nodes(partition: str) -> list[str]:
    """``'2 CPUs, 24105 MB, no GPUs'`` for each kind of node in ``partition`` (empty when sinfo cannot tell)."""
    proc = _run(["sinfo", "-h", "-p", partition, "-o", "%c|%m|%G"])
    out = []
    for line in sorted(set(proc.stdout.splitlines()) if proc.returncode == 0 else ()):
        cpus, mem, gres = (line.split("|") + ["", ""])[:3]
        gres = gres.strip()
        out.append(f"{cpus.strip()} CPUs, {mem.strip()} MB, {gres if gres not in ('', '(null)') else 'no GPUs'}")
    return out


def partition_has_gpus(partition: str) -> bool | None:
    """Whether any node of ``partition`` has ``gpu`` generic resources (``sinfo``'s GRES column); None when
    sinfo cannot tell (an unknown partition, no cluster)."""
    proc = _run(["sinfo", "-h", "-p", partition, "-o", "%G"])
    lines = [line.strip() for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not lines:
        return None
    return any(part.startswith("gpu") for line in lines for part in line.split(","))


@dataclasses.dataclass(frozen=True)
class JobState:
    """One job's state as the cluster reports it."""

    state: str  # PENDING, RUNNING, COMPLETED, ...
    reason: str = ""  # the pending reason (squeue only)

    @property
    def ended(self) -> bool:
        return self.state in ENDED_STATES


def queue_states(job_ids: Iterable[str]) -> dict[str, JobState] | None:
    """``{job id: state}`` from ``squeue`` for ``job_ids`` (``123`` or array tasks ``123_4``); None when squeue
    gave no answer (the controller busy: ask again later).

    squeue lists a job until ``MinJobAge`` seconds after it ended (300 by default), so a job missing from the
    answer has ended. This works with or without accounting (``sacct`` needs a database many small clusters
    do not run), and asks the controller once per poll for all the jobs.
    """
    ids = sorted(set(job_ids))
    if not ids:
        return {}
    proc = _run(["squeue", "-h", "-r", "--states=all", "-o", "%i|%T|%r", "-j", ",".join(ids)])
    if proc.returncode != 0:
        return {} if "invalid job id" in proc.stderr.lower() else None  # every one of them forgotten
    out = {}
    for line in proc.stdout.splitlines():
        job_id, state, reason = (line.split("|") + ["", ""])[:3]
        if state.strip():
            out[job_id.strip()] = JobState(state.strip(), reason.strip())
    return out


def cancel(job_ids: Iterable[str]) -> None:
    """``scancel`` the jobs (array ids cancel every task); errors are ignored (the jobs may have ended)."""
    ids = sorted(set(job_ids))
    if ids:
        _run(["scancel", *ids])
