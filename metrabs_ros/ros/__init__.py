"""ROS 2 adapter: message conversions and the pose node (needs rclpy and the built messages)."""
