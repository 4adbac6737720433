"""Input reliability chosen from the publishers' QoS (reliability: auto) or fixed."""
from types import SimpleNamespace

import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy

from metrabs_ros.ros.input_qos import choose_reliability, input_qos, offered_reliability

RELIABLE, BEST_EFFORT = ReliabilityPolicy.RELIABLE, ReliabilityPolicy.BEST_EFFORT


def publishers(*reliabilities):
    return [SimpleNamespace(qos_profile=QoSProfile(depth=1, reliability=r)) for r in reliabilities]


def test_reliable_only_when_every_publisher_offers_it():
    assert offered_reliability(publishers(RELIABLE, RELIABLE)) == RELIABLE
    assert offered_reliability(publishers(RELIABLE, BEST_EFFORT)) == BEST_EFFORT
    assert offered_reliability(publishers(BEST_EFFORT)) == BEST_EFFORT
    assert offered_reliability([]) is None


def test_auto_keeps_the_current_choice_without_publishers_and_starts_reliable():
    assert choose_reliability('auto', []) == RELIABLE
    assert choose_reliability('auto', [], current=BEST_EFFORT) == BEST_EFFORT
    assert choose_reliability('auto', publishers(BEST_EFFORT), current=RELIABLE) == BEST_EFFORT


def test_fixed_settings_ignore_the_publishers_and_bad_settings_are_refused():
    assert choose_reliability('reliable', publishers(BEST_EFFORT)) == RELIABLE
    assert choose_reliability('best_effort', publishers(RELIABLE)) == BEST_EFFORT
    with pytest.raises(ValueError, match='auto, reliable, best_effort'):
        choose_reliability('bogus', [])


def test_input_qos_is_keep_last_with_the_reliability():
    qos = input_qos(BEST_EFFORT)
    assert qos.reliability == BEST_EFFORT and qos.depth >= 1
