"""DTL and HST train end to end on the embedded default (vit_micro, embedded dSprites location), through the train
app as ``peftbench-train method=<m> trainer=smoke`` runs it, one short epoch each."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from peftbench.config import compose
from tests.tiny_data import embedded_tiny

SHORT = ["trainer=smoke", "trainer.epochs=1", "trainer.warmup_epochs=0", "trainer.progress=false",
         "trainer.infer_iters=0", "trainer.device=cpu", "protocol=tune"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return embedded_tiny(tmp_path_factory.mktemp("data"))  # the small copy of the embedded task, for both methods


@pytest.mark.parametrize(("method", "trainable", "head"), [("dtl", 6 * 2 * 2 * 128, 129 * 16),
                                                          ("hst", 366_944, 73 * 16)])
def test_trains_end_to_end_on_the_embedded_default(tmp_path, data_root, method, trainable, head):
    from safetensors.torch import load_file

    from peftbench.apps.train import run

    cfg = compose([f"method={method}", *SHORT, f"paths.results_dir={tmp_path / 'results'}",
                   f"data.root={data_root}"])
    record = run(cfg)
    assert record.status == "success", record.message
    counts, train = record.metrics.counts, record.metrics.train
    assert counts.trainable_params_without_head == trainable and counts.head_params == head
    assert math.isfinite(train.final_train_loss) and train.accuracy_split == "val200"
    saved = load_file(str(Path(record.provenance.run_dir) / "task.safetensors"))
    assert sum(t.numel() for n, t in saved.items() if "running_" not in n and "num_batches" not in n) == trainable + head
    assert ("norm.bn.running_mean" in saved) == (method == "hst")  # HST's BatchNorm statistics are kept
