"""pose.launch.py evaluated with the real launch / launch_ros packages (CI installs them from
../shared/ros_wheelhouse; skipped where they are missing). test_launch_smoke.py runs it."""
import importlib.util
from pathlib import Path

import pytest
import yaml

from metrabs_ros.ros.parameters import PARAMETERS

try:
    import launch
    from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction
    from launch_ros.actions import Node
except ImportError:
    launch = None

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def launch_file(monkeypatch):
    if launch is None:
        pytest.skip('launch / launch_ros are not installed (pip-only environment)')
    spec = importlib.util.spec_from_file_location('pose_launch', ROOT / 'launch' / 'pose.launch.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, 'get_package_share_directory', lambda package: str(ROOT))
    return module


def evaluate(module, **arguments):
    """The actions the launch file creates for these arguments (defaults otherwise)."""
    description = module.generate_launch_description()
    context = launch.LaunchContext()
    for action in description.entities:
        if isinstance(action, DeclareLaunchArgument):
            context.launch_configurations[action.name] = arguments.get(
                action.name, launch.utilities.perform_substitutions(context, action.default_value))
    opaque = next(a for a in description.entities if isinstance(a, OpaqueFunction))
    return opaque.execute(context)


def test_arguments_cover_the_node_and_defaults_point_into_the_package(launch_file):
    declared = {a.name: a for a in launch_file.generate_launch_description().entities
                if isinstance(a, DeclareLaunchArgument)}
    assert {'camera', 'image_topic', 'camera_info_topic', 'model_path', 'detector', 'device',
            'skeleton', 'params_file', 'rviz'} <= set(declared)
    assert set(launch_file.STRING_PARAMETERS) <= {p.name for p in PARAMETERS}
    actions = evaluate(launch_file)
    assert len(actions) == 1 and isinstance(actions[0], Node)  # no RViz by default
    assert actions[0].node_executable == 'pose_node' and actions[0].node_package == 'metrabs_ros'


def test_missing_params_file_is_an_error_naming_it(launch_file, tmp_path):
    with pytest.raises(RuntimeError, match='nope.yaml.*does not exist'):
        evaluate(launch_file, params_file=str(tmp_path / 'nope.yaml'))


def test_rviz_without_rviz2_gives_one_message(launch_file, monkeypatch):
    def not_found(package):
        raise launch_file.PackageNotFoundError(package)
    monkeypatch.setattr(launch_file, 'get_package_prefix', not_found)
    actions = evaluate(launch_file, rviz='true')
    messages = [a for a in actions if isinstance(a, LogInfo)]
    assert len(actions) == 2 and len(messages) == 1
    assert 'rviz2 is not installed' in ''.join(str(part.text) for part in messages[0].msg)


def test_rviz_config_follows_the_camera_namespace(launch_file):
    path = launch_file.rviz_config(str(ROOT), '/some/ns/')
    displays = yaml.safe_load(Path(path).read_text())['Visualization Manager']['Displays']
    topics = {d['Name']: d['Topic']['Value'] for d in displays if 'Topic' in d}
    assert topics == {'Skeletons': '/some/ns/markers', 'Debug image': '/some/ns/debug_image'}


def test_params_yaml_names_only_declared_parameters_with_matching_types():
    params = yaml.safe_load((ROOT / 'config' / 'params.yaml').read_text())['/**']['ros__parameters']
    declared = {p.name: p for p in PARAMETERS}
    assert set(params) <= set(declared)
    for name, value in params.items():
        assert type(value) is type(declared[name].default), name
        if declared[name].choices:
            assert value in declared[name].choices
        if declared[name].range:
            low, high = declared[name].range
            assert low <= value <= high, name
