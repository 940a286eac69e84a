"""The SLURM launcher behind ``hydra/launcher=slurm``: Hydra's submitit launcher, made safe to relaunch and
clear when the cluster says no.

Before submitting, each job's run folder is worked out on the login node (the run's config hash, with the
precision the job's node resolves), so a relaunched sweep

* does not submit runs that finished (their ``result.json`` says ``success``);
* does not submit again a run whose job from an earlier launch is still queued or running
  (``slurm_job.json`` in the run folder names it): it waits for that job instead;
* submits the rest as one job array, at most ``array_parallelism`` running at once.

A job preempted or requeued (``scontrol requeue``) starts over and its run resumes from its epoch checkpoint;
a job warned of its time limit (``--signal=USR2@signal_delay_s``) is checkpointed by submitit and requeued up to
``max_num_timeout`` times. An ``sbatch`` refusal, or jobs pending for a reason that never clears
(``PartitionConfig``, ``InvalidQOS``, ...), ends the command with SLURM's message, the ``hydra.launcher.*`` key to
change and the command that lists the valid values (exit 2). Jobs that fail on a node are listed with their log
files (exit 1). Job states come from ``squeue``, so clusters without accounting (no ``sacct``) work too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import io
import json
import shutil
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as _SubmititSlurm
from omegaconf import OmegaConf, open_dict

from peftbench.atomic import write_json_atomic
from peftbench.config import to_plain
from peftbench.errors import ConfigError, PeftbenchError, user_error_exit
from peftbench.identity import config_hash, resolved_precision, run_dir
from peftbench.per_task import resolve_run_config
from peftbench.records import RESULT_FILE, RecordError, read_record
from peftbench.sweeps import slurm_commands as sc

JOB_FILE = "slurm_job.json"  # in the run folder: the SLURM job that runs it (written at submission)
RESULT_GRACE_S = 15.0  # a job that left the queue gets this long for its result file (shared file systems lag)


@dataclasses.dataclass
class Planned:
    """One job of the sweep: what the login node found for its run, and its SLURM job once there is one."""

    idx: int
    overrides: list[str]
    label: str  # "#3 (method=lora seed=1)": the index and the overrides that vary in the sweep
    run_dir: Path | None = None  # None when the config could not be resolved here (the job reports why)
    done: JobReturn | None = None  # the run finished earlier: not submitted
    job: Any = None  # submitit's SlurmJob
    attached: bool = False  # the job is an earlier launch's, still queued or running
    ended_at: float | None = None  # when the queue first showed it ended without a result file


def _labels(job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[str]:
    varying = {o.partition("=")[0] for o in {o for ov in job_overrides for o in ov}
               if sum(o in ov for ov in job_overrides) < len(job_overrides)}
    out = []
    for i, ov in enumerate(job_overrides):
        shown = " ".join(o for o in ov if o.partition("=")[0] in varying)
        out.append(f"#{initial_job_idx + i}" + (f" ({shown})" if shown else ""))
    return out


class SlurmLauncher(_SubmititSlurm):
    """Hydra's submitit SLURM launcher that skips finished runs, waits for runs already queued, and explains
    refusals (see the module docstring); ``partition`` is checked by :class:`peftbench.sweeps.launchers.SlurmLauncher`."""

    poll_s = 1.0  # result files are looked for this often; the queue is asked every 2 s, then less often

    # -- on the node ---------------------------------------------------------------------------------------
    def __call__(self, *args: Any) -> JobReturn:
        ret = super().__call__(*args)
        if ret.status == JobStatus.FAILED and isinstance(ret._return_value, BaseException):
            # Hydra keeps the exception for the login node; its traceback belongs in this job's log
            traceback.print_exception(ret._return_value, file=sys.stderr)
            sys.stderr.flush()
        return ret

    # -- on the login node ---------------------------------------------------------------------------------
    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        assert self.config is not None
        self.prepare()
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        labels = _labels(job_overrides, initial_job_idx)
        plans = [self._plan(initial_job_idx + i, list(o), labels[i]) for i, o in enumerate(job_overrides)]
        queued = self._attach_queued(plans)
        todo = [p for p in plans if p.done is None and p.job is None]
        for p in plans:
            if p.done is not None:
                print(f"[peftbench] {p.label}: finished run exists, not submitted ({p.run_dir})")
            elif p.attached:
                print(f"[peftbench] {p.label}: already queued as SLURM job {p.job.job_id} (an earlier launch), "
                      "not submitted again; waiting for it")
        if todo:
            args = [(p.overrides, "hydra.sweep.dir", p.idx, f"job_id_for_{p.idx}", Singleton.get_state())
                    for p in todo]
            jobs = self.submit(lambda ex: ex.map_array(self, *zip(*args, strict=True)))
            for p, job in zip(todo, jobs, strict=True):
                p.job = job
            self._write_job_files(todo)
            self._announce(todo)
        else:
            print(f"[peftbench] nothing to submit ({queued} run(s) already queued)" if queued
                  else "[peftbench] nothing to submit: every run of the sweep has finished")
        self.wait([p for p in plans if p.job is not None], owned=todo)
        failures = [f"  {p.label}, SLURM job {p.job.job_id}: {problem}; log: {p.job.paths.stderr}"
                    for p in plans if p.done is None and (problem := _problem(p.job)) is not None]
        if failures:
            print(f"peftbench: error: {len(failures)} of {len(plans)} job(s) failed:\n" + "\n".join(failures) +
                  "\nFinished runs are kept: fix the cause and relaunch the same command (only unfinished runs are "
                  "submitted)", file=sys.stderr)
            raise SystemExit(1)
        return [p.done if p.done is not None else p.job.result() for p in plans]

    def prepare(self) -> None:
        """Refuse to start without SLURM's commands; settle ``gpus_per_node: null`` from the partition."""
        if shutil.which("sbatch") is None or shutil.which("squeue") is None:
            raise user_error_exit(ConfigError(
                "hydra/launcher=slurm submits with sbatch, which is not on this machine's PATH: run the command "
                "on the cluster's login node, or use hydra/launcher=local to run here"
            ))
        params = self.params
        if params.get("gpus_per_node") is not None or params.get("gpus_per_task") or params.get("gres"):
            return
        has = sc.partition_has_gpus(str(params["partition"]))
        if has is None:
            return  # sinfo cannot tell (an unknown partition): sbatch will say so
        params["gpus_per_node"] = 1 if has else 0
        print(f"[peftbench] partition {params['partition']} "
              f"{'has GPUs: one per job' if has else 'has no GPUs: jobs run on CPUs'} "
              f"(hydra.launcher.gpus_per_node={params['gpus_per_node']})")

    def node_device_type(self, trainer_device: str) -> str:
        """The device type a job's ``trainer.device`` resolves to on its node: ``auto`` is CUDA with GPUs."""
        if trainer_device != "auto":
            return "cuda" if trainer_device.startswith("cuda") else "cpu"
        p = self.params
        gpus = (p.get("gpus_per_node") or 0) > 0 or (p.get("gpus_per_task") or 0) > 0 or "gpu" in str(p.get("gres") or "")
        return "cuda" if gpus else "cpu"

    def _plan(self, idx: int, overrides: list[str], label: str) -> Planned:
        """Where the job's run writes (as its node will compute it) and whether it finished already."""
        assert self.hydra_context is not None and self.config is not None
        plan = Planned(idx, overrides, label)
        try:
            cfg = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
            with open_dict(cfg):
                del cfg["hydra"]
            # the config the run records: a recipe's per-task values resolved, the command keys left out
            plain = resolve_run_config(to_plain(cfg), overrides).config
            precision = resolved_precision(str(plain["trainer"]["precision"]),
                                           self.node_device_type(str(plain["trainer"]["device"])))
            plan.run_dir = run_dir(plain["paths"]["results_dir"], plain, config_hash(plain, precision))
        except Exception:  # an invalid config: the job reports it with the run's own checks
            return plan
        result = plan.run_dir / RESULT_FILE
        if plain.get("on_existing", "skip") == "skip" and result.is_file():
            try:
                record = read_record(result)
            except (OSError, RecordError):
                return plan
            if record.status == "success":  # the train app's objective for sweepers: its accuracy
                plan.done = JobReturn(overrides=overrides, status=JobStatus.COMPLETED,
                                      _return_value=float(record.accuracy or 0.0))
        return plan

    def _attach_queued(self, plans: list[Planned]) -> int:
        """Attach the runs whose job from an earlier launch is still in the queue; returns how many."""
        import submitit

        earlier: dict[str, tuple[Planned, dict[str, Any]]] = {}
        for p in plans:
            if p.done is None and p.run_dir is not None and (p.run_dir / JOB_FILE).is_file():
                try:
                    info = json.loads((p.run_dir / JOB_FILE).read_text())
                    earlier[str(info["job_id"])] = (p, info)
                except (OSError, ValueError, KeyError, TypeError):
                    continue
        states = sc.queue_states(earlier) or {}
        for job_id, (p, info) in earlier.items():
            state = states.get(job_id)
            if state is not None and not state.ended:
                p.job = submitit.SlurmJob(folder=info["submitit_folder"], job_id=job_id)
                p.attached = True
        return sum(p.attached for p in plans)

    def submit(self, how: Callable[[Any], Any]) -> Any:
        """``how(executor)`` with an executor set up from the launcher's settings; an ``sbatch`` refusal ends the
        command with SLURM's message and the fix (exit 2)."""
        import submitit
        from submitit.core.utils import FailedJobError

        params = dict(self.params)
        executor = submitit.AutoExecutor(cluster="slurm", folder=params.pop("submitit_folder"),
                                         slurm_max_num_timeout=params.pop("max_num_timeout"))
        base = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
        said = io.StringIO()
        try:
            with contextlib.redirect_stderr(said):  # submitit echoes sbatch's error; it is quoted below instead
                submitted = how(executor)
            sys.stderr.write(said.getvalue())  # anything else it said (warnings)
            return submitted
        except FailedJobError as exc:
            message = " ".join(line.strip() for line in str(exc).strip().splitlines()) or said.getvalue().strip()
            advice = sc.refusal_advice(message)
            raise user_error_exit(ConfigError(
                f"SLURM refused the jobs ({message}); {advice.text()}{self._facts(advice)}. Nothing was submitted"
            )) from None

    def _facts(self, advice: sc.Advice) -> str:
        """What the cluster has beside what was asked, for the settings ``advice`` is about."""
        p, out = self.params, []
        if advice.keys == ("partition",):
            valid = sc.partitions()
            if valid:
                out.append(f"partitions here: {', '.join(valid)}")
        elif {"cpus_per_task", "mem_gb", "gpus_per_node"} & set(advice.keys):
            nodes = sc.partition_nodes(str(p["partition"]))
            out.append(f"asked per job: {p.get('cpus_per_task')} CPUs, {p.get('mem_gb')} GB, "
                       f"{p.get('gpus_per_node')} GPUs per node")
            if nodes:
                out.append(f"nodes of partition {p['partition']}: {'; '.join(nodes)}")
        return f" ({'; '.join(out)})" if out else ""

    def _write_job_files(self, todo: list[Planned]) -> None:
        """Name each run's job in its run folder, for a relaunch of the sweep (and for the user)."""
        now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        folder = str(Path(str(self.params["submitit_folder"])).absolute())
        for p in todo:
            if p.run_dir is None:
                continue
            with contextlib.suppress(OSError):  # an unwritable results folder: the job reports it
                p.run_dir.mkdir(parents=True, exist_ok=True)
                write_json_atomic(p.run_dir / JOB_FILE, {
                    "job_id": p.job.job_id, "submitit_folder": folder, "submitted_at": now,
                    "log": str(p.job.paths.stderr.absolute()), "overrides": p.overrides})

    def _announce(self, todo: list[Planned]) -> None:
        array = todo[0].job.job_id.split("_")[0]
        print(f"[peftbench] submitted {len(todo)} job(s) to partition {self.params['partition']} as job {array} "
              f"(at most {self.params.get('array_parallelism')} running at once); logs: "
              f"{todo[0].job.paths.folder.parent}/", flush=True)
        print(f"[peftbench] watch them with `squeue -j {array}`, cancel them with `scancel {array}`; if this command "
              "stops, the same command again submits only the unfinished runs", flush=True)

    def wait(self, plans: list[Planned], owned: list[Planned]) -> None:
        """Wait until every job has a result file or has ended without one. Ctrl-C stops waiting, not the jobs."""
        waiting = {p.job.job_id: p for p in plans}
        total, start, next_query = len(waiting), time.monotonic(), 0.0
        try:
            while waiting:
                for job_id, p in list(waiting.items()):
                    if p.job.paths.result_pickle.exists():
                        del waiting[job_id]
                        outcome = "failed" if _problem(p.job) else "finished"
                        print(f"[peftbench] {p.label}: job {job_id} {outcome} ({total - len(waiting)}/{total})",
                              flush=True)
                now = time.monotonic()
                if waiting and now >= next_query:
                    next_query = now + min(30.0, 2.0 + (now - start) / 20)
                    self._check_queue(waiting, owned, now)
                if waiting:
                    time.sleep(self.poll_s)
        except KeyboardInterrupt:
            print(f"\n[peftbench] stopped waiting; {len(waiting)} job(s) keep running on the cluster "
                  f"({', '.join(sorted(waiting))}); the same command again waits for them", file=sys.stderr)
            raise SystemExit(130) from None

    def _check_queue(self, waiting: dict[str, Planned], owned: list[Planned], now: float) -> None:
        states = sc.queue_states(waiting)
        if states is None:
            return  # no answer this time
        for job_id, p in list(waiting.items()):
            state = states.get(job_id)
            if state is not None and state.state == "PENDING" and state.reason in sc.BLOCKING_REASONS and not p.attached:
                sc.cancel({q.job.job_id.split("_")[0] for q in owned})
                _forget(owned)
                advice = sc.BLOCKING_REASONS[state.reason]
                raise user_error_exit(ConfigError(
                    f"SLURM cannot start the jobs as submitted: job {job_id} is pending with reason {state.reason} "
                    f"(partition {self.params['partition']}); {advice.text()}{self._facts(advice)}. "
                    "The jobs were cancelled"
                ))
            if state is None or state.ended:
                p.ended_at = p.ended_at or now
                if now - p.ended_at >= RESULT_GRACE_S and not p.job.paths.result_pickle.exists():
                    del waiting[job_id]
                    print(f"[peftbench] {p.label}: job {job_id} ended without a result "
                          f"({state.state if state else 'no longer in the queue'})", flush=True)


def _forget(plans: list[Planned]) -> None:
    """Remove the job files of cancelled jobs (and the run folders they alone were in)."""
    for p in plans:
        if p.run_dir is not None:
            with contextlib.suppress(OSError):
                (p.run_dir / JOB_FILE).unlink(missing_ok=True)
                p.run_dir.rmdir()  # only when empty


def _problem(job: Any) -> str | None:
    """Why a job has no usable result (None when it succeeded)."""
    from submitit.core.utils import pickle_load

    path = job.paths.result_pickle
    if not path.exists():
        return f"ended without a result{_last_line(job.paths.stderr)}"
    outcome, payload = pickle_load(path)
    if outcome == "error":  # submitit's own failure (e.g. timed out more than max_num_timeout times)
        return f"failed: {str(payload).strip().splitlines()[-1]}"
    if isinstance(payload, JobReturn) and payload.status == JobStatus.FAILED:
        exc = payload._return_value
        return f"failed: {type(exc).__name__}: {exc}"
    return None


def _last_line(log: Path) -> str:
    """``'; last log line: ...'`` from a job's stderr log ('' when it is empty or unreadable)."""
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return f"; last log line: {lines[-1][:300]!r}" if lines else ""


def launcher_settings(hydra_overrides: Sequence[str]) -> dict[str, Any]:
    """The ``hydra.launcher`` block that a command's ``hydra/launcher=slurm hydra.launcher.*=...`` overrides
    select, composed from ``configs/train.yaml`` as Hydra does (interpolations left unresolved)."""
    from hydra import compose, initialize_config_dir

    from peftbench.paths import config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="train", overrides=list(hydra_overrides), return_hydra_config=True)
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=False)
    assert isinstance(launcher, dict)
    launcher.pop("_target_", None)
    return launcher


def call_as_job(settings: dict[str, Any], folder: Path, name: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn(*args)`` as one SLURM job with a sweep's launcher settings (``launcher_settings``) and return its
    result; a refusal exits 2 as for a sweep, a failure on the node raises :class:`PeftbenchError` naming the log.

    Args:
        settings: the ``hydra.launcher`` block (``partition`` required).
        folder: where the job's submitit files and logs go.
        name: the job's name in the queue.
    """
    from peftbench.sweeps.launchers import SlurmLauncher as Checked

    Checked(**settings)  # the same partition check as a sweep
    launcher = SlurmLauncher(**{**settings, "submitit_folder": str(folder / "%j"), "name": name})
    launcher.prepare()
    job = launcher.submit(lambda ex: ex.submit(fn, *args))
    plan = Planned(0, [], name, job=job)
    print(f"[peftbench] {name}: submitted as SLURM job {job.job_id} (partition {settings['partition']}); "
          f"log: {job.paths.stderr}", flush=True)
    launcher.wait([plan], owned=[plan])
    problem = _problem(job)
    if problem is not None:
        raise PeftbenchError(f"{name}: SLURM job {job.job_id} {problem}; log: {job.paths.stderr}")
    return job.result()
