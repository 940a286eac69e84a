"""Hydra, Mona and Adapter+ train end to end on the embedded default: the train app's spine (compose the
``peftbench-train`` config, :func:`peftbench.apps.train.run`) for one short epoch each, in this process, on the small copy of the embedded task (tests/tiny_data.py)."""

from __future__ import annotations

import pytest
import torch

from peftbench.apps.train import run
from peftbench.config import compose
from tests.tiny_data import embedded_tiny

W, DEPTH, MLP, CLASSES = 128, 6, 512, 16  # vit_micro on embedded/dsprites_loc, the embedded default


def _branch(fan_in: int, fan_out: int, r: int) -> int:
    return fan_in * r + r + r * fan_out + fan_out


EXPECTED_WITHOUT_HEAD = {
    "hydra": DEPTH * (3 * _branch(W, W, 2) + _branch(MLP, W, 2)),
    "adapter_plus": DEPTH * (_branch(W, W, 8) + W),
    "mona": 2 * DEPTH * (2 * 64 * W + 64 * 64 + 88 * 64 + 5 * W),
}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return embedded_tiny(tmp_path_factory.mktemp("data"))  # the small copy of the embedded task


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)  # the smoke trainer sets one CPU thread for the run


@pytest.mark.parametrize("method", sorted(EXPECTED_WITHOUT_HEAD))
def test_trains_on_the_embedded_default(method, tmp_path, data_root, restore_threads):
    # short and CPU-cheap: train800 -> val200 of the small copy (48 / 24 images), one epoch in one step, throughput
    # read off the evaluation's batches
    overrides = [
        f"method={method}", "protocol=tune", "trainer=smoke", "trainer.epochs=1", "trainer.batch_size=200",
        "trainer.eval_batch_size=50", "trainer.warmup_epochs=0", "trainer.infer_iters=0", "trainer.device=cpu",
        f"paths.results_dir={tmp_path / 'results'}", f"data.root={data_root}",
    ]  # fmt: skip
    result = run(compose(overrides)).to_dict()  # what result.json holds
    m = result["metrics"]
    assert result["status"] == "success" and result["method"] == method, result["message"]
    assert m["trainable_params_without_head"] == EXPECTED_WITHOUT_HEAD[method]
    assert m["trainable_params"] == EXPECTED_WITHOUT_HEAD[method] + CLASSES * (W + 1)
    assert 0.0 <= m["accuracy"] <= 100.0 and m["epochs_completed"] == 1
