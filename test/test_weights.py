import json
import pickle

import numpy as np
import pytest
import torch
import torchvision
import yaml

from metrabs_ros.model import Metrabs, ModelConfig
from metrabs_ros.skeletons import get_skeleton
from metrabs_ros.weights import (OFFICIAL_FILES, CheckpointError, load_model, save_checkpoint)

RAW = get_skeleton('smpl+head_30')
H36M = get_skeleton('h36m_17')


def crops_and_K(n=2, side=256):
    torch.manual_seed(1)
    K = torch.tensor([[450.0, 0, side / 2], [0, 450.0, side / 2], [0, 0, 1]]).expand(n, 3, 3)
    return torch.rand(n, 3, side, side), K


def official_state_dict(n_raw_joints, size='s'):
    """The official release's tensor layout, built from torchvision's EfficientNetV2 features.

    Official checkpoints name the backbone ``backbone.1.<torchvision features key>`` (index 0 is
    a parameter-free x * 2 - 1 layer) and the head ``heatmap_heads.conv_final.{weight,bias}``.
    """
    torch.manual_seed(7)  # torchvision's random init, plus noise on the BatchNorm statistics
    features = getattr(torchvision.models, f'efficientnet_v2_{size}')(weights=None).features
    generator = torch.Generator().manual_seed(7)
    state = {}
    for key, tensor in features.state_dict().items():
        if key.endswith(('running_mean', 'running_var')):
            tensor = tensor + 0.1 * torch.rand(tensor.shape, generator=generator)
        state['backbone.1.' + key] = tensor.clone()
    channels = features[-1].out_channels
    state['heatmap_heads.conv_final.weight'] = torch.randn(
        n_raw_joints * 9, channels, 1, 1, generator=generator) * 0.01
    state['heatmap_heads.conv_final.bias'] = torch.randn(n_raw_joints * 9, generator=generator)
    return state


def write_official_release(directory, size='s', proc_side=256):
    """A complete official-format release directory with random weights; returns its parts."""
    directory.mkdir(parents=True, exist_ok=True)
    state = official_state_dict(RAW.n_joints, size)
    torch.save(state, directory / 'ckpt.pt')
    (directory / 'config.yaml').write_text(yaml.safe_dump(dict(
        proc_side=proc_side, stride_train=32, stride_test=32, centered_stride=True,
        legacy_centered_stride_bug=False, efficientnet_size=size,
        backbone=f'efficientnetv2-{size}', depth=8, box_size_mm=2200, weak_perspective=False,
        mix_3d_inside_fov=0.5, affine_weights=None, transform_coords=False,
        predict_all_and_latents=False)))
    np.savez(directory / 'joint_info.npz', joint_names=np.array(RAW.joint_names),
             joint_edges=RAW.edges)
    rng = np.random.default_rng(0)
    h36m_regressor = rng.dirichlet(np.ones(RAW.n_joints), size=H36M.n_joints).T  # (30, 17)
    transform = np.concatenate([np.eye(RAW.n_joints), h36m_regressor], axis=1).astype(np.float32)
    np.save(directory / 'joint_transform_matrix.npy', transform)
    infos = {
        'smpl+head_30': dict(indices=np.arange(30), names=list(RAW.joint_names), edges=RAW.edges),
        'h36m_17': dict(indices=np.arange(30, 47), names=np.array(H36M.joint_names),
                        edges=H36M.edges),
    }
    with open(directory / 'skeleton_infos.pkl', 'wb') as f:
        pickle.dump(infos, f)
    return state, transform


def test_official_release_loads_strictly_with_its_skeletons(tmp_path):
    state, transform = write_official_release(tmp_path / 'release')
    model = load_model(tmp_path / 'release')
    loaded = model.state_dict()
    for key, value in state.items():
        ours = key.replace('backbone.1.', 'backbone.').replace('heatmap_heads.conv_final', 'head.conv')
        torch.testing.assert_close(loaded[ours], value, rtol=0, atol=0)
    assert model.config.crop_side == 256 and model.config.box_size_m == pytest.approx(2.2)
    assert model.config.ridge_lambda == pytest.approx(1e-2)
    assert model.config.solve_normalization == 'batch'  # as the official ptu3d solve
    assert model.config.crop_geometry == 'official'  # the official float32 crop arithmetic
    assert set(model.output_skeletons.names) == {'smpl+head_30', 'h36m_17'}
    assert model.output_skeletons.skeletons['h36m_17'].joint_names == H36M.joint_names

    crops, K = crops_and_K()
    raw = model(crops, K).poses3d_m
    poses30, poses2d_30 = model.predict(crops, K, skeleton='smpl+head_30')
    poses17, _ = model.predict(crops, K, skeleton='h36m_17')
    assert poses30.shape == (2, 30, 3) and poses2d_30.shape == (2, 30, 2)
    assert poses17.shape == (2, 17, 3)
    torch.testing.assert_close(poses30, raw)
    expected17 = torch.einsum('njc,jk->nkc', raw, torch.from_numpy(transform))[:, 30:]
    torch.testing.assert_close(poses17, expected17)


def test_official_l_384_layout_loads(tmp_path):
    write_official_release(tmp_path / 'release_l', size='l', proc_side=384)
    model = load_model(tmp_path / 'release_l')
    assert model.config.backbone == 'efficientnet_v2_l' and model.config.crop_side == 384


@pytest.mark.parametrize('missing', OFFICIAL_FILES)
def test_missing_official_file_is_named(tmp_path, missing):
    write_official_release(tmp_path / 'r')
    (tmp_path / 'r' / missing).unlink()
    with pytest.raises(CheckpointError, match=missing.replace('.', r'\.')):
        load_model(tmp_path / 'r')


def test_missing_official_checkpoint_is_explained(tmp_path):
    write_official_release(tmp_path / 'r')
    (tmp_path / 'r' / 'ckpt.pt').unlink()
    with pytest.raises(CheckpointError, match=r'incomplete official release: missing ckpt\.pt \(a complete'):
        load_model(tmp_path / 'r')


@pytest.mark.parametrize('settings, expected', [
    (['proc_side: 256'], r'config\.yaml: expected a mapping of settings.*got a YAML list'),
    ({'efficientnet_size': 'xl'},
     r"config\.yaml: unsupported efficientnet_size: 'xl', expected 's', 'm' or 'l'"),
    ({'efficientnet_size': None, 'backbone': 'resnet50'},
     r"config\.yaml: unsupported backbone: 'resnet50', expected 'efficientnetv2-s'")])
def test_bad_official_config_is_explained(tmp_path, settings, expected):
    write_official_release(tmp_path / 'r')
    cfg = yaml.safe_load((tmp_path / 'r' / 'config.yaml').read_text())
    (tmp_path / 'r' / 'config.yaml').write_text(
        yaml.safe_dump(settings if isinstance(settings, list) else {**cfg, **settings}))
    with pytest.raises(CheckpointError, match=expected):
        load_model(tmp_path / 'r')


@pytest.mark.parametrize('corrupt', OFFICIAL_FILES)
def test_corrupt_official_file_is_named(tmp_path, corrupt):
    write_official_release(tmp_path / 'r')
    (tmp_path / 'r' / corrupt).write_bytes(b'\x00\x01garbage\xff' * 10)
    with pytest.raises(CheckpointError, match=corrupt.replace('.', r'\.')):
        load_model(tmp_path / 'r')


def test_pickle_with_code_is_refused(tmp_path):
    write_official_release(tmp_path / 'r')
    marker = tmp_path / 'pwned'

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), 'w'))

    with open(tmp_path / 'r' / 'skeleton_infos.pkl', 'wb') as f:
        pickle.dump({'smpl_24': Exploit()}, f)
    with pytest.raises(CheckpointError, match='refusing to load'):
        load_model(tmp_path / 'r')
    assert not marker.exists()


def test_official_weights_of_wrong_shape_are_reported(tmp_path):
    write_official_release(tmp_path / 'r')
    state = torch.load(tmp_path / 'r' / 'ckpt.pt')
    state['heatmap_heads.conv_final.weight'] = state['heatmap_heads.conv_final.weight'][:-9]
    state['heatmap_heads.conv_final.bias'] = state['heatmap_heads.conv_final.bias'][:-9]
    torch.save(state, tmp_path / 'r' / 'ckpt.pt')
    with pytest.raises(CheckpointError, match='ckpt.pt.*do not fit'):
        load_model(tmp_path / 'r')


def test_official_unexpected_tensor_is_reported(tmp_path):
    write_official_release(tmp_path / 'r')
    state = torch.load(tmp_path / 'r' / 'ckpt.pt')
    state['extra_head.weight'] = torch.zeros(1)
    torch.save(state, tmp_path / 'r' / 'ckpt.pt')
    with pytest.raises(CheckpointError, match='extra_head'):
        load_model(tmp_path / 'r')


def test_official_latent_models_are_refused(tmp_path):
    write_official_release(tmp_path / 'r')
    cfg = yaml.safe_load((tmp_path / 'r' / 'config.yaml').read_text())
    cfg['transform_coords'] = True
    (tmp_path / 'r' / 'config.yaml').write_text(yaml.safe_dump(cfg))
    with pytest.raises(CheckpointError, match='config.yaml.*transform_coords'):
        load_model(tmp_path / 'r')


def own_model():
    torch.manual_seed(3)
    cfg = ModelConfig(backbone='resnet18', joint_names=RAW.joint_names,
                      joint_edges=RAW.edges.tolist(), skeleton='smpl+head_30')
    return Metrabs(cfg).eval()


def test_own_format_round_trip_is_exact(tmp_path):
    model = own_model()
    save_checkpoint(model, tmp_path / 'm')
    loaded = load_model(tmp_path / 'm')
    assert loaded.config == model.config
    assert loaded.output_skeletons.skeletons == model.output_skeletons.skeletons
    crops, K = crops_and_K()
    torch.testing.assert_close(loaded.predict(crops, K)[0], model.predict(crops, K)[0],
                               rtol=0, atol=0)


def test_own_format_fp16_is_half_the_size_and_close(tmp_path):
    model = own_model()
    save_checkpoint(model, tmp_path / 'fp32')
    save_checkpoint(model, tmp_path / 'fp16', dtype=torch.float16)
    size32 = (tmp_path / 'fp32' / 'model.safetensors').stat().st_size
    size16 = (tmp_path / 'fp16' / 'model.safetensors').stat().st_size
    assert size16 < 0.55 * size32
    loaded = load_model(tmp_path / 'fp16')
    assert next(loaded.parameters()).dtype == torch.float32
    crops, K = crops_and_K()
    difference = (loaded.predict(crops, K)[0] - model.predict(crops, K)[0]).abs()
    assert difference.max() < 0.02


def test_official_model_resaved_in_own_format_keeps_skeletons(tmp_path):
    write_official_release(tmp_path / 'r')
    official = load_model(tmp_path / 'r')
    save_checkpoint(official, tmp_path / 'own')
    loaded = load_model(tmp_path / 'own')
    assert loaded.config.solve_normalization == 'batch'
    assert loaded.config.crop_geometry == 'official'
    crops, K = crops_and_K()
    for skeleton in ('smpl+head_30', 'h36m_17'):
        torch.testing.assert_close(loaded.predict(crops, K, skeleton)[0],
                                   official.predict(crops, K, skeleton)[0])


def test_config_saved_without_solve_normalization_or_crop_geometry_loads_the_defaults(tmp_path):
    # Checkpoints written before the fields existed (e.g. the bundled model) keep their solve
    # and exact crop geometry.
    assert own_model().config.crop_geometry == 'exact'
    save_checkpoint(own_model(), tmp_path / 'm')
    config_path = tmp_path / 'm' / 'config.json'
    config = json.loads(config_path.read_text())
    del config['model']['solve_normalization'], config['model']['crop_geometry']
    config_path.write_text(json.dumps(config))
    loaded = load_model(tmp_path / 'm').config
    assert loaded.solve_normalization == 'per_crop' and loaded.crop_geometry == 'exact'
    config['model']['crop_geometry'] = 'float32'
    config_path.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match='crop_geometry'):
        load_model(tmp_path / 'm')


@pytest.mark.parametrize('damage', ['missing_weights', 'corrupt_weights', 'bad_json', 'bad_config'])
def test_own_format_damage_is_named(tmp_path, damage):
    save_checkpoint(own_model(), tmp_path / 'm')
    config_path, weights_path = tmp_path / 'm' / 'config.json', tmp_path / 'm' / 'model.safetensors'
    if damage == 'missing_weights':
        weights_path.unlink()
        expected = 'model.safetensors'
    elif damage == 'corrupt_weights':
        weights_path.write_bytes(b'not safetensors')
        expected = 'model.safetensors'
    elif damage == 'bad_json':
        config_path.write_text('{"format": ')
        expected = 'config.json'
    else:
        config_path.write_text(config_path.read_text().replace('"resnet18"', '"resnet7"'))
        expected = 'config.json.*resnet7'
    with pytest.raises(CheckpointError, match=expected):
        load_model(tmp_path / 'm')


def test_unknown_directory_contents_are_explained(tmp_path):
    with pytest.raises(CheckpointError, match='not found'):
        load_model(tmp_path / 'nowhere')
    (tmp_path / 'empty').mkdir()
    with pytest.raises(CheckpointError, match='neither'):
        load_model(tmp_path / 'empty')
