"""The metrabs_ros pose node: synchronized Image + CameraInfo in; skeletons, markers, TF out.

Lifecycle: configure loads and warms up the model and detector and creates publishers; activate
subscribes; deactivate unsubscribes; cleanup releases the model. With autostart (default) the
node configures and activates itself. Inference runs on a worker thread that always takes the
newest synchronized frame; frames arriving while it is busy are dropped and counted.

Topics (relative, remappable): in ``image`` (or ``image/compressed`` with compressed_input),
``camera_info`` (reliability matched to their publishers unless set, see input_qos.py); out
``skeletons``
(metrabs_ros/SkeletonArray), ``markers`` (visualization_msgs/MarkerArray), ``debug_image``,
``/tf`` and ``/diagnostics``.
"""
from __future__ import annotations

import os

# Before torch loads: idle inference threads sleep instead of spinning, which leaves the cores
# to DDS, the executor and the camera driver (same speed alone, ~20 % less CPU per frame).
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

import dataclasses
import threading
import time

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rcl_interfaces.msg import SetParametersResult
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from metrabs_ros.camera import Camera
from metrabs_ros.bundled import model_and_detector
from metrabs_ros.detection import DetectorError, load_detector
from metrabs_ros.estimator import PoseEstimator
from metrabs_ros.msg import SkeletonArray
from metrabs_ros.ros import conversions
from metrabs_ros.ros.compat import import_message_filters
from metrabs_ros.ros.input_qos import choose_reliability, input_qos, reliability_name
from metrabs_ros.ros.latest_frame import LatestFrame
from metrabs_ros.ros.parameters import declare_all, startup_problems, validate_choices
from metrabs_ros.ros.tf_buffer import transform_to_matrix
from metrabs_ros.tracking import PoseTracker
from metrabs_ros.visualization import draw_skeletons
from metrabs_ros.weights import CheckpointError, load_model

message_filters = import_message_filters()
WARN_PERIOD_S = 5.0
QOS_CHECK_PERIOD_S = 1.0  # reliability auto: how often the publishers' QoS is looked at
NO_FRAMES_WARN_S = 3.0  # diagnostics warn when publishers exist but no frame came this long


class PoseNode(LifecycleNode):
    """MeTRAbs on a camera stream (see the module docstring)."""

    def __init__(self, **kwargs):
        super().__init__('metrabs_pose', **kwargs)
        self.params = declare_all(self)
        # One callback validates and records: rclpy has checked types, ranges and read-only
        # before it runs, and the set happens right after (Humble has no post-set callback).
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.frames = LatestFrame()
        self.generation = 0  # bumped by every activate / deactivate / cleanup
        self.publish_lock = threading.Lock()
        self.tf_broadcaster = self.tf_buffer = self.tf_listener = self.diagnostics_timer = None
        self.estimator: PoseEstimator | None = None
        self.model_path = ''
        self.tracker: PoseTracker | None = None
        self.subscribers, self.synchronizer, self.worker = [], None, None
        self.reliability: dict = {}  # input topic -> ReliabilityPolicy in use
        self.qos_timer = None
        self.images_received = self.infos_received = 0
        self.last_frame_time = time.monotonic()
        self.publishers_: dict = {}
        self.stats = dict(processed=0, failed=0, stale=0, people=0, inference_ms=0.0,
                          output_times=[])
        self.last_warned: dict[str, float] = {}
        if self.params['autostart'] and \
                self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()

    # Lifecycle -------------------------------------------------------------------------------
    def on_configure(self, state) -> TransitionCallbackReturn:
        p = self.params
        problems = startup_problems(p)
        model_path, detector_spec = model_and_detector(p['model_path'], p['detector'])
        self.model_path = str(model_path)
        try:
            if problems:
                raise ValueError('; '.join(problems))
            model = load_model(model_path, allow_download=p['allow_download'])
            if detector_spec is None:
                raise DetectorError('detector is not set: give a centre-point detector directory, '
                                    "a TorchScript file or 'architecture:weights_file'")
            self._check_model_parameters(model)
            detector = load_detector(detector_spec)
            self.estimator = PoseEstimator(model, detector, device=p['device'])
            self._warm_up()
        except (CheckpointError, DetectorError, ValueError) as e:
            self.estimator = None
            self.get_logger().error(f'configure failed: {e}')
            return TransitionCallbackReturn.FAILURE
        except Exception as e:  # rclpy would swallow it: say what failed
            self.estimator = None
            self.get_logger().error(f'configure failed: {type(e).__name__}: {e}')
            return TransitionCallbackReturn.FAILURE
        self.tracker = self._new_tracker()
        self.publishers_ = dict(
            skeletons=self.create_lifecycle_publisher(SkeletonArray, 'skeletons', 10),
            markers=self.create_lifecycle_publisher(MarkerArray, 'markers', 10),
            debug_image=self.create_lifecycle_publisher(Image, 'debug_image', 1),
            # Diagnostics also report while inactive: a plain publisher.
            diagnostics=self.create_publisher(DiagnosticArray, '/diagnostics', 10))
        self.tf_broadcaster = self._make_tf_broadcaster()
        self.tf_buffer, self.tf_listener = self._make_tf_listener()
        self.diagnostics_timer = self.create_timer(p['diagnostics_period_s'],
                                                   self._publish_diagnostics)
        self.get_logger().info(
            f'configured: model {model_path}, detector {detector_spec} on '
            f'{self.estimator.device}, '
            f'skeleton {p["skeleton"] or model.output_skeletons.default}')
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state) -> TransitionCallbackReturn:
        # A fresh mailbox and generation: a worker still finishing a frame from before a
        # deactivate reads its own closed mailbox, publishes nothing and ends.
        self.frames = self.frames.successor()
        with self.publish_lock:
            self.generation += 1
        self.reliability = {}
        self._subscribe()
        if self.params['reliability'] == 'auto':
            self.qos_timer = self.create_timer(QOS_CHECK_PERIOD_S, self._match_publisher_qos)
        self.last_frame_time = time.monotonic()
        self.worker = threading.Thread(target=self._work, args=(self.frames, self.generation),
                                       name='metrabs_worker', daemon=True)
        self.worker.start()
        return super().on_activate(state)

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        if self.qos_timer is not None:
            self.destroy_timer(self.qos_timer)
            self.qos_timer = None
        self._unsubscribe()
        self.frames.close()
        with self.publish_lock:  # from here on no frame of this activation is published
            self.generation += 1
        # Not joined: a long frame in flight must not block the executor; it ends by itself.
        return super().on_deactivate(state)

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        with self.publish_lock:
            self.generation += 1
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _release(self) -> None:
        """Undo everything configure created: model, publishers, TF, timer, GPU memory."""
        device = self.estimator.device if self.estimator is not None else None
        self.estimator = self.tracker = None
        for name, publisher in self.publishers_.items():
            if name == 'diagnostics':
                self.destroy_publisher(publisher)
            else:
                self.destroy_lifecycle_publisher(publisher)
        self.publishers_ = {}
        if self.tf_broadcaster is not None:
            self.destroy_publisher(self.tf_broadcaster.pub_tf)
        if self.tf_listener is not None:
            self.tf_listener.unregister()
        self.tf_broadcaster = self.tf_buffer = self.tf_listener = None
        if self.diagnostics_timer is not None:
            self.destroy_timer(self.diagnostics_timer)
            self.diagnostics_timer = None
        if device is not None and device.type == 'cuda':
            import torch
            torch.cuda.empty_cache()

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        self.frames.close()
        with self.publish_lock:
            self.generation += 1
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state) -> TransitionCallbackReturn:
        self.get_logger().error(f'lifecycle error in state {state.label}: releasing everything; '
                                'configure again to recover')
        self.frames.close()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    # Input ------------------------------------------------------------------------------------
    def _input_topics(self) -> tuple[type, str]:
        return (CompressedImage, 'image/compressed') if self.params['compressed_input'] \
            else (Image, 'image')

    def _chosen_reliability(self) -> dict:
        """{topic: ReliabilityPolicy} for the image and camera_info inputs."""
        setting = self.params['reliability']
        return {topic: choose_reliability(
            setting, self.get_publishers_info_by_topic(self.resolve_topic_name(topic)),
            self.reliability.get(topic)) for topic in (self._input_topics()[1], 'camera_info')}

    def _subscribe(self) -> None:
        """Synchronized image + camera_info subscriptions with the chosen reliability."""
        self.reliability = self._chosen_reliability()
        image_type, image_topic = self._input_topics()
        self.subscribers = [
            message_filters.Subscriber(self, image_type, image_topic,
                                       qos_profile=input_qos(self.reliability[image_topic])),
            message_filters.Subscriber(self, CameraInfo, 'camera_info',
                                       qos_profile=input_qos(self.reliability['camera_info']))]
        self.subscribers[0].registerCallback(self._count_image)
        self.subscribers[1].registerCallback(self._count_info)
        self.synchronizer = message_filters.TimeSynchronizer(
            self.subscribers, self.params['queue_size'])
        self.synchronizer.registerCallback(self._synchronized)
        self.get_logger().info('input QoS: ' + ', '.join(
            f'{self.resolve_topic_name(topic)} {reliability_name(r)}'
            for topic, r in self.reliability.items()) + f' (reliability: {self.params["reliability"]})')

    def _unsubscribe(self) -> None:
        for subscriber in self.subscribers:
            self.destroy_subscription(subscriber.sub)
        self.subscribers, self.synchronizer = [], None

    def _match_publisher_qos(self) -> None:
        """reliability auto: resubscribe when the publishers now need another reliability."""
        if self.subscribers and self._chosen_reliability() != self.reliability:
            self._unsubscribe()
            self._subscribe()

    def _count_image(self, msg) -> None:
        self.images_received += 1

    def _count_info(self, msg) -> None:
        self.infos_received += 1

    def _synchronized(self, image, info) -> None:
        self.last_frame_time = time.monotonic()
        self.frames.put((image, info))

    # Processing ------------------------------------------------------------------------------
    def _work(self, frames: LatestFrame, generation: int) -> None:
        """Process the newest frame of `frames` until it closes; publish only while
        `generation` is current."""
        while True:
            pair = frames.take()
            if pair is None:
                return
            try:
                self._process(*pair, generation=generation)
            except Exception as e:  # the worker must outlive any single frame
                if generation == self.generation:
                    self.stats['failed'] += 1
                    self.get_logger().error(f'frame skipped after an unexpected error: {e!r}')

    def _process(self, image_msg: Image | CompressedImage, info_msg: CameraInfo,
                 generation: int) -> None:
        p = self.params
        estimator, tracker = self.estimator, self.tracker  # cleanup may drop them meanwhile
        stamp_s = image_msg.header.stamp.sec + image_msg.header.stamp.nanosec * 1e-9
        age_s = self.get_clock().now().nanoseconds * 1e-9 - stamp_s
        if p['stale_after_s'] > 0 and abs(age_s) > p['stale_after_s']:
            self.stats['stale'] += 1
            when = f'{age_s:.2f} s old' if age_s > 0 else f'{-age_s:.2f} s in the future'
            self._warn(f'skipping a frame stamped {when} (stale_after_s {p["stale_after_s"]}); '
                       'is the clock or the camera off?', key='stale', throttle=True)
            return
        if estimator is None or tracker is None:
            return
        if tracker.last_time_s == stamp_s:
            self.stats['failed'] += 1
            self._warn('skipping a frame with the same stamp as the previous frame (a camera '
                       'driver or bag repeating frames?)', key='duplicate', throttle=True)
            return
        try:
            to_rgb = conversions.compressed_to_rgb if isinstance(image_msg, CompressedImage) \
                else conversions.image_to_rgb
            rgb = to_rgb(image_msg, p['max_image_pixels'])
            camera, warning = conversions.camera_from_info(
                info_msg, p['default_fov_degrees'], (rgb.shape[1], rgb.shape[0]))
            if warning:
                self._warn(warning, key='fov')
            header = image_msg.header
            if p['target_frame']:
                camera, header = self._in_target_frame(camera, header)
            start = time.perf_counter()
            result = estimator.detect_poses(
                rgb, camera, num_aug=p['num_aug'], internal_batch_size=p['internal_batch_size'],
                antialias_factor=p['antialias_factor'], skeleton=p['skeleton'] or None,
                detector_threshold=p['detector_threshold'],
                detector_nms_iou_threshold=p['detector_nms_iou_threshold'],
                max_detections=p['max_detections'],
                suppress_implausible_poses=p['suppress_implausible_poses'])
            elapsed_ms = (time.perf_counter() - start) * 1000
        except ValueError as e:  # InputError included
            self.stats['failed'] += 1
            self._warn(f'skipping a frame: {e}', key=str(e)[:30], throttle=True)
            return
        with self.publish_lock:
            if generation != self.generation:
                return  # deactivated or cleaned up while this frame was in flight
            if tracker.last_time_s is not None and stamp_s < tracker.last_time_s:
                self._warn('image stamps went back in time (bag loop or clock reset?): '
                           'restarting tracks', key='time_jump', throttle=True)
                tracker = self.tracker = self._new_tracker()
            ids, poses = tracker.update(result.poses3d, stamp_s)
            result = dataclasses.replace(result, poses3d=poses)
            self._publish(result, ids, header, rgb)
        self.stats.update(processed=self.stats['processed'] + 1, people=len(result),
                          inference_ms=elapsed_ms)
        self.stats['output_times'] = (self.stats['output_times'] + [time.monotonic()])[-30:]

    def _publish(self, result, ids, header, rgb: np.ndarray) -> None:
        p = self.params
        self.publishers_['skeletons'].publish(conversions.skeleton_array_msg(result, ids, header))
        # Markers and the debug image are for people watching: not built when nobody is.
        if p['publish_markers'] and self._has_subscribers('markers'):
            self.publishers_['markers'].publish(conversions.marker_array_msg(
                result, ids, header, p['marker_lifetime_s']))
        if p['publish_tf'] and self.tf_broadcaster is not None and len(result):
            self.tf_broadcaster.sendTransform(conversions.transforms(
                result, ids, header, p['tf_root_joint'] or None, p['tf_frame_prefix'],
                p['publish_joint_frames']))
        if p['publish_debug_image'] and self._has_subscribers('debug_image'):
            drawn = draw_skeletons(rgb, result.poses2d, result.skeleton.edges, ids, result.boxes)
            self.publishers_['debug_image'].publish(Image(
                header=header, height=drawn.shape[0], width=drawn.shape[1], encoding='rgb8',
                step=drawn.shape[1] * 3, data=drawn.tobytes()))

    def _has_subscribers(self, name: str) -> bool:
        return self.publishers_[name].get_subscription_count() > 0

    def _in_target_frame(self, camera: Camera, header):
        """The camera with extrinsics from TF at the image stamp (world = target_frame, up = its
        z axis), and the output header in target_frame. Raises ValueError without a transform."""
        target, source = self.params['target_frame'], header.frame_id
        if self.tf_buffer is None:
            raise ValueError(f'target_frame {target!r} set but no TF is available')
        try:
            transform = self.tf_buffer.lookup_transform(
                target, source, Time.from_msg(header.stamp),
                Duration(seconds=self.params['tf_timeout_s']))
        except self.tf_exception as e:
            raise ValueError(f'no transform {source!r} -> {target!r} at the image stamp: {e}')
        target_from_camera = transform_to_matrix(transform)
        camera = dataclasses.replace(camera, extrinsic=np.linalg.inv(target_from_camera),
                                     world_up=(0.0, 0.0, 1.0))
        return camera, Header(stamp=header.stamp, frame_id=target)

    # Support ---------------------------------------------------------------------------------
    def _warm_up(self) -> None:
        side = self.estimator.model.config.crop_side
        blank = np.zeros((side * 2, side * 2, 3), np.uint8)
        self.estimator.estimate_poses(blank, np.array([[side / 2, side / 2, side, side]]),
                                      num_aug=1)

    def _new_tracker(self) -> PoseTracker:
        p = self.params
        return PoseTracker(p['track_max_distance_m'], p['track_max_age_s'],
                           smoothing=p['smoothing'])

    def _make_tf_listener(self):
        """(Buffer, TransformListener) from tf2_ros or the compat module; (None, None) without
        tf2_msgs."""
        try:
            from tf2_ros import Buffer, TransformException, TransformListener
        except ImportError:
            from metrabs_ros.ros.tf_buffer import Buffer, TransformException, TransformListener
        self.tf_exception = TransformException
        buffer = Buffer()
        try:
            return buffer, TransformListener(buffer, self)
        except ImportError:
            self.get_logger().warning('neither tf2_ros nor tf2_msgs is importable: no TF input')
            return None, None

    def _make_tf_broadcaster(self):
        try:
            from tf2_ros import TransformBroadcaster
        except ImportError:
            from metrabs_ros.ros.compat import TransformBroadcaster
        try:
            return TransformBroadcaster(self)
        except ImportError:
            self.get_logger().warning('neither tf2_ros nor tf2_msgs is importable: no TF output')
            return None

    def _on_set_parameters(self, params):
        """Reject values outside a parameter's choices or pattern, or joints the model lacks;
        record accepted values."""
        result = validate_choices(params)
        estimator = self.estimator
        if result.successful and estimator is not None:
            skeleton = self._output_skeleton(estimator.model)
            for param in params:
                if param.name == 'tf_root_joint' and \
                        (reason := root_joint_problem(param.value, skeleton)):
                    return SetParametersResult(successful=False, reason=reason)
        if result.successful:
            self._parameters_changed(params)
        return result

    def _output_skeleton(self, model):
        return model.output_skeletons.skeletons[self.params['skeleton'] or
                                                model.output_skeletons.default]

    def _check_model_parameters(self, model) -> None:
        """ValueError when skeleton or tf_root_joint do not fit the model."""
        names = model.output_skeletons.names  # never empty (OutputSkeletons refuses that)
        if self.params['skeleton'] and self.params['skeleton'] not in names:
            raise ValueError(f'skeleton {self.params["skeleton"]!r} is not one of this model\'s: '
                             f'{", ".join(names)}')
        reason = root_joint_problem(self.params['tf_root_joint'], self._output_skeleton(model))
        if reason:
            raise ValueError(reason)

    def _parameters_changed(self, params) -> None:
        for param in params:
            self.params[param.name] = param.value
            if param.name.startswith('track_') and self.tracker is not None:
                self.tracker.max_distance_m = self.params['track_max_distance_m']
                self.tracker.max_age_s = self.params['track_max_age_s']

    def _warn(self, message: str, key: str, throttle: bool = False) -> None:
        """Log once per key, or with throttle at most every WARN_PERIOD_S seconds per key."""
        now = time.monotonic()
        last = self.last_warned.get(key)
        if last is None or (throttle and now - last >= WARN_PERIOD_S):
            self.last_warned[key] = now
            self.get_logger().warning(message)

    def _publish_diagnostics(self) -> None:
        if 'diagnostics' not in self.publishers_:
            return
        s, frames = self.stats, self.frames
        times = s['output_times']
        fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and \
            times[-1] > times[0] else 0.0
        status = DiagnosticStatus(name='metrabs_ros: pose node', hardware_id=str(
            self.estimator.device if self.estimator else 'none'))
        image_topic = self.resolve_topic_name(self._input_topics()[1])
        publishers = self.count_publishers(image_topic)
        silent_s = time.monotonic() - self.last_frame_time
        if self.subscribers and publishers and silent_s > NO_FRAMES_WARN_S:
            status.level, status.message = DiagnosticStatus.WARN, (
                f'{publishers} publisher(s) on {image_topic} but no synchronized frame for '
                f'{silent_s:.0f} s (images received {self.images_received}, camera_info '
                f'{self.infos_received}): check the QoS reliability and that camera_info has '
                'the image stamps')
        elif frames.received == 0:
            status.level, status.message = DiagnosticStatus.WARN, \
                'no synchronized image + camera_info received yet'
        elif s['failed'] or s['stale']:
            status.level, status.message = DiagnosticStatus.WARN, 'some frames were skipped'
        else:
            status.level, status.message = DiagnosticStatus.OK, 'running'
        values = dict(inference_ms=f'{s["inference_ms"]:.1f}', output_fps=f'{fps:.2f}',
                      frames_received=frames.received, frames_dropped=frames.dropped,
                      frames_processed=s['processed'], frames_failed=s['failed'],
                      frames_stale=s['stale'], people=s['people'],
                      images_received=self.images_received,
                      camera_infos_received=self.infos_received, image_publishers=publishers,
                      input_reliability=' '.join(reliability_name(r)
                                                 for r in self.reliability.values()),
                      model=self.model_path, device=status.hardware_id)
        status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self.publishers_['diagnostics'].publish(msg)


def root_joint_problem(joint: str, skeleton) -> str | None:
    """Why `joint` cannot be the TF root of `skeleton` ('' = joint mean is fine), or None."""
    if joint and joint not in skeleton.joint_names:
        return (f'tf_root_joint {joint!r} is not a joint of skeleton {skeleton.name!r}: use one '
                f'of {", ".join(skeleton.joint_names)} or \'\' for the mean of the joints')
    return None


def main(args=None) -> None:
    rclpy.init(args=args)
    node = PoseNode()
    # One thread serves every callback; they are short (the worker thread does inference).
    # A MultiThreadedExecutor's pool contends with the worker for the GIL: at a 100 Hz input
    # it cut the output rate by a third (benchmarks/README.md).
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.frames.close()
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    main()
