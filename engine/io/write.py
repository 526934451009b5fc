"""Writing protected photos: pixels as judged, privacy-safe metadata, never a partial file."""

from __future__ import annotations

import io
import os
import re
import secrets
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, PngImagePlugin

from . import jpeg
from .load import LoadedImage, srgb_profile_bytes

OutputFormat = Literal["jpeg", "png"]

_GPS_IFD = 0x8825
_EXIF_IFD = 0x8769
# Tags that identify a camera, lens or person, named in the removal report.
_IDENTIFYING = {
    0xA431: "BodySerialNumber",
    0xA435: "LensSerialNumber",
    0xC62F: "CameraSerialNumber",
    0xA430: "CameraOwnerName",
    0x013B: "Artist",
    0xA420: "ImageUniqueID",
    0x927C: "MakerNote",
}
# JPEG marker payloads are at most 65533 bytes (Pillow raises above it).
_MAX_JPEG_EXIF = 65533
_MAX_JPEG_XMP = 65533 - 29  # minus the XMP namespace header
# minus "Photoshop 3.0\0", the 8BIM resource header and a padding byte
_MAX_JPEG_APP13 = 65533 - 14 - 12 - 1
# Any GPS mention (exif:GPSLatitude, Iptc4xmpExt location...): dropping an XMP packet that
# merely mentions GPS costs little, keeping coordinates in one would defeat the default.
_XMP_GPS = re.compile(rb"GPS")
_XMP_THUMBNAIL = re.compile(rb"GImg:image")  # xmpGImg / xapGImg: a base64 JPEG preview
_TEMP_NAME = re.compile(r"^\..+\.\d+\.[0-9a-f]{8}\.tmp$")


@dataclass(frozen=True)
class MetadataPolicy:
    """What metadata survives into the output.

    Default: none of EXIF, XMP or IPTC (GPS, serial numbers, owner names, dates...).  ``keep``
    keeps them except GPS; ``keep_gps`` keeps GPS too.  Some metadata is never kept: the EXIF
    thumbnail and any XMP preview (unprotected copies of the photo) and what
    ``LoadedImage.other_metadata`` lists.
    """

    keep: bool = False
    keep_gps: bool = False

    def __post_init__(self) -> None:
        if self.keep_gps and not self.keep:
            # Keeping GPS alone would keep the most sensitive field and drop the harmless rest.
            raise ValueError("keep_gps requires keep (keeping location implies keeping metadata)")


def pixels_to_protect(image: LoadedImage, fmt: OutputFormat) -> np.ndarray:
    """The (H, W, 3) uint8 pixels to attack for an output in ``fmt``.

    JPEG has no alpha, so a transparent photo is flattened onto white *before* the attack:
    the judged pixels and the written pixels are then the same.  PNG keeps the colour as is and
    carries the alpha channel beside it.
    """
    if image.alpha is None or fmt == "png":
        return image.rgb
    a = image.alpha.astype(np.uint32)[:, :, None]
    # straight alpha over white: c*a + 255*(1-a), in integers with rounding
    return ((image.rgb.astype(np.uint32) * a + 255 * (255 - a) + 127) // 255).astype(np.uint8)


def encode_output(
    image: LoadedImage, rgb: np.ndarray, fmt: OutputFormat, quality: int, policy: MetadataPolicy
) -> tuple[bytes, list[str]]:
    """The output file's bytes and a human-readable list of metadata that was left out.

    ``rgb`` is the attacked version of :func:`pixels_to_protect` and is written unchanged:
    JPEG through :func:`camo_engine.io.jpeg.encode` at ``quality`` (so the file decodes to exactly
    what was judged), PNG as RGB, or RGBA when the source had alpha (``quality`` unused).
    Orientation is already in the pixels.  When the source carried an ICC profile, the output
    carries sRGB's: the loader converted the pixels to sRGB, so the original profile would make
    viewers shift the colours a second time.
    """
    if fmt not in ("jpeg", "png"):
        raise ValueError(f"output format must be 'jpeg' or 'png', got {fmt!r}")
    if rgb.dtype != np.uint8 or rgb.shape != image.rgb.shape:
        raise ValueError(
            f"expected uint8 pixels of shape {image.rgb.shape}, got {rgb.dtype} {rgb.shape}"
        )
    exif, xmp, iptc, removed = _select_metadata(image, fmt, policy)
    icc = srgb_profile_bytes() if image.icc_profile else None
    if fmt == "jpeg":
        meta = {k: v for k, v in (("exif", exif), ("xmp", xmp), ("icc_profile", icc)) if v}
        data = jpeg.encode(np.ascontiguousarray(rgb), quality, **meta)
        return (_insert_iptc(data, iptc) if iptc else data), removed
    return _encode_png(rgb, image.alpha, exif, xmp, icc), removed


def _encode_png(
    rgb: np.ndarray,
    alpha: np.ndarray | None,
    exif: bytes | None,
    xmp: bytes | None,
    icc: bytes | None,
) -> bytes:
    pixels = rgb if alpha is None else np.dstack([rgb, alpha])
    info = PngImagePlugin.PngInfo()
    if xmp:
        info.add_itxt("XML:com.adobe.xmp", xmp.decode("utf-8", "replace"))
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels), "RGB" if alpha is None else "RGBA").save(
        buf,
        format="PNG",
        # Photos barely compress losslessly: level 3 is much faster than Pillow's default 6 for
        # slightly larger files (benchmarks/NOTES.md, "PNG compression level").
        compress_level=3,
        pnginfo=info,
        **{k: v for k, v in (("exif", exif), ("icc_profile", icc)) if v},
    )
    return buf.getvalue()


def _select_metadata(
    image: LoadedImage, fmt: OutputFormat, policy: MetadataPolicy
) -> tuple[bytes | None, bytes | None, bytes | None, list[str]]:
    """(exif, xmp, iptc) to write, and what was removed."""
    removed: list[str] = []
    exif = _filter_exif(image.exif, policy, removed) if image.exif else None
    xmp = image.xmp
    if xmp and not policy.keep:
        removed.append("XMP")
        xmp = None
    elif xmp and not policy.keep_gps and _XMP_GPS.search(xmp):
        removed.append("XMP (it contained GPS location)")
        xmp = None
    elif xmp and _XMP_THUMBNAIL.search(xmp):
        removed.append("XMP (it contained an unprotected preview image)")
        xmp = None
    iptc = image.iptc
    if iptc and not policy.keep:
        removed.append("IPTC")
        iptc = None
    elif iptc and fmt == "png":
        removed.append("IPTC (PNG output cannot carry it)")
        iptc = None
    if fmt == "jpeg":
        for name, value, limit in (
            ("EXIF", exif, _MAX_JPEG_EXIF),
            ("XMP", xmp, _MAX_JPEG_XMP),
            ("IPTC", iptc, _MAX_JPEG_APP13),
        ):
            if value and len(value) > limit:
                removed.append(f"{name} (too large for a JPEG segment)")
        exif = exif if exif and len(exif) <= _MAX_JPEG_EXIF else None
        xmp = xmp if xmp and len(xmp) <= _MAX_JPEG_XMP else None
        iptc = iptc if iptc and len(iptc) <= _MAX_JPEG_APP13 else None
    removed.extend(image.other_metadata)
    return exif, xmp, iptc, removed


def _filter_exif(raw: bytes, policy: MetadataPolicy, removed: list[str]) -> bytes | None:
    exif = Image.Exif()
    exif.load(raw)
    gps = exif.get_ifd(_GPS_IFD)
    sub = exif.get_ifd(_EXIF_IFD)
    if gps and not policy.keep_gps:  # keep_gps implies keep
        removed.append("EXIF GPS")
    if not policy.keep:
        named = [name for tag, name in _IDENTIFYING.items() if tag in exif or tag in sub]
        removed.extend(f"EXIF {name}" for name in named)
        pointers = {_GPS_IFD, _EXIF_IFD}
        others = len(set(exif) - pointers) + len(sub) - len(named)
        if others > 0:
            removed.append(f"EXIF ({others} other tags: camera, lens, settings, dates)")
        return None
    if gps and not policy.keep_gps:
        del exif[_GPS_IFD]
    return exif.tobytes()


def _insert_iptc(data: bytes, iptc: bytes) -> bytes:
    """Add an APP13 Photoshop segment holding ``iptc`` after the JPEG's leading APP segments.

    Pillow's JPEG writer has no IPTC option.  Metadata segments do not touch the entropy-coded
    data, so the decoded pixels are unchanged.
    """
    pad = b"\0" if len(iptc) % 2 else b""
    resource = (
        b"8BIM" + struct.pack(">H", 0x0404) + b"\0\0" + struct.pack(">I", len(iptc)) + iptc + pad
    )
    payload = b"Photoshop 3.0\0" + resource
    segment = b"\xff\xed" + struct.pack(">H", len(payload) + 2) + payload
    pos = 2  # after SOI
    while data[pos] == 0xFF and 0xE0 <= data[pos + 1] <= 0xEF:  # APP0..APP15 (JFIF, EXIF, ICC)
        pos += 2 + struct.unpack(">H", data[pos + 2 : pos + 4])[0]
    return data[:pos] + segment + data[pos:]


def is_temp_file(path: Path) -> bool:
    """Whether ``path`` is one of :func:`atomic_write`'s temporary files (e.g. left by a kill)."""
    return bool(_TEMP_NAME.match(path.name))


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` is only ever absent, old or complete.

    The bytes go to a hidden temporary file beside ``path`` (same filesystem, so the rename is
    atomic), are flushed to disk, then renamed over ``path``; the folder is synced so the rename
    survives a crash.  Missing parent folders are created.  On any error the temporary file
    is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # name[:200]: the suffix must not push a long name past the 255-byte limit of most disks
    temp = path.with_name(f".{path.name[:200]}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    # O_EXCL: never write through a file or symlink someone else created with this name.
    # Mode 0o666 lets the umask decide, as for any file the user saves (mkstemp would give 0o600).
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open folders; the rename is still atomic there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a folder; nothing more can be done
    finally:
        os.close(fd)
