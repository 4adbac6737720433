"""metrabs_ros: absolute metric 3D human pose estimation (MeTRAbs) as a library and a ROS 2 node."""
__version__ = '0.1.0'
