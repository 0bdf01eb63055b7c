"""Face detection library: detectors behind a registry, one result type, alignment and target selection.

>>> from afwpipe.faces import create_detector, select_faces, align_faces
>>> det = create_detector("mtcnn")                 # or "retinaface"
>>> dets = det.detect(frames)                      # frames: uint8 [B, H, W, 3] RGB -> list[Detections]
>>> idx = select_faces(dets)                       # int64 [B], -1 where no face
"""

from afwpipe.faces import mtcnn, retinaface  # noqa: F401  (register the detectors)
from afwpipe.faces.align import ARCFACE_TEMPLATE_112, align_face, align_faces, similarity_matrix, template
from afwpipe.faces.detections import LANDMARK_NAMES, Detections
from afwpipe.faces.detector import DetectorConfig, FaceDetector, check_frames
from afwpipe.faces.mtcnn import MTCNNDetector
from afwpipe.faces.registry import (
    DETECTORS,
    UnknownDetectorError,
    create_detector,
    is_detector,
    list_detectors,
    register_detector,
)
from afwpipe.faces.retinaface import RetinaFaceDetector
from afwpipe.faces.select import FaceSelector, select_faces

__all__ = [
    "ARCFACE_TEMPLATE_112",
    "DETECTORS",
    "LANDMARK_NAMES",
    "Detections",
    "DetectorConfig",
    "FaceDetector",
    "MTCNNDetector",
    "RetinaFaceDetector",
    "UnknownDetectorError",
    "align_face",
    "align_faces",
    "check_frames",
    "create_detector",
    "is_detector",
    "list_detectors",
    "register_detector",
    "FaceSelector",
    "select_faces",
    "similarity_matrix",
    "template",
]
