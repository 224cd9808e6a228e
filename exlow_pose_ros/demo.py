"""The README's main job: the whole ROS 2 pipeline on a real video (separate node processes over DDS)."""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="exlow_pose_demo",
        description="Run the exlow_pose ROS 2 pipeline (video source, tracker, pose, recorder) on a real "
        "video and print a summary.",
    )
    parser.parse_args(argv)
    print(
        "exlow_pose_demo: not built yet. The runtime nodes (tracker, pose, recorder) are tracked in the "
        "issue 'ROS 2 runtime'; until they land, `bash scripts/test.sh` is what runs."
    )
    return 3


if __name__ == "__main__":
    raise SystemExit(main())
