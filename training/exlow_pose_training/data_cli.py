"""`exlow-pose-data`: build, inspect and look at exlow_pose datasets.

Each subcommand lives in its own module, which provides `add_arguments(parser)` and `run(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS = {
    "teacher": ("exlow_pose_training.teacher_dataset", "pseudo-labelled dataset from videos (paper Sec. 4.1)"),
    "scenes": ("exlow_pose_training.scene_dataset", "every real scene: teacher labels and the product's detector at "
               "tiny sizes (unseen-scene benchmark data)"),
    "detector": ("exlow_pose_training.detector_data", "YOLO-pose dataset of tiny people as the product's detector "
                 "sees them (training and validation scenes), for exlow-pose-finetune-detector"),
    "blazepose": ("exlow_pose_training.blazepose_reference", "BlazePose labels of the unseen-scene test persons: an "
                  "independent second reference for exlow-pose-report (runs in .venv-blazepose)"),
    "motion": ("exlow_pose_training.motion.corpus", "COCO-17 motion corpus from CMU mocap and Penn Action"),
    "synthetic": ("exlow_pose_training.synthetic.build", "synthetic ex-low renders driven by the motion corpus"),
    "sheet": ("exlow_pose_training.contact_sheet", "contact sheet PNG of random windows of a dataset"),
    "stats": ("exlow_pose_training.dataset_stats", "statistics of a dataset (windows, tracks, sizes, visibility)"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="exlow-pose-data", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # Import only the chosen subcommand: each pulls in heavy packages (ultralytics, scipy, torch).
    chosen = next((a for a in argv if a in SUBCOMMANDS), None)
    module = None
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        subparser = commands.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            module = importlib.import_module(module_name)
            module.add_arguments(subparser)
    args = parser.parse_args(argv)
    return int(module.run(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
