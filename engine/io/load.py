"""Loading real-world photo files into the one form the engine works on: sRGB uint8 pixels.

Every file either becomes a :class:`LoadedImage` (upright, sRGB, 8 bits, alpha split off,
metadata kept aside for the writer to filter) or raises :class:`ImageLoadError` with a reason
a person can act on.  Nothing here writes to disk or changes Pillow's global settings.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import stat
import struct
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import ExifTags, Image, ImageCms, ImageOps, UnidentifiedImageError

# 100 MP: eight times a 12-MP phone photo and above a 100-MP medium-format camera's 11648x8736,
# yet it refuses the small files that claim gigapixel sizes to exhaust memory (decompression
# bombs).  Each megapixel costs ~3 MB as uint8 and several times that as float while attacked.
DEFAULT_MAX_PIXELS = 100_000_000

# Pillow opens the thumbnail or first preview of these camera RAW containers (many are TIFF
# inside), which would silently protect a small preview instead of the photo.
RAW_SUFFIXES = frozenset(
    ".3fr .arw .cr2 .cr3 .crw .dcr .dng .erf .iiq .k25 .kdc .mef .mos .mrw .nef .nrw .orf .pef "
    ".raf .raw .rw2 .rwl .sr2 .srf .srw .x3f".split()
)

# ISO-BMFF brands (bytes 8..12 of an 'ftyp' box) of HEIF-family files.
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
# Signatures of formats Pillow reads: a file that has one but fails to open is damaged.
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)

# TIFF tags that describe how a TIFF file stores its pixels.  A TIFF's "EXIF" as Pillow reports
# it is its first IFD, so these would otherwise be copied into an output's EXIF, where they
# describe a layout that no longer exists.
_STRUCTURE_TAGS = frozenset(
    {
        254,
        255,
        256,
        257,
        258,
        259,
        262,
        263,
        266,
        273,
        277,
        278,
        279,
        280,
        281,
        284,
        317,
        320,
        322,
        323,
        324,
        325,
        330,
        338,
        339,
        340,
        341,
        347,
        513,
        514,
        529,
        530,
        531,
        532,
        700,
        33723,
        34377,
        34675,
    }
)
_ORIENTATION = ExifTags.Base.Orientation
_IPTC_RESOURCE = 0x0404  # Photoshop image resource that holds the IPTC-NAA record
_IPTC_TIFF_TAG = 33723

# Decoding is serialised: Python 3.11 keeps the warnings filters process-wide, and catching
# Pillow's warnings from two threads at once could leave them corrupted.  The attack takes far
# longer than a decode, so a thread pool loses little.  Code elsewhere in the process that
# also swaps warnings filters from other threads is outside this lock's reach.
_DECODE_LOCK = threading.Lock()


class ImageLoadError(Exception):
    """A file that cannot be turned into a photo to protect, and why.

    ``unsupported``: the data is in no image format this build reads (text, a PDF, HEIC without
    pillow-heif...), as opposed to an image that is damaged or refused (a service answers 415
    for the one and 422 for the other).
    """

    def __init__(self, path: Path | str | None, reason: str, unsupported: bool = False) -> None:
        self.path = path
        self.reason = reason
        self.unsupported = unsupported
        super().__init__(f"{path if path is not None else '<image>'}: {reason}")


@dataclass
class LoadedImage:
    """A decoded photo: upright sRGB pixels plus the source's metadata, not yet filtered.

    ``exif`` is raw EXIF (with Pillow's ``Exif\\0\\0`` prefix) whose orientation tag, if any,
    is 1 because the rotation was applied to the pixels.  ``iptc`` is the raw IPTC-NAA record
    (IIM datasets), from a JPEG's Photoshop segment or a TIFF's IPTC tag.
    ``other_metadata`` names metadata that is never written out (comments, PNG text, Photoshop
    resources), so that the writer can report it as removed.
    """

    path: Path | None
    rgb: np.ndarray
    alpha: np.ndarray | None = None
    icc_profile: bytes | None = None
    exif: bytes | None = None
    xmp: bytes | None = None
    iptc: bytes | None = None
    source_format: str = ""
    warnings: list[str] = field(default_factory=list)
    other_metadata: list[str] = field(default_factory=list)

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return self.rgb.shape[0], self.rgb.shape[1]


def load_image(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Decode the photo at ``path``; raises :class:`ImageLoadError` saying why it cannot."""
    path = Path(path)
    refuse_raw(path)
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused just below);
        # it changes nothing for regular files.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        with open(fd, "rb") as fp:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                raise IsADirectoryError
            if not stat.S_ISREG(st.st_mode):
                raise ImageLoadError(path, "not a regular file (a pipe, socket or device)")
            return _decode(fp, path, st.st_size, max_pixels)
    except FileNotFoundError:
        raise ImageLoadError(path, "file not found") from None
    except IsADirectoryError:
        raise ImageLoadError(path, "is a directory, not a file") from None
    except PermissionError:
        raise ImageLoadError(path, "permission denied") from None
    except OSError as e:  # I/O errors of the file itself; decode errors were mapped in _decode
        raise ImageLoadError(path, f"cannot read file: {e.strerror or e}") from None


def refuse_raw(path: Path) -> None:
    """Raise :class:`ImageLoadError` for a camera RAW file, named by its suffix: Pillow would
    open its embedded preview and silently protect that instead of the photo."""
    if path.suffix.lower() in RAW_SUFFIXES:
        raise ImageLoadError(
            path,
            f"camera RAW files ({path.suffix}) are not supported: "
            "export to JPEG, PNG or TIFF first",
            unsupported=True,
        )


def load_bytes(
    data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, name: str | None = None
) -> LoadedImage:
    """Decode an in-memory upload the same way as :func:`load_image` (``name`` for messages)."""
    return _decode(io.BytesIO(data), name, len(data), max_pixels)


def from_array(pixels: np.ndarray) -> LoadedImage:
    """Wrap pixels a library caller already has; they are taken to be sRGB.

    Accepted: uint8 with values 0..255, or float16/32/64 with every value in [0, 1]; shaped
    (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA (straight, not premultiplied, alpha).
    Anything else raises ``ValueError`` (``TypeError`` for a non-array).
    """
    if not isinstance(pixels, np.ndarray):
        raise TypeError(f"expected a numpy array, got {type(pixels).__name__}")
    if pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] not in (3, 4)):
        raise ValueError(f"expected shape (H, W), (H, W, 3) or (H, W, 4), got {pixels.shape}")
    if pixels.shape[0] == 0 or pixels.shape[1] == 0:
        raise ValueError(f"image has no pixels: shape {pixels.shape}")
    if pixels.dtype == np.uint8:
        data = pixels
    elif pixels.dtype in (np.float16, np.float32, np.float64):
        if not np.all(np.isfinite(pixels)) or pixels.min() < 0 or pixels.max() > 1:
            raise ValueError("float pixels must be finite and within [0, 1]")
        data = np.rint(pixels.astype(np.float64) * 255).astype(np.uint8)
    else:
        raise ValueError(f"expected uint8 or float pixels in [0, 1], got dtype {pixels.dtype}")
    if data.ndim == 2:
        data = data[:, :, None]
    rgb = np.repeat(data, 3, axis=2) if data.shape[2] == 1 else data[:, :, :3]
    alpha = _opaque_to_none(data[:, :, 3]) if data.shape[2] == 4 else None
    return LoadedImage(path=None, rgb=np.ascontiguousarray(rgb), alpha=alpha, source_format="array")


def describe_limit(max_pixels: int) -> str:
    """A pixel limit in megapixels, as messages show it."""
    return f"{max_pixels / 1e6:g} MP"


# --------------------------------------------------------------------------------- decoding


def _decode(fp: BinaryIO, path: Path | str | None, size: int, max_pixels: int) -> LoadedImage:
    if size == 0:
        raise ImageLoadError(path, "empty file (0 bytes)")
    _register_plugins()
    with _DECODE_LOCK, warnings.catch_warnings(record=True) as caught:
        # "always": repeated warnings must be reported for every file, not once per process.
        warnings.simplefilter("always")
        image = _decode_locked(fp, path, max_pixels)
    for w in caught:
        # Our own pixel limit replaces Pillow's bomb warning; an image past it never gets here.
        if not issubclass(w.category, Image.DecompressionBombWarning):
            image.warnings.append(f"Pillow: {w.message}")
    return image


def _decode_locked(fp: BinaryIO, path: Path | str | None, max_pixels: int) -> LoadedImage:
    try:
        im = Image.open(fp)
    except UnidentifiedImageError:
        fp.seek(0)
        head = fp.read(64)
        raise ImageLoadError(
            path, _unidentified_reason(head), unsupported=_signature(head) is None
        ) from None
    except Image.DecompressionBombError as e:
        # Above twice Pillow's process-wide PIL.Image.MAX_IMAGE_PIXELS: Pillow refuses on its own.
        raise ImageLoadError(
            path,
            f"refused as a possible decompression bomb ({e}); the limit is "
            f"{describe_limit(max_pixels)} (--max-pixels raises it; Pillow's own process-wide "
            "limit PIL.Image.MAX_IMAGE_PIXELS must then be raised too)",
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as e:
        raise ImageLoadError(path, f"corrupt image header: {e}") from None
    with im:
        fmt = im.format or "unknown"
        width, height = im.size
        if width * height > max_pixels:
            raise ImageLoadError(
                path,
                f"{width}x{height} = {describe_limit(width * height)} is over the limit of "
                f"{describe_limit(max_pixels)} (refused as a possible decompression bomb; "
                "--max-pixels raises the limit)",
            )
        notes: list[str] = []
        frames = getattr(im, "n_frames", 1)
        if frames > 1:
            notes.append(
                f"{fmt} file has {frames} frames/pages: only the first is protected and written"
            )
        try:
            # Read before load(): Pillow's TIFF loader applies and deletes the orientation itself.
            oriented = _ORIENTATION in im.getexif()
        except Exception:  # noqa: BLE001 - malformed EXIF is reported by _exif_bytes
            oriented = False
        try:
            im.load()
        except MemoryError:
            raise ImageLoadError(path, f"not enough memory to decode {width}x{height}") from None
        except (OSError, SyntaxError, ValueError, EOFError, struct.error) as e:
            if "truncated" in str(e):
                raise ImageLoadError(
                    path, f"truncated file: the image data ends early ({e})"
                ) from None
            raise ImageLoadError(path, f"corrupt or unsupported {fmt} data: {e}") from None
        try:
            # In place: a 12-MP copy costs more than the decode.  Pillow also removes the
            # orientation from the EXIF and XMP that it keeps in im.info.
            ImageOps.exif_transpose(im, in_place=True)
        except Exception as e:  # noqa: BLE001 - malformed EXIF must not lose the photo
            notes.append(f"EXIF orientation could not be applied ({e}); pixels kept as stored")
            oriented = False
        exif = _exif_bytes(im, oriented, notes)
        icc = im.info.get("icc_profile") or None
        xmp = im.info.get("xmp")
        try:
            rgb, alpha = _to_srgb(im, icc, notes)
        except ValueError as e:
            raise ImageLoadError(path, f"unsupported pixel mode {im.mode} ({e})") from None
        return LoadedImage(
            path=Path(path) if isinstance(path, Path) else None,
            rgb=rgb,
            alpha=alpha,
            icc_profile=icc,
            exif=exif,
            xmp=(xmp.encode("utf-8") if isinstance(xmp, str) else xmp) or None,
            iptc=_iptc_bytes(im),
            source_format=fmt,
            warnings=notes,
            other_metadata=_other_metadata(im),
        )


@functools.cache
def _register_plugins() -> None:
    """Add HEIC/HEIF decoding when pillow-heif is installed (it registers into Pillow globally)."""
    try:
        import pillow_heif
    except ImportError:
        return
    pillow_heif.register_heif_opener()


def _heif_available() -> bool:
    try:
        import pillow_heif  # noqa: F401
    except ImportError:
        return False
    return True


def _unidentified_reason(head: bytes) -> str:
    """Why Pillow could not identify a file, from its first bytes."""
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _AVIF_BRANDS:
            return (
                "AVIF image, but this Pillow was built without AVIF support "
                "(upgrade Pillow: pip install -U pillow)"
            )
        if brand in _HEIF_BRANDS:
            if not _heif_available():
                return (
                    "HEIC/HEIF image: decoding it needs the pillow-heif package "
                    "(pip install pillow-heif)"
                )
            return "HEIC/HEIF image that pillow-heif cannot decode"
        return f"unsupported ISO media file (brand {brand.decode('latin-1')!r}), not a still image"
    name = _signature(head)
    if name:
        return f"corrupt {name} file: it starts like one but its header is damaged"
    if head.startswith(b"\xff\x0a") or head.startswith(b"\x00\x00\x00\x0cJXL "):
        return "JPEG XL images are not supported: convert to JPEG or PNG first"
    if head.startswith(b"%PDF"):
        return "a PDF document, not an image"
    stripped = head.lstrip()
    if stripped.startswith((b"<svg", b"<?xml")):
        return "a vector (SVG/XML) file, not a photo"
    if _looks_like_text(head):
        return "not an image: the file contains text"
    return "not an image, or an image format that cannot be read"


def _signature(head: bytes) -> str | None:
    """The format that a file's first bytes announce, among those Pillow reads."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return next((name for magic, name in _MAGIC if head.startswith(magic)), None)


def _looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c in "\r\n\t" for c in text)


# ------------------------------------------------------------------------------ pixel modes


def _to_srgb(
    im: Image.Image, icc: bytes | None, notes: list[str]
) -> tuple[np.ndarray, np.ndarray | None]:
    """(H, W, 3) uint8 sRGB and (H, W) uint8 alpha (None when absent or fully opaque)."""
    colour, alpha = _split_8bit(im, notes)
    if icc is not None:
        converted = _apply_icc(colour, icc, notes)
        if converted is not None:
            return np.array(converted), alpha
    return np.array(colour if colour.mode == "RGB" else colour.convert("RGB")), alpha


def _split_8bit(im: Image.Image, notes: list[str]) -> tuple[Image.Image, np.ndarray | None]:
    """The colour part in an 8-bit mode (L, RGB or CMYK) and the alpha channel."""
    mode = im.mode
    if mode.startswith("I") or mode == "F":
        return _deep_to_l(im, notes)
    if mode == "1":
        return im.convert("L"), None
    if mode in ("LA", "La", "PA", "RGBA", "RGBa") or "transparency" in im.info:
        # P/L/RGB with a transparent colour or palette alpha become real alpha here; Pillow
        # warns when a palette image with transparency is converted straight to RGB.
        rgba = im.convert("RGBA")
        colour = rgba.convert("L") if mode in ("L", "LA", "La") else rgba.convert("RGB")
        return colour, _opaque_to_none(np.array(rgba.getchannel("A")))
    if mode in ("L", "RGB", "CMYK"):
        return im, None  # kept as they are, so that an embedded profile can describe them
    return im.convert("RGB"), None  # P, RGBX, YCbCr, LAB, HSV; ValueError for unknown modes


def _deep_to_l(im: Image.Image, notes: list[str]) -> tuple[Image.Image, np.ndarray | None]:
    """16/32-bit integer and float greyscale to 8 bits by scaling, never by clipping at 255.

    Integer modes (I;16*, I) are read as 16-bit, 0..65535 -> 0..255 with rounding; float (F)
    as 0..1 when all values lie there, else as 0..255 (Pillow's own convention).
    """
    values = np.asarray(im)
    alpha = None
    if im.mode == "F":
        data = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=1.0, neginf=0.0)
        if data.min() >= 0 and data.max() <= 1:
            data = data * 255
        elif data.min() < 0 or data.max() > 255:
            notes.append("float pixels outside 0..255 were clipped")
        grey = np.rint(np.clip(data, 0, 255)).astype(np.uint8)
    else:
        data = values.astype(np.int64)
        if data.min() < 0 or data.max() > 65535:
            notes.append(f"{im.mode} pixels outside 0..65535 were clipped")
            data = np.clip(data, 0, 65535)
        transparent = im.info.get("transparency")
        if isinstance(transparent, int):  # a 16-bit PNG's tRNS grey value
            alpha = _opaque_to_none(np.where(data == transparent, 0, 255).astype(np.uint8))
        grey = ((data * 255 + 32767) // 65535).astype(np.uint8)
    return Image.fromarray(grey, "L"), alpha


def _opaque_to_none(alpha: np.ndarray) -> np.ndarray | None:
    """Fully opaque alpha carries no information; dropping it keeps the output plain RGB."""
    return None if bool(np.all(alpha == 255)) else np.ascontiguousarray(alpha, dtype=np.uint8)


# -------------------------------------------------------------------------------- colour


@functools.cache
def _srgb() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


# The date in the ICC header of the sRGB profile written with outputs (lcms stamps the time the
# profile was made): fixed, so that the same photo and options give the same bytes in any run.
ICC_DATE = (2000, 1, 1, 0, 0, 0)


@functools.cache
def srgb_profile_bytes() -> bytes:
    """The ICC profile that describes every LoadedImage's pixels, dated :data:`ICC_DATE`."""
    data = bytearray(_srgb().tobytes())
    data[24:36] = struct.pack(">6H", *ICC_DATE)
    if any(data[84:100]):
        # A profile ID: the MD5 of the profile with its flags, intent and ID fields zeroed.
        probe = bytearray(data)
        probe[44:48], probe[64:68], probe[84:100] = bytes(4), bytes(4), bytes(16)
        data[84:100] = hashlib.md5(probe).digest()
    return bytes(data)


_ICC_SPACE = {"RGB": "RGB", "L": "GRAY", "CMYK": "CMYK"}


def _apply_icc(colour: Image.Image, icc: bytes, notes: list[str]) -> Image.Image | None:
    """Convert through the embedded profile to sRGB; None when no conversion is needed/possible."""
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        description = ImageCms.getProfileDescription(profile).strip()
        space = profile.profile.xcolor_space.strip()
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError) as e:
        notes.append(f"embedded ICC profile is unreadable ({e}); colours taken as sRGB")
        return None
    if space == "RGB" and "sRGB" in description:
        return None  # already sRGB: converting would only add rounding
    if _ICC_SPACE.get(colour.mode) != space:
        notes.append(
            f"embedded ICC profile {description!r} is for {space}, "
            f"not {colour.mode} pixels; ignored"
        )
        return None
    try:
        return ImageCms.profileToProfile(colour, profile, _srgb(), outputMode="RGB")
    except ImageCms.PyCMSError as e:
        notes.append(f"colour conversion from {description!r} failed ({e}); colours taken as sRGB")
        return None


# ------------------------------------------------------------------------------ metadata


def _exif_bytes(im: Image.Image, oriented: bool, notes: list[str]) -> bytes | None:
    """The source's EXIF, orientation (if it had one) set to 1, TIFF pixel-layout tags removed."""
    try:
        exif = im.getexif()
        for ifd in (0x8769, 0x8825):  # load sub-IFDs now, while the file is still open
            exif.get_ifd(ifd)
        for tag in _STRUCTURE_TAGS & set(exif):
            del exif[tag]
        if not exif:
            return None
        if oriented:
            exif[_ORIENTATION] = 1  # the rotation now lives in the pixels
        return exif.tobytes()
    except Exception as e:  # noqa: BLE001 - malformed EXIF is common and must not lose the photo
        notes.append(f"EXIF is unreadable and was dropped ({e})")
        return None


def _iptc_bytes(im: Image.Image) -> bytes | None:
    """The raw IPTC-NAA record of a JPEG (Photoshop APP13) or TIFF (tag 33723, as bytes)."""
    photoshop = im.info.get("photoshop")
    if isinstance(photoshop, dict) and photoshop.get(_IPTC_RESOURCE):
        return bytes(photoshop[_IPTC_RESOURCE])
    value = getattr(im, "tag_v2", {}).get(_IPTC_TIFF_TAG)
    # Photoshop often types it as LONGs, which Pillow reads back as one number: unrecoverable
    # (_other_metadata reports it).
    return value if isinstance(value, bytes) and value else None


def _other_metadata(im: Image.Image) -> list[str]:
    """Names of metadata the writer never carries over, for its report."""
    found = []
    try:
        if im.getexif().get_ifd(ExifTags.IFD.IFD1):
            found.append("EXIF thumbnail (an unprotected copy of the photo)")
    except Exception:  # noqa: BLE001 - unreadable EXIF was already reported and dropped
        pass
    if _IPTC_TIFF_TAG in getattr(im, "tag_v2", {}) and _iptc_bytes(im) is None:
        found.append("IPTC (stored in a TIFF form that cannot be read back)")
    if im.info.get("comment"):
        found.append(f"{im.format} comment")
    photoshop = im.info.get("photoshop")
    if isinstance(photoshop, dict) and set(photoshop) - {_IPTC_RESOURCE}:
        found.append("Photoshop resources (may include a thumbnail)")
    text = getattr(im, "text", None) if im.format == "PNG" else None
    for key in sorted(text or {}):
        if key not in ("XML:com.adobe.xmp", "Raw profile type exif"):  # carried as XMP/EXIF
            found.append(f"PNG text {key!r}")
    return found
