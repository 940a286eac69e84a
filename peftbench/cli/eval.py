"""``peftbench-eval``: re-score a finished run from its ``task.safetensors`` and the backbone weights.

Examples:
    peftbench-eval results/runs/vtab/dtd/vit_b16_in21k/lora/final-seed0-1a2b3c4d          # the recorded split
    peftbench-eval RUN --split val200 --predictions val200.npz                             # another split
    peftbench-eval RUN --images my_photos/ --predictions photos.npz                        # unlabelled images
"""

from __future__ import annotations

import argparse
import json
import sys

from peftbench.errors import exit_on_user_error

PROG = "peftbench-eval"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Rebuild a finished run (backbone weights + task.safetensors) and evaluate it again; print one "
        "JSON object with accuracy (top-1 %), expected_calibration_error (%, 15 bins), nll, the split, the "
        "image count and whether the accuracy matches the recorded one. On the run's own split and device type "
        "the accuracy equals the recorded one.",
        epilog="examples:" + __doc__.split("Examples:")[1],
    )
    parser.add_argument("run", help="a run folder (<results>/runs/.../<protocol>-seed<N>-<hash>) or its result.json")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--split", default=None,
                       help="split of the run's task: train800, val200, train800val200, test (VTAB-1k, embedded) "
                            "or train, val, test (FGVC); default: the split the run's accuracy was measured on")
    where.add_argument("--images", default=None,
                       help="a folder of image files instead (no labels: predictions only, accuracy null)")
    parser.add_argument("--data-root", default=None, help="where the data is now (default: the recorded data.root)")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument("--predictions", default=None, metavar="FILE.npz",
                        help="also write per-image top-k class indices and float16 probabilities (and image paths)")
    parser.add_argument("--topk", type=int, default=5, help="classes kept per image in --predictions (default 5)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --predictions file")
    parser.add_argument("--checkpoint", default=None,
                        help="score this task checkpoint instead of the run's task.safetensors")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; returns the exit code (2 for bad input)."""
    args = _parser().parse_args(argv)
    from peftbench.apps.evaluate import rescore

    result = exit_on_user_error(
        rescore, args.run, split=args.split, images=args.images, data_root=args.data_root, device=args.device,
        predictions=args.predictions, topk=args.topk, overwrite=args.overwrite, checkpoint=args.checkpoint,
        prog=PROG,
    )
    print(json.dumps(result))
    return 0


def console() -> None:
    """Console-script wrapper that turns the return value into the exit code."""
    sys.exit(main())


if __name__ == "__main__":
    console()
