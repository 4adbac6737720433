"""Input QoS that matches the camera: the reliability its publishers offer.

With ``reliability: auto`` the node subscribes the way ``ros2 topic echo`` does: reliable when
every publisher of the topic offers reliable, best effort as soon as one offers only best effort
(a reliable reader gets nothing from a best-effort writer), reliable while there is no publisher.
A best-effort reader of a reliable camera is legal but loses large images on lossy transports
(measured: 2 of 8 640x480 frames over loopback Fast DDS), so auto never picks it needlessly.
"""
from __future__ import annotations

from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

RELIABILITY_CHOICES = ('auto', 'reliable', 'best_effort')
FIXED = {'reliable': ReliabilityPolicy.RELIABLE, 'best_effort': ReliabilityPolicy.BEST_EFFORT}


def offered_reliability(publisher_infos) -> ReliabilityPolicy | None:
    """The reliability a reader should request from these publishers (TopicEndpointInfo list):
    RELIABLE when all offer it, BEST_EFFORT when any offers only that, None when there are none."""
    if not publisher_infos:
        return None
    if all(info.qos_profile.reliability == ReliabilityPolicy.RELIABLE for info in publisher_infos):
        return ReliabilityPolicy.RELIABLE
    return ReliabilityPolicy.BEST_EFFORT


def choose_reliability(setting: str, publisher_infos,
                       current: ReliabilityPolicy | None = None) -> ReliabilityPolicy:
    """The reliability for the `reliability` parameter value: fixed, or with 'auto' what the
    publishers offer (else the current choice, else RELIABLE)."""
    if setting in FIXED:
        return FIXED[setting]
    if setting != 'auto':
        raise ValueError(f'reliability must be one of {", ".join(RELIABILITY_CHOICES)}, '
                         f'got {setting!r}')
    return offered_reliability(publisher_infos) or current or ReliabilityPolicy.RELIABLE


def input_qos(reliability: ReliabilityPolicy) -> QoSProfile:
    """Keep-last sensor-data depth with the given reliability."""
    return QoSProfile(depth=qos_profile_sensor_data.depth, history=HistoryPolicy.KEEP_LAST,
                      reliability=reliability)


def reliability_name(reliability: ReliabilityPolicy) -> str:
    """'reliable' or 'best_effort' (the parameter's spelling)."""
    return 'reliable' if reliability == ReliabilityPolicy.RELIABLE else 'best_effort'
