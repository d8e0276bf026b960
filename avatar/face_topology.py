"""The MediaPipe face mesh's triangles (852, with winding), and the landmark groups we use.

mediapipe 0.10.21 exposes `FACEMESH_TESSELATION` only as a frozenset of edges (the triangle order
is lost), but its source file lists the edges as consecutive triples (a, b), (b, c), (c, a).
`parse_tessellation_source` reads that file as text and parses the literal with
`ast.literal_eval` (no code is executed). The triangles are committed as
`assets/face_mesh_triangles.json` (written by `python -m avatar.mesh --write-assets`) so the
runtime does not depend on the package's source layout.

Winding: the source's order gives normals pointing out of the face in MediaPipe's image frame
(x right, y down, z away from the camera), checked in tests on a real FaceMesh result.
"""
from __future__ import annotations

import ast
import json
from pathlib import Path

import torch
from torch import Tensor

__all__ = [
    "NUM_LANDMARKS",
    "NUM_FACE_TRIANGLES",
    "ASSET_PATH",
    "parse_tessellation_source",
    "mediapipe_connections_path",
    "load_face_triangles",
    "write_face_triangles",
    "FACE_OVAL",
    "INNER_LIP_UPPER",
    "INNER_LIP_LOWER",
]

NUM_LANDMARKS = 478  # 468 mesh points + 10 iris points (refine_landmarks=True)
NUM_FACE_TRIANGLES = 852
ASSET_PATH = Path(__file__).resolve().parents[1] / "assets" / "face_mesh_triangles.json"

# Face outline (FACEMESH_FACE_OVAL as a closed loop), starting at the forehead top, going to the
# subject's left (image right) first: forehead -> temple -> jaw -> chin -> other side.
FACE_OVAL = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
    152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)
# Inner lip contours, from the right mouth corner (78) to the left one (308).
INNER_LIP_UPPER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
INNER_LIP_LOWER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
# Named single landmarks used to build the head frame and rig.
RIGHT_EYE_OUTER, LEFT_EYE_OUTER = 33, 263
FOREHEAD_TOP, CHIN, NOSE_TIP = 10, 152, 1
UPPER_LIP_INNER_MID, LOWER_LIP_INNER_MID = 13, 14
MOUTH_CORNER_RIGHT, MOUTH_CORNER_LEFT = 78, 308
# Per eye (subject's right, left): outer corner, inner corner, iris centre (refine_landmarks).
EYES = ((33, 133, 468), (263, 362, 473))
# Points on the mandible below the lower lip (chin), whose motion drives the lower jaw parts.
JAW_ANCHORS = (152, 175, 199, 200, 18)


def mediapipe_connections_path() -> Path:
    """Path of mediapipe's face_mesh_connections.py (found without importing mediapipe)."""
    import importlib.util

    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("mediapipe is not installed; it is needed only to regenerate the triangle asset")
    root = Path(list(spec.submodule_search_locations)[0])
    path = root / "python" / "solutions" / "face_mesh_connections.py"
    if not path.is_file():
        raise FileNotFoundError(f"mediapipe's face mesh connections file is missing at {path}")
    return path


def parse_tessellation_source(source: str) -> list[tuple[int, int, int]]:
    """Triangles (with winding) from the text of face_mesh_connections.py.

    Finds the `FACEMESH_TESSELATION = frozenset([...])` assignment, literal-evaluates the list of
    edge pairs and groups consecutive edges (a, b), (b, c), (c, a) into triangles (a, b, c).
    """
    tree = ast.parse(source)
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "FACEMESH_TESSELATION" for t in node.targets)
            and isinstance(node.value, ast.Call)
            and node.value.args
        ):
            edges = ast.literal_eval(node.value.args[0])
            break
    else:
        raise ValueError("FACEMESH_TESSELATION = frozenset([...]) not found in the source")
    if len(edges) % 3:
        raise ValueError(f"the tessellation lists {len(edges)} edges, not a multiple of 3")
    triangles = []
    for k in range(0, len(edges), 3):
        (a, b), (b2, c), (c2, a2) = edges[k : k + 3]
        if (b, c, a) != (b2, c2, a2):
            raise ValueError(f"edges {k}..{k + 2} do not form a closed triangle: {edges[k:k + 3]}")
        triangles.append((int(a), int(b), int(c)))
    return triangles


def write_face_triangles(path: Path = ASSET_PATH) -> list[tuple[int, int, int]]:
    """Regenerate the committed triangle asset from the installed mediapipe's source."""
    triangles = parse_tessellation_source(mediapipe_connections_path().read_text())
    if len(triangles) != NUM_FACE_TRIANGLES:
        raise ValueError(f"expected {NUM_FACE_TRIANGLES} triangles, parsed {len(triangles)}")
    payload = {
        "source": "mediapipe 0.10.21 python/solutions/face_mesh_connections.py FACEMESH_TESSELATION "
        "(consecutive edge triples; Apache-2.0)",
        "num_landmarks": NUM_LANDMARKS,
        "triangles": [list(t) for t in triangles],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, separators=(",", ":")) + "\n")
    return triangles


def load_face_triangles(path: Path = ASSET_PATH) -> Tensor:
    """The face mesh's triangles as a long tensor [852, 3] (validated)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; regenerate it with `python -m avatar.mesh --write-assets`")
    data = json.loads(path.read_text())
    faces = torch.tensor(data.get("triangles", []), dtype=torch.long)
    if tuple(faces.shape) != (NUM_FACE_TRIANGLES, 3):
        raise ValueError(f"{path} must hold {NUM_FACE_TRIANGLES} triangles, got shape {list(faces.shape)}")
    if int(faces.min()) < 0 or int(faces.max()) >= 468:
        raise ValueError(f"{path} indexes landmarks outside the 468 mesh points")
    return faces
