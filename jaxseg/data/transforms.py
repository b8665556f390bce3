"""Per-example transforms on {"image": [H,W,3] uint8, "label": [H,W] uint8} dicts.

Images are resized bilinearly, labels with nearest neighbour (ids are never interpolated).
"""

import numpy as np
from PIL import Image

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def resize(example: dict, height: int, width: int) -> dict:
    """Resizes image (bilinear) and label (nearest) to (height, width)."""
    image, label = example["image"], example["label"]
    if image.shape[:2] == (height, width):
        return example
    image = resize_image(image, height, width)
    label = np.asarray(Image.fromarray(label).resize((width, height), Image.NEAREST))
    return {**example, "image": image, "label": label}


def resize_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """[H, W, 3] uint8 resized bilinearly to [height, width, 3]."""
    if image.shape[:2] == (height, width):
        return image
    return np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))


def normalize(image: np.ndarray) -> np.ndarray:
    """[H,W,3] uint8 RGB -> float32 normalised with ImageNet mean/std (as the study did)."""
    return (image.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD


def to_model_input(example: dict) -> dict:
    """Final step: the batch contract {"image": uint8 [H,W,3], "label": int32 [H,W]}.

    Images stay uint8 (a quarter of float32's bytes to copy to the device); the compiled
    steps normalise them there (`jaxseg.steps.model_input`).
    """
    return {"image": example["image"], "label": example["label"].astype(np.int32)}
