"""Tests for facefinder.decode, on real photos written out in every format we accept."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from facefinder.decode import DecodedImage, DecodeError, load_image

try:  # pytest puts tests/ on sys.path while tests/ has no __init__.py
    from testdata import celebrity_dataset, face_crop, group_photo
except ImportError:  # tests/ imported as a package
    from tests.testdata import celebrity_dataset, face_crop, group_photo

try:
    import pillow_heif
except ImportError:  # pragma: no cover - it is a runtime dependency
    pillow_heif = None

# Stored pixels = inverse of the transpose that EXIF orientation N asks for.
STORED_AS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,  # viewer turns it back with ROTATE_270
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


@pytest.fixture(scope="module")
def portrait() -> Image.Image:
    """A real celebrity photo, RGB and not square (so rotations change its shape)."""
    for path in sorted((celebrity_dataset() / "train").rglob("*.jpg")):
        with Image.open(path) as image:
            if image.format == "JPEG" and image.mode == "RGB" and image.width < image.height:
                return image.convert("RGB")
    raise AssertionError("no portrait-shaped RGB JPEG in the celebrity dataset")


@pytest.fixture(scope="module")
def group() -> Image.Image:
    with Image.open(group_photo()) as image:
        return image.convert("RGB")


def check(decoded: DecodedImage) -> np.ndarray:
    """The invariants every decode must meet; returns the pixels."""
    rgb = decoded.rgb
    assert isinstance(rgb, np.ndarray)
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    assert rgb.flags["C_CONTIGUOUS"]
    assert 0 < decoded.scale <= 1
    assert decoded.scale == pytest.approx(rgb.shape[1] / decoded.orig_size[0])
    return rgb


def diff(a: np.ndarray | Image.Image, b: np.ndarray | Image.Image) -> float:
    """Mean absolute pixel difference of two same-shaped images."""
    a, b = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
    assert a.shape == b.shape
    return float(np.abs(a - b).mean())


def reason(path: Path, **kwargs: object) -> str:
    with pytest.raises(DecodeError) as caught:
        load_image(path, **kwargs)
    text = str(caught.value)
    assert text and "\n" not in text and "Traceback" not in text
    return text


FORMATS = [
    # suffix, save arguments, allowed mean difference from the source
    (".jpg", {"format": "JPEG", "quality": 95}, 3.0),
    (".png", {"format": "PNG"}, 0.0),
    (".webp", {"format": "WEBP", "lossless": True}, 0.0),
    (".webp", {"format": "WEBP", "quality": 90}, 4.0),
    (".bmp", {"format": "BMP"}, 0.0),
    (".tif", {"format": "TIFF", "compression": "tiff_lzw"}, 0.0),
    (".gif", {"format": "GIF"}, 12.0),
    (".heic", {"format": "HEIF", "quality": 95}, 4.0),
    (".avif", {"format": "AVIF", "quality": 95}, 4.0),
]


@pytest.mark.parametrize(("suffix", "options", "tolerance"), FORMATS)
def test_formats(tmp_path: Path, portrait: Image.Image, suffix, options, tolerance) -> None:
    if options["format"] == "HEIF":
        if pillow_heif is None:
            pytest.skip("pillow-heif not installed")
        pillow_heif.register_heif_opener()
    Image.init()
    if options["format"] not in Image.SAVE:
        pytest.skip(f"this Pillow cannot write {options['format']}")
    path = tmp_path / f"copy{suffix}"
    portrait.save(path, **options)
    before = path.read_bytes()
    decoded = load_image(path)
    rgb = check(decoded)
    assert decoded.orig_size == portrait.size and decoded.scale == 1.0
    assert diff(rgb, portrait) <= tolerance
    assert path.read_bytes() == before  # never modified


def test_real_group_photo_and_face_crop() -> None:
    decoded = load_image(group_photo())
    assert check(decoded).shape == (886, 1280, 3)
    assert decoded.orig_size == (1280, 886)
    crop = load_image(face_crop())
    assert check(crop).shape == (112, 112, 3)


def test_png_named_jpg_is_read_by_content(tmp_path: Path, portrait: Image.Image) -> None:
    path = tmp_path / "really_a_png.jpg"
    portrait.save(path, format="PNG")
    assert diff(check(load_image(path)), portrait) == 0.0


def test_real_png_named_jpg_with_alpha_from_the_dataset() -> None:
    """The celebrity dataset itself holds an RGBA PNG saved as .jpg (the web does that)."""
    found = []
    for path in sorted(celebrity_dataset().rglob("*.jpg")):
        with Image.open(path) as image:
            if image.format == "PNG":
                found.append((path, image.size))
    assert found
    for path, size in found:
        decoded = load_image(path)
        assert check(decoded).shape[:2] == (size[1], size[0])


@pytest.mark.parametrize("orientation", sorted(STORED_AS))
def test_exif_orientation_makes_it_upright(
    tmp_path: Path, portrait: Image.Image, orientation: int
) -> None:
    stored = portrait.transpose(STORED_AS[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"rotated{orientation}.jpg"
    stored.save(path, quality=95, exif=exif.tobytes())
    decoded = load_image(path)
    rgb = check(decoded)
    assert decoded.orig_size == portrait.size
    assert diff(rgb, portrait) < 4.0
    if stored.size == portrait.size:  # the stored pixels alone would not have passed
        assert diff(stored, portrait) > 10.0


def test_heic_with_rotation_is_upright(tmp_path: Path, portrait: Image.Image) -> None:
    if pillow_heif is None:
        pytest.skip("pillow-heif not installed")
    pillow_heif.register_heif_opener()
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone.heic"
    portrait.transpose(STORED_AS[6]).save(path, quality=95, exif=exif.tobytes())
    decoded = load_image(path)
    assert decoded.orig_size == portrait.size
    assert diff(check(decoded), portrait) < 4.0


def big_copy(group: Image.Image, size: tuple[int, int]) -> Image.Image:
    return group.resize(size, Image.Resampling.BILINEAR)


def test_big_jpeg_is_decoded_small(tmp_path: Path, group: Image.Image) -> None:
    big = big_copy(group, (6000, 4000))
    path = tmp_path / "camera.jpg"
    big.save(path, quality=90)
    decoded = load_image(path, max_side=1600)
    rgb = check(decoded)
    assert rgb.shape == (1067, 1600, 3)
    assert decoded.orig_size == (6000, 4000)
    assert decoded.scale == pytest.approx(1600 / 6000)
    expected = big.resize((1600, 1067), Image.Resampling.BILINEAR)
    assert diff(rgb, expected) < 4.0


def test_big_rotated_jpeg_scale_is_relative_to_upright_original(
    tmp_path: Path, group: Image.Image
) -> None:
    upright = big_copy(group, (6000, 4000)).transpose(Image.Transpose.ROTATE_90)  # 4000x6000
    exif = Image.Exif()
    exif[0x0112] = 8  # stored = upright turned by ROTATE_270
    path = tmp_path / "portrait.jpg"
    upright.transpose(STORED_AS[8]).save(path, quality=90, exif=exif.tobytes())
    decoded = load_image(path, max_side=1000)
    rgb = check(decoded)
    assert decoded.orig_size == (4000, 6000)
    assert rgb.shape == (1000, 667, 3)
    assert decoded.scale == pytest.approx(667 / 4000)
    assert diff(rgb, upright.resize((667, 1000), Image.Resampling.BILINEAR)) < 4.0


def test_big_png_is_reduced_too(tmp_path: Path, group: Image.Image) -> None:
    path = tmp_path / "scan.png"
    big_copy(group, (4000, 2770)).save(path, compress_level=1)
    decoded = load_image(path, max_side=800)
    assert check(decoded).shape == (554, 800, 3)
    assert decoded.orig_size == (4000, 2770)
    assert decoded.scale == pytest.approx(0.2)


def test_small_image_is_not_enlarged(tmp_path: Path) -> None:
    decoded = load_image(face_crop(), max_side=1600)
    assert decoded.scale == 1.0 and decoded.orig_size == (112, 112)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.touch()
    assert reason(path) == "empty file"


def test_text_file_named_jpg(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("shopping list: eggs, milk\n" * 20, encoding="utf-8")
    assert reason(path) == "not an image (or an unsupported format)"


@pytest.mark.parametrize("source", ["group", "portrait"])
def test_truncated_jpeg_is_refused(tmp_path: Path, source: str, request) -> None:
    original = group_photo().read_bytes() if source == "group" else None
    if original is None:
        buffer = io.BytesIO()
        request.getfixturevalue("portrait").save(buffer, format="JPEG", quality=90)
        original = buffer.getvalue()
    path = tmp_path / "half.jpg"
    path.write_bytes(original[: len(original) // 2])
    assert reason(path) == "truncated or corrupt image data"
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_truncated_png_is_refused(tmp_path: Path, portrait: Image.Image) -> None:
    buffer = io.BytesIO()
    portrait.save(buffer, format="PNG")
    path = tmp_path / "half.png"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    assert "corrupt" in reason(path)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    assert reason(tmp_path / "gone.jpg").startswith("cannot read file: ")
    assert reason(tmp_path).startswith("cannot read file: ")


def png_header_claiming(width: int, height: int, colour: int = 2) -> bytes:
    """A PNG whose header claims a huge size, with a token IDAT: a decompression bomb.
    ``colour`` is the PNG colour type (2 RGB, 6 RGBA)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def test_decompression_bomb_is_a_decode_error(tmp_path: Path) -> None:
    """Refused from its header, before a byte of it is decoded (no worker runs out of
    memory): what decoding would need is over the per-worker budget."""
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_claiming(20000, 20000))
    assert reason(path) == ("image too large to decode in the memory one worker may use "
                            "(400 megapixels, ~2.2 GB)")
    path.write_bytes(png_header_claiming(13000, 13000, 6))  # the 657 KB zero RGBA PNG
    assert reason(path).startswith("image too large to decode in the memory one worker may use "
                                   "(169 megapixels")


def _baseline_claiming(width: int, height: int, *, interleaved: bool) -> bytes:
    """A small baseline JPEG (4:4:4) whose frame header claims ``width`` x ``height``;
    not ``interleaved``: its first scan names one of its three components."""
    made = io.BytesIO()
    Image.new("RGB", (64, 64), (120, 30, 200)).save(made, "JPEG", subsampling=0, quality=90)
    data = made.getvalue()
    out, at = bytearray(data[:2]), 2
    while True:
        marker, length = data[at + 1], struct.unpack(">H", data[at + 2:at + 4])[0]
        payload = bytearray(data[at + 4:at + 2 + length])
        if marker == 0xC0:  # SOF0: precision, height, width, components
            payload[1:5] = struct.pack(">HH", height, width)
        if marker == 0xDA:
            if not interleaved:  # one component (its selector and tables), spectral 0-63
                payload = bytearray([1, payload[1], payload[2], 0, 63, 0])
            out += bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload
            return bytes(out + data[at + 2 + length:])
        out += bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload
        at += 2 + length


def test_a_progressive_jpeg_claiming_a_huge_size_is_refused_from_its_header(
        tmp_path: Path) -> None:
    """A progressive JPEG keeps every DCT coefficient of the whole image whatever the
    draft scale (a 9 KB file claiming 30000x30000 took 2.85 GB to decode): refused from
    its header; the same size as a baseline JPEG and a real progressive photo are read."""
    small = tmp_path / "small.jpg"
    Image.new("RGB", (64, 48), (200, 150, 120)).save(small, quality=80, progressive=True)
    data = bytearray(small.read_bytes())
    sof = data.index(b"\xff\xc2")  # SOF2: progressive; then length, precision, height, width
    data[sof + 5:sof + 9] = struct.pack(">HH", 30000, 30000)
    bomb = tmp_path / "bomb.jpg"
    bomb.write_bytes(bytes(data))
    assert reason(bomb) == ("image too large to decode in the memory one worker may use "
                            "(900 megapixels, ~2.6 GB)")
    assert load_image(small, 1600).orig_size == (64, 48)
    # A baseline JPEG whose first scan carries one colour component of three (its scans
    # separate): libjpeg keeps its coefficients whole too (2.35 GB at 20000x20000).
    # In one interleaved scan it is decoded a band at a time: not refused for its size.
    bomb.write_bytes(_baseline_claiming(20000, 20000, interleaved=False))
    assert reason(bomb).startswith("image too large to decode")
    bomb.write_bytes(_baseline_claiming(20000, 20000, interleaved=True))
    try:
        decoded = load_image(bomb, 1600)
    except DecodeError as exc:  # (its data is short: "truncated" is fair, "too large" not)
        assert not str(exc).startswith("image too large"), exc
    else:
        assert decoded.orig_size == (20000, 20000)
    photo = tmp_path / "photo.jpg"  # a 12 MP phone photo, progressive: read as usual
    Image.new("RGB", (4032, 3024), (90, 120, 150)).save(photo, quality=60, progressive=True)
    assert load_image(photo, 1600).orig_size == (4032, 3024)


def test_a_200_megapixel_jpeg_is_read_at_reduced_size(tmp_path: Path) -> None:
    """Pillow's own bomb limit would refuse it at open; JPEG DCT scaling makes it small."""
    path = tmp_path / "panorama.jpg"
    Image.new("L", (16000, 12500), 128).save(path, quality=30)
    decoded = load_image(path, 1600)
    assert decoded.orig_size == (16000, 12500)
    assert max(decoded.rgb.shape[:2]) == 1600


def test_palette_with_transparency_goes_on_white(tmp_path: Path) -> None:
    image = Image.new("P", (64, 32), 0)
    image.putpalette([200, 30, 30, 20, 40, 220] + [0, 0, 0] * 254)
    image.paste(1, (32, 0, 64, 32))
    for suffix in (".png", ".gif"):
        path = tmp_path / f"palette{suffix}"
        image.save(path, transparency=1)
        rgb = check(load_image(path))
        assert (rgb[:, :32] == (200, 30, 30)).all()
        assert (rgb[:, 32:] == 255).all()


def test_rgba_and_la_go_on_white(tmp_path: Path, portrait: Image.Image) -> None:
    rgba = portrait.convert("RGBA")
    alpha = Image.new("L", portrait.size, 255)
    alpha.paste(0, (0, 0, portrait.width // 2, portrait.height))
    rgba.putalpha(alpha)
    rgba.save(tmp_path / "half.png")
    rgb = check(load_image(tmp_path / "half.png"))
    assert (rgb[:, : portrait.width // 2] == 255).all()
    assert diff(rgb[:, portrait.width // 2 :], np.asarray(portrait)[:, portrait.width // 2 :]) == 0
    la = portrait.convert("LA")
    la.putalpha(alpha)
    la.save(tmp_path / "la.png")
    rgb = check(load_image(tmp_path / "la.png"))
    assert (rgb[:, : portrait.width // 2] == 255).all()


def test_16bit_greyscale_png_is_scaled_not_clipped(tmp_path: Path, portrait: Image.Image) -> None:
    grey = np.asarray(portrait.convert("L"))
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as reopened:
        assert reopened.mode.startswith("I")  # really stored as 16-bit
    rgb = check(load_image(tmp_path / "deep.png"))
    assert np.abs(rgb[:, :, 0].astype(int) - grey).max() <= 1
    assert (rgb[:, :, 0] == rgb[:, :, 1]).all()


def test_other_modes(tmp_path: Path, portrait: Image.Image) -> None:
    grey = portrait.convert("L")
    cases = {
        "cmyk.jpg": (portrait.convert("CMYK"), np.asarray(portrait), 6.0),
        "grey.jpg": (grey, np.asarray(grey.convert("RGB")), 3.0),
        "bw.png": (portrait.convert("1"), None, None),
        "float.tif": (
            Image.fromarray(np.asarray(grey, dtype=np.float32) / 255.0, "F"),
            np.asarray(grey.convert("RGB")),
            1.0,
        ),
    }
    for name, (image, expected, tolerance) in cases.items():
        image.save(tmp_path / name)
        rgb = check(load_image(tmp_path / name))
        assert rgb.shape[:2] == (portrait.height, portrait.width), name
        if expected is not None:
            assert diff(rgb, expected) <= tolerance, name


def test_first_frame_of_animations(tmp_path: Path, portrait: Image.Image) -> None:
    second = portrait.transpose(Image.Transpose.ROTATE_180)
    for suffix, options in ((".gif", {}), (".webp", {"lossless": True}), (".tif", {})):
        path = tmp_path / f"anim{suffix}"
        portrait.save(path, save_all=True, append_images=[second], **options)
        with Image.open(path) as image:
            assert getattr(image, "n_frames", 1) == 2
        rgb = check(load_image(path))
        tolerance = 12.0 if suffix == ".gif" else 0.0
        assert diff(rgb, portrait) <= tolerance, suffix


def test_heic_without_pillow_heif_says_so(tmp_path: Path, portrait: Image.Image) -> None:
    """Run in a fresh interpreter where ``import pillow_heif`` fails, as on a bare install."""
    if pillow_heif is None:
        pytest.skip("pillow-heif not installed, so no HEIC file can be written")
    pillow_heif.register_heif_opener()
    path = tmp_path / "phone.heic"
    portrait.save(path, format="HEIF")
    script = (
        "import sys; sys.modules['pillow_heif'] = None\n"
        "from pathlib import Path\n"
        "from facefinder.decode import DecodeError, load_image\n"
        "try:\n"
        "    load_image(Path(sys.argv[1]))\n"
        "except DecodeError as error:\n"
        "    print(error)\n"
    )
    repo = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)],
        cwd=repo, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(repo)},
    )
    assert done.stdout.strip() == "HEIC support not installed (pillow-heif)", done.stderr


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_a_photo_replaced_by_a_fifo_is_refused_not_waited_on(tmp_path: Path) -> None:
    """The walk listed a photo; by the time it is read it is a FIFO (reading one waits
    for a writer forever): one line, at once, for a photo and for a video alike."""
    import threading

    from facefinder.video import VideoError, sample_frames

    outcome: dict[str, str] = {}

    def read(name: str) -> None:
        fifo = tmp_path / name
        os.mkfifo(fifo)
        try:
            if name.endswith(".jpg"):
                load_image(fifo)
            else:
                sample_frames(fifo, 1.0, 800)
        except (DecodeError, VideoError) as error:
            outcome[name] = str(error)

    for name in ("photo.jpg", "clip.mp4"):
        reader = threading.Thread(target=read, args=(name,), daemon=True)
        reader.start()
        reader.join(timeout=20)
        assert not reader.is_alive(), f"{name}: still waiting on the FIFO"
        assert "not a regular file" in outcome[name]


def test_a_png_with_big_metadata_is_read(tmp_path: Path, portrait: Image.Image) -> None:
    """A 3 MB ICC profile or a photo app's compressed XMP is over Pillow's 1 MB guard
    for text chunks: the photo must still be read, not called corrupt."""
    from PIL import PngImagePlugin

    portrait.save(tmp_path / "icc.png", icc_profile=b"\0" * 3 * 2**20)
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", "<x:xmpmeta/>" * 250_000, zip=True)
    portrait.save(tmp_path / "xmp.png", pnginfo=info)
    for name in ("icc.png", "xmp.png"):
        assert load_image(tmp_path / name).orig_size == portrait.size


def test_camera_and_archive_extensions_are_photos() -> None:
    """Canon's and Fujifilm's .HIF, the 3D cameras' .MPO and JPEG 2000 scans are read
    (the decoder reads them by content; the walk must not skip them as other files)."""
    from facefinder.walk import kind_of

    for name in ("IMG_0001.HIF", "DSCF0001.MPO", "scan.jp2"):
        assert kind_of(Path(name)) == "image", name


def test_a_jpeg_repeating_a_scan_hundreds_of_times_is_refused_at_once(
        tmp_path: Path, portrait: Image.Image) -> None:
    """Each scan of a progressive JPEG is a pass over the whole image: a small file that
    repeats one scan thousands of times kept a worker busy for minutes. Refused from
    its scans' markers; an ordinary progressive photo (about ten scans) is read."""
    from facefinder.decode import MAX_SCANS

    buffer = io.BytesIO()
    portrait.save(buffer, "JPEG", progressive=True, quality=90)
    data = buffer.getvalue()
    (tmp_path / "normal.jpg").write_bytes(data)
    assert load_image(tmp_path / "normal.jpg").orig_size == portrait.size
    starts = [i for i in range(len(data) - 1) if data[i:i + 2] == b"\xff\xda"]
    assert 3 <= len(starts) <= 20
    second = data[starts[1]:starts[2]]  # a whole scan: its header and its data
    hostile = data[:starts[2]] + second * (MAX_SCANS + 100) + data[starts[2]:]
    (tmp_path / "scans.jpg").write_bytes(hostile)
    with pytest.raises(DecodeError, match="scans"):  # (refused before any is decoded)
        load_image(tmp_path / "scans.jpg")


@pytest.mark.parametrize("kind", ["webp", "palette"])
def test_the_budget_counts_what_the_way_to_rgb_takes(tmp_path: Path, kind: str,
                                                     monkeypatch) -> None:
    """A lossless WebP is decoded into libwebp's buffer, copied and composited (measured
    16-21 bytes a pixel), a palette image with transparency goes through RGBA (about 9):
    counted at 3 x 2 bytes a pixel, tiny files of 11000 x 11000 took 2-3 GB in one
    worker. Here with a smaller budget, so that the files stay small."""
    from facefinder import decode

    side = 2000  # 4 megapixels
    picture = Image.new("RGBA", (side, side), (10, 20, 30, 255))
    path = tmp_path / f"big.{'webp' if kind == 'webp' else 'png'}"
    if kind == "webp":
        picture.save(path, lossless=True)
    else:
        picture.convert("P").save(path, transparency=0)
    monkeypatch.setattr(decode, "DECODE_BUDGET_BYTES", side * side * 8)  # 6 a pixel: fine
    with pytest.raises(DecodeError, match="too large"):
        load_image(path)


def test_a_16_bit_scan_is_scaled_to_8_bits_in_place() -> None:
    """16-bit greyscale is mapped to 8 bits with one float copy worked on in place (a
    chain of whole-array expressions took twice the decode budget at 9000 x 9000), with
    the same values as before: the full 16-bit range onto 0-255."""
    from facefinder.decode import _scale_high_depth

    values = np.array([[0, 257, 65535], [32768, 1000, 2]], np.uint16)
    scaled = np.asarray(_scale_high_depth(Image.fromarray(values)))  # (mode I;16)
    assert scaled.tolist() == [[0, 1, 255], [128, 4, 0]]
