"""Drawing estimated poses: 2D skeletons on the image and a small 3D plot, as RGB uint8 arrays."""
from __future__ import annotations

import colorsys

import cv2
import numpy as np


def track_colour(track_id: int) -> tuple[int, int, int]:
    """A distinct, stable RGB colour per id (golden-ratio hue steps)."""
    hue = (int(track_id) * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_skeletons(image: np.ndarray, poses2d: np.ndarray, edges: np.ndarray,
                   ids=None, boxes: np.ndarray | None = None) -> np.ndarray:
    """Copy of an RGB image with (P, J, 2) pixel skeletons, optional boxes (P, 4+) and ids."""
    canvas = np.ascontiguousarray(image.copy())
    thickness = max(1, round(max(canvas.shape[:2]) / 400))
    ids = range(len(poses2d)) if ids is None else ids
    for person, (pose, track_id) in enumerate(zip(poses2d, ids)):
        colour = track_colour(track_id)
        points = np.round(pose).astype(np.int64)
        if not np.all(np.isfinite(pose)):
            continue
        for a, b in edges:
            cv2.line(canvas, tuple(map(int, points[a])), tuple(map(int, points[b])), colour,
                     thickness, cv2.LINE_AA)
        for point in points:
            cv2.circle(canvas, tuple(map(int, point)), thickness + 1, colour, -1, cv2.LINE_AA)
        if boxes is not None:
            x, y, w, h = boxes[person, :4]
            cv2.rectangle(canvas, (int(x), int(y)), (int(x + w), int(y + h)), colour, thickness)
            cv2.putText(canvas, str(track_id), (int(x), max(0, int(y) - 4)),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.5 * thickness, colour, thickness)
    return canvas


def render_3d(poses3d: np.ndarray, edges: np.ndarray, ids=None, size_px: int = 320) -> np.ndarray:
    """(P, J, 3) metres, camera frame -> RGB uint8 (size, size, 3) 3D plot (y up on screen)."""
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib.figure import Figure
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    figure = Figure(figsize=(size_px / 100, size_px / 100), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(projection='3d')
    ids = range(len(poses3d)) if ids is None else ids
    for pose, track_id in zip(poses3d, ids):
        colour = np.array(track_colour(track_id)) / 255
        for a, b in edges:  # plot x, z (depth), -y (up)
            axes.plot([pose[a, 0], pose[b, 0]], [pose[a, 2], pose[b, 2]],
                      [-pose[a, 1], -pose[b, 1]], color=colour, linewidth=1.5)
    if len(poses3d):
        centre = poses3d.reshape(-1, 3).mean(0)
        half = max(1.0, np.ptp(poses3d.reshape(-1, 3), axis=0).max() / 2 + 0.2)
        axes.set_xlim(centre[0] - half, centre[0] + half)
        axes.set_ylim(centre[2] - half, centre[2] + half)
        axes.set_zlim(-centre[1] - half, -centre[1] + half)
    axes.set_xlabel('x [m]')
    axes.set_ylabel('z [m]')
    axes.set_zlabel('up [m]')
    axes.view_init(elev=15, azim=-80)
    figure.tight_layout()
    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()


def overlay_with_3d(image: np.ndarray, poses2d: np.ndarray, poses3d: np.ndarray,
                    edges: np.ndarray, ids=None, boxes: np.ndarray | None = None) -> np.ndarray:
    """The image with 2D skeletons and a 3D plot inset in its top-right corner."""
    canvas = draw_skeletons(image, poses2d, edges, ids, boxes)
    side = max(64, min(canvas.shape[:2]) // 3)
    inset = cv2.resize(render_3d(poses3d, edges, ids), (side, side), interpolation=cv2.INTER_AREA)
    canvas[:side, -side:] = inset
    return canvas
