"""ros2 launch metrabs_ros pose.launch.py camera:=/camera/color model_path:=/path/to/model ...

Starts the pose node in the camera's namespace, reading <camera>/<image_topic> and
<camera>/<camera_info_topic>, with parameters from params_file plus the model/device arguments
(always passed as strings: model_path:=123 is a path, not a number); optionally RViz with
config/metrabs.rviz, its topics moved into the camera namespace.
"""
import os
import tempfile

import yaml
from ament_index_python.packages import (PackageNotFoundError, get_package_prefix,
                                         get_package_share_directory)
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

ARGUMENTS = (
    ('camera', '/camera', 'namespace of the camera topics; the node runs in it'),
    ('image_topic', 'image_raw', 'image topic, relative to the camera namespace'),
    ('camera_info_topic', 'camera_info', 'CameraInfo topic, relative to the camera namespace'),
    ('model_path', '', "model directory (metrabs_ros checkpoint or official release) or a "
                       "release name from metrabs-fetch; '' = the bundled synthetic-humanoid model"),
    ('allow_download', 'false', 'model_path may name a release that metrabs-fetch downloads at '
                                'configure (needs internet once; cached afterwards)'),
    ('detector', '', 'person detector: centre-point detector directory, TorchScript file or '
                     "'architecture:weights_file'; '' with model_path '' = the bundled detector"),
    ('device', 'auto', 'auto, cpu or cuda'),
    ('skeleton', '', "output joint set; '' = the model's first"),
    ('params_file', 'DEFAULT', 'parameters YAML (default: config/params.yaml of this package)'),
    ('rviz', 'false', 'also start RViz with config/metrabs.rviz (needs rviz2)'),
)
STRING_PARAMETERS = ('model_path', 'detector', 'device', 'skeleton')
# RViz displays of config/metrabs.rviz -> the node output they show (relative to the namespace).
RVIZ_TOPICS = {'Skeletons': 'markers', 'Debug image': 'debug_image'}


def generate_launch_description():
    share = get_package_share_directory('metrabs_ros')
    declared = [DeclareLaunchArgument(name, default_value=(
        os.path.join(share, 'config', 'params.yaml') if default == 'DEFAULT' else default),
        description=description) for name, default, description in ARGUMENTS]
    return LaunchDescription(declared + [OpaqueFunction(function=launch_setup, args=[share])])


def launch_setup(context, share):
    """The pose node (and RViz) for the resolved arguments; fails on a missing params_file."""
    args = {name: LaunchConfiguration(name) for name, _, _ in ARGUMENTS}
    params_file = args['params_file'].perform(context)
    if not os.path.isfile(params_file):
        raise RuntimeError(f'params_file {params_file!r} does not exist')
    camera = '/' + args['camera'].perform(context).strip('/')
    pose_node = Node(
        package='metrabs_ros', executable='pose_node', name='metrabs_pose',
        namespace=camera, output='screen',
        parameters=[params_file, {key: ParameterValue(args[key], value_type=str)
                                  for key in STRING_PARAMETERS},
                    {'allow_download': ParameterValue(args['allow_download'], value_type=bool)}],
        remappings=[('image', args['image_topic']),
                    ('image/compressed', [args['image_topic'], '/compressed']),
                    ('camera_info', args['camera_info_topic'])])
    actions = [pose_node]
    if args['rviz'].perform(context).lower() in ('true', '1', 'yes'):
        actions.append(rviz_node(share, camera))
    return actions


def rviz_node(share: str, camera: str):
    """RViz showing the node's topics in `camera`, or one message when rviz2 is missing."""
    try:
        get_package_prefix('rviz2')
    except PackageNotFoundError:
        return LogInfo(msg='rviz:=true but rviz2 is not installed (e.g. apt install '
                           'ros-$ROS_DISTRO-rviz2): starting the pose node without RViz')
    return Node(package='rviz2', executable='rviz2', name='metrabs_rviz',
                arguments=['-d', rviz_config(share, camera)])


def rviz_config(share: str, camera: str) -> str:
    """Path of a copy of config/metrabs.rviz whose displays read the topics in `camera`."""
    with open(os.path.join(share, 'config', 'metrabs.rviz')) as f:
        config = yaml.safe_load(f)
    for display in config['Visualization Manager']['Displays']:
        if display.get('Name') in RVIZ_TOPICS:
            display['Topic']['Value'] = f"{camera.rstrip('/')}/{RVIZ_TOPICS[display['Name']]}"
    with tempfile.NamedTemporaryFile('w', prefix='metrabs_', suffix='.rviz', delete=False) as f:
        yaml.safe_dump(config, f, sort_keys=False)
    return f.name
