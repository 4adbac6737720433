"""metrabs-pose: absolute 3D poses for an image, a folder of images or a video file.

Writes poses.json (metres, camera frame; pixels for 2D) and overlay images / an overlay video.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import yaml

from metrabs_ros.bundled import model_and_detector
from metrabs_ros.camera import DEFAULT_FOV_DEGREES, Camera
from metrabs_ros.detection import DEFAULT_THRESHOLD, DetectorError, load_detector
from metrabs_ros.estimator import PoseEstimator
from metrabs_ros.tracking import PoseTracker
from metrabs_ros.visualization import overlay_with_3d
from metrabs_ros.weights import CheckpointError, load_model

IMAGE_SUFFIXES = {'.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp'}
VIDEO_SUFFIXES = {'.mp4', '.avi', '.mkv', '.mov', '.webm', '.m4v'}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='metrabs-pose', description=__doc__)
    parser.add_argument('input', type=Path, help='image file, folder of images, or video file')
    parser.add_argument('--model', type=Path, default=None,
                        help='model directory (metrabs_ros checkpoint or official release) or '
                             'registered model name (metrabs-fetch --list); '
                             'default: the bundled synthetic-humanoid model')
    parser.add_argument('--detector', help="centre-point detector directory, TorchScript file or "
                                           "'architecture:weights_file'; default with the bundled "
                                           "model: the bundled detector")
    parser.add_argument('--allow-download', action='store_true',
                        help='let a registered --model name that is not cached yet be downloaded, '
                             'and a torchvision detector without weights file download COCO weights')
    parser.add_argument('--boxes', type=Path,
                        help='JSON {image file name or frame index: [[x, y, w, h], ...]} '
                             'instead of a detector')
    camera = parser.add_mutually_exclusive_group()
    camera.add_argument('--fov', type=float, default=DEFAULT_FOV_DEGREES,
                        help='field of view of the larger image side in degrees (default 55)')
    camera.add_argument('--intrinsics', type=Path,
                        help='YAML/JSON with K (or camera_matrix) and optional distortion '
                             '(D / distortion_coefficients), e.g. a ROS camera_info YAML')
    parser.add_argument('--skeleton', help='output joint set (default: the model\'s first)')
    parser.add_argument('--num-aug', type=int, default=5, help='test-time augmentations')
    parser.add_argument('--batch-size', type=int, default=64, help='crops per model call')
    parser.add_argument('--threshold', type=float, default=DEFAULT_THRESHOLD,
                        help='detector score threshold')
    parser.add_argument('--max-detections', type=int, default=-1)
    parser.add_argument('--keep-implausible', action='store_true',
                        help='do not suppress implausible poses and duplicates')
    parser.add_argument('--device', default='auto', help='auto, cpu or cuda')
    parser.add_argument('--output', type=Path, default=Path('metrabs_output'))
    parser.add_argument('--no-overlay', action='store_true', help='write only poses.json')
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        frames = Frames(args.input)
        boxes = load_boxes(args.boxes) if args.boxes else None
        model_path, detector_spec = model_and_detector(args.model, args.detector)
        model = load_model(model_path, allow_download=args.allow_download)
        detector = load_detector(detector_spec, allow_download=args.allow_download) \
            if detector_spec and boxes is None else None
        if detector is None and boxes is None:
            raise ValueError('give --detector or --boxes')
        estimator = PoseEstimator(model, detector, device=args.device)
    except (CheckpointError, DetectorError, ValueError, OSError) as e:
        print(f'metrabs-pose: error: {e}', file=sys.stderr)
        return 2
    args.output.mkdir(parents=True, exist_ok=True)
    tracker = PoseTracker()
    records, writer = [], None
    for index, (name, image, time_s) in enumerate(progress(frames, args.input)):
        camera = camera_for(image, args)
        options = dict(num_aug=args.num_aug, internal_batch_size=args.batch_size,
                       skeleton=args.skeleton)
        if boxes is not None:
            frame_boxes = boxes.get(name, boxes.get(str(index), []))
            result = estimator.estimate_poses(image, np.reshape(frame_boxes, (-1, 4)), camera,
                                              **options)
        else:
            result = estimator.detect_poses(
                image, camera, detector_threshold=args.threshold,
                max_detections=args.max_detections,
                suppress_implausible_poses=not args.keep_implausible, **options)
        ids, _ = tracker.update(result.poses3d, time_s)
        records.append(dict(
            frame=name, time_s=time_s, skeleton=result.skeleton.name,
            joint_names=list(result.skeleton.joint_names), ids=ids.tolist(),
            boxes_xywh_score=result.boxes.round(2).tolist(),
            poses3d_m=result.poses3d.round(5).tolist(), poses2d_px=result.poses2d.round(2).tolist(),
            uncertainty_m=result.uncertainty.round(5).tolist()))
        if not args.no_overlay:
            overlay = overlay_with_3d(image, result.poses2d, result.poses3d,
                                      result.skeleton.edges, ids, result.boxes)
            writer = write_overlay(args, name, overlay, frames, writer)
    if writer is not None:
        writer.release()
    (args.output / 'poses.json').write_text(json.dumps(dict(frames=records), indent=1))
    print(f'metrabs-pose: {len(records)} frames, '
          f'{sum(len(r["ids"]) for r in records)} poses -> {args.output}')
    return 0


class Frames:
    """Frames of an image, a folder or a video: iterates (name, RGB uint8 image, time_s)."""

    def __init__(self, path: Path):
        self.path = path
        self.is_video = path.suffix.lower() in VIDEO_SUFFIXES
        if path.is_dir():
            self.files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self.files:
                raise ValueError(f'no images ({", ".join(sorted(IMAGE_SUFFIXES))}) in {path}')
        elif path.is_file() and (self.is_video or path.suffix.lower() in IMAGE_SUFFIXES):
            self.files = [path]
        else:
            raise ValueError(f'input must be an image, a folder of images or a video: {path}')
        self.fps = 30.0
        self.length = len(self.files)
        if self.is_video:
            capture = cv2.VideoCapture(str(path))
            if not capture.isOpened():
                raise ValueError(f'cannot open video {path}')
            self.fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
            self.length = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
            capture.release()

    def __len__(self) -> int:
        return self.length

    def __iter__(self):
        if self.is_video:
            capture = cv2.VideoCapture(str(self.path))
            index = 0
            while True:
                ok, bgr = capture.read()
                if not ok:
                    break
                yield str(index), cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), index / self.fps
                index += 1
            capture.release()
            return
        for index, file in enumerate(self.files):
            bgr = cv2.imread(str(file), cv2.IMREAD_COLOR)
            if bgr is None:
                raise ValueError(f'cannot read image {file}')
            yield file.name, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), index / self.fps


def progress(frames: Frames, path: Path):
    if len(frames) <= 1:
        return iter(frames)
    from tqdm import tqdm
    return tqdm(frames, total=len(frames), desc=path.name, unit='frame')


def camera_for(image: np.ndarray, args) -> Camera:
    height, width = image.shape[:2]
    if args.intrinsics is None:
        return Camera.from_fov(args.fov, (width, height))
    data = yaml.safe_load(args.intrinsics.read_text())
    K = data.get('K', data.get('camera_matrix'))
    K = K['data'] if isinstance(K, dict) else K
    dist = data.get('D', data.get('distortion', data.get('distortion_coefficients', [])))
    dist = dist['data'] if isinstance(dist, dict) else dist
    return Camera(K=np.reshape(K, (3, 3)), distortion_coeffs=dist, image_size=(width, height))


def load_boxes(path: Path) -> dict:
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f'{path}: expected a JSON object of frame -> boxes')
    return {str(k): v for k, v in data.items()}


def write_overlay(args, name: str, overlay: np.ndarray, frames: Frames, writer):
    bgr = cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR)
    if not frames.is_video:
        cv2.imwrite(str(args.output / f'{Path(name).stem}_overlay.png'), bgr)
        return writer
    if writer is None:
        writer = cv2.VideoWriter(str(args.output / 'overlay.mp4'),
                                 cv2.VideoWriter_fourcc(*'mp4v'), frames.fps,
                                 (bgr.shape[1], bgr.shape[0]))
    writer.write(bgr)
    return writer


if __name__ == '__main__':
    sys.exit(main())
