"""The support matrix in results/support_matrix.csv and the README is the code's: sampled cells regenerate equal,
the table is rendered from the CSV, and meta-device counts equal real ones."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from peftbench.apps.support_matrix import (
    BEGIN,
    END,
    backbone_rows,
    cell,
    matrix_backbones,
    matrix_methods,
    read_csv,
    render_markdown,
)
from peftbench.errors import PeftbenchError
from peftbench.methods.attach import attach_method
from peftbench.methods.registry import build_method
from tests.method_rows import all_rows
from tests.tiny_models import ARCHS

ROOT = Path(__file__).resolve().parent.parent
CSV = ROOT / "results" / "support_matrix.csv"
ROWS = read_csv(CSV)
FIX = "run python scripts/support_matrix.py and commit results/support_matrix.csv and README.md"


def test_every_method_config_on_every_pretrained_backbone_has_a_cell():
    assert {(r["method"], r["backbone"]) for r in ROWS} == {
        (m, b) for m in matrix_methods() for b in matrix_backbones()
    }, FIX


def _block() -> str:
    readme = (ROOT / "README.md").read_text()
    return readme[readme.index(BEGIN) + len(BEGIN) : readme.index(END)]


def test_the_readme_block_is_rendered_from_the_csv():
    assert _block().endswith("\n" + render_markdown(ROWS)), FIX


def test_the_readme_backbone_table_is_timms():
    lines = _block().splitlines()
    names = matrix_backbones()
    rendered = render_markdown([], backbone_rows(names[::5])).splitlines()[2:]  # a sample, without the header
    assert rendered and all(line in lines for line in rendered), FIX
    assert len([ln for ln in lines if ln.startswith("| `") and ln.count("|") == 8]) == len(names) + 1, FIX  # + header


B_SCALE = sorted({r["backbone"] for r in ROWS if int(r["backbone_params"]) < 150_000_000})


@pytest.mark.parametrize("i", range(len(matrix_methods())))
def test_a_sample_of_cells_regenerates_equal(i):
    """Every method config, each on one ViT-B-scale backbone (round robin, so every one is hit)."""
    method, backbone = matrix_methods()[i], B_SCALE[i % len(B_SCALE)]
    fresh = {k: str(v) for k, v in cell(backbone, method).items()}
    committed = next(r for r in ROWS if r["method"] == method and r["backbone"] == backbone)
    assert fresh == committed, FIX


def test_refusals_say_why():
    refused = [r for r in ROWS if r["status"] == "refused"]
    assert refused and all(len(r["reason"]) > 40 and not r["trainable_params"] for r in refused)
    ok = [r for r in ROWS if r["status"] == "ok"]
    assert all(int(r["trainable_params"]) >= 0 and not r["reason"] for r in ok)


@pytest.mark.parametrize("i", range(len(all_rows())))
def test_counts_on_the_meta_device_equal_real_ones(i):
    row = all_rows()[i]
    archs = [a for a in ARCHS if row.supports(a)]
    arch = archs[i % len(archs)]
    for package in row.requires:
        pytest.importorskip(package)
    counts = []
    for device in ("cpu", "meta"):
        with torch.device(device):
            model = ARCHS[arch].build()
            try:
                counts.append(attach_method(model, build_method(row.name, row.options_for(arch))))
            except (RuntimeError, NotImplementedError, PeftbenchError) as exc:  # an init reading values: CPU
                assert device == "meta" and "meta" in str(exc)
                counts.append(counts[0])
    assert counts[0] == counts[1], arch


def test_params_counts_a_new_backbone_and_refuses_with_the_reason(tmp_path):
    import os
    import subprocess
    import sys

    from peftbench.apps.params import param_report
    from peftbench.config import compose

    report = param_report(compose(["backbone=eva02_test", "method=lora"], "params"))
    # one rank-8 pair on q|k|v (A shared by the three projections): 2 blocks x (32 x 8 + 8 x 96)
    assert report["trainable_params_without_head"] == 2 * (32 * 8 + 8 * 96)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    refused = subprocess.run([sys.executable, "-m", "peftbench.cli.params", "backbone=convnext_test",
                              "method=vpt_deep"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "no token sequence to insert prompts into" in refused.stderr
