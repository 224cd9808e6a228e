"""Point the ROS wheels' CMake exports at this interpreter's include directories.

About a dozen `share/*/cmake/*Export.cmake` files in the ROS 2 PyPI wheels name the wheel
builder's Python and numpy include directories (/opt/python/cp311-cp311/...). CMake refuses an
imported target whose include directory does not exist, so building any interface package
against the wheels fails until those paths name directories of this interpreter. Idempotent.
"""

from __future__ import annotations

import re
import sys
import sysconfig
from pathlib import Path

import numpy

INCLUDE_LIST = re.compile(r'(INTERFACE_INCLUDE_DIRECTORIES\s+")([^"]*)(")')


def replacement_for(path: str) -> str:
    """The directory of this interpreter that plays the role `path` played on the builder."""
    if Path(path).exists():
        return path
    if "/numpy/" in path:
        return numpy.get_include()
    if re.search(r"/include/python3\.\d+$", path):
        return sysconfig.get_paths()["include"]
    return path


def fix_file(cmake_file: Path) -> bool:
    text = cmake_file.read_text()

    def fix_list(match: re.Match[str]) -> str:
        paths = [replacement_for(p) for p in match.group(2).split(";")]
        return match.group(1) + ";".join(paths) + match.group(3)

    fixed = INCLUDE_LIST.sub(fix_list, text)
    if fixed == text:
        return False
    cmake_file.write_text(fixed)
    return True


def main() -> int:
    prefix = Path(sys.argv[1] if len(sys.argv) > 1 else sys.prefix)
    changed = [f for f in sorted(prefix.glob("share/*/cmake/*.cmake")) if fix_file(f)]
    print(f"fix_ros_wheel_cmake: rewrote include paths in {len(changed)} CMake export files")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
