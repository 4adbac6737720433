"""pose.launch.py's structure, checked with stand-ins for `launch`/`launch_ros` where those are
not installed (they are not on PyPI); with a real ROS 2 install the real packages are used."""
import importlib.util
import sys
import types
from pathlib import Path

import pytest
import yaml

from metrabs_ros.ros.parameters import PARAMETERS

ROOT = Path(__file__).resolve().parents[1]


class Recorded:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


def stand_in_modules(share_dir):
    names = {
        'launch': dict(LaunchDescription=lambda actions: list(actions)),
        'launch.actions': dict(DeclareLaunchArgument=type('DeclareLaunchArgument', (Recorded,), {})),
        'launch.conditions': dict(IfCondition=type('IfCondition', (Recorded,), {})),
        'launch.substitutions': dict(LaunchConfiguration=lambda name: f'$({name})'),
        'launch_ros': {}, 'launch_ros.actions': dict(Node=type('Node', (Recorded,), {})),
        'ament_index_python': {},
        'ament_index_python.packages': dict(get_package_share_directory=lambda p: share_dir),
    }
    modules = {}
    for name, attributes in names.items():
        module = types.ModuleType(name)
        module.__dict__.update(attributes)
        modules[name] = module
    return modules


@pytest.fixture
def launch_description(monkeypatch):
    try:
        import launch  # noqa: F401
        import launch_ros  # noqa: F401
        pytest.skip('real launch packages present: covered by launch_testing on ROS installs')
    except ImportError:
        pass
    for name, module in stand_in_modules(str(ROOT)).items():
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location('pose_launch', ROOT / 'launch' / 'pose.launch.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate_launch_description()


def test_launch_arguments_node_and_remappings(launch_description):
    arguments = {a.args[0]: a.kwargs['default_value'] for a in launch_description
                 if type(a).__name__ == 'DeclareLaunchArgument'}
    assert {'camera', 'image_topic', 'camera_info_topic', 'model_path', 'device', 'skeleton',
            'params_file', 'rviz'} <= set(arguments)
    assert Path(arguments['params_file']) == ROOT / 'config' / 'params.yaml'
    nodes = [a for a in launch_description if type(a).__name__ == 'Node']
    pose = next(n for n in nodes if n.kwargs['executable'] == 'pose_node')
    assert pose.kwargs['package'] == 'metrabs_ros' and pose.kwargs['namespace'] == '$(camera)'
    assert dict(pose.kwargs['remappings']) == {
        'image': '$(image_topic)', 'image/compressed': ['$(image_topic)', '/compressed'],
        'camera_info': '$(camera_info_topic)'}
    overrides = pose.kwargs['parameters'][1]
    assert set(overrides) <= {p.name for p in PARAMETERS}
    rviz = next(n for n in nodes if n.kwargs['executable'] == 'rviz2')
    assert rviz.kwargs['condition'].args == ('$(rviz)',)
    assert (ROOT / 'config' / 'metrabs.rviz').exists()


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


def test_rviz_config_shows_the_node_outputs():
    rviz = yaml.safe_load((ROOT / 'config' / 'metrabs.rviz').read_text())
    topics = {d.get('Topic', {}).get('Value') for d in rviz['Visualization Manager']['Displays']}
    assert {'/camera/markers', '/camera/debug_image'} <= topics
