"""Per-image predictions of an evaluation and the calibration of its probabilities.

:class:`PredictionCollector` takes every evaluation batch's logits and labels and keeps, per image, the top-k
class indices and softmax probabilities (float16 on disk), plus what the calibration metrics need:

* ``nll``: the mean negative log-likelihood of the true class, ``-mean_i log softmax(z_i)[y_i]`` (nats),
  computed in float32 from the logits (bf16 autocast logits are upcast first).
* ``expected_calibration_error``: Guo, Pleiss, Sun & Weinberger (ICML 2017), "On Calibration of Modern Neural
  Networks", Eq. 3: ``sum_b |B_b| / n * |acc(B_b) - conf(B_b)|`` over :data:`ECE_BINS` equal-width bins of the
  top-1 confidence, ``(0, 1/15], (1/15, 2/15], ...``; in percent, like the accuracy.

Images without a label (``label < 0``: a folder of images given to ``peftbench-eval``) get predictions but
enter none of the metrics.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from peftbench.atomic import atomic_path

ECE_BINS = 15
PREDICTIONS_FILE = "predictions.npz"


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE in percent over equal-width confidence bins (right-closed; a confidence of 0 falls in the first).

    Args:
        confidence: ``(n,)`` top-1 probabilities in [0, 1].
        correct: ``(n,)`` booleans, top-1 == label.
        bins: number of bins.

    Returns:
        ``100 * sum_b |B_b| / n * |acc(B_b) - conf(B_b)|`` (0 for n = 0).
    """
    n = confidence.shape[0]
    if n == 0:
        return 0.0
    conf = confidence.astype(np.float64)
    # bin b holds (b/bins, (b+1)/bins]; ceil(c * bins) - 1, with c = 0 put in bin 0
    which = np.clip(np.ceil(conf * bins).astype(np.int64) - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        members = which == b
        count = int(members.sum())
        if count:
            total += count / n * abs(float(correct[members].mean()) - float(conf[members].mean()))
    return 100.0 * total


@dataclasses.dataclass
class Predictions:
    """Top-k predictions of every evaluated image, in split order, and their calibration."""

    labels: np.ndarray  # (n,) int64; -1 = unlabelled
    topk_index: np.ndarray  # (n, k) int64, most probable first
    topk_prob: np.ndarray  # (n, k) float32 softmax probabilities
    nll: float | None  # mean over labelled images (nats); None without labels
    expected_calibration_error: float | None  # percent; None without labels
    accuracy: float | None  # top-1 percent over labelled images; None without labels

    def save(self, path: str | Path, image_ids: Sequence[str] | None = None) -> Path:
        """Write a compressed ``.npz`` atomically (float16 probabilities, the smallest integer type that fits).

        Arrays: ``label`` (n,), ``topk_index`` (n, k), ``topk_prob`` (n, k) float16 and, when given, ``image``
        (n,) the image paths as the split lists them. ``numpy.load(path)`` reads it (no pickle).
        """
        index_type = np.int16 if self.topk_index.size == 0 or self.topk_index.max() < 2**15 else np.int32
        arrays = {
            "label": self.labels.astype(index_type if self.labels.size == 0 or self.labels.max() < 2**15 else np.int32),
            "topk_index": self.topk_index.astype(index_type),
            "topk_prob": self.topk_prob.astype(np.float16),
        }
        if image_ids is not None:
            if len(image_ids) != self.labels.shape[0]:
                raise ValueError(f"{len(image_ids)} image ids for {self.labels.shape[0]} predictions")
            arrays["image"] = np.asarray(list(image_ids), dtype=str)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:  # a file object: numpy would append .npz to a path
                np.savez_compressed(f, **arrays)
        return Path(path)


class PredictionCollector:
    """Receives ``(logits, labels)`` of every evaluation batch (:func:`peftbench.engine.loop.evaluate`)."""

    def __init__(self, topk: int = 5) -> None:
        if topk < 1:
            raise ValueError(f"topk must be >= 1, got {topk}")
        self.topk = topk
        self._labels: list[torch.Tensor] = []
        self._index: list[torch.Tensor] = []
        self._prob: list[torch.Tensor] = []
        self._nll: list[torch.Tensor] = []

    def add(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """One batch: logits ``(B, C)`` (any float dtype), labels ``(B,)`` (-1 = unlabelled)."""
        log_p = torch.log_softmax(logits.float(), dim=-1)  # (B, C)
        k = min(self.topk, log_p.shape[-1])
        top_log_p, top_index = log_p.topk(k, dim=-1)  # (B, k), sorted
        labelled = labels >= 0
        true_log_p = log_p.gather(1, labels.clamp(min=0).unsqueeze(1)).squeeze(1)  # (B,)
        self._labels.append(labels.detach().cpu().long())
        self._index.append(top_index.cpu())
        self._prob.append(top_log_p.exp().cpu())
        self._nll.append(torch.where(labelled, -true_log_p, torch.zeros_like(true_log_p)).double().cpu())

    def result(self) -> Predictions:
        """Everything collected, with the calibration over the labelled images."""
        if not self._labels:
            empty = np.zeros((0, self.topk))
            return Predictions(np.zeros(0, np.int64), empty.astype(np.int64), empty.astype(np.float32), None, None,
                               None)
        labels = torch.cat(self._labels).numpy()
        index = torch.cat(self._index).numpy()
        prob = torch.cat(self._prob).numpy().astype(np.float32)
        labelled = labels >= 0
        n = int(labelled.sum())
        if n == 0:
            return Predictions(labels, index, prob, None, None, None)
        correct = index[labelled, 0] == labels[labelled]
        nll = float(torch.cat(self._nll).sum().item() / n)
        ece = expected_calibration_error(prob[labelled, 0], correct)
        return Predictions(labels, index, prob, nll, ece, 100.0 * float(correct.sum()) / n)
