"""pip-installable core library (no ROS needed). The ROS 2 package is built from CMakeLists.txt."""
from setuptools import find_packages, setup

setup(
    name='metrabs_ros',
    version='0.1.0',
    description='MeTRAbs absolute metric 3D human pose estimation as a library and a ROS 2 node',
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    license='MIT',
    python_requires='>=3.10',
    packages=find_packages(include=['metrabs_ros', 'metrabs_ros.*']),
    package_data={'metrabs_ros': ['bundled/*/*', 'model_registry.json']},  # default model, detector, sample sequence
    install_requires=[
        'numpy>=1.24',
        'torch>=2.1',
        'torchvision>=0.16',
        'safetensors>=0.4',
        'pyyaml>=6',
        'scipy>=1.10',
        'opencv-python-headless>=4.8',
        'matplotlib>=3.6',
        'tqdm>=4.60',
    ],
    entry_points={'console_scripts': [
        'metrabs-pose = metrabs_ros.cli:main',
        'metrabs-synth = metrabs_ros.data.dataset:main',
        'metrabs-train = metrabs_ros.train.trainer:main',
        'metrabs-render-crops = metrabs_ros.train.crop_cache:main',
        'metrabs-eval = metrabs_ros.train.evaluate:main',
        'metrabs-train-detector = metrabs_ros.train.detector_trainer:main',
        'metrabs-synth-sequence = metrabs_ros.data.sequence:main',
        'metrabs-demo = metrabs_ros.ros.demo:main',
        'metrabs-camera = metrabs_ros.ros.sequence_camera:main',
        'metrabs-fetch = metrabs_ros.fetch:main',
    ]},
    extras_require={
        'test': ['pytest>=7'],
        # pybullet: the humanoid's motion clips and kinematics; scikit-image: background photos
        'data': ['pybullet>=3.2', 'scikit-image>=0.21'],
        # Optional YOLO person detector (metrabs_ros.yolo_detector); ultralytics is AGPL-3.0 and pulls
        # opencv-python next to opencv-python-headless (same cv2 directory) and polars (about 320 MB).
        'yolo': ['ultralytics>=8.1'],
    },
)
