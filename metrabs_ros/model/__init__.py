"""MeTRAbs crop model: backbone, heatmap head, soft-argmax decoding, absolute reconstruction."""
from metrabs_ros.model.config import ModelConfig
from metrabs_ros.model.metrabs import CropOutput, Metrabs
from metrabs_ros.model.output_skeletons import OutputSkeletons

__all__ = ['CropOutput', 'Metrabs', 'ModelConfig', 'OutputSkeletons']
