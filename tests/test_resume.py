"""An interrupted run, relaunched with the same command, resumes from its epoch checkpoint and ends
exactly like an uninterrupted run (CPU): same accuracy, same loss, same trained tensors. The runs train on the
small copy of the embedded task (tests/tiny_data.py).

Interruptions are real: the ``resume.stop_after_epochs`` drill (the run stops like Ctrl-C after
saving epoch k) and a SIGKILL of the training process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.tiny_data import embedded_tiny

pytestmark = pytest.mark.slow

EPOCHS = 4
ARGS = ["method=full", f"trainer.epochs={EPOCHS}", "trainer.warmup_epochs=1", "trainer.progress=false",
        "trainer.device=cpu"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def _cmd(root: Path, results: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "peftbench.cli.train", *ARGS, *extra,
            f"paths.results_dir={root / results}", f"data.root={root / 'data'}"]


def _train(root: Path, results: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(_cmd(root, results, *extra), capture_output=True, text=True, cwd=root, env=ENV, timeout=300)


def _run_dir(root: Path, results: str) -> Path:
    (path,) = (root / results / "runs").rglob("result.json")
    return path.parent


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, dict]:
    """An uninterrupted run; the data folder is shared with the interrupted ones."""
    root = tmp_path_factory.mktemp("resume")
    embedded_tiny(root / "data")
    proc = _train(root, "reference")
    assert proc.returncode == 0, proc.stderr[-3000:]
    d = _run_dir(root, "reference")
    return root, json.loads((d / "result.json").read_text())


def _assert_same_as_reference(reference: tuple[Path, dict], results: str) -> dict:
    root, ref = reference
    d = _run_dir(root, results)
    res = json.loads((d / "result.json").read_text())
    assert res["status"] == "success" and res["config_hash"] == ref["config_hash"]
    for key in ("accuracy", "final_train_loss", "epochs_completed"):
        assert res["metrics"][key] == ref["metrics"][key], key
    ours, theirs = load_file(d / "task.safetensors"), load_file(Path(ref["run_dir"]) / "task.safetensors")
    assert ours.keys() == theirs.keys() and len(ours) > 10
    for name in ours:
        assert torch.equal(ours[name], theirs[name]), name
    # finished: the checkpoint is gone, and every epoch is logged exactly once
    assert not (d / "resume.pt").exists() and not (d / "resume.json").exists()
    epochs = [json.loads(line).get("epoch") for line in (d / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [*range(1, EPOCHS + 1), EPOCHS]  # per-epoch records, then the final evaluation
    return res


def test_stopped_run_resumes_to_the_uninterrupted_result(reference):
    root, _ = reference
    proc = _train(root, "stopped", "resume.stop_after_epochs=2")
    assert proc.returncode != 0
    d = _run_dir(root, "stopped")
    assert json.loads((d / "result.json").read_text())["status"] == "failed"
    assert json.loads((d / "resume.json").read_text()) == {"epoch": 2}
    assert [json.loads(s)["epoch"] for s in (d / "metrics.jsonl").read_text().splitlines()] == [1, 2]

    proc = _train(root, "stopped")  # the same command, without the drill: same config hash, same folder
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed from" in proc.stdout and "after epoch 2" in proc.stdout
    res = _assert_same_as_reference(reference, "stopped")
    assert res["resumed_from_epoch"] == 2


def test_killed_run_resumes_to_the_uninterrupted_result(reference):
    root, _ = reference
    proc = subprocess.Popen(_cmd(root, "killed"), cwd=root, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    meta = None
    while time.monotonic() < deadline and proc.poll() is None:
        found = list((root / "killed").rglob("resume.json"))
        if found:
            meta = found[0]
            break
        time.sleep(0.02)
    assert meta is not None, "no epoch checkpoint appeared"
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    d = meta.parent
    assert json.loads((d / "result.json").read_text())["status"] == "running"  # killed: no chance to record
    saved = json.loads(meta.read_text())["epoch"]
    assert 1 <= saved < EPOCHS

    rerun = _train(root, "killed")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    res = _assert_same_as_reference(reference, "killed")
    assert res["resumed_from_epoch"] >= saved
    assert list(d.glob("result.json.bak-*"))  # the unfinished record is kept aside, not lost


def test_resume_settings_are_checked(tmp_path):
    proc = _train(tmp_path, "bad", "resume.every=0")
    assert proc.returncode == 2 and "resume.every must be >= 1" in proc.stderr and "Traceback" not in proc.stderr


def test_kept_checkpoint_stays_small_and_overwrite_retrains_from_scratch(tmp_path):
    embedded_tiny(tmp_path / "data")
    args = ["method=linear", "trainer.epochs=2", "resume.keep=true"]
    proc = _train(tmp_path, "kept", *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    d = _run_dir(tmp_path, "kept")
    assert json.loads((d / "resume.json").read_text()) == {"epoch": 1}  # never saved after the last epoch
    saved = torch.load(d / "resume.pt", weights_only=False)
    head = load_file(d / "task.safetensors")
    assert set(saved["params"]) == set(head)  # a linear probe's checkpoint holds the head only
    proc = _train(tmp_path, "kept", *args, "on_existing=overwrite")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed from" not in proc.stdout
    assert "resumed_from_epoch" not in json.loads((d / "result.json").read_text())
