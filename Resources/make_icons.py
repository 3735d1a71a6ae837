"""Draws the extension and module icons, so that they can be regenerated instead of hand-edited.

Run from the project root: `python Resources/make_icons.py` (needs Pillow). Writes
  Resources/BrainMetSeg.png                               extension icon (Extensions Manager)
  BrainMetSeg/Resources/Icons/BrainMetSeg.png             inference module: slice + segmented lesion
  BrainMetSegTrain/Resources/Icons/BrainMetSegTrain.png   training module: same slice + a learning curve
All are 128x128 RGBA, drawn at 4x and downsampled so the edges are smooth. Drawing is
deterministic: `Testing/test_extension_layout.py` checks that the committed PNGs match it.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Dict, List, Tuple

from PIL import Image, ImageDraw

SIZE = 128
SCALE = 4
CANVAS = SIZE * SCALE

GREY_MATTER = (118, 118, 128, 255)
WHITE_MATTER = (205, 205, 212, 255)
CSF = (38, 40, 52, 255)
OUTLINE = (70, 72, 86, 255)
LESION_RIM = (255, 236, 120, 255)    # ring enhancement, as on post-contrast T1
LESION_CORE = (92, 84, 70, 255)      # necrotic core
SEGMENT = (235, 60, 50, 255)         # the segment outline drawn by the module
CURVE = (60, 170, 255, 255)


def _px(value: float) -> int:
    return int(round(value * SCALE))


def _ellipse_box(cx: float, cy: float, rx: float, ry: float) -> Tuple[int, int, int, int]:
    return (_px(cx - rx), _px(cy - ry), _px(cx + rx), _px(cy + ry))


def _gyral_outline(cx: float, cy: float, rx: float, ry: float, bumps: int, depth: float) -> List[Tuple[int, int]]:
    """Closed contour of an ellipse with regular folds: reads as cortex at icon size."""
    points = []
    for step in range(720):
        angle = 2.0 * math.pi * step / 720
        fold = 1.0 + depth * abs(math.sin(bumps * angle / 2.0)) - depth / 2.0
        points.append((_px(cx + rx * fold * math.cos(angle)), _px(cy + ry * fold * math.sin(angle))))
    return points


def _rotated_ellipse(cx: float, cy: float, rx: float, ry: float, angle: float) -> List[Tuple[int, int]]:
    cos_a, sin_a = math.cos(angle), math.sin(angle)
    points = []
    for step in range(90):
        t = 2.0 * math.pi * step / 90
        x, y = rx * math.cos(t), ry * math.sin(t)
        points.append((_px(cx + x * cos_a - y * sin_a), _px(cy + x * sin_a + y * cos_a)))
    return points


def _brain_slice(draw: ImageDraw.ImageDraw, cx: float, cy: float, rx: float, ry: float) -> None:
    """An axial slice: folded grey-matter rim, white matter, interhemispheric fissure, ventricles."""
    draw.polygon(_gyral_outline(cx, cy, rx, ry, 26, 0.07), fill=GREY_MATTER, outline=OUTLINE, width=_px(1.5))
    draw.polygon(_gyral_outline(cx, cy, rx * 0.82, ry * 0.84, 26, 0.08), fill=WHITE_MATTER)
    draw.line([(_px(cx), _px(cy - ry * 1.02)), (_px(cx), _px(cy - ry * 0.55))], fill=CSF, width=_px(2.2))
    draw.line([(_px(cx), _px(cy + ry * 0.62)), (_px(cx), _px(cy + ry * 1.02))], fill=CSF, width=_px(2.2))
    for side in (-1.0, 1.0):
        # lateral ventricles: frontal horns splayed outwards, occipital horns further apart
        draw.polygon(_rotated_ellipse(cx + side * rx * 0.2, cy - ry * 0.2, rx * 0.075, ry * 0.24, side * 0.3), fill=CSF)
        draw.polygon(_rotated_ellipse(cx + side * rx * 0.24, cy + ry * 0.2, rx * 0.065, ry * 0.17, -side * 0.4), fill=CSF)


def _lesion(draw: ImageDraw.ImageDraw, cx: float, cy: float, radius: float) -> None:
    """A ring-enhancing metastasis with its segment contour around it."""
    draw.ellipse(_ellipse_box(cx, cy, radius * 1.45, radius * 1.45), outline=SEGMENT, width=_px(2.6))
    draw.ellipse(_ellipse_box(cx, cy, radius, radius), fill=LESION_RIM)
    draw.ellipse(_ellipse_box(cx, cy, radius * 0.45, radius * 0.45), fill=LESION_CORE)


def _learning_curve(draw: ImageDraw.ImageDraw) -> None:
    """A small badge with a rising validation curve: this module trains models."""
    x0, y0, x1, y1 = 78.0, 80.0, 124.0, 124.0
    draw.rounded_rectangle((_px(x0), _px(y0), _px(x1), _px(y1)), radius=_px(6), fill=(250, 250, 252, 255),
                           outline=OUTLINE, width=_px(1.5))
    draw.line([(_px(x0 + 6), _px(y0 + 5)), (_px(x0 + 6), _px(y1 - 6)), (_px(x1 - 5), _px(y1 - 6))],
              fill=OUTLINE, width=_px(1.6))
    curve = []
    for step in range(41):
        t = step / 40
        curve.append((_px(x0 + 9 + t * (x1 - x0 - 16)), _px(y1 - 9 - (1 - math.exp(-4 * t)) * (y1 - y0 - 18))))
    draw.line(curve, fill=CURVE, width=_px(3), joint="curve")


def _render(with_curve: bool) -> Image.Image:
    image = Image.new("RGBA", (CANVAS, CANVAS), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    _brain_slice(draw, 64.0, 62.0, 47.0, 56.0)
    _lesion(draw, 86.0, 38.0, 8.5)
    _lesion(draw, 43.0, 88.0, 4.0)
    if with_curve:
        _learning_curve(draw)
    return image.resize((SIZE, SIZE), Image.LANCZOS)


def render_icons() -> Dict[str, Image.Image]:
    """Icons by path relative to the project root."""
    plain = _render(with_curve=False)
    return {
        "Resources/BrainMetSeg.png": plain,
        "BrainMetSeg/Resources/Icons/BrainMetSeg.png": plain,
        "BrainMetSegTrain/Resources/Icons/BrainMetSegTrain.png": _render(with_curve=True),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent,
                        help="project root to write into (default: this script's project)")
    args = parser.parse_args()
    for relative, image in render_icons().items():
        target = args.root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        image.save(target, optimize=True)
        print(target)


if __name__ == "__main__":
    main()
