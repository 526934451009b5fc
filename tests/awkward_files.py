"""A corpus of awkward and broken photo files, made from real sample photos, for I/O tests.

``build_corpus(folder)`` writes every file and returns, per kind, what loading it must give:
pixels to compare with (within a tolerance), or the words an ``ImageLoadError`` must contain.
Other tests (CLI batches, kill-during-write) reuse it: import it as ``from awkward_files
import build_corpus`` with ``tests`` on pytest's ``pythonpath``.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, ImageCms, features
from skimage import data

# Strings planted in the private photo's metadata, to search output bytes for.
SERIAL = "SN-CAMO-123456"
LENS_SERIAL = "LENS-98765"
OWNER = "Jane Q. Photographer"
XMP_CREATOR = "Jane Doe XMP"
IPTC_BYLINE = b"Jane Doe IPTC"


# Every kind build_corpus makes; the optional ones only where this machine can encode them.
KINDS = (
    "jpeg",
    "jpeg_progressive",
    "jpeg_grey",
    "png",
    "bmp",
    "webp",
    "photo_1x1",
    "photo_12mp",
    "jpeg_orient6",
    "jpeg_orient3",
    "png_grey",
    "png_1bit",
    "png_rgba",
    "png_la",
    "png_palette",
    "png_palette_transparency",
    "png_rgb_transparent_colour",
    "png_16bit_grey",
    "png_16bit_rgb",
    "tiff_16bit_grey",
    "tiff_16bit_grey_bigendian",
    "tiff_16bit_rgb",
    "tiff_float",
    "tiff_int32",
    "jpeg_cmyk",
    "png_icc_wide_gamut",
    "png_icc_grey",
    "jpeg_icc_srgb",
    "jpeg_icc_garbage",
    "gif_animated",
    "tiff_multipage",
    "mpo",
    "webp_alpha",
    "heic",
    "avif",
    "jpeg_private",
    "zero_bytes",
    "truncated_jpeg",
    "truncated_png",
    "text_as_jpeg",
    "random_bytes",
    "png_bad_crc",
    "bomb_huge",
    "bomb_moderate",
    "raw_dng",
)
OPTIONAL_KINDS = frozenset({"heic", "avif"})


@dataclass(frozen=True)
class Expected:
    """What loading ``path`` must give.

    ``ok`` files load to ``shape`` (H, W); ``reference`` is the expected RGB and ``tolerance``
    the largest mean absolute difference allowed (lossy formats); ``reference_alpha`` the
    expected alpha, None meaning "no alpha".  Failing files raise an ImageLoadError whose
    reason contains ``reason`` (case-insensitive).  ``warning`` must appear in a warning.
    ``metadata`` names what the file carries: gps, serial, xmp, iptc, icc, thumbnail, comment.
    """

    path: Path
    ok: bool
    shape: tuple[int, int] | None = None
    reference: np.ndarray | None = None
    tolerance: float = 0.0
    reference_alpha: np.ndarray | None = None
    reason: str = ""
    warning: str = ""
    metadata: frozenset[str] = frozenset()


def heif_available() -> bool:
    try:
        import pillow_heif  # noqa: F401
    except ImportError:
        return False
    return True


def build_corpus(folder: Path) -> dict[str, Expected]:
    """Write the corpus into ``folder`` (which must exist) and return its expectations."""
    folder = Path(folder)
    astronaut = data.astronaut()  # 512x512 RGB
    coffee = data.coffee()  # 400x600 RGB
    cat = data.chelsea()  # 300x451 RGB
    grey = data.camera()  # 512x512 L
    portrait = np.ascontiguousarray(astronaut[:, 64:448])  # 512x384: rotations change its shape
    c: dict[str, Expected] = {}

    def put(name: str, payload: bytes) -> Path:
        path = folder / name
        path.write_bytes(payload)
        return path

    def ok(
        kind: str,
        path: Path,
        ref: np.ndarray,
        tol: float = 0.0,
        alpha: np.ndarray | None = None,
        **kw,
    ) -> None:
        c[kind] = Expected(path, True, ref.shape[:2], ref, tol, alpha, **kw)

    def fail(kind: str, path: Path, reason: str) -> None:
        c[kind] = Expected(path, False, reason=reason)

    # --- everyday files
    ok("jpeg", put("coffee.jpg", _save(coffee, "JPEG", quality=95)), coffee, 3)
    ok(
        "jpeg_progressive",
        put("progressive.jpg", _save(coffee, "JPEG", quality=95, progressive=True)),
        coffee,
        3,
    )
    ok("jpeg_grey", put("grey.jpg", _save(grey, "JPEG", quality=95)), _rgb(grey), 3)
    ok("png", put("astronaut.png", _save(astronaut, "PNG")), astronaut)
    ok("bmp", put("cat.bmp", _save(cat, "BMP")), cat)
    ok("webp", put("coffee.webp", _save(coffee, "WEBP", quality=90)), coffee, 4)
    ok("photo_1x1", put("one_pixel.png", _save(astronaut[:1, :1], "PNG")), astronaut[:1, :1])
    big = np.array(Image.fromarray(coffee).resize((4000, 3000), Image.Resampling.BICUBIC))
    ok("photo_12mp", put("twelve_megapixels.jpg", _save(big, "JPEG", quality=90)), big, 3)

    # --- EXIF orientation: stored sideways/upside down, displayed upright
    ok(
        "jpeg_orient6",
        put("orient6.jpg", _save(portrait, "JPEG", quality=95, exif=_orientation(6))),
        np.rot90(portrait, k=-1),
        3,
    )  # 6: rotate 90 degrees clockwise to display
    ok(
        "jpeg_orient3",
        put("orient3.jpg", _save(portrait, "JPEG", quality=95, exif=_orientation(3))),
        portrait[::-1, ::-1],
        3,
    )

    # --- pixel modes
    ok("png_grey", put("grey.png", _save(grey, "PNG")), _rgb(grey))
    bw = grey > 128
    ok(
        "png_1bit",
        put("bilevel.png", _save_image(Image.fromarray(bw), "PNG")),
        _rgb(bw.astype(np.uint8) * 255),
    )
    ramp = _alpha_ramp(*astronaut.shape[:2])
    ok(
        "png_rgba",
        put("rgba.png", _save(np.dstack([astronaut, ramp]), "PNG")),
        astronaut,
        alpha=ramp,
    )
    ok(
        "png_la",
        put("grey_alpha.png", _save_image(Image.fromarray(np.dstack([grey, ramp]), "LA"), "PNG")),
        _rgb(grey),
        alpha=ramp,
    )
    pal = Image.fromarray(cat).quantize(64, Image.Quantize.FASTOCTREE)
    ok("png_palette", put("palette.png", _save_image(pal, "PNG")), np.array(pal.convert("RGB")))
    pal_t = pal.copy()
    pal_t.info["transparency"] = 0
    ok(
        "png_palette_transparency",
        put("palette_transparent.png", _save_image(pal_t, "PNG", transparency=0)),
        np.array(pal.convert("RGB")),
        alpha=np.where(np.array(pal) == 0, 0, 255).astype(np.uint8),
    )
    key = tuple(int(v) for v in cat[0, 0])
    ok(
        "png_rgb_transparent_colour",
        put("rgb_trns.png", _save(cat, "PNG", transparency=key)),
        cat,
        alpha=np.where(np.all(cat == key, axis=2), 0, 255).astype(np.uint8),
    )
    ok("png_16bit_grey", put("grey16.png", _png(grey.astype(np.uint16) * 257, 16, 0)), _rgb(grey))
    ok("png_16bit_rgb", put("rgb16.png", _png(astronaut.astype(np.uint16) * 257, 16, 2)), astronaut)
    ok(
        "tiff_16bit_grey",
        put("grey16.tif", _save_image(Image.fromarray(grey.astype(np.uint16) * 257), "TIFF")),
        _rgb(grey),
    )
    ok(
        "tiff_16bit_grey_bigendian",
        put("grey16be.tif", _tiff((grey.astype(np.uint16) * 257).astype(">u2"))),
        _rgb(grey),
    )
    ok(
        "tiff_16bit_rgb",
        put("rgb16.tif", _tiff(coffee.astype(np.uint16) * 257, photometric="rgb")),
        coffee,
    )
    ok("tiff_float", put("float.tif", _tiff(grey.astype(np.float32) / 255)), _rgb(grey))
    ok("tiff_int32", put("int32.tif", _tiff(grey.astype(np.int32) * 257)), _rgb(grey))
    ok(
        "jpeg_cmyk",
        put("cmyk.jpg", _save_image(Image.fromarray(coffee).convert("CMYK"), "JPEG", quality=95)),
        coffee,
        4,
    )

    # --- colour profiles
    wide = _matrix_profile("Wide gamut test (Adobe RGB primaries)", _ADOBE_PRIMARIES, 563 / 256)
    ok(
        "png_icc_wide_gamut",
        put("wide_gamut.png", _save(cat, "PNG", icc_profile=wide)),
        _adobe_to_srgb(cat),
        1.0,
        metadata=frozenset({"icc"}),
    )
    gamma18 = _grey_profile("Grey gamma 1.8", 461 / 256)
    ok(
        "png_icc_grey",
        put("grey_gamma18.png", _save(grey, "PNG", icc_profile=gamma18)),
        _rgb(_grey_to_srgb(grey, 461 / 256)),
        1.0,
        metadata=frozenset({"icc"}),
    )
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    ok(
        "jpeg_icc_srgb",
        put("srgb_profile.jpg", _save(coffee, "JPEG", quality=95, icc_profile=srgb)),
        coffee,
        3,
        metadata=frozenset({"icc"}),
    )
    ok(
        "jpeg_icc_garbage",
        put(
            "bad_profile.jpg", _save(coffee, "JPEG", quality=95, icc_profile=b"not a profile" * 10)
        ),
        coffee,
        3,
        warning="icc",
        metadata=frozenset({"icc"}),
    )

    # --- several frames: only the first is protected
    frames = [
        Image.fromarray(im).quantize(32, Image.Quantize.FASTOCTREE) for im in (cat, cat[::-1])
    ]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    ok(
        "gif_animated",
        put("animated.gif", buf.getvalue()),
        np.array(frames[0].convert("RGB")),
        warning="frames",
    )
    buf = io.BytesIO()
    Image.fromarray(coffee).save(
        buf, "TIFF", save_all=True, append_images=[Image.fromarray(coffee[::-1])]
    )
    ok("tiff_multipage", put("two_pages.tif", buf.getvalue()), coffee, warning="frames")
    buf = io.BytesIO()
    Image.fromarray(coffee).save(
        buf, "MPO", quality=95, save_all=True, append_images=[Image.fromarray(coffee[::-1])]
    )
    ok("mpo", put("stereo.mpo.jpg", buf.getvalue()), coffee, 3, warning="frames")
    ok(
        "webp_alpha",
        put("alpha.webp", _save(np.dstack([astronaut, ramp]), "WEBP", lossless=True, exact=True)),
        astronaut,
        alpha=ramp,
    )

    # --- newer camera formats (only when this machine can encode them; small: encoding is slow)
    small = np.ascontiguousarray(astronaut[::2, ::2])
    if heif_available():
        import pillow_heif

        pillow_heif.register_heif_opener()
        ok("heic", put("phone.heic", _save(small, "HEIF", quality=90)), small, 5)
    if features.check("avif"):
        ok("avif", put("modern.avif", _save(small, "AVIF", quality=90)), small, 5)

    # --- privacy: GPS, serial numbers, owner, thumbnail, XMP with GPS, IPTC, comment
    ok(
        "jpeg_private",
        put("private.jpg", _private_jpeg(cat)),
        cat,
        3,
        metadata=frozenset({"gps", "serial", "xmp", "iptc", "thumbnail", "comment"}),
    )

    # --- bad files
    fail("zero_bytes", put("empty.jpg", b""), "empty")
    whole = _save(coffee, "JPEG", quality=90)
    fail("truncated_jpeg", put("truncated.jpg", whole[: len(whole) * 2 // 3]), "truncated")
    fail("truncated_png", put("truncated.png", _save(coffee, "PNG")[:5000]), "truncated")
    fail(
        "text_as_jpeg",
        put("notes.jpg", b"Holiday 2024: remember to back up the photos.\n" * 20),
        "not an image",
    )
    fail("random_bytes", put("noise.png", np.random.default_rng(0).bytes(4096)), "not an image")
    fail("png_bad_crc", put("bad_crc.png", _corrupt_crc(_save(coffee, "PNG"))), "corrupt")
    fail("bomb_huge", put("bomb.png", _png_header_only(30000, 30000)), "--max-pixels")
    fail("bomb_moderate", put("bomb_120mp.png", _png_header_only(12000, 10000)), "--max-pixels")
    fail("raw_dng", put("camera.dng", _save(coffee, "TIFF")), "raw")
    return c


# ------------------------------------------------------------------------------- encoders


def _rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey[:, :, None], 3, axis=2)


def _save(pixels: np.ndarray, fmt: str, **params: object) -> bytes:
    return _save_image(Image.fromarray(np.ascontiguousarray(pixels)), fmt, **params)


def _save_image(im: Image.Image, fmt: str, **params: object) -> bytes:
    if fmt == "PNG":
        params.setdefault("compress_level", 1)  # the corpus is rebuilt per test session
    buf = io.BytesIO()
    im.save(buf, format=fmt, **params)
    return buf.getvalue()


def _tiff(pixels: np.ndarray, **params: object) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, pixels, **params)
    return buf.getvalue()


def _alpha_ramp(height: int, width: int) -> np.ndarray:
    """0 (transparent) on the left to 255 (opaque) on the right, with pure 0 and 255 columns."""
    return np.tile(np.linspace(0, 255, width).round().astype(np.uint8), (height, 1))


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload))
    )


def _png(pixels: np.ndarray, bit_depth: int, colour_type: int) -> bytes:
    """A PNG written by hand: Pillow cannot save 16-bit colour PNGs."""
    height, width = pixels.shape[:2]
    rows = pixels.astype(">u2" if bit_depth == 16 else np.uint8).reshape(height, -1)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(raw))
        + _chunk(b"IEND", b"")
    )


def _png_header_only(width: int, height: int) -> bytes:
    """A few dozen bytes claiming a huge image: what a decompression bomb looks like to open()."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _chunk(b"IEND", b"")
    )


def _corrupt_crc(png: bytes) -> bytes:
    """Flip the IHDR checksum."""
    crc_at = 8 + 8 + 13
    return png[:crc_at] + bytes(b ^ 0xFF for b in png[crc_at : crc_at + 4]) + png[crc_at + 4 :]


def _orientation(value: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = value
    exif[0x010F] = "Camo Test Camera"
    return exif.tobytes()


# ------------------------------------------------------------------------- colour profiles

# Adobe RGB (1998) primaries adapted to D50, as ICC profiles store them (columns: R, G, B).
_ADOBE_PRIMARIES = ((0.6097, 0.3111, 0.0195), (0.2053, 0.6257, 0.0609), (0.1492, 0.0632, 0.7446))
_SRGB_D50 = np.array([[0.4361, 0.3851, 0.1431], [0.2225, 0.7169, 0.0606], [0.0139, 0.0971, 0.7141]])
_D50 = (0.9642, 1.0, 0.8249)


def _s15(x: float) -> bytes:
    return struct.pack(">i", round(x * 65536))


def _xyz(x: float, y: float, z: float) -> bytes:
    return b"XYZ \0\0\0\0" + _s15(x) + _s15(y) + _s15(z)


def _curve(gamma: float) -> bytes:
    return b"curv\0\0\0\0" + struct.pack(">IH", 1, round(gamma * 256)) + b"\0\0"


def _description(text: str) -> bytes:
    ascii_ = text.encode() + b"\0"
    return b"desc\0\0\0\0" + struct.pack(">I", len(ascii_)) + ascii_ + b"\0" * (8 + 3 + 67)


def _icc(space: bytes, tags: list[tuple[bytes, bytes]]) -> bytes:
    """A minimal ICC v2 display profile: LittleCMS accepts it; Pillow cannot make one."""
    start = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for signature, payload in tags:
        body += b"\0" * (-(start + len(body)) % 4)
        table += signature + struct.pack(">II", start + len(body), len(payload))
        body += payload
    header = (
        struct.pack(">I", start + len(body))
        + b"lcms"
        + struct.pack(">I", 0x02100000)
        + b"mntr"
        + space
        + b"XYZ "
        + struct.pack(">6H", 2024, 1, 1, 0, 0, 0)
        + b"acsp"
        + b"\0" * 24
        + struct.pack(">I", 0)
        + _s15(_D50[0])
        + _s15(_D50[1])
        + _s15(_D50[2])
        + b"\0" * 48
    )
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + body


def _matrix_profile(name: str, primaries: tuple, gamma: float) -> bytes:
    r, g, b = primaries
    return _icc(
        b"RGB ",
        [
            (b"desc", _description(name)),
            (b"wtpt", _xyz(*_D50)),
            (b"rXYZ", _xyz(*r)),
            (b"gXYZ", _xyz(*g)),
            (b"bXYZ", _xyz(*b)),
            (b"rTRC", _curve(gamma)),
            (b"gTRC", _curve(gamma)),
            (b"bTRC", _curve(gamma)),
        ],
    )


def _grey_profile(name: str, gamma: float) -> bytes:
    return _icc(
        b"GRAY", [(b"desc", _description(name)), (b"wtpt", _xyz(*_D50)), (b"kTRC", _curve(gamma))]
    )


def _srgb_encode(linear: np.ndarray) -> np.ndarray:
    linear = np.clip(linear, 0, 1)
    encoded = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)
    return np.rint(encoded * 255).astype(np.uint8)


def _adobe_to_srgb(rgb: np.ndarray) -> np.ndarray:
    """Independent arithmetic for what a colour-managed viewer shows: matrices, no LittleCMS."""
    to_xyz = np.array(_ADOBE_PRIMARIES).T
    linear = (rgb / 255.0) ** (563 / 256)
    return _srgb_encode(linear @ to_xyz.T @ np.linalg.inv(_SRGB_D50).T)


def _grey_to_srgb(grey: np.ndarray, gamma: float) -> np.ndarray:
    return _srgb_encode((grey / 255.0) ** gamma)


# ------------------------------------------------------------------------ private metadata


def _private_jpeg(pixels: np.ndarray) -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "Camo Test Camera"
    exif[0x0110] = "Model X"
    exif[0x013B] = OWNER  # Artist
    exif[0x8769] = {
        0xA431: SERIAL,
        0xA435: LENS_SERIAL,
        0xA430: OWNER,
        0x9003: "2024:05:06 07:08:09",
    }
    exif[0x8825] = {1: "N", 2: (52.0, 22.0, 30.0), 3: "E", 4: (4.0, 53.0, 15.0)}
    thumbnail = _save(pixels[::8, ::8], "JPEG", quality=70)
    xmp = (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:exif="http://ns.adobe.com/exif/1.0/" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/" '
        'exif:GPSLatitude="52,22.5N" exif:GPSLongitude="4,53.25E">'
        f"<dc:creator><rdf:Seq><rdf:li>{XMP_CREATOR}</rdf:li></rdf:Seq></dc:creator>"
        '</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
    ).encode()
    jpeg = _save(
        pixels,
        "JPEG",
        quality=95,
        exif=_with_thumbnail(exif.tobytes(), thumbnail),
        xmp=xmp,
        comment=b"shot at home",
    )
    return insert_app13_iptc(jpeg, iptc_record(IPTC_BYLINE, b"(c) Jane Doe"))


def _with_thumbnail(exif: bytes, thumbnail: bytes) -> bytes:
    """Append IFD1 holding a JPEG thumbnail, as cameras do (Pillow cannot write IFD1)."""
    tiff = bytearray(exif[6:])
    e = ">" if tiff[:2] == b"MM" else "<"
    ifd0 = struct.unpack_from(e + "I", tiff, 4)[0]
    next_at = ifd0 + 2 + 12 * struct.unpack_from(e + "H", tiff, ifd0)[0]
    tiff += b"\0" * (len(tiff) % 2)
    ifd1 = len(tiff)
    data_at = ifd1 + 2 + 2 * 12 + 4
    tiff += struct.pack(e + "H", 2) + struct.pack(e + "HHII", 0x0201, 4, 1, data_at)
    tiff += (
        struct.pack(e + "HHII", 0x0202, 4, 1, len(thumbnail)) + struct.pack(e + "I", 0) + thumbnail
    )
    struct.pack_into(e + "I", tiff, next_at, ifd1)
    return exif[:6] + bytes(tiff)


def iptc_record(byline: bytes, copyright_: bytes) -> bytes:
    """An IPTC-NAA (IIM) record: version, By-line, Copyright."""

    def dataset(number: int, value: bytes) -> bytes:
        return bytes([0x1C, 2, number]) + struct.pack(">H", len(value)) + value

    return dataset(0, b"\x00\x04") + dataset(80, byline) + dataset(116, copyright_)


def insert_app13_iptc(jpeg: bytes, iptc: bytes) -> bytes:
    """Put ``iptc`` in a Photoshop APP13 segment right after SOI (as older editors do)."""
    resource = b"8BIM\x04\x04\0\0" + struct.pack(">I", len(iptc)) + iptc + b"\0" * (len(iptc) % 2)
    payload = b"Photoshop 3.0\0" + resource
    return jpeg[:2] + b"\xff\xed" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]
