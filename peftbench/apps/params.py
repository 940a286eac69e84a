"""``peftbench-params``: parameter counts of backbone x method, without data, weights or network."""

from __future__ import annotations

from typing import Any

from peftbench.assemble import assemble, parse_spec


def param_report(cfg: Any) -> dict[str, Any]:
    """Counts for the composed backbone x method (random init; the head sized for the dataset).

    Args:
        cfg: a composed ``configs/params.yaml`` (or ``train.yaml``).

    Returns:
        Backbone, method, taxonomy, head size and the :class:`~peftbench.records.ParamCounts` fields.
    """
    spec = parse_spec(cfg)
    a = assemble(spec, weights=False, data=False)
    return {
        "backbone": spec.backbone.name,
        "method": spec.method.label,
        "registered_method": a.method.name,
        "family": a.method.family,
        "subfamily": a.method.subfamily,
        "num_classes": spec.dataset.num_classes,
        **a.counts.to_dict(),
    }
