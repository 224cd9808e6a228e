"""What every exlow_pose node's main() does: --help, one clear start-up error, clean shutdown."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from ..core.backends.base import BackendError
from ..core.person_tracker import TrackerError
from .parameters import help_text

# Faults that mean "cannot start": they end the process with one line saying what to do.
STARTUP_ERRORS = (BackendError, TrackerError, ValueError, FileNotFoundError, OSError)


def run_node(node_name: str, description: str, create: Callable[[], object], argv: list[str] | None = None) -> int:
    argv = sys.argv if argv is None else argv
    own_arguments = argv[1:argv.index("--ros-args")] if "--ros-args" in argv else argv[1:]
    if "-h" in own_arguments or "--help" in own_arguments:
        program = Path(argv[0]).name if argv else node_name
        print(f"usage: {program} [--ros-args -p NAME:=VALUE ...]\n\n{description}\n\n{help_text(node_name)}")
        return 0
    try:
        return _run(node_name, create, argv)
    except KeyboardInterrupt:
        # rclpy's C signal handler shuts the context down at once, Python's own handler raises KeyboardInterrupt
        # only at the next bytecode: during a long C call in start-up (loading the detector) it can come after
        # start-up has already ended on the shut-down context, here, in the clean-up. Still a requested stop.
        return 0


def _run(node_name: str, create: Callable[[], object], argv: list[str]) -> int:
    import rclpy
    from rclpy.executors import ExternalShutdownException

    rclpy.init(args=argv)
    node = None
    try:
        node = create()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass  # SIGINT / SIGTERM: a requested shutdown
    except Exception as error:
        if not rclpy.ok():
            return 0  # SIGTERM during start-up shut the context down under create(): still a requested shutdown
        if node is not None or not isinstance(error, STARTUP_ERRORS):
            raise  # a fault after start-up is a bug, not a configuration problem
        print(f"[{node_name}] cannot start: {error}", file=sys.stderr)
        return 2
    finally:
        if node is not None:
            close = getattr(node, "close", None)
            if close is not None:
                close()  # flush outputs (the recorder closes its bag) before the context goes
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
