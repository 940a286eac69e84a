"""``peftbench-export``: what a run trained, in Hugging Face PEFT's adapter format or as a plain timm checkpoint.

Examples:
    peftbench-export RUN --format peft --out adapters/dtd_lora     # lora, lora_qv, hf_*: PeftModel.from_pretrained
    peftbench-export RUN --format timm --out checkpoints/dtd_lora  # mergeable runs, full, linear: timm.create_model
"""

from __future__ import annotations

import argparse
import json
import sys

from peftbench.errors import exit_on_user_error

PROG = "peftbench-export"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Export a finished run. --format peft: Hugging Face PEFT's adapter folder (adapter_config.json + "
        "adapter_model.safetensors, the task head as modules_to_save) for lora, lora_qv and the hf_* methods; "
        "peft.PeftModel.from_pretrained(<the timm backbone>, OUT) gives the run's model. --format timm: the run "
        "merged into a plain timm model (model.safetensors with the head, timm's config.json) for mergeable methods "
        "and full / linear. The export is checked against the run's logits before it is written; OUT gets "
        "peftbench_export.json with the exact loading call. Prints that manifest as JSON.",
        epilog="examples:" + __doc__.split("Examples:")[1],
    )
    parser.add_argument("run", help="a run folder (<results>/runs/.../<protocol>-seed<N>-<hash>) or its result.json")
    parser.add_argument("--format", required=True, choices=("peft", "timm"), help="peft or timm")
    parser.add_argument("--out", required=True, help="a new (or empty) folder to write")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; returns the exit code (2 for bad input)."""
    args = _parser().parse_args(argv)
    from peftbench.apps.export import export_run

    print(json.dumps(exit_on_user_error(export_run, args.run, args.format, args.out, prog=PROG)))
    return 0


def console() -> None:
    """Console-script wrapper that turns the return value into the exit code."""
    sys.exit(main())


if __name__ == "__main__":
    console()
