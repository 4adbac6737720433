"""ros2 launch metrabs_ros pose.launch.py camera:=/camera/color model_path:=/path/to/model ...

Starts the pose node in the camera's namespace, reading <camera>/<image_topic> and
<camera>/<camera_info_topic>, with parameters from params_file plus the model/device arguments;
optionally RViz with config/metrabs.rviz.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

ARGUMENTS = (
    ('camera', '/camera', 'namespace of the camera topics; the node runs in it'),
    ('image_topic', 'image_raw', 'image topic, relative to the camera namespace'),
    ('camera_info_topic', 'camera_info', 'CameraInfo topic, relative to the camera namespace'),
    ('model_path', '', "model directory (metrabs_ros checkpoint or official release); '' = the "
                       'bundled synthetic-humanoid model'),
    ('detector', '', 'person detector: centre-point detector directory, TorchScript file or '
                     "'architecture:weights_file'; '' with model_path '' = the bundled detector"),
    ('device', 'auto', 'auto, cpu or cuda'),
    ('skeleton', '', "output joint set; '' = the model's first"),
    ('params_file', 'DEFAULT', 'parameters YAML (default: config/params.yaml of this package)'),
    ('rviz', 'false', 'also start RViz with config/metrabs.rviz'),
)


def generate_launch_description():
    share = get_package_share_directory('metrabs_ros')
    args = {name: LaunchConfiguration(name) for name, _, _ in ARGUMENTS}
    declared = [DeclareLaunchArgument(name, default_value=(
        os.path.join(share, 'config', 'params.yaml') if default == 'DEFAULT' else default),
        description=description) for name, default, description in ARGUMENTS]
    pose_node = Node(
        package='metrabs_ros', executable='pose_node', name='metrabs_pose',
        namespace=args['camera'], output='screen',
        parameters=[args['params_file'], {key: args[key] for key in (
            'model_path', 'detector', 'device', 'skeleton')}],
        remappings=[('image', args['image_topic']),
                    ('image/compressed', [args['image_topic'], '/compressed']),
                    ('camera_info', args['camera_info_topic'])])
    rviz = Node(package='rviz2', executable='rviz2', name='metrabs_rviz',
                arguments=['-d', os.path.join(share, 'config', 'metrabs.rviz')],
                condition=IfCondition(args['rviz']))
    return LaunchDescription(declared + [pose_node, rviz])
