"""The model's configuration: a small frozen dataclass passed explicitly, JSON-serializable."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from metrabs_ros.crops import CROP_GEOMETRIES
from metrabs_ros.model.backbones import BACKBONES, check_stride
from metrabs_ros.model.reconstruct import SOLVE_NORMALIZATIONS

INPUT_NORMALIZATIONS = ('plus_minus_one', 'imagenet')


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and decoding constants of a MeTRAbs crop model.

    joint_names / joint_edges describe the joints the head predicts (the raw joint set).
    box_size_m: side of the metric 3D heatmap volume; crop_side: input crop side S in pixels.
    stride: the backbone's output stride, 32 (official), or 16 for ResNets (last stage dilated,
    same weights): twice the heatmap resolution for about 1.6x the compute of ResNet-18.
    centered_stride / legacy_centered_stride_bug: the official heatmap-to-pixel offset flags.
    mix_3d_inside_fov: weight of the 3D-based estimate for in-FOV joints (0.5 at test time).
    ridge_lambda: ridge weight of the least-squares reference-point solve. It pulls the
    (RMS-normalized) solution towards zero: the official weights were trained with 1e-2 (set by
    the official loader), which biases the result by about 0.7 mm with all joints in view and by
    centimetres under heavy truncation; the default 1e-6 is only a numerical safeguard.
    solve_normalization: RMS normalization of that solve, 'per_crop' (each crop's result is
    independent of the batch) or 'batch' (one scale over all crops of a call, as the official code
    does; set by the official loader). See metrabs_ros.model.reconstruct.
    crop_geometry: how the estimator computes crop cameras and sampling positions, 'exact'
    (float64, box points undistorted to convergence) or 'official' (the official code's float32
    arithmetic and 5-step box-point undistortion, and grid_sample's sampling on the cv2 back-end;
    set by the official loader). They differ by < 1e-3 px for ordinary boxes (by pixels near the
    corners of strongly distorted images, where 5 steps do not converge), which a model can still
    turn into millimetres (the random-weight parity release does). See metrabs_ros.crops.
    training_domain: '' for general models; otherwise what the model was trained on (e.g. the
    bundled model's synthetic humanoids): the estimator then warns once when it sees other images.
    implausible_pose_rules: whether the official plausibility rules (bone lengths, augmentation
    and box consistency; suppression.py) fit this model's poses. False for a model whose poses
    fail them although they find the person (the bundled synthetic model): suppression then only
    removes duplicates.
    box_coverage: the box-consistency rule's threshold: a pose's 2D bounding box must cover
    more than this fraction of its detection box. The official 0.5 suits joint sets that reach
    the head top, hands and feet; a joint set that stops at the neck, wrists and ankles covers
    less of a person's box even when exact, so its models carry a lower value calibrated on
    ground truth (scripts/calibrate_box_coverage.py).
    """

    backbone: str
    joint_names: tuple[str, ...]
    joint_edges: tuple[tuple[int, int], ...] = ()
    skeleton: str = 'custom'
    crop_side: int = 256
    depth: int = 8
    box_size_m: float = 2.2
    stride: int = 32
    centered_stride: bool = True
    legacy_centered_stride_bug: bool = False
    mix_3d_inside_fov: float = 0.5
    fov_border_factor: float = 0.75
    weak_perspective: bool = False
    ridge_lambda: float = 1e-6
    solve_normalization: str = 'per_crop'
    crop_geometry: str = 'exact'
    input_normalization: str = 'plus_minus_one'
    implausible_pose_rules: bool = True
    box_coverage: float = 0.5
    training_domain: str = ''

    def __post_init__(self):
        object.__setattr__(self, 'joint_names', tuple(str(n) for n in self.joint_names))
        object.__setattr__(
            self, 'joint_edges', tuple((int(a), int(b)) for a, b in self.joint_edges))
        if self.backbone not in BACKBONES:
            raise ValueError(f'unknown backbone {self.backbone!r}; known: {sorted(BACKBONES)}')
        if not self.joint_names:
            raise ValueError('joint_names must not be empty')
        check_stride(self.backbone, self.stride)
        if self.crop_side <= 0 or self.crop_side % self.stride:
            raise ValueError(
                f'crop_side must be a positive multiple of the stride {self.stride}, '
                f'got {self.crop_side}')
        if self.depth < 1 or self.box_size_m <= 0:
            raise ValueError(f'depth and box_size_m must be positive, got {self.depth}, '
                             f'{self.box_size_m}')
        if not 0 <= self.box_coverage < 1:
            raise ValueError(f'box_coverage must be in [0, 1), got {self.box_coverage}')
        if not 0 <= self.mix_3d_inside_fov <= 1:
            raise ValueError(f'mix_3d_inside_fov must be in [0, 1], got {self.mix_3d_inside_fov}')
        if self.solve_normalization not in SOLVE_NORMALIZATIONS:
            raise ValueError(f'solve_normalization must be one of {SOLVE_NORMALIZATIONS}, '
                             f'got {self.solve_normalization!r}')
        if self.crop_geometry not in CROP_GEOMETRIES:
            raise ValueError(f'crop_geometry must be one of {CROP_GEOMETRIES}, got {self.crop_geometry!r}')
        if self.input_normalization not in INPUT_NORMALIZATIONS:
            raise ValueError(f'input_normalization must be one of {INPUT_NORMALIZATIONS}')
        n = len(self.joint_names)
        if any(not (0 <= a < n and 0 <= b < n) for a, b in self.joint_edges):
            raise ValueError('joint_edges refer to joints outside joint_names')

    @property
    def n_joints(self) -> int:
        return len(self.joint_names)

    def to_dict(self) -> dict:
        """Plain JSON-serializable dict."""
        d = dataclasses.asdict(self)
        d['joint_names'] = list(self.joint_names)
        d['joint_edges'] = [list(e) for e in self.joint_edges]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> 'ModelConfig':
        """Inverse of to_dict; unknown keys raise a ValueError naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f'unknown model config keys: {sorted(unknown)}')
        return cls(**d)
