"""Loading and saving model weights.

Two formats, each a directory:
- this project's: ``config.json`` (model config + output skeletons) and ``model.safetensors``;
- the official MeTRAbs PyTorch release: ``ckpt.pt``, ``config.yaml``, ``joint_info.npz``,
  ``skeleton_infos.pkl`` and ``joint_transform_matrix.npy``.
Any missing or unreadable file raises one CheckpointError that names it. `load_model` also takes a
registered model name (see metrabs_ros.fetch, ``metrabs-fetch --list``) instead of a directory.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import safetensors.torch
import torch
import yaml

from metrabs_ros.model.config import ModelConfig
from metrabs_ros.model.metrabs import Metrabs
from metrabs_ros.model.output_skeletons import OutputSkeletons, skeletons_from_infos
from metrabs_ros.skeletons import make_skeleton_from_indices

CONFIG_FILE = 'config.json'
WEIGHTS_FILE = 'model.safetensors'
FORMAT_NAME = 'metrabs_ros'
FORMAT_VERSION = 1
OWN_FILES = (CONFIG_FILE, WEIGHTS_FILE)
OFFICIAL_FILES = ('ckpt.pt', 'config.yaml', 'joint_info.npz', 'skeleton_infos.pkl',
                  'joint_transform_matrix.npy')

OFFICIAL_RIDGE_LAMBDA = 1e-2  # the reference-point ridge the official weights were trained with


class CheckpointError(RuntimeError):
    """A model directory or one of its files is missing, unreadable or inconsistent."""


def load_model(path: str | Path, device: str | torch.device = 'cpu',
               allow_download: bool = False) -> Metrabs:
    """Load a model directory of either format, in eval mode, on `device`.

    `path` may also be a registered model name (metrabs_ros.fetch): its verified cached copy is
    used, downloaded first only when `allow_download` is set.
    """
    from metrabs_ros.fetch import resolve_model  # fetch checks releases with model_files below

    path = resolve_model(path, allow_download=allow_download)
    model = load_checkpoint(path) if model_files(path) == OWN_FILES else load_official_release(path)
    return model.to(device).eval()


def model_files(directory: str | Path) -> tuple[str, ...]:
    """The files of the format `directory` holds (OWN_FILES or OFFICIAL_FILES), all present.

    Raises CheckpointError when the directory is missing, holds neither format, or lacks some files.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f'model directory not found: {directory}')
    for files, kind in ((OWN_FILES, f'{FORMAT_NAME} checkpoint'), (OFFICIAL_FILES, 'official release')):
        present = [name for name in files if (directory / name).is_file()]
        if present and len(present) < len(files):
            missing = ', '.join(name for name in files if name not in present)
            raise CheckpointError(f'{directory}: incomplete {kind}: missing {missing} '
                                  f'(a complete one has {", ".join(files)})')
        if present:
            return files
    raise CheckpointError(
        f'{directory} holds neither a {FORMAT_NAME} checkpoint ({", ".join(OWN_FILES)}) '
        f'nor an official release ({", ".join(OFFICIAL_FILES)})')


def save_checkpoint(model: Metrabs, directory: str | Path, dtype: torch.dtype | None = None):
    """Write `model` as config.json + model.safetensors; `dtype` (e.g. float16) casts the floats."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    skeletons = model.output_skeletons
    config = {
        'format': FORMAT_NAME,
        'version': FORMAT_VERSION,
        'model': model.config.to_dict(),
        'skeletons': {
            name: {'joint_names': list(s.joint_names), 'edges': s.edges.tolist(),
                   'indices': skeletons.indices(name).tolist()}
            for name, s in skeletons.skeletons.items()},
    }
    tensors = {k: _cast(v, dtype).contiguous() for k, v in model.state_dict().items()}
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2))
    safetensors.torch.save_file(tensors, str(directory / WEIGHTS_FILE))


def load_checkpoint(directory: str | Path) -> Metrabs:
    """Load this project's checkpoint format (float32 on CPU)."""
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    config = _read(config_path, lambda p: json.loads(p.read_text()))
    if not isinstance(config, dict) or config.get('format') != FORMAT_NAME:
        raise CheckpointError(f'{config_path}: not a {FORMAT_NAME} model config')
    if config.get('version') != FORMAT_VERSION:
        raise CheckpointError(f'{config_path}: unsupported format version {config.get("version")}')
    state = _read(weights_path, lambda p: safetensors.torch.load_file(str(p)))
    transform = state.get('output_skeletons.joint_transform')
    if not isinstance(config.get('skeletons'), dict):
        raise CheckpointError(f'{config_path}: "skeletons" must be a mapping of skeleton name to '
                              f'{{joint_names, edges, indices}}, got {config.get("skeletons")!r}')
    try:
        model_config = ModelConfig.from_dict(config['model'])
        output = OutputSkeletons({
            name: (make_skeleton_from_indices(name, s['joint_names'], s['edges']), s['indices'])
            for name, s in config['skeletons'].items()},
            joint_transform=None if transform is None else transform.float().numpy())
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise CheckpointError(f'{config_path}: invalid model config: {e}') from e
    return _build(Metrabs(model_config, output), state, weights_path)


def load_official_release(directory: str | Path) -> Metrabs:
    """Load an official MeTRAbs PyTorch release directory (e.g. metrabs_eff2l_384px_..._pytorch)."""
    directory = Path(directory)
    paths = {name: directory / name for name in OFFICIAL_FILES}
    cfg = _read(paths['config.yaml'], _read_settings)
    joint_info = _read(paths['joint_info.npz'], lambda p: dict(np.load(p, allow_pickle=False)))
    infos = _read(paths['skeleton_infos.pkl'], _safe_unpickle)
    transform = _read(paths['joint_transform_matrix.npy'], lambda p: np.load(p, allow_pickle=False))
    state = _read(paths['ckpt.pt'],
                  lambda p: torch.load(p, map_location='cpu', weights_only=True))
    try:
        backbone = official_backbone(cfg)
    except ValueError as e:
        raise CheckpointError(f'{paths["config.yaml"]}: {e}') from e
    try:
        model_config = official_model_config(cfg, joint_info, backbone)
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f'{paths["config.yaml"]} / {paths["joint_info.npz"]}: {e}') from e
    try:
        if transform.ndim != 2 or transform.shape[0] != model_config.n_joints:
            raise ValueError(f'expected shape ({model_config.n_joints}, J_out), got {transform.shape}')
        output = OutputSkeletons(skeletons_from_infos(infos), joint_transform=transform)
        if any(int(output.indices(n).max()) >= transform.shape[1] for n in output.names):
            raise ValueError('skeleton indices exceed the joint transform output')
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(
            f'{paths["skeleton_infos.pkl"]} / {paths["joint_transform_matrix.npy"]}: {e}') from e
    state = _remap_official_keys(state, paths['ckpt.pt'])
    state['output_skeletons.joint_transform'] = output.joint_transform
    return _build(Metrabs(model_config, output), state, paths['ckpt.pt'])


def official_backbone(cfg: dict) -> str:
    """The torchvision backbone for an official config.yaml dict; ValueError names an unsupported key."""
    for flag in ('affine_weights', 'transform_coords', 'predict_all_and_latents'):
        if cfg.get(flag):
            raise ValueError(f'{flag}={cfg[flag]!r}: latent-joint models are not supported')
    if cfg.get('efficientnet_size'):
        key, size, expected = 'efficientnet_size', cfg['efficientnet_size'], "'s', 'm' or 'l'"
    else:
        key, expected = 'backbone', "'efficientnetv2-s', '-m' or '-l'"
        size = str(cfg.get('backbone')).rsplit('-', 1)[-1]
    if size not in ('s', 'm', 'l'):
        raise ValueError(f'unsupported {key}: {cfg.get(key)!r}, expected {expected} (EfficientNetV2-S/M/L)')
    return f'efficientnet_v2_{size}'


def official_model_config(cfg: dict, joint_info: dict, backbone: str) -> ModelConfig:
    """ModelConfig from an official config.yaml dict, joint_info.npz arrays and official_backbone(cfg)."""
    mix = cfg.get('mix_3d_inside_fov', 0.5)
    return ModelConfig(
        backbone=backbone,
        joint_names=tuple(str(n) for n in joint_info['joint_names']),
        joint_edges=tuple(map(tuple, np.asarray(joint_info['joint_edges']).reshape(-1, 2))),
        skeleton='official_raw',
        crop_side=int(cfg.get('proc_side', 256)),
        depth=int(cfg.get('depth', 8)),
        box_size_m=float(cfg.get('box_size_mm', 2200)) / 1000,
        stride=int(cfg.get('stride_test', 32)),
        centered_stride=bool(cfg.get('centered_stride', True)),
        legacy_centered_stride_bug=bool(cfg.get('legacy_centered_stride_bug', False)),
        mix_3d_inside_fov=0.0 if mix is None else float(mix),
        weak_perspective=bool(cfg.get('weak_perspective', False)),
        ridge_lambda=OFFICIAL_RIDGE_LAMBDA,
        solve_normalization='batch',  # ptu3d.reconstruct_ref_fullpersp: one RMS over the batch
        crop_geometry='official',  # multiperson_model.py: float32 crop cameras and warp
        input_normalization='plus_minus_one')


def _remap_official_keys(state: dict, path: Path) -> dict:
    """Official names (backbone.1.*, heatmap_heads.conv_final.*) -> this package's names."""
    if not isinstance(state, dict):
        raise CheckpointError(f'{path}: expected a state dict, got {type(state).__name__}')
    remapped = {}
    for key, value in state.items():
        if key.startswith('backbone.1.'):
            remapped['backbone.' + key[len('backbone.1.'):]] = value
        elif key.startswith('heatmap_heads.conv_final.'):
            remapped['head.conv.' + key[len('heatmap_heads.conv_final.'):]] = value
        else:
            raise CheckpointError(f'{path}: unexpected tensor {key!r} for the official layout')
    return remapped


def _build(model: Metrabs, state: dict, path: Path) -> Metrabs:
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f'{path}: weights do not fit the configured model: {e}') from e
    return model.eval()


def _cast(tensor: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    return tensor.to(dtype) if dtype is not None and tensor.is_floating_point() else tensor


def _read(path: Path, reader):
    if not path.is_file():
        raise CheckpointError(f'missing model file: {path}')
    try:
        return reader(path)
    except CheckpointError:
        raise
    except Exception as e:
        raise CheckpointError(f'cannot read {path}: {type(e).__name__}: {e}') from e


def _read_settings(path: Path) -> dict:
    settings = yaml.safe_load(path.read_text())
    if settings is None:
        return {}
    if not isinstance(settings, dict):
        raise CheckpointError(f'{path}: expected a mapping of settings (key: value lines, e.g. '
                              f'proc_side: 384), got a YAML {type(settings).__name__}')
    return settings


_SAFE_PICKLE_GLOBALS = {
    ('builtins', name) for name in ('dict', 'list', 'tuple', 'set', 'str', 'int', 'float', 'bool')
} | {(module, name) for module in ('numpy.core.multiarray', 'numpy._core.multiarray')
     for name in ('_reconstruct', 'scalar')} | {
    ('numpy', 'ndarray'), ('numpy', 'dtype'), ('collections', 'OrderedDict')}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in _SAFE_PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f'refusing to load {module}.{name} from a pickle')
        return super().find_class(module, name)


def _safe_unpickle(path: Path):
    with open(path, 'rb') as f:
        return _SafeUnpickler(f).load()
