"""The service's image codec: a request body to the model's input, bounded by memory; a mask back to PNG.

An image's pixels, not its bytes, decide what decoding it costs: a 518 KB single-colour PNG of 13000x13000
decodes to 2.3 GB. So the largest image is derived from the service's memory (`max_image_pixels`) and every
body is checked against it by its header (Pillow reads only the header on open) before any pixel is decoded.
"""

from __future__ import annotations

import io
import re

import numpy as np

from harness.errors import HarnessError

# Worst case bytes held per image pixel while one image is decoded and fitted, measured per format and mode
# (tests/test_serve_hostile.py): a progressive 4:4:4 CMYK JPEG holds libjpeg's whole-image coefficient buffer
# (64 two-byte coefficients per 8x8 block and component: 2 B/px x 4 = 8) beside Pillow's decoded image (every
# 8-bit mode, RGB included, is 4 B/px in Pillow) = 12. Every later step holds less: the RGB copy of another mode
# (4 + 4), the shrink to the model's input (the 4 B/px RGB image and Pillow's horizontal pass, at most 4 B/px),
# the mask scaled back to the image's size (1 B/px and its PNG). RGB PNGs and baseline JPEGs hold 4.3, RGBA 8.1.
BYTES_PER_PIXEL = 12
TENSOR_BYTES_PER_INPUT_PIXEL = 3 * 4 * 3  # the float32 input (3 channels) and normalize's two temporaries
SLACK_MB = 32.0  # allocator fragmentation, Python objects, uvicorn's per-connection buffers, the encoded mask
FORMATS = ("PNG", "JPEG")
_REPR = re.compile(r"<[^<>]* at 0x[0-9a-fA-F]+>")  # Pillow names its file object: `<_io.BytesIO object at 0x...>`


class BadImage(ValueError):
    """The request body is not an image the service can read: 400, or `status` (413: too large to decode)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def max_image_pixels(memory_mb: float, used_mb: float, bodies_mb: float, input_hw: tuple[int, int]) -> int:
    """The most pixels an image may have for decoding it to fit in `memory_mb` beside all the server already holds.

    free = memory_mb - used_mb (the server's peak so far: stack, model, one request answered) - bodies_mb (request
    bodies held at once, all connections) - SLACK_MB - the input tensor; images are decoded one at a time, so
    max pixels = free / BYTES_PER_PIXEL. Never under the model's own input size: the service takes at least that.
    Cloud: (512 - 98 - 64 - 32 - 1.7) MB / 12 B = 27.6 Mpx, where the unbounded server took 2.39 GB for 169 Mpx.
    """
    input_px = input_hw[0] * input_hw[1]
    free_mb = memory_mb - used_mb - bodies_mb - SLACK_MB - input_px * TENSOR_BYTES_PER_INPUT_PIXEL / 2**20
    return max(input_px, int(free_mb * 2**20 / BYTES_PER_PIXEL))


def target_memory_mb(budgets) -> float:
    """The memory one service has on a target: its cap, else its budget where that is the whole process's; 0: unknown."""
    if budgets.memory_cap_mb:
        return float(budgets.memory_cap_mb)
    return float(budgets.memory_budget_mb) if budgets.memory_quantity == "process" else 0.0


def available_mb() -> float:
    """What this machine has free now (/proc/meminfo MemAvailable): a service without a memory cap gets that."""
    try:
        with open("/proc/meminfo") as f:
            return next(int(line.split()[1]) / 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return 0.0


def mpx(pixels: int) -> str:
    return f"{pixels / 1e6:.4g}"


def decode(body: bytes, input_hw: tuple[int, int], max_pixels: int, memory_mb: float):
    """(H,W,3) uint8 RGB shrunk to fit `input_hw` as in evaluation, the image's own size; BadImage for any bad body."""
    from PIL import Image, UnidentifiedImageError

    if not body:
        raise BadImage("the request has no body; send a PNG or JPEG image as the body")
    try:
        return _decode(Image.open(io.BytesIO(body)), input_hw, max_pixels, memory_mb)
    except BadImage:
        raise
    except HarnessError as e:  # a mode with no range to map to 0-255 (32-bit floats), named as evaluation names it
        raise BadImage(str(e)) from None
    except UnidentifiedImageError:
        raise BadImage("the body cannot be decoded as PNG or JPEG (it is not an image Pillow knows)") from None
    except Image.DecompressionBombError as e:  # Pillow's own limit, where a caller left it set: its message has the size
        found = re.search(r"\((\d+) pixels\)", str(e))
        size = f"{mpx(int(found[1]))} Mpx" if found else "too many pixels"
        raise BadImage(f"image is {size}; this service decodes at most {mpx(max_pixels)} Mpx within its "
                       f"{memory_mb:.0f} MB", 413) from None
    except MemoryError:
        raise BadImage(f"the image did not fit in memory while decoding; this service decodes at most "
                       f"{mpx(max_pixels)} Mpx within its {memory_mb:.0f} MB", 413) from None
    except Exception as e:  # a hostile body can make Pillow raise nearly anything: a bad body, never a server error
        said = _REPR.sub("the body", str(e).strip().splitlines()[0] if str(e).strip() else "")
        raise BadImage(f"the body cannot be decoded as PNG or JPEG ({type(e).__name__}{': ' + said[:200] if said else ''})") from None


def _decode(image, input_hw: tuple[int, int], max_pixels: int, memory_mb: float):
    """Header checks, then decode, RGB (as evaluation images are read) and shrink in Pillow: a full-size numpy copy
    would add 3-6 B/px."""
    from PIL import Image

    from harness.data import rgb_image

    try:
        if image.format not in FORMATS:
            raise BadImage(f"the body is a {image.format} image; send a PNG or JPEG")
        w, h = image.size
        if w * h > max_pixels:
            raise BadImage(f"image is {w}x{h} = {mpx(w * h)} Mpx; this service decodes at most {mpx(max_pixels)} Mpx "
                           f"within its {memory_mb:.0f} MB", 413)
        image.load()
        if image.mode != "RGB":
            rgb = rgb_image(image, "the body")  # 16-bit grey by its depth, transparency onto the padding colour
            image.close()  # the decoded original goes before the shrink: two full-size images at most
            image = rgb
        th, tw = input_hw
        scale = min(th / h, tw / w, 1.0)
        fitted_hw = (max(1, int(h * scale)), max(1, int(w * scale)))
        if fitted_hw != (h, w):  # the same call as harness.data.fit_to_input, on the same RGB pixels
            small = image.resize((fitted_hw[1], fitted_hw[0]), Image.BILINEAR)
            image.close()
            image = small
        return np.asarray(image), (h, w)
    finally:
        image.close()


def encode(mask: np.ndarray, image_hw: tuple[int, int], fitted_hw: tuple[int, int]) -> bytes:
    """The mask at the image's own size (padding cut off, then scaled back with nearest neighbour), as PNG."""
    from PIL import Image

    picture = Image.fromarray(np.ascontiguousarray(mask[: fitted_hw[0], : fitted_hw[1]]), mode="L")
    if fitted_hw != image_hw:
        picture = picture.resize((image_hw[1], image_hw[0]), Image.NEAREST)
    out = io.BytesIO()
    picture.save(out, format="PNG", compress_level=1)  # fast: the mask is small and mostly runs of one value
    return out.getvalue()
