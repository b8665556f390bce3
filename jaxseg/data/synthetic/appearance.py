"""What touches the image only: the sky, texture, lighting, shadows and sensor noise."""

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from jaxseg.data.synthetic.class_sets import NUM_CLASSES
from jaxseg.data.synthetic.palette import vary
from jaxseg.data.synthetic.scene import Camera, Layout, ground_quad, log_uniform

# Per-class texture strength (pixel std of the luminance noise); the last entry is void.
# Rough surfaces (vegetation, dirt, walls) get more, so texture is a cue but not a decisive one.
_TEXTURE = np.array(
    [6, 11, 8, 13, 6, 6, 5, 5, 5, 4, 6, 5, 8, 8, 10, 6, 5, 7, 4, 4, 5, 8, 9, 8, 22, 2.5, 3],
    np.float32,
)
_TEXTURE_LUT = np.full(256, _TEXTURE[-1], np.float32)
_TEXTURE_LUT[:NUM_CLASSES] = _TEXTURE[:NUM_CLASSES]


def sky_image(rng: np.random.Generator, camera: Camera) -> np.ndarray:
    """[H, W, 3] float sky: blue at the top fading into haze at the horizon, some clouds."""
    top = vary(rng, (80, 130, 200), 15)
    haze = vary(rng, (200, 206, 214), 12)
    if rng.random() < 0.35:  # Indian skies are often washed out to a pale grey.
        top = tuple(int(0.35 * t + 0.65 * h) for t, h in zip(top, haze, strict=True))
    rows = np.arange(camera.height, dtype=np.float32)[:, None, None]
    t = np.clip(rows / max(camera.horizon, 1.0), 0, 1) ** rng.uniform(0.6, 1.5)
    sky = np.asarray(top, np.float32) * (1 - t) + np.asarray(haze, np.float32) * t
    sky = np.broadcast_to(sky, (camera.height, camera.width, 3)).copy()
    if rng.random() < 0.5:
        sky = _clouds(rng, camera, sky)
    return sky


def _clouds(rng: np.random.Generator, camera: Camera, sky: np.ndarray) -> np.ndarray:
    mask = Image.new("L", (camera.width, camera.height), 0)
    draw = ImageDraw.Draw(mask)
    for _ in range(rng.integers(2, 7)):
        cx = rng.uniform(0, camera.width)
        cy = rng.uniform(0, camera.horizon * 0.8)
        rx = camera.width * rng.uniform(0.04, 0.15)
        ry = rx * rng.uniform(0.2, 0.45)
        draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=int(rng.uniform(90, 200)))
    radius = max(1.0, camera.width / 80)
    alpha = np.asarray(mask.filter(ImageFilter.GaussianBlur(radius)), np.float32)[..., None] / 255
    return sky * (1 - alpha) + np.float32(rng.uniform(215, 245)) * alpha


def _smooth_noise(rng: np.random.Generator, camera: Camera, cells: tuple[int, int]) -> np.ndarray:
    """[H, W] float32 standard-normal noise at a resolution of `cells`, bilinearly upsampled."""
    small = rng.standard_normal(cells, dtype=np.float32)
    image = Image.fromarray(small).resize((camera.width, camera.height), Image.BILINEAR)
    return np.asarray(image)


def _shadow_mask(rng: np.random.Generator, camera: Camera, layout: Layout) -> np.ndarray:
    """[H, W] float32 in [0, 1]: soft shadows of unseen trees and buildings across the road."""
    mask = Image.new("L", (camera.width, camera.height), 0)
    draw = ImageDraw.Draw(mask)
    road_x0, road_x1 = layout.road
    for _ in range(rng.integers(1, 4)):
        z = log_uniform(rng, camera.z_bottom * 0.7, 40)
        x0 = rng.uniform(road_x0 - 4, road_x1)
        quad = ground_quad(x0, x0 + rng.uniform(2, 12), z, z + rng.uniform(2, 12))
        draw.polygon(camera.project(quad).ravel().tolist(), fill=255)
    mask = mask.filter(ImageFilter.GaussianBlur(max(1.0, camera.width / 120)))
    return np.asarray(mask, np.float32) / 255


def finish(
    rng: np.random.Generator,
    camera: Camera,
    layout: Layout,
    image: Image.Image,
    label: np.ndarray,
    noise: float = 1.0,
) -> np.ndarray:
    """Texture, lighting, shadows, a global colour change and sensor noise; image only.

    `noise` scales the texture and the sensor noise.

    Returns:
      [H, W, 3] uint8 image.
    """
    pixels = np.asarray(image, np.float32)
    amplitude = _TEXTURE_LUT[label] * np.float32(noise)
    grain = rng.standard_normal(label.shape, dtype=np.float32)
    blotches = _smooth_noise(rng, camera, (max(2, camera.height // 6), max(2, camera.width // 6)))
    pixels += (amplitude * (0.55 * grain + 0.9 * blotches))[..., None]
    light = 1 + rng.uniform(0.04, 0.15) * _smooth_noise(rng, camera, (3, 5))
    pixels *= light[..., None]
    if rng.random() < 0.4:
        pixels *= (1 - rng.uniform(0.25, 0.5) * _shadow_mask(rng, camera, layout))[..., None]
    contrast, brightness = rng.uniform(0.75, 1.2), rng.uniform(-25, 20)
    gain = rng.uniform(0.92, 1.08, 3).astype(np.float32)  # White balance.
    pixels = ((pixels - 128) * contrast + 128 + brightness) * gain
    pixels += noise * rng.uniform(2, 7) * rng.standard_normal(pixels.shape, dtype=np.float32)
    return np.clip(pixels + 0.5, 0, 255).astype(np.uint8)
