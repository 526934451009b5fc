"""The I/O layer on real-world and broken files: loading, metadata, atomic writes, discovery."""

from __future__ import annotations

import hashlib
import io
import os
import struct
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from awkward_files import (
    IPTC_BYLINE,
    KINDS,
    LENS_SERIAL,
    OPTIONAL_KINDS,
    OWNER,
    SERIAL,
    XMP_CREATOR,
    Expected,
    build_corpus,
    iptc_record,
)
from camo_engine.io import jpeg
from camo_engine.io import load as imageio
from camo_engine.io.discover import Job, discover, output_path, refuse_overwrite
from camo_engine.io.load import (
    ICC_DATE,
    ImageLoadError,
    LoadedImage,
    from_array,
    load_bytes,
    load_image,
)
from camo_engine.io.write import (
    MetadataPolicy,
    atomic_write,
    encode_output,
    is_temp_file,
    pixels_to_protect,
)
from PIL import Image, ImageCms


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("corpus")


@pytest.fixture(scope="session")
def corpus(corpus_dir: Path) -> dict[str, Expected]:
    return build_corpus(corpus_dir)


@pytest.fixture(scope="session")
def corpus_hashes(corpus: dict[str, Expected]) -> dict[Path, str]:
    """Every corpus file's hash, taken before any test reads it."""
    return {e.path: _digest(e.path) for e in corpus.values()}


def _load(corpus: dict[str, Expected], kind: str) -> LoadedImage:
    return load_image(corpus[kind].path)


# ------------------------------------------------------------------------------- loading


def test_corpus_covers_the_awkward_kinds(
    corpus: dict[str, Expected], corpus_hashes: dict[Path, str]
) -> None:
    assert set(corpus) <= set(KINDS)
    assert set(KINDS) - set(corpus) <= OPTIONAL_KINDS
    assert len(corpus) >= 15
    assert len({e.path for e in corpus.values()}) == len(corpus)


@pytest.mark.parametrize("kind", KINDS)
def test_every_file_loads_right_or_fails_clearly(corpus: dict[str, Expected], kind: str) -> None:
    if kind not in corpus:
        pytest.skip(f"{kind}: no encoder for it on this machine")
    expected = corpus[kind]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing may leak from Pillow: it is all reported
        if not expected.ok:
            with pytest.raises(ImageLoadError) as info:
                load_image(expected.path)
            assert expected.reason.lower() in info.value.reason.lower()
            assert info.value.path == expected.path
            assert str(info.value) == f"{expected.path}: {info.value.reason}"
            return
        image = load_image(expected.path)
    assert image.path == expected.path
    assert image.rgb.dtype == np.uint8 and image.rgb.flags.c_contiguous
    assert image.rgb.shape == (*expected.shape, 3)
    error = np.abs(image.rgb.astype(np.int16) - expected.reference.astype(np.int16)).mean()
    assert error <= expected.tolerance, f"{kind}: mean abs error {error:.2f}"
    if expected.reference_alpha is None:
        assert image.alpha is None
    else:
        np.testing.assert_array_equal(image.alpha, expected.reference_alpha)
    if expected.warning:
        assert any(expected.warning in w.lower() for w in image.warnings), image.warnings
    else:
        assert image.warnings == []
    assert ("icc" in expected.metadata) == (image.icc_profile is not None)


def test_exif_rotation_really_moves_the_pixels(corpus: dict[str, Expected]) -> None:
    stored = np.asarray(Image.open(corpus["jpeg_orient6"].path).convert("RGB"))
    image = _load(corpus, "jpeg_orient6")
    right = np.abs(image.rgb.astype(int) - np.rot90(stored, k=-1)).mean()
    wrong = np.abs(image.rgb.astype(int) - np.rot90(stored, k=1)).mean()
    assert right < 0.5 < 20 < wrong
    exif = Image.Exif()
    exif.load(image.exif)
    assert exif[0x0112] == 1  # reset, so no viewer rotates it again
    assert exif[0x010F] == "Camo Test Camera"


def test_decompression_bombs_are_small_files_refused_before_decoding(
    corpus: dict[str, Expected],
) -> None:
    for kind in ("bomb_huge", "bomb_moderate"):
        assert corpus[kind].path.stat().st_size < 200
    with pytest.raises(ImageLoadError, match="100 MP"):
        load_image(corpus["bomb_moderate"].path)
    # the limit is the caller's: raising it lets the 120-MP header through to decoding, which
    # then finds the data missing
    with pytest.raises(ImageLoadError, match="truncated|corrupt"):
        load_image(corpus["bomb_moderate"].path, max_pixels=200_000_000)


def test_max_pixels_refuses_a_normal_photo_when_set_low(corpus: dict[str, Expected]) -> None:
    with pytest.raises(ImageLoadError) as info:
        load_image(corpus["png"].path, max_pixels=1000)
    assert "512x512" in info.value.reason and "--max-pixels" in info.value.reason


def test_missing_and_unreadable_paths(tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError, match="file not found"):
        load_image(tmp_path / "nope.jpg")
    (tmp_path / "folder.jpg").mkdir()
    with pytest.raises(ImageLoadError, match="directory"):
        load_image(tmp_path / "folder.jpg")
    (tmp_path / "dangling.jpg").symlink_to(tmp_path / "gone.jpg")
    with pytest.raises(ImageLoadError, match="file not found"):
        load_image(tmp_path / "dangling.jpg")
    os.mkfifo(tmp_path / "pipe.jpg")  # would block a naive open() forever
    with pytest.raises(ImageLoadError, match="not a regular file"):
        load_image(tmp_path / "pipe.jpg")


def test_unsupported_formats_name_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(imageio, "_heif_available", lambda: False)
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic"
    assert "pip install pillow-heif" in imageio._unidentified_reason(heic)
    assert "AVIF" in imageio._unidentified_reason(b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00")
    assert "JPEG XL" in imageio._unidentified_reason(b"\xff\x0a\x00\x00")
    assert "PDF" in imageio._unidentified_reason(b"%PDF-1.7\n")


def test_load_bytes_matches_load_image(corpus: dict[str, Expected]) -> None:
    path = corpus["jpeg_orient6"].path
    from_file, from_memory = load_image(path), load_bytes(path.read_bytes(), name="upload.jpg")
    np.testing.assert_array_equal(from_file.rgb, from_memory.rgb)
    assert from_memory.path is None and from_memory.exif == from_file.exif
    with pytest.raises(ImageLoadError, match="empty") as info:
        load_bytes(b"", name="upload.jpg")
    assert str(info.value).startswith("upload.jpg: ")


def test_concurrent_loads_agree_and_leave_warning_filters_alone(
    corpus: dict[str, Expected],
) -> None:
    kinds = ["jpeg", "png_rgba", "gif_animated", "png_icc_wide_gamut", "tiff_16bit_grey"] * 3
    filters_before = list(warnings.filters)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda k: _load(corpus, k), kinds))
    assert warnings.filters == filters_before
    for kind, image in zip(kinds, results, strict=True):
        np.testing.assert_array_equal(image.rgb, results[kinds.index(kind)].rgb)


def test_from_array_accepts_the_documented_forms() -> None:
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    np.testing.assert_array_equal(from_array(rgb).rgb, rgb)
    assert from_array(rgb).source_format == "array" and from_array(rgb).path is None
    grey = from_array(rgb[:, :, 0])
    np.testing.assert_array_equal(grey.rgb, np.repeat(rgb[:, :, :1], 3, axis=2))
    rgba = from_array(np.dstack([rgb, np.full((2, 3), 7, np.uint8)]))
    assert rgba.alpha is not None and (rgba.alpha == 7).all()
    assert from_array(np.dstack([rgb, np.full((2, 3), 255, np.uint8)])).alpha is None
    floats = from_array(rgb.astype(np.float32) / 255)
    np.testing.assert_array_equal(floats.rgb, rgb)
    assert from_array(np.array([[0.5]])).rgb[0, 0, 0] == 128


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((2, 2, 3), np.uint16),
        np.full((2, 2, 3), 1.5),
        np.full((2, 2, 3), np.nan),
        np.zeros((2, 2, 2), np.uint8),
        np.zeros((0, 2, 3), np.uint8),
        np.zeros((2, 2, 3), bool),
    ],
)
def test_from_array_rejects_anything_else(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        from_array(bad)


def test_from_array_needs_an_array() -> None:
    with pytest.raises(TypeError):
        from_array([[0, 0, 0]])  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- writing


def _reopen(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_default_policy_strips_gps_serials_and_the_rest(
    corpus: dict[str, Expected], fmt: str
) -> None:
    image = _load(corpus, "jpeg_private")
    data, removed = encode_output(image, image.rgb, fmt, 90, MetadataPolicy())
    for item in (
        "EXIF GPS",
        "EXIF BodySerialNumber",
        "EXIF LensSerialNumber",
        "EXIF CameraOwnerName",
        "EXIF Artist",
        "XMP",
        "IPTC",
        "JPEG comment",
    ):
        assert item in removed, removed
    assert any(r.startswith("EXIF thumbnail") for r in removed)
    assert any(r.startswith("EXIF (") and "other tags" in r for r in removed)
    for secret in (SERIAL, LENS_SERIAL, OWNER, XMP_CREATOR, "GPS", "Camo Test Camera"):
        assert secret.encode() not in data
    assert IPTC_BYLINE not in data and b"Exif\x00\x00" not in data
    out = _reopen(data)
    assert len(out.getexif()) == 0
    assert not {"xmp", "photoshop", "comment", "exif"} & set(out.info)


def test_keep_policy_keeps_all_but_gps_and_unprotected_copies(corpus: dict[str, Expected]) -> None:
    image = _load(corpus, "jpeg_private")
    data, removed = encode_output(image, image.rgb, "jpeg", 90, MetadataPolicy(keep=True))
    out = _reopen(data)
    exif = out.getexif()
    assert exif.get_ifd(0x8769)[0xA431] == SERIAL  # the user asked to keep camera data
    assert exif[0x010F] == "Camo Test Camera"
    assert not exif.get_ifd(0x8825) and b"GPS" not in data
    assert not exif.get_ifd(-1)  # IFD1: the thumbnail showed the unprotected photo
    assert out.info["photoshop"][0x0404] == iptc_record(IPTC_BYLINE, b"(c) Jane Doe")
    assert "xmp" not in out.info  # it held GPS coordinates
    assert set(removed) == {
        "EXIF GPS",
        "EXIF thumbnail (an unprotected copy of the photo)",
        "XMP (it contained GPS location)",
        "JPEG comment",
    }


def test_keep_gps_keeps_location(corpus: dict[str, Expected]) -> None:
    image = _load(corpus, "jpeg_private")
    data, removed = encode_output(
        image, image.rgb, "jpeg", 90, MetadataPolicy(keep=True, keep_gps=True)
    )
    out = _reopen(data)
    assert out.getexif().get_ifd(0x8825)[1] == "N"
    assert XMP_CREATOR.encode() in out.info["xmp"]
    assert "EXIF GPS" not in removed
    with pytest.raises(ValueError, match="keep_gps requires keep"):
        MetadataPolicy(keep_gps=True)


def test_keep_policy_in_png_keeps_xmp_and_reports_iptc(corpus: dict[str, Expected]) -> None:
    image = replace(
        _load(corpus, "jpeg_private"),
        xmp=b'<x:xmpmeta xmlns:x="adobe:ns:meta/">' + XMP_CREATOR.encode() + b"</x:xmpmeta>",
    )
    data, removed = encode_output(image, image.rgb, "png", 90, MetadataPolicy(keep=True))
    out = _reopen(data)
    assert XMP_CREATOR.encode() in out.info["xmp"]
    assert out.getexif().get_ifd(0x8769)[0xA431] == SERIAL
    assert "IPTC (PNG output cannot carry it)" in removed


def test_written_jpeg_pixels_are_the_judged_pixels(corpus: dict[str, Expected]) -> None:
    image = _load(corpus, "jpeg_private")
    judged = jpeg.roundtrip(image.rgb, 90)
    for policy in (MetadataPolicy(), MetadataPolicy(keep=True, keep_gps=True)):
        data, _ = encode_output(image, image.rgb, "jpeg", 90, policy)
        np.testing.assert_array_equal(jpeg.decode(data), judged)


def test_png_output_is_lossless_and_keeps_alpha(corpus: dict[str, Expected]) -> None:
    image = _load(corpus, "png_rgba")
    data, _ = encode_output(image, image.rgb, "png", 90, MetadataPolicy())
    out = _reopen(data)
    assert out.mode == "RGBA"
    np.testing.assert_array_equal(np.asarray(out)[:, :, :3], image.rgb)
    np.testing.assert_array_equal(np.asarray(out)[:, :, 3], image.alpha)
    plain = _load(corpus, "png")
    assert _reopen(encode_output(plain, plain.rgb, "png", 90, MetadataPolicy())[0]).mode == "RGB"


def test_jpeg_flattens_alpha_onto_white_before_the_attack(corpus: dict[str, Expected]) -> None:
    image = _load(corpus, "png_rgba")
    flat = pixels_to_protect(image, "jpeg")
    a = image.alpha
    np.testing.assert_array_equal(flat[a == 0], 255)
    np.testing.assert_array_equal(flat[a == 255], image.rgb[a == 255])
    expected = np.rint(image.rgb * (a[..., None] / 255) + 255 * (1 - a[..., None] / 255))
    assert np.abs(flat.astype(int) - expected).max() <= 1
    assert pixels_to_protect(image, "png") is image.rgb
    data, _ = encode_output(image, flat, "jpeg", 90, MetadataPolicy())
    assert _reopen(data).mode == "RGB"


def test_icc_rule_srgb_written_only_when_the_source_had_a_profile(
    corpus: dict[str, Expected],
) -> None:
    for kind in ("png_icc_wide_gamut", "jpeg_icc_garbage"):
        image = _load(corpus, kind)
        for fmt in ("jpeg", "png"):
            out = _reopen(encode_output(image, image.rgb, fmt, 90, MetadataPolicy())[0])
            profile = ImageCms.ImageCmsProfile(io.BytesIO(out.info["icc_profile"]))
            assert "sRGB" in ImageCms.getProfileDescription(profile)
    plain = _load(corpus, "jpeg")
    assert (
        "icc_profile"
        not in _reopen(encode_output(plain, plain.rgb, "jpeg", 90, MetadataPolicy())[0]).info
    )


def test_the_written_srgb_profile_is_the_same_in_every_process() -> None:
    """lcms dates a profile when it makes it: undated, two runs would write different bytes."""
    import subprocess
    import sys

    code = "import sys; from camo_engine.io.load import srgb_profile_bytes; sys.stdout.buffer.write(srgb_profile_bytes())"
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True).stdout
    time.sleep(1.1)  # lcms's date has whole seconds
    second = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True).stdout
    assert first == second and first[24:36] == struct.pack(">6H", *ICC_DATE)


def test_rotated_source_writes_upright_output(corpus: dict[str, Expected]) -> None:
    image = _load(corpus, "jpeg_orient6")
    out = _reopen(encode_output(image, image.rgb, "jpeg", 90, MetadataPolicy(keep=True))[0])
    assert out.size == (512, 384) and out.getexif()[0x0112] == 1


def test_encode_output_rejects_mismatched_pixels(corpus: dict[str, Expected]) -> None:
    image = _load(corpus, "png")
    with pytest.raises(ValueError):
        encode_output(image, image.rgb[:10], "jpeg", 90, MetadataPolicy())
    with pytest.raises(ValueError):
        encode_output(image, image.rgb.astype(np.float32), "jpeg", 90, MetadataPolicy())
    with pytest.raises(ValueError):
        encode_output(image, image.rgb, "gif", 90, MetadataPolicy())  # type: ignore[arg-type]


def test_inputs_are_never_modified(
    corpus: dict[str, Expected], corpus_hashes: dict[Path, str]
) -> None:
    for expected in corpus.values():
        try:
            image = load_image(expected.path)
        except ImageLoadError:
            continue
        if image.rgb.size > 3_000_000:
            continue  # encoding 12 MP as PNG is slow and proves nothing more
        for fmt in ("jpeg", "png"):
            encode_output(
                image,
                pixels_to_protect(image, fmt),
                fmt,
                90,
                MetadataPolicy(keep=True, keep_gps=True),
            )
    assert {path: _digest(path) for path in corpus_hashes} == corpus_hashes


# ---------------------------------------------------------------------------- atomic write


def _all_names(folder: Path) -> set[str]:
    return set(os.listdir(folder))


def test_atomic_write_creates_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "er" / "photo.jpg"
    atomic_write(target, b"first")
    atomic_write(target, b"second version")
    assert target.read_bytes() == b"second version"
    assert _all_names(target.parent) == {"photo.jpg"}


def test_atomic_write_respects_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "a.jpg", b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.jpg").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_atomic_write_failure_keeps_the_old_file_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    target = tmp_path / "photo.jpg"
    target.write_bytes(b"old complete file")

    def broken(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, failing, broken)
    with pytest.raises(OSError, match="No space"):
        atomic_write(target, b"new")
    monkeypatch.undo()
    assert target.read_bytes() == b"old complete file"
    assert _all_names(tmp_path) == {"photo.jpg"}


def test_atomic_write_onto_a_folder_fails_cleanly(tmp_path: Path) -> None:
    (tmp_path / "photo.jpg").mkdir()
    with pytest.raises(OSError):
        atomic_write(tmp_path / "photo.jpg", b"x")
    assert _all_names(tmp_path) == {"photo.jpg"}


def test_atomic_write_temp_is_hidden_beside_the_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[Path] = []
    real_replace = os.replace

    def spy(src: str, dst: str) -> None:
        seen.append(Path(src))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    atomic_write(tmp_path / "photo.jpg", b"x")
    (temp,) = seen
    assert temp.parent == tmp_path and temp.name.startswith(".photo.jpg.") and is_temp_file(temp)
    assert not is_temp_file(tmp_path / "photo.jpg") and not is_temp_file(tmp_path / ".hidden.tmp")


def test_readers_only_ever_see_complete_files(tmp_path: Path) -> None:
    target = tmp_path / "photo.jpg"
    versions = [bytes([i]) * (50_000 + 1000 * i) for i in range(30)]
    atomic_write(target, versions[0])
    stop = threading.Event()
    torn: list[int] = []

    def reader() -> None:
        while not stop.is_set():
            data = target.read_bytes()
            if data not in versions:
                torn.append(len(data))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for version in versions[1:]:
            atomic_write(target, version)
    finally:
        stop.set()
        thread.join()
    assert torn == []


# ------------------------------------------------------------------------------- discovery


def _touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_discover_walks_folders_sorted_and_skips_only_what_it_documents(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    for name in (
        "b.jpg",
        "a.png",
        "sub/c.jpg",
        "sub/deeper/d.tif",
        "notes.txt",
        ".hidden.jpg",
        ".cache/e.jpg",
        "a.png.xmp",
        "IMG_1.AAE",
        "takeout.jpg.json",
        "Thumbs.db",
        "__MACOSX/._b.jpg",
        "@eaDir/b.jpg/SYNOFILE_THUMB.jpg",
        ".b.jpg.123.0badf00d.tmp",
    ):
        _touch(root / name)
    (root / "linked").symlink_to(root / "sub", target_is_directory=True)
    (root / "alias.jpg").symlink_to(root / "b.jpg")
    (root / "broken.jpg").symlink_to(root / "missing.jpg")
    os.mkfifo(root / "pipe.jpg")
    jobs = discover([root])
    assert [j.relative.as_posix() for j in jobs] == [
        "a.png",
        "alias.jpg",
        "b.jpg",
        "broken.jpg",
        "notes.txt",
        "sub/c.jpg",
        "sub/deeper/d.tif",
    ]
    assert all(j.root == root and j.source == root / j.relative for j in jobs)
    assert discover([root]) == jobs  # deterministic


def test_a_named_file_is_always_a_job(tmp_path: Path) -> None:
    hidden = _touch(tmp_path / ".secret.jpg")
    sidecar = _touch(tmp_path / "x.xmp")
    assert discover([hidden, sidecar]) == [
        Job(hidden, Path(".secret.jpg")),
        Job(sidecar, Path("x.xmp")),
    ]


def test_missing_input_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        discover([tmp_path / "nowhere"])


def test_the_same_file_twice_is_one_job(tmp_path: Path) -> None:
    photo = _touch(tmp_path / "in" / "a.jpg")
    assert len(discover([tmp_path / "in", photo, photo])) == 1


def test_clashing_inputs_get_their_folder_name(tmp_path: Path) -> None:
    for name in ("one/x.jpg", "two/x.jpg", "two/w.jpg", "three/z.jpg"):
        _touch(tmp_path / name)
    one, two, three = tmp_path / "one", tmp_path / "two", tmp_path / "three"
    jobs = discover([one, two, three])
    assert [j.relative.as_posix() for j in jobs] == ["one/x.jpg", "two/w.jpg", "two/x.jpg", "z.jpg"]
    same_a, same_b = (
        _touch(tmp_path / "p" / "photos" / "x.jpg"),
        _touch(tmp_path / "q" / "photos" / "x.jpg"),
    )
    named = discover([same_a, same_b])  # named files: prefixed with their folders' names
    assert [j.relative.as_posix() for j in named] == ["photos/x.jpg", "photos-2/x.jpg"]


def test_names_that_differ_by_extension_or_case_get_distinct_outputs(tmp_path: Path) -> None:
    for name in ("photo.jpg", "photo.png", "IMG.JPG", "img.jpg", "photo_jpg.jpg", "solo.heic"):
        _touch(tmp_path / "in" / name)
    jobs = discover([tmp_path / "in"])
    outputs = [output_path(j, tmp_path / "out", "jpeg").name for j in jobs]
    assert len({o.casefold() for o in outputs}) == len(outputs)
    by_source = {j.source.name: output_path(j, tmp_path / "out", "jpeg").name for j in jobs}
    assert by_source["photo.png"] == "photo_png.jpg" and by_source["solo.heic"] == "solo.jpg"
    assert discover([tmp_path / "in"]) == jobs


def test_output_path_mirrors_and_takes_the_format_extension(tmp_path: Path) -> None:
    job = Job(
        tmp_path / "in" / "trip" / "day1" / "IMG_1.HEIC",
        Path("trip/day1/IMG_1.HEIC"),
        tmp_path / "in",
    )
    assert (
        output_path(job, tmp_path / "out", "jpeg")
        == tmp_path / "out" / "trip" / "day1" / "IMG_1.jpg"
    )
    assert (
        output_path(job, tmp_path / "out", "png")
        == tmp_path / "out" / "trip" / "day1" / "IMG_1.png"
    )
    with pytest.raises(ValueError):
        output_path(job, tmp_path / "out", "webp")


def test_refuse_overwrite_rules(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photo = _touch(photos / "a.jpg")
    jobs = discover([photos])
    for outdir in (photos, photos / "protected", photos / "sub" / "deeper"):
        with pytest.raises(ValueError, match="inside"):
            refuse_overwrite(jobs, outdir, "jpeg")
    (tmp_path / "link").symlink_to(photos, target_is_directory=True)
    with pytest.raises(ValueError, match="inside"):
        refuse_overwrite(jobs, tmp_path / "link", "jpeg")
    refuse_overwrite(jobs, tmp_path / "out", "jpeg")  # a fresh folder beside it
    _touch(tmp_path / "out" / "a.jpg")
    refuse_overwrite(jobs, tmp_path / "out", "jpeg")  # a previous run's output: resumable

    named = discover([photo])  # a named file's own folder is allowed unless it would overwrite
    with pytest.raises(ValueError, match="overwrite the input"):
        refuse_overwrite(named, photos, "jpeg")
    refuse_overwrite(named, photos, "png")

    inner = _touch(tmp_path / "out2" / "in" / "b.jpg")  # an input folder inside the output folder
    refuse_overwrite(discover([inner.parent]), tmp_path / "out2", "jpeg")
    with pytest.raises(ValueError, match="overwrite the input"):  # ... unless a job lands on it
        refuse_overwrite([Job(inner, Path("in/b.jpg"))], tmp_path / "out2", "jpeg")

    twins = [Job(photo, Path("a.jpg")), Job(inner, Path("A.png"))]
    with pytest.raises(ValueError, match="both"):
        refuse_overwrite(twins, tmp_path / "out3", "jpeg")


def test_tiff_exif_keeps_camera_tags_but_not_its_pixel_layout(tmp_path: Path) -> None:
    from PIL import TiffImagePlugin
    from skimage import data

    pixels = data.coffee()
    tags = TiffImagePlugin.ImageFileDirectory_v2()
    tags[271], tags[274] = "Tiff Camera", 6
    Image.fromarray(pixels).save(tmp_path / "scan.tif", "TIFF", tiffinfo=tags)
    image = load_image(tmp_path / "scan.tif")
    np.testing.assert_array_equal(image.rgb, np.rot90(pixels, k=-1))
    exif = Image.Exif()
    exif.load(image.exif)
    assert exif[271] == "Tiff Camera" and exif[0x0112] == 1
    assert not {256, 257, 258, 273, 279} & set(exif)  # width, height, strips: not EXIF's business


def test_named_files_from_one_folder_clash_by_extension_not_by_folder(tmp_path: Path) -> None:
    jpg, png = _touch(tmp_path / "in" / "x.jpg"), _touch(tmp_path / "in" / "x.png")
    assert [j.relative.as_posix() for j in discover([jpg, png])] == ["x_jpg.jpg", "x_png.png"]


def test_an_unreadable_folder_stops_discovery(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _touch(tmp_path / "in" / "locked" / "a.jpg")
    real_scandir = os.scandir

    def scandir(path: object = ".") -> object:
        if Path(str(path)).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(PermissionError, match="locked"):
        discover([tmp_path / "in"])


def test_tiff_iptc_is_read_and_kept_or_reported(tmp_path: Path) -> None:
    import struct

    from PIL import TiffImagePlugin
    from skimage import data

    record = iptc_record(IPTC_BYLINE, b"(c) Jane Doe")
    as_bytes = TiffImagePlugin.ImageFileDirectory_v2()
    as_bytes[33723], as_bytes.tagtype[33723] = record, 7
    Image.fromarray(data.coffee()).save(tmp_path / "bytes.tif", "TIFF", tiffinfo=as_bytes)
    image = load_image(tmp_path / "bytes.tif")
    assert image.iptc == record
    data_, _ = encode_output(image, image.rgb, "jpeg", 90, MetadataPolicy(keep=True))
    assert _reopen(data_).info["photoshop"][0x0404] == record

    padded = record + b"\0" * (-len(record) % 4)
    as_longs = TiffImagePlugin.ImageFileDirectory_v2()
    with warnings.catch_warnings():  # Pillow warns that the tag is "too long" as it stores it
        warnings.simplefilter("ignore")
        as_longs[33723] = struct.unpack(f">{len(padded) // 4}I", padded)
    as_longs.tagtype[33723] = 4  # how Photoshop writes it
    Image.fromarray(data.coffee()).save(tmp_path / "longs.tif", "TIFF", tiffinfo=as_longs)
    image = load_image(tmp_path / "longs.tif")
    _, removed = encode_output(image, image.rgb, "jpeg", 90, MetadataPolicy(keep=True))
    assert image.iptc is None and any(r.startswith("IPTC (stored in a TIFF") for r in removed)
