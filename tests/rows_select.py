"""Contract rows of the methods that select on the training data before training (SCT, GPS)."""

from __future__ import annotations

from tests.method_rows import MLP, TRANSFORMERS, D, L, Row

ROWS_PER_BLOCK = 3 * D + D + MLP + D  # output neurons of qkv, proj, fc1, fc2
NEURONS = D + L * ROWS_PER_BLOCK  # + the patch embedding's 768 kernels: 83,712 rows (= biases)

ROWS: list[Row] = [
    Row(
        "sct",
        options={"top_n": 16},
        vit_b16_params=111_744,
        vit_b16_formula=lambda: L * (96 * 96 + 96),
        source="V-PETL Bench VTAB-1k table 'SCT 0.11M' (K = 96: a 96 x 96 map with bias per block)",
        backbones=TRANSFORMERS,
    ),
    Row(
        "gps",
        zero_params=("delta", "delta_bias"),
        vit_b16_params=167_424,
        vit_b16_formula=lambda: (1 + 1) * NEURONS,
        source="FightingFighting/GPS utils/pruning.py count for K = 1 (K entries per neuron + every bias of those "
        "layers); the tables' 0.22M (VTAB) / 0.66M (FGVC) are per-task means not reproducible from the released "
        "per-task K (see configs/experiment/gps/gps.yaml)",
        mergeable=True,
    ),
]
