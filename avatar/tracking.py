"""Face tracking: MediaPipe FaceMesh on every frame, quality checks that reject unusable input with a clear
message, gap filling, and zero-phase temporal smoothing.

Landmarks are [478, 3] per frame in pixels: x right, y down (pixel centres at integer + 0.5, MediaPipe's
normalised coordinates times the image size), z MediaPipe's relative depth times the image width (so it has the
scale of x; smaller z = closer to the camera). 468 face-mesh points + 10 iris points (refine_landmarks=True).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

NUM_LANDMARKS = 478
# Face-oval points at ear level (subject's right, left) and the chin / forehead-top: used for size and yaw.
RIGHT_FACE_EDGE, LEFT_FACE_EDGE, FOREHEAD_TOP, CHIN = 234, 454, 10, 152


@dataclass(frozen=True)
class TrackingConfig:
    """Thresholds for accepting a clip (documented defaults; all per clip unless said otherwise)."""

    max_missing_fraction: float = 0.2  # reject "no face" when more frames than this have no face
    max_gap_frames: int = 12  # gaps up to this long (0.5 s at 25 fps) are interpolated and count as valid
    max_multi_face_fraction: float = 0.1  # reject "several faces" when more frames than this show 2+ faces
    face_count_every: int = 25  # run the full-range face detector on every n-th frame to count faces
    min_face_px: float = 64.0  # reject when the median face height (forehead top to chin) is below this
    min_luminance: float = 30.0  # reject "too dark" when the median frame luma (0-255, BT.601) is below this
    max_yaw_deg: float = 40.0  # a frame is "profile" when |yaw| exceeds this ...
    max_profile_fraction: float = 0.5  # ... and the clip is rejected when more frames than this are profile
    min_detection_confidence: float = 0.5
    min_tracking_confidence: float = 0.5


@dataclass
class RawTrack:
    """Tracker output before checks. landmarks: [T, 478, 3] float32 pixels, NaN where no face was found."""

    landmarks: np.ndarray  # [T, 478, 3]
    face_count: np.ndarray  # [T] int, faces FaceMesh found (max 2)
    detected_faces: np.ndarray  # [T] int, faces the full-range detector counted (-1 where it did not run)
    luminance: np.ndarray  # [T] float, mean frame luma 0-255
    width: int
    height: int


@dataclass
class CheckedTrack:
    """Landmarks after the checks: gaps filled, `valid` False where a long gap had to be bridged."""

    landmarks: np.ndarray  # [T, 478, 3] float32 pixels, finite everywhere
    valid: np.ndarray  # [T] bool
    notes: list[str] = field(default_factory=list)


def frame_luminance(frame: np.ndarray) -> float:  # frame: [H, W, 3] uint8 RGB
    """Mean BT.601 luma (0-255) of a frame, on a 4x subsample (plenty for a mean)."""
    sub = frame[::4, ::4].astype(np.float32)
    return float((sub @ np.array([0.299, 0.587, 0.114], np.float32)).mean())


class FaceTracker:
    """MediaPipe FaceMesh on whole frames, with a fallback for faces too small for its built-in detector.

    FaceMesh's own (short-range) detector misses faces narrower than about 1/9 of the frame width (a desk webcam
    at 1080p, 4K footage). When it finds nothing, the face is located from the previous frame's landmarks or
    by the bundled full-range face detector, and FaceMesh runs on a square region around it. `max_num_faces=2`
    so a second face is counted, not silently ignored. Use as a context manager; `static=True` for photos.
    """

    def __init__(self, static: bool = False, config: TrackingConfig = TrackingConfig()) -> None:
        import mediapipe as mp

        options = dict(refine_landmarks=True, min_detection_confidence=config.min_detection_confidence,
                       min_tracking_confidence=config.min_tracking_confidence)
        self._mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=static, max_num_faces=2, **options)
        self._region_mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, **options)
        self._detector = mp.solutions.face_detection.FaceDetection(
            model_selection=1, min_detection_confidence=config.min_detection_confidence)
        self._last_box: np.ndarray | None = None  # [4] x0, y0, x1, y1 of the last tracked face

    def __enter__(self) -> "FaceTracker":
        return self

    def __exit__(self, *exc: object) -> None:
        for solution in (self._mesh, self._region_mesh, self._detector):
            solution.close()

    @staticmethod
    def _faces(mesh, image: np.ndarray) -> list[np.ndarray]:
        height, width = image.shape[:2]
        result = mesh.process(np.ascontiguousarray(image))
        return [np.array([(p.x * width, p.y * height, p.z * width) for p in face.landmark], np.float32)
                for face in (result.multi_face_landmarks or [])]

    def detect_faces(self, frame: np.ndarray) -> np.ndarray:  # frame: [H, W, 3] uint8 -> [N, 5]
        """Face boxes of the full-range detector: rows x0, y0, x1, y1 (pixels), score; largest first."""
        height, width = frame.shape[:2]
        result = self._detector.process(np.ascontiguousarray(frame))
        boxes = []
        for detection in result.detections or []:
            box = detection.location_data.relative_bounding_box
            boxes.append((box.xmin * width, box.ymin * height, (box.xmin + box.width) * width,
                          (box.ymin + box.height) * height, detection.score[0]))
        boxes.sort(key=lambda row: -(row[2] - row[0]) * (row[3] - row[1]))
        return np.array(boxes, np.float32).reshape(-1, 5)

    def face_down(self, frame: np.ndarray) -> np.ndarray | None:  # frame: [H, W, 3] uint8 -> [2] or None
        """Unit vector (x, y) in pixels from the eyes' midpoint to the mouth of the largest face the full-range
        detector finds (its keypoints), or None: (0, 1) for an upright face; which way is up in the picture."""
        height, width = frame.shape[:2]
        result = self._detector.process(np.ascontiguousarray(frame))
        best, best_area = None, 0.0
        for detection in result.detections or []:
            box = detection.location_data.relative_bounding_box
            area = box.width * width * box.height * height
            points = np.array([(k.x * width, k.y * height) for k in detection.location_data.relative_keypoints])
            if area > best_area and len(points) >= 4:  # right eye, left eye, nose tip, mouth centre, ears
                best, best_area = points[3] - (points[0] + points[1]) / 2, area
        if best is None or not np.linalg.norm(best) > 0:
            return None
        return best / np.linalg.norm(best)

    def _track_in_region(self, frame: np.ndarray) -> np.ndarray | None:
        box = self._last_box
        if box is None:
            detections = self.detect_faces(frame)
            if len(detections) == 0:
                return None
            box = detections[0, :4]
        height, width = frame.shape[:2]
        size = int(min(2.2 * max(box[2] - box[0], box[3] - box[1]), width, height))
        x0 = int(np.clip((box[0] + box[2]) / 2 - size / 2, 0, width - size))
        y0 = int(np.clip((box[1] + box[3]) / 2 - size / 2, 0, height - size))
        faces = self._faces(self._region_mesh, frame[y0 : y0 + size, x0 : x0 + size])
        if not faces:
            return None
        points = faces[0]
        points[:, 0] += x0
        points[:, 1] += y0
        return points

    def track(self, frame: np.ndarray) -> tuple[np.ndarray | None, int]:  # frame: [H, W, 3] uint8 RGB
        """Landmarks [478, 3] in pixels of the largest face (or None) and the number of faces FaceMesh found."""
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"frame must be [H, W, 3] uint8 RGB, got {frame.shape} {frame.dtype}")
        faces = self._faces(self._mesh, frame)
        count = len(faces)
        best = max(faces, key=lambda points: float(np.ptp(points[:, 1])), default=None)
        if best is None:
            best = self._track_in_region(frame)
            count = int(best is not None)
        self._last_box = None if best is None else np.concatenate([best[:, :2].min(0), best[:, :2].max(0)])
        return best, count

    def count_faces(self, frame: np.ndarray, min_relative_height: float = 0.5) -> int:
        """Faces the full-range detector sees that are at least `min_relative_height` of the largest one's height
        (a small face far behind the subject does not count)."""
        boxes = self.detect_faces(frame)
        if len(boxes) == 0:
            return 0
        heights = boxes[:, 3] - boxes[:, 1]
        return int((heights >= min_relative_height * heights.max()).sum())


def track_frames(
    frames: Iterable[np.ndarray],
    static: bool = False,
    config: TrackingConfig = TrackingConfig(),
    on_frame: Callable[[int], None] | None = None,
) -> RawTrack:
    """Run FaceMesh over frames ([H, W, 3] uint8 RGB each, same size). `on_frame(i)` is called after each.

    Every `config.face_count_every`-th frame (and the first) the full-range detector also counts faces, since
    FaceMesh alone misses small second faces.
    """
    landmarks, counts, detected, luminance = [], [], [], []
    width = height = 0
    with FaceTracker(static=static, config=config) as tracker:
        for index, frame in enumerate(frames):
            if index == 0:
                height, width = frame.shape[:2]
            elif frame.shape[:2] != (height, width):
                raise ValueError(f"frame {index} is {frame.shape[:2]}, expected {(height, width)}")
            points, count = tracker.track(frame)
            landmarks.append(points if points is not None else np.full((NUM_LANDMARKS, 3), np.nan, np.float32))
            counts.append(count)
            detected.append(tracker.count_faces(frame) if index % config.face_count_every == 0 else -1)
            luminance.append(frame_luminance(frame))
            if on_frame is not None:
                on_frame(index)
    if not landmarks:
        raise ValueError("no frames to track")
    return RawTrack(np.stack(landmarks), np.array(counts), np.array(detected), np.array(luminance, np.float32),
                    width, height)


def estimate_yaw_deg(landmarks: np.ndarray) -> np.ndarray:  # landmarks: [T, 478, 3] pixels
    """Head yaw per frame in degrees from the depth difference between the face edges at ear level.

    0 = frontal; sign: positive when the subject's left cheek (image right) is further from the camera. Coarse
    (MediaPipe's depth is relative) but enough to tell frontal from profile.
    """
    if landmarks.ndim != 3 or landmarks.shape[1:] != (NUM_LANDMARKS, 3):
        raise ValueError(f"landmarks must be [T, 478, 3], got {landmarks.shape}")
    delta = landmarks[:, LEFT_FACE_EDGE] - landmarks[:, RIGHT_FACE_EDGE]
    return np.degrees(np.arctan2(delta[:, 2], np.abs(delta[:, 0]) + 1e-6))


def face_height_px(landmarks: np.ndarray) -> np.ndarray:  # landmarks: [T, 478, 3]
    """Forehead-top-to-chin distance per frame in pixels (roughly brow-to-chin face height)."""
    return np.linalg.norm(landmarks[:, CHIN, :2] - landmarks[:, FOREHEAD_TOP, :2], axis=-1)


def fill_gaps(values: np.ndarray, missing: np.ndarray) -> np.ndarray:  # values: [T, ...], missing: [T] bool
    """Linear interpolation over missing frames (edges hold the nearest present frame)."""
    if values.shape[0] != missing.shape[0]:
        raise ValueError(f"values has {values.shape[0]} frames but missing has {missing.shape[0]}")
    if missing.all():
        raise ValueError("cannot fill gaps: no frame is present")
    present = np.flatnonzero(~missing)
    flat = values.reshape(values.shape[0], -1).astype(np.float64)
    times = np.arange(values.shape[0])
    filled = np.stack([np.interp(times, present, flat[present, j]) for j in range(flat.shape[1])], axis=1)
    return filled.reshape(values.shape).astype(values.dtype)


def _run_lengths(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, length) of each run of True in a [T] bool mask."""
    runs, start = [], None
    for index, flag in enumerate(np.append(mask, False)):
        if flag and start is None:
            start = index
        elif not flag and start is not None:
            runs.append((start, index - start))
            start = None
    return runs


def check_track(track: RawTrack, config: TrackingConfig = TrackingConfig()) -> CheckedTrack:
    """Apply the rejection rules (ValueError with a sentence a user can act on) and fill short gaps.

    Order: too dark, no face, several faces, face too small, mostly profile. Gaps longer than
    `max_gap_frames` are bridged too (so every array stays finite) but those frames are marked invalid.
    """
    frames = track.landmarks.shape[0]
    missing = ~np.isfinite(track.landmarks).all(axis=(1, 2))
    what = "the photo" if frames == 1 else "the video"
    if np.median(track.luminance) < config.min_luminance:
        raise ValueError(
            f"{what} is too dark (mean brightness {np.median(track.luminance):.0f}/255, need at least "
            f"{config.min_luminance:.0f}); record facing a light source"
        )
    if missing.all() or missing.mean() > config.max_missing_fraction:
        raise ValueError(
            f"no face found in {what}" if frames == 1 or missing.all() else
            f"no face found in {missing.mean():.0%} of the frames (at most {config.max_missing_fraction:.0%} "
            "allowed); keep your face in view"
        )
    multi = track.face_count >= 2
    sampled = track.detected_faces >= 0
    multi_fraction = max(multi.mean(), (track.detected_faces[sampled] >= 2).mean() if sampled.any() else 0.0)
    if multi_fraction > config.max_multi_face_fraction:
        raise ValueError(
            f"several faces in {what}" + ("" if frames == 1 else f" ({multi_fraction:.0%} of the frames)")
            + "; only one person may be in view"
        )
    heights = face_height_px(track.landmarks[~missing])
    if np.median(heights) < config.min_face_px:
        raise ValueError(
            f"the face is too small ({np.median(heights):.0f} px from forehead to chin, need at least "
            f"{config.min_face_px:.0f} px); move closer to the camera or use a higher resolution"
        )
    yaw = estimate_yaw_deg(track.landmarks[~missing])
    profile = np.abs(yaw) > config.max_yaw_deg
    if profile.mean() > config.max_profile_fraction:
        raise ValueError(
            f"the face is mostly in profile (median |yaw| {np.median(np.abs(yaw)):.0f} deg, at most "
            f"{config.max_yaw_deg:.0f} deg allowed); face the camera"
        )
    notes = []
    valid = ~missing
    if missing.any():
        for start, length in _run_lengths(missing):
            if length > config.max_gap_frames:
                notes.append(f"no face in frames {start}-{start + length - 1}: bridged, marked invalid")
            else:
                valid[start : start + length] = True
        notes.append(f"filled {int(missing.sum())} frames without a face by interpolation")
    if multi.any():
        notes.append(f"a second face appeared in {int(multi.sum())} frames (largest face kept)")
    landmarks = fill_gaps(track.landmarks, missing) if missing.any() else track.landmarks.copy()
    return CheckedTrack(landmarks=landmarks, valid=valid, notes=notes)


def zero_phase_smooth(signal: np.ndarray, fps: float, cutoff_hz: float, order: int = 2) -> np.ndarray:
    """Low-pass `signal` [T, ...] along time with a Butterworth filter run forward and backward (filtfilt).

    Forward-backward filtering has zero phase, so motion is smoothed without any time lag (a causal filter
    such as an EMA would delay lip closures). A cutoff at or above Nyquist, or a clip too short to pad,
    returns the signal unchanged.
    """
    from scipy.signal import butter, filtfilt

    if fps <= 0 or cutoff_hz <= 0:
        raise ValueError(f"fps and cutoff_hz must be positive, got {fps} and {cutoff_hz}")
    frames = signal.shape[0]
    nyquist = fps / 2.0
    pad = 3 * (order + 1)
    if cutoff_hz >= nyquist or frames <= pad:
        return signal.copy()
    b, a = butter(order, cutoff_hz / nyquist)
    return filtfilt(b, a, signal, axis=0, padtype="odd", padlen=pad).astype(signal.dtype)
