import pytest
import torch

from metrabs_ros.model import Metrabs, ModelConfig
from metrabs_ros.model.backbones import BACKBONES, build_backbone
from metrabs_ros.model.heads import MetrabsHead
from metrabs_ros.model.reconstruct import project
from metrabs_ros.skeletons import get_skeleton

torch.manual_seed(0)


def make_model(backbone='resnet18', skeleton='smpl_24', crop_side=256, **kwargs):
    s = get_skeleton(skeleton)
    cfg = ModelConfig(backbone=backbone, joint_names=s.joint_names, joint_edges=s.edges.tolist(),
                      skeleton=skeleton, crop_side=crop_side, **kwargs)
    return Metrabs(cfg).eval()


def crop_K(n, side, focal=400.0):
    return torch.tensor([[focal, 0, side / 2], [0, focal, side / 2], [0, 0, 1]]).expand(n, 3, 3)


@pytest.mark.parametrize('name', BACKBONES)
def test_backbones_have_stride_32_and_report_channels(name):
    backbone, channels = build_backbone(name)
    with torch.no_grad():
        features = backbone.eval()(torch.rand(1, 3, 64, 96))
    assert features.shape == (1, channels, 2, 3)


@pytest.mark.parametrize('name', ['resnet18', 'resnet50'])
def test_resnet_stride_16_doubles_resolution_with_the_same_weights(name):
    backbone16, channels = build_backbone(name, stride=16)
    backbone32, _ = build_backbone(name)
    shapes16 = {k: v.shape for k, v in backbone16.state_dict().items()}
    assert shapes16 == {k: v.shape for k, v in backbone32.state_dict().items()}
    backbone16.load_state_dict(backbone32.state_dict())
    with torch.no_grad():
        features16 = backbone16.eval()(torch.rand(1, 3, 64, 96))
    assert features16.shape == (1, channels, 4, 6)
    with pytest.raises(ValueError, match='ResNet'):
        build_backbone('efficientnet_v2_s', stride=16)


def test_stride_16_heatmap_cells_map_to_their_pixel_centres():
    model = make_model(crop_side=128, stride=16)
    head = MetrabsHead(4, model.config)
    with torch.no_grad():
        head.conv.weight.zero_()
        head.conv.bias.zero_()
        coords2d, _ = head(torch.zeros(1, 4, 8, 8))
        # Uniform logits: the mean of the cell centres 8, 24, ..., 120.
        torch.testing.assert_close(coords2d, torch.full_like(coords2d, 64.0))
        features = torch.zeros(1, 4, 8, 8)
        features[0, 0, 2, 5] = 1.0
        head.conv.weight[:, 0] = 60.0
        coords2d, _ = head(features)
    torch.testing.assert_close(coords2d[0, 0], torch.tensor([8.0 + 16 * 5, 8.0 + 16 * 2]),
                               atol=1e-3, rtol=0)
    poses3d, poses2d = model.predict(torch.rand(2, 3, 128, 128), crop_K(2, 128))
    assert poses3d.shape == (2, model.config.n_joints, 3)


def test_backbone_builds_without_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError('tried to download weights')
    monkeypatch.setattr(torch.hub, 'load_state_dict_from_url', refuse)
    build_backbone('efficientnet_v2_s')
    build_backbone('resnet50')


@pytest.mark.parametrize('skeleton', ['smpl_24', 'coco_19', 'h36m_17', 'smpl+head_30'])
@pytest.mark.parametrize('backbone, side', [('resnet18', 256), ('efficientnet_v2_s', 256),
                                            ('resnet50', 384)])
def test_predict_shapes_for_each_skeleton(backbone, side, skeleton):
    model = make_model(backbone, skeleton, side)
    n_joints = get_skeleton(skeleton).n_joints
    assert model.head.conv.out_channels == n_joints * 9
    poses3d, poses2d = model.predict(torch.rand(2, 3, side, side), crop_K(2, side))
    assert poses3d.shape == (2, n_joints, 3) and poses2d.shape == (2, n_joints, 2)
    assert torch.isfinite(poses3d).all() and torch.isfinite(poses2d).all()


def test_predicted_2d_is_projection_of_3d():
    model = make_model()
    K = crop_K(3, 256, focal=333.0)
    poses3d, poses2d = model.predict(torch.rand(3, 3, 256, 256), K)
    torch.testing.assert_close(poses2d, project(poses3d, K))


def test_head_channel_layout_first_2d_then_depth_major_3d():
    cfg = make_model().config
    head = MetrabsHead(4, cfg)
    with torch.no_grad():
        head.conv.weight.zero_()
        head.conv.bias.zero_()
        # Joint 5, depth bin 7 (the last): 3D logit channel J + 7 * J + 5 made large.
        head.conv.bias[cfg.n_joints + 7 * cfg.n_joints + 5] = 50.0
        coords2d, coords3d = head(torch.zeros(1, 4, 8, 8))
    assert coords3d[0, 5, 2].item() == pytest.approx(cfg.box_size_m, rel=1e-6)
    others = torch.cat([coords3d[0, :5, 2], coords3d[0, 6:, 2]])
    torch.testing.assert_close(others, torch.full_like(others, cfg.box_size_m / 2))
    # Uniform 2D logits decode to the crop centre of the representable range.
    torch.testing.assert_close(coords2d, torch.full_like(coords2d, 16 + 224 / 2))


def test_autocast_bf16_matches_float32():
    model = make_model()
    crops, K = torch.rand(2, 3, 256, 256), crop_K(2, 256)
    reference = model(crops, K).poses3d_m
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        low = model(crops, K)
    assert low.poses3d_m.dtype == torch.float32
    assert torch.isfinite(low.poses3d_m).all()
    # Random weights amplify rounding; the decoded values still agree to a few centimetres.
    assert (low.poses3d_m - reference).abs().median() < 0.05


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU; none on this machine')
def test_cuda_fp16_matches_cpu():
    model = make_model()
    crops, K = torch.rand(2, 3, 256, 256), crop_K(2, 256)
    reference, _ = model.predict(crops, K)
    model_gpu = model.cuda()
    with torch.autocast('cuda', dtype=torch.float16):
        result, _ = model_gpu.predict(crops.cuda(), K.cuda())
    assert (result.cpu() - reference).abs().median() < 0.05


@pytest.mark.parametrize('crops, K, message', [
    (torch.rand(2, 3, 128, 128), crop_K(2, 128), 'shape'),
    (torch.rand(2, 256, 256, 3), crop_K(2, 256), 'shape'),
    (torch.zeros(2, 3, 256, 256, dtype=torch.uint8), crop_K(2, 256), 'floating'),
    (torch.rand(2, 3, 256, 256), crop_K(3, 256), 'intrinsics'),
    (torch.rand(1, 3, 256, 256), torch.full((1, 3, 3), float('nan')), 'non-finite'),
])
def test_bad_inputs_raise_clear_errors(crops, K, message):
    with pytest.raises(ValueError, match=message):
        make_model().predict(crops, K)


def test_unknown_output_skeleton_raises():
    with pytest.raises(ValueError, match='smpl_24'):
        make_model().predict(torch.rand(1, 3, 256, 256), crop_K(1, 256), skeleton='coco_19')


@pytest.mark.parametrize('kwargs, message', [
    (dict(backbone='vgg16'), 'backbone'),
    (dict(crop_side=250), 'multiple'),
    (dict(mix_3d_inside_fov=1.5), 'mix_3d'),
    (dict(input_normalization='none'), 'input_normalization'),
    (dict(joint_edges=[(0, 99)]), 'joint_edges'),
    (dict(stride=8), 'stride'),
    (dict(backbone='efficientnet_v2_s', stride=16), 'stride'),
])
def test_config_validation(kwargs, message):
    base = dict(backbone='resnet18', joint_names=('a', 'b'))
    with pytest.raises(ValueError, match=message):
        ModelConfig(**{**base, **kwargs})


def test_config_dict_round_trip():
    cfg = make_model(crop_side=384, mix_3d_inside_fov=0.3).config
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match='unknown model config keys'):
        ModelConfig.from_dict({**cfg.to_dict(), 'surprise': 1})


def test_gradients_reach_the_backbone():
    model = make_model().train()
    out = model(torch.rand(2, 3, 256, 256), crop_K(2, 256))
    out.poses3d_m.sum().backward()
    first_conv = next(model.backbone.parameters())
    assert first_conv.grad is not None and first_conv.grad.abs().sum() > 0
