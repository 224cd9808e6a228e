"""What every exlow_pose node's main() does: --help, one clear start-up error, clean shutdown."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from pathlib import Path

from ..core.backends.base import BackendError
from ..core.person_tracker import TrackerError
from .parameters import help_text

# Faults that mean "cannot start": they end the process with one line saying what to do.
STARTUP_ERRORS = (BackendError, TrackerError, ValueError, FileNotFoundError, OSError)
SIGNAL_CHECK_PERIOD_S = 0.1  # longest wait in the executor before a signal is seen


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
        # The handler raises KeyboardInterrupt only at the next bytecode: during a long C call in start-up
        # (loading the detector) it can come after start-up has ended, here, in the clean-up. A requested stop.
        return 0


def stop_requested(signal_number: int, frame) -> None:
    raise KeyboardInterrupt


def _run(node_name: str, create: Callable[[], object], argv: list[str]) -> int:
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    # Our own handlers, not rclpy's: rclpy's shut the context down at the signal, before close() could publish
    # what the node still owes (the pose node's last frames). Python runs a handler between bytecodes, so the
    # executor waits in short slices.
    rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signal_number, stop_requested)
    node = None
    try:
        node = create()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while rclpy.ok():
            executor.spin_once(timeout_sec=SIGNAL_CHECK_PERIOD_S)
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
