#!/usr/bin/env bash
# Play the bundled sample sequence through the pose node (its own process, over DDS) with the
# bundled model and detector; results in ${1:-demo_output}/ (summary.json, overlay.png,
# markers.png, node.log). Needs scripts/setup_env.sh to have run.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$root/scripts/env.sh"
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
metrabs-demo --out "${1:-demo_output}"
