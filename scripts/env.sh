# Source this (POSIX sh / bash) for a shell with the venv, ROS 2 and the built messages:
#   . scripts/env.sh                            (kilted; METRABS_ROS_DISTRO=jazzy for the jazzy venv)
_metrabs_root="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)"
case "${METRABS_ROS_DISTRO:-kilted}" in jazzy) _metrabs_suffix=-jazzy ;; *) _metrabs_suffix= ;; esac
. "${METRABS_VENV:-$HOME/.cache/metrabs_ros/venv}$_metrabs_suffix/bin/activate"
export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
if [ -f "$_metrabs_root/install$_metrabs_suffix/setup.sh" ]; then
  case $- in *u*) _metrabs_nounset=1; set +u ;; esac  # colcon's setup.sh reads unset variables
  . "$_metrabs_root/install$_metrabs_suffix/setup.sh"
  [ -n "${_metrabs_nounset:-}" ] && set -u
  unset _metrabs_nounset
fi
# The source tree first: new modules work without a rebuild; metrabs_ros.msg still comes from
# install/ (metrabs_ros/__init__.py extends the package path).
export PYTHONPATH="$_metrabs_root${PYTHONPATH:+:$PYTHONPATH}"
unset _metrabs_root _metrabs_suffix
