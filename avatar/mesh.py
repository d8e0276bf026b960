"""The extended face mesh: MediaPipe's face plus head shell, mouth interior and neck.

The face mesh (478 landmarks, 852 triangles) covers brow to chin only. The avatar needs more
surfaces to carry Gaussians, all driven by the same tracked landmarks:

  part           vertices                              motion (in the head frame)
  face           the 478 landmarks (iris: no triangles) tracked
  shell          rings from the face outline back      outline ring follows the outline landmarks,
                 over an ellipsoid skull (hair, ears)  fading to rigid towards the back
  upper_teeth    thin arch strip behind the upper lip  rigid (upper jaw = skull)
  lower_teeth    arch strip behind the lower lip       follows the chin landmarks (mandible), less
                                                       at the molars (the jaw rotates)
  tongue         small dome patch behind lower teeth   follows the chin, damped
  mouth_cavity   dark back wall behind the teeth       top rigid, bottom follows the chin: it
                                                       stretches as the mouth opens
  eyes           a curved patch behind each eye        rim rigid, centre follows the iris
                 opening (the face mesh has holes      centre landmark (gaze); the lids
                 there)                                close over it
  neck           elliptic tube below the jaw, flared   rigid with the head; given the head
                 into the shoulders                    rotation it follows head turns only
                                                       partly (fully at the jaw, 20% at the
                                                       shoulders), pivoting in the neck

`build_topology(resolution)` gives the fixed triangle list; `build_rig(neutral_landmarks)` places
the extra vertices once per avatar from its neutral face; `extend_vertices(landmarks, rig)` is a
pure, linear (so differentiable) map from per-frame head-frame landmarks to all vertices:
    extra = extra_neutral + sum_k anchor_weight[e, k] * (landmarks - neutral)[anchor_index[e, k]]

Units: the landmarks' own (MediaPipe's are normalised image units). Every size below is a multiple
of the neutral face's outer-eye-corner distance `unit` (about 9-10 cm on an adult), so nothing
assumes millimetres. Canonical head axes, found from the landmarks (any rigid frame works):
a = towards landmark 263 (subject's left eye), b = up (chin -> forehead), c = a x b (forward,
out of the face). Triangles wind so that normals point out of the head (teeth and the mouth
cavity face forward, the tongue up), matching the face mesh's winding.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import torch
from torch import Tensor

from avatar import face_topology as ft
from avatar.binding import rotation_matrix_to_quaternion
from avatar.body_tracking import warp_points
from avatar.mesh_shapes import MAX_ANCHORS, place_extra_vertices

__all__ = [
    "PARTS",
    "MeshResolution",
    "ExtendedMeshTopology",
    "ExtendedMeshRig",
    "build_topology",
    "build_rig",
    "extend_vertices",
    "head_axes",
]

PARTS = ("face", "shell", "upper_teeth", "lower_teeth", "tongue", "mouth_cavity", "neck", "eyes")
RIG_FORMAT_VERSION = 1


@dataclass(frozen=True)
class MeshResolution:
    """How finely each extra part is triangulated (saved with the avatar; fixes the topology)."""

    shell_rings: int = 8  # rings behind the face outline (36 vertices each) before the back pole
    teeth_columns: int = 24  # along each dental arch; ~2.5 mm triangles keep teeth Gaussians small
    teeth_rows: int = 4
    tongue_columns: int = 10
    tongue_rows: int = 5
    cavity_columns: int = 12
    cavity_rows: int = 6
    neck_columns: int = 24  # around the tube
    neck_rows: int = 6
    eye_columns: int = 8  # per eye
    eye_rows: int = 5

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"MeshResolution.{name} must be a positive int, got {value!r}")


@dataclass(frozen=True)
class ExtendedMeshTopology:
    """Triangles of the extended mesh; vertex 0..477 are the landmarks, the rest are extra."""

    faces: Tensor  # [F, 3] long
    face_part: Tensor  # [F] long, index into PARTS
    vertex_part: Tensor  # [V] long, index into PARTS (landmarks: face)
    num_vertices: int
    resolution: MeshResolution

    def part_faces(self, part: str) -> Tensor:
        """Indices [F_part] of the triangles of one part."""
        if part not in PARTS:
            raise ValueError(f"unknown mesh part {part!r}; parts are {PARTS}")
        return (self.face_part == PARTS.index(part)).nonzero().flatten()

    def parts_mask(self, parts: tuple[str, ...]) -> Tensor | None:
        """[F] bool: the triangles of `parts`; None when no part is named."""
        if not parts:
            return None
        unknown = set(parts) - set(PARTS)
        if unknown:
            raise ValueError(f"unknown mesh parts {sorted(unknown)}; parts are {PARTS}")
        return torch.isin(self.face_part, torch.tensor([PARTS.index(part) for part in parts]))


class _Layout:
    """Assigns vertex ids part by part (fixed order) and collects triangles."""

    def __init__(self) -> None:
        self.num_vertices = ft.NUM_LANDMARKS
        self.vertex_part = [0] * ft.NUM_LANDMARKS
        self.faces: list[Tensor] = [ft.load_face_triangles()]
        self.face_part = [torch.zeros(ft.NUM_FACE_TRIANGLES, dtype=torch.long)]

    def new_vertices(self, shape: tuple[int, ...], part: str) -> Tensor:
        count = math.prod(shape)
        ids = torch.arange(self.num_vertices, self.num_vertices + count).reshape(shape)
        self.num_vertices += count
        self.vertex_part += [PARTS.index(part)] * count
        return ids

    def add_grid(self, ids: Tensor, part: str, periodic: bool = False, flip: bool = False) -> None:
        """Two triangles per quad of a vertex-id grid [rows, cols]; normal ~ row dir x col dir."""
        if periodic:
            ids = torch.cat([ids, ids[:, :1]], dim=1)
        v00, v01, v10, v11 = ids[:-1, :-1], ids[:-1, 1:], ids[1:, :-1], ids[1:, 1:]
        first = torch.stack([v00, v10, v01], -1).reshape(-1, 3)
        second = torch.stack([v01, v10, v11], -1).reshape(-1, 3)
        faces = torch.stack([first, second], 1).reshape(-1, 3)
        self.add_faces(faces.flip(-1) if flip else faces, part)

    def add_faces(self, faces: Tensor, part: str) -> None:
        self.faces.append(faces)
        self.face_part.append(torch.full((faces.shape[0],), PARTS.index(part), dtype=torch.long))


def _layout_ids(resolution: MeshResolution) -> tuple[_Layout, dict[str, Tensor]]:
    r = resolution
    layout = _Layout()
    ids: dict[str, Tensor] = {}
    oval = torch.tensor(ft.FACE_OVAL)
    rings = layout.new_vertices((r.shell_rings, len(ft.FACE_OVAL)), "shell")
    pole = layout.new_vertices((1,), "shell")
    ids["shell_rings"], ids["shell_pole"] = rings, pole
    shell_grid = torch.cat([oval[None], rings], 0)
    layout.add_grid(shell_grid, "shell", periodic=True, flip=True)
    last = rings[-1]
    layout.add_faces(torch.stack([last, last.roll(-1), pole.expand_as(last)], -1), "shell")
    for part, rows, cols, periodic, flip in (
        ("upper_teeth", r.teeth_rows + 1, r.teeth_columns + 1, False, False),
        ("lower_teeth", r.teeth_rows + 1, r.teeth_columns + 1, False, False),
        ("tongue", r.tongue_rows + 1, r.tongue_columns + 1, False, False),
        ("mouth_cavity", r.cavity_rows + 1, r.cavity_columns + 1, False, False),
        ("neck", r.neck_rows + 1, r.neck_columns, True, False),
        ("eye_right", r.eye_rows + 1, r.eye_columns + 1, False, False),
        ("eye_left", r.eye_rows + 1, r.eye_columns + 1, False, False),
    ):
        label = "eyes" if part.startswith("eye_") else part
        grid = layout.new_vertices((rows, cols), label)
        ids[part] = grid
        layout.add_grid(grid, label, periodic=periodic, flip=flip)
    return layout, ids


def build_topology(resolution: MeshResolution = MeshResolution()) -> ExtendedMeshTopology:
    """The extended mesh's triangles and part labels (depends only on the resolution)."""
    layout, _ = _layout_ids(resolution)
    return ExtendedMeshTopology(
        faces=torch.cat(layout.faces, 0),
        face_part=torch.cat(layout.face_part, 0),
        vertex_part=torch.tensor(layout.vertex_part, dtype=torch.long),
        num_vertices=layout.num_vertices,
        resolution=resolution,
    )


def _check_landmarks(name: str, landmarks: Tensor, batched: bool) -> None:
    if not isinstance(landmarks, Tensor) or not landmarks.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {getattr(landmarks, 'dtype', type(landmarks))}")
    if landmarks.dim() < 2 or tuple(landmarks.shape[-2:]) != (ft.NUM_LANDMARKS, 3) or (not batched and landmarks.dim() != 2):
        want = "[..., 478, 3]" if batched else "[478, 3]"
        raise ValueError(f"{name} must have shape {want} (refine_landmarks=True), got {list(landmarks.shape)}")
    if not torch.isfinite(landmarks).all():
        raise ValueError(f"{name} contains NaN or inf values")


def head_axes(neutral_landmarks: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Canonical head frame of a neutral face: origin [3] (between the outer eye corners),
    axes [3, 3] (columns a, b, c; see the module docstring) and unit [] (outer-eye distance)."""
    _check_landmarks("neutral_landmarks", neutral_landmarks, batched=False)
    lm = neutral_landmarks
    across = lm[ft.LEFT_EYE_OUTER] - lm[ft.RIGHT_EYE_OUTER]
    unit = across.norm()
    if float(unit) <= 0:
        raise ValueError("the neutral face's eye corners coincide; it is not a tracked face")
    a = across / unit
    up = lm[ft.FOREHEAD_TOP] - lm[ft.CHIN]
    b = up - a * (up @ a)
    if float(b.norm()) <= 1e-6 * float(unit):
        raise ValueError("the neutral face's chin-forehead line is parallel to the eye line")
    b = b / b.norm()
    c = torch.linalg.cross(a, b, dim=-1)
    nose_out = lm[ft.NOSE_TIP] - lm[list(ft.FACE_OVAL)].mean(0)
    if float(nose_out @ c) <= 0:
        # The landmark frame is mirrored (left-handed): c = a x b then points into the head; we
        # still want c forward, and the winding is mirrored along with the face mesh's.
        c = -c
    origin = (lm[ft.RIGHT_EYE_OUTER] + lm[ft.LEFT_EYE_OUTER]) / 2
    return origin, torch.stack([a, b, c], dim=1), unit


@dataclass(frozen=True)
class ExtendedMeshRig:
    """Per-avatar placement of the extra vertices (plain tensors; see to_tensors)."""

    neutral_landmarks: Tensor  # [478, 3]
    extra_neutral: Tensor  # [E, 3], vertex 478 + e
    anchor_index: Tensor  # [E, K] long, landmark indices
    anchor_weight: Tensor  # [E, K] float
    head_follow: Tensor  # [E] float, share of the head's rotation each extra vertex follows (neck < 1)
    neck_pivot: Tensor  # [3], centre of the neck's partial counter-rotation
    resolution: MeshResolution
    # Optional fixed body pose (head frame -> camera, the clip's mean head pose over its training frames):
    # with it, a vertex with head_follow f is posed f * head pose + (1 - f) * body pose (see extend_vertices).
    body_rotation: Tensor | None = None  # [3, 3]
    body_translation: Tensor | None = None  # [3]
    # Optional linear map from head pose to tracked body motion (`avatar.body_tracking.fit_body_sway`): how
    # this person's shoulders sway with the head, for animation that has no video to track the body in.
    body_sway: Tensor | None = None  # [7, 6]

    def to_tensors(self) -> dict[str, Tensor]:
        """Tensors for safetensors (contiguous, CPU); `metadata()` holds the rest as JSON."""
        return {
            "neutral_landmarks": self.neutral_landmarks.detach().cpu().contiguous(),
            "extra_neutral": self.extra_neutral.detach().cpu().contiguous(),
            "anchor_index": self.anchor_index.cpu().contiguous(),
            "anchor_weight": self.anchor_weight.detach().cpu().contiguous(),
            "head_follow": self.head_follow.detach().cpu().contiguous(),
            "neck_pivot": self.neck_pivot.detach().cpu().contiguous(),
            **({} if self.body_rotation is None else {
                "body_rotation": self.body_rotation.detach().cpu().contiguous(),
                "body_translation": self.body_translation.detach().cpu().contiguous()}),
            **({} if self.body_sway is None else {"body_sway": self.body_sway.detach().cpu().contiguous()}),
        }

    def metadata(self) -> dict:
        return {"format_version": RIG_FORMAT_VERSION, "resolution": asdict(self.resolution)}

    @staticmethod
    def from_tensors(tensors: dict[str, Tensor], metadata: dict) -> "ExtendedMeshRig":
        """Validate and rebuild a rig saved with to_tensors() + metadata()."""
        if metadata.get("format_version") != RIG_FORMAT_VERSION:
            raise ValueError(f"unsupported rig format version {metadata.get('format_version')!r}")
        resolution = MeshResolution(**metadata.get("resolution", {}))
        missing = {"neutral_landmarks", "extra_neutral", "anchor_index", "anchor_weight", "head_follow",
                   "neck_pivot"} - set(tensors)
        if missing:
            raise ValueError(f"rig tensors missing: {sorted(missing)}")
        rig = ExtendedMeshRig(
            tensors["neutral_landmarks"], tensors["extra_neutral"], tensors["anchor_index"],
            tensors["anchor_weight"], tensors["head_follow"], tensors["neck_pivot"], resolution,
            tensors.get("body_rotation"), tensors.get("body_translation"), tensors.get("body_sway"),
        )
        rig.validate()
        return rig

    def validate(self) -> None:
        _check_landmarks("rig.neutral_landmarks", self.neutral_landmarks, batched=False)
        num_extra = build_topology(self.resolution).num_vertices - ft.NUM_LANDMARKS
        e = self.extra_neutral
        if not e.is_floating_point() or tuple(e.shape) != (num_extra, 3) or not torch.isfinite(e).all():
            raise ValueError(f"rig.extra_neutral must be finite float [{num_extra}, 3], got {e.dtype} {list(e.shape)}")
        idx, w = self.anchor_index, self.anchor_weight
        if idx.dtype != torch.long or tuple(idx.shape) != (num_extra, MAX_ANCHORS):
            raise ValueError(f"rig.anchor_index must be long [{num_extra}, {MAX_ANCHORS}], got {idx.dtype} {list(idx.shape)}")
        if int(idx.min()) < 0 or int(idx.max()) >= ft.NUM_LANDMARKS:
            raise ValueError("rig.anchor_index points outside the 478 landmarks")
        if not w.is_floating_point() or w.shape != idx.shape or not torch.isfinite(w).all():
            raise ValueError(f"rig.anchor_weight must be finite float {list(idx.shape)}, got {w.dtype} {list(w.shape)}")
        f, pivot = self.head_follow, self.neck_pivot
        if not f.is_floating_point() or tuple(f.shape) != (num_extra,) or not bool(((f >= 0) & (f <= 1)).all()):
            raise ValueError(f"rig.head_follow must be float [{num_extra}] in [0, 1], got {f.dtype} {list(f.shape)}")
        if not pivot.is_floating_point() or tuple(pivot.shape) != (3,) or not torch.isfinite(pivot).all():
            raise ValueError(f"rig.neck_pivot must be a finite float [3], got {pivot.dtype} {list(pivot.shape)}")
        body = (self.body_rotation, self.body_translation)
        if (body[0] is None) != (body[1] is None):
            raise ValueError("rig.body_rotation and rig.body_translation must be given together")
        sway = self.body_sway
        if sway is not None and (body[0] is None or not sway.is_floating_point() or tuple(sway.shape) != (7, 6)
                                 or not torch.isfinite(sway).all()):
            raise ValueError(f"rig.body_sway must be a finite float [7, 6] beside a body pose, got "
                             f"{sway.dtype} {list(sway.shape)}")
        if body[0] is not None:
            for name, value, shape in (("body_rotation", body[0], (3, 3)), ("body_translation", body[1], (3,))):
                if not value.is_floating_point() or tuple(value.shape) != shape or not torch.isfinite(value).all():
                    raise ValueError(f"rig.{name} must be a finite float {list(shape)}, got {value.dtype} {list(value.shape)}")


def with_body_pose(rig: ExtendedMeshRig, rotations: Tensor, translations: Tensor) -> ExtendedMeshRig:
    """The rig with a fixed body pose: the mean of head poses rotations [T, 3, 3], translations [T, 3] (pass the
    training frames'). The shoulders of a talking person stay nearly still while the head nods, turns and
    shifts, so the neck blends from the head's pose at the jaw to this pose at the shoulders."""
    if rotations.ndim != 3 or rotations.shape[1:] != (3, 3) or translations.shape != (rotations.shape[0], 3):
        raise ValueError(f"need rotations [T, 3, 3] and translations [T, 3], got {tuple(rotations.shape)}, "
                         f"{tuple(translations.shape)}")
    if rotations.shape[0] == 0:
        raise ValueError("need at least one head pose for the body pose")
    u, _, vt = torch.linalg.svd(rotations.to(torch.float64).sum(0))  # chordal mean of the rotations
    mean = u @ torch.diag(torch.tensor([1.0, 1.0, float(torch.sign(torch.linalg.det(u @ vt)))], dtype=u.dtype)) @ vt
    dtype = rig.neutral_landmarks.dtype
    posed = replace(rig, body_rotation=mean.to(dtype), body_translation=translations.to(torch.float64).mean(0).to(dtype))
    posed.validate()
    return posed


def _axis_angle(rotation: Tensor) -> Tensor:
    """Rotation vectors [..., 3] (axis x angle, angle in [0, pi]) of rotation matrices [..., 3, 3]."""
    q = rotation_matrix_to_quaternion(rotation)
    q = q * torch.where(q[..., :1] < 0, -1.0, 1.0).to(q)  # w >= 0: the short way round
    w, v = q[..., :1], q[..., 1:]
    s = v.norm(dim=-1, keepdim=True)
    small = s < 1e-6
    safe_s = torch.where(small, torch.ones_like(s), s)
    # angle = 2 atan2(|v|, w); near identity angle / |v| -> 2 / w (smooth, no 0/0).
    factor = torch.where(small, 2.0 / w, 2.0 * torch.atan2(s, w) / safe_s)
    return v * factor


def _rotation_from_vectors(vectors: Tensor) -> Tensor:
    """Rodrigues: rotation matrices [..., 3, 3] of rotation vectors [..., 3] (stable at 0)."""
    theta2 = (vectors * vectors).sum(-1, keepdim=True)[..., None]  # [..., 1, 1]
    small = theta2 < 1e-8
    safe = torch.where(small, torch.ones_like(theta2), theta2)
    theta = safe.sqrt()
    sin_over = torch.where(small, 1 - theta2 / 6, torch.sin(theta) / theta)
    cos_over = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / safe)
    x, y, z = vectors.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(*vectors.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=vectors.dtype, device=vectors.device)
    return eye + sin_over * k + cos_over * (k @ k)


def extend_vertices(
    landmarks: Tensor,  # [..., 478, 3] in the head frame of the rig's neutral shape
    rig: ExtendedMeshRig,
    head_rotation: Tensor | None = None,  # [..., 3, 3] head -> camera/world rotation of the same frames
    head_translation: Tensor | None = None,  # [..., 3] the same frames' head translations (camera units)
    body_warp: Tensor | None = None,  # [..., 2, 3] the same frames' tracked body motion (`avatar.body_tracking`)
) -> Tensor:
    """All vertices [..., V, 3] of the extended mesh, in the head frame.

    Without head_rotation everything is rigid with the head apart from the landmark-driven parts
    (linear in the landmarks). With it, each vertex with head_follow f < 1 (the neck) is turned
    back by R^(f - 1) about the neck pivot, so after the caller applies the head pose it has
    turned by only R^f: the shoulders stay nearly still while the head turns. Differentiable.
    With head_translation too and a rig with a body pose (R0, t0; `with_body_pose`), such a vertex v is
    instead placed so that, once the caller applies R v + t, it sits at f (R v + t) + (1 - f)(R0 v + t0):
    the neck blends between the moving head and the still body (two-bone linear blend skinning).
    With body_warp (normalised image-plane affines, identity = the still body) the body end of that blend is
    moved by the frame's tracked body motion first (`avatar.body_tracking.warp_points`).
    """
    _check_landmarks("landmarks", landmarks, batched=True)
    if body_warp is not None and (head_translation is None or rig.body_rotation is None):
        raise ValueError("body_warp needs head_rotation, head_translation and a rig with a body pose")
    neutral = rig.neutral_landmarks.to(landmarks)
    displacement = landmarks - neutral  # [..., 478, 3]
    gathered = displacement[..., rig.anchor_index.to(landmarks.device), :]  # [..., E, K, 3]
    extra = rig.extra_neutral.to(landmarks) + (rig.anchor_weight.to(landmarks)[..., None] * gathered).sum(-2)
    if head_rotation is not None:
        batch = landmarks.shape[:-2]
        if not isinstance(head_rotation, Tensor) or tuple(head_rotation.shape) != (*batch, 3, 3):
            raise ValueError(f"head_rotation must have shape {[*batch, 3, 3]}, got {list(getattr(head_rotation, 'shape', []))}")
        if not torch.isfinite(head_rotation).all():
            raise ValueError("head_rotation contains NaN or inf values")
        partial = (rig.head_follow < 1).nonzero().flatten().to(landmarks.device)
        follow = rig.head_follow.to(landmarks)[partial]
        if head_translation is not None and rig.body_rotation is not None:
            if not isinstance(head_translation, Tensor) or tuple(head_translation.shape) != (*batch, 3):
                raise ValueError(f"head_translation must have shape {[*batch, 3]}, got "
                                 f"{list(getattr(head_translation, 'shape', []))}")
            v = extra[..., partial, :]
            body = v @ rig.body_rotation.to(landmarks).T + rig.body_translation.to(landmarks)  # camera
            if body_warp is not None:
                if not isinstance(body_warp, Tensor) or tuple(body_warp.shape) != (*batch, 2, 3):
                    raise ValueError(f"body_warp must have shape {[*batch, 2, 3]}, got "
                                     f"{list(getattr(body_warp, 'shape', []))}")
                if not torch.isfinite(body_warp).all():
                    raise ValueError("body_warp contains NaN or inf values")
                body = warp_points(body, body_warp.to(landmarks))
            back = (body - head_translation.to(landmarks)[..., None, :]) @ head_rotation.to(landmarks)  # R^T (.)
            local = follow[:, None] * v + (1 - follow[:, None]) * back
        else:
            pivot = rig.neck_pivot.to(landmarks)
            turn_back = _axis_angle(head_rotation.to(landmarks))[..., None, :] * (follow - 1)[:, None]
            local = (_rotation_from_vectors(turn_back) @ (extra[..., partial, :] - pivot).unsqueeze(-1)).squeeze(-1) + pivot
        extra = extra.index_copy(-2, partial, local)
    return torch.cat([landmarks, extra], dim=-2)


def build_rig(neutral_landmarks: Tensor, resolution: MeshResolution = MeshResolution(),
              tracked_body: bool = False) -> ExtendedMeshRig:
    """Place the extra parts around a neutral face [478, 3] (mouth closed or slightly open). tracked_body: the
    clip's body motion is tracked, so the collar follows the body alone (see `mesh_shapes._place_neck`)."""
    origin, axes, unit = head_axes(neutral_landmarks)
    lm = neutral_landmarks.to(torch.float64)
    canonical = (lm - origin.to(lm)) @ axes.to(lm) / unit.to(lm)  # [478, 3] in (a, b, c) units
    layout, ids = _layout_ids(resolution)
    num_extra = layout.num_vertices - ft.NUM_LANDMARKS
    placed = place_extra_vertices(canonical, ids, num_extra, resolution, tracked_body)
    extra = origin.to(lm) + unit.to(lm) * placed.positions @ axes.to(lm).T
    pivot = origin.to(lm) + unit.to(lm) * placed.pivot @ axes.to(lm).T
    rig = ExtendedMeshRig(
        neutral_landmarks=neutral_landmarks.detach().clone(),
        extra_neutral=extra.to(neutral_landmarks.dtype),
        anchor_index=placed.anchor_index,
        anchor_weight=placed.anchor_weight.to(neutral_landmarks.dtype),
        head_follow=placed.head_follow.to(neutral_landmarks.dtype),
        neck_pivot=pivot.to(neutral_landmarks.dtype),
        resolution=resolution,
    )
    rig.validate()
    return rig


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m avatar.mesh", description=__doc__.splitlines()[0])
    parser.add_argument("--write-assets", action="store_true", help="regenerate assets/face_mesh_triangles.json")
    parser.add_argument("--plot", metavar="PNG", help="draw the extended mesh (front and side) to this PNG")
    parser.add_argument("--landmarks", metavar="NPY", help="neutral landmarks [478, 3] (default: FaceMesh on "
                        "skimage's astronaut photo)")
    args = parser.parse_args(argv)
    if not (args.write_assets or args.plot):
        parser.error("nothing to do: give --write-assets and/or --plot PNG")
    try:
        if args.write_assets:
            triangles = ft.write_face_triangles()
            print(f"wrote {len(triangles)} triangles to {ft.ASSET_PATH}")
        if args.plot:
            from avatar.mesh_plot import plot_extended_mesh, sample_landmarks

            landmarks = sample_landmarks(args.landmarks)
            plot_extended_mesh(landmarks, args.plot)
            print(f"wrote {args.plot}")
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
