"""Image folders for tests: awkward-but-valid images that must be indexed, broken files that must be skipped; and a
dataset folder shaped like the offline bundle."""

from __future__ import annotations

from pathlib import Path

GOOD_FILES = ["gray.jpg", "palette.png", "layers/rgba.png", "deep/sixteen.png"]
BAD_FILES = ["corrupt.jpg", "empty.png"]


def write_mixed_folder(folder: Path) -> Path:
    """Images of awkward kinds that must all be indexed, plus two files that must be skipped, not crash a run."""
    import numpy as np
    from PIL import Image

    for sub in ("layers", "deep"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    ramp = np.linspace(0, 255, 40 * 30, dtype=np.float64).reshape(30, 40)
    Image.fromarray(ramp.astype(np.uint8)).save(folder / "gray.jpg")  # mode L
    colours = np.stack([ramp, ramp[::-1], np.full_like(ramp, 90)], axis=-1).astype(np.uint8)
    Image.fromarray(colours).convert("P", palette=Image.Palette.ADAPTIVE, colors=8).save(folder / "palette.png")
    rgba = np.concatenate([colours, ramp[..., None].astype(np.uint8)], axis=-1)
    Image.fromarray(rgba).save(folder / "layers" / "rgba.png")
    Image.fromarray((ramp * 257).astype(np.uint16)).save(folder / "deep" / "sixteen.png")  # 16-bit greyscale PNG
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    (folder / "empty.png").write_bytes(b"")
    (folder / "README.txt").write_text("not an image: ignored, not reported")
    (folder / ".hidden.png").write_bytes(b"hidden files are not part of the collection")
    return folder


def write_image_folder(folder: Path, count: int, *, size: int = 24, seed: int = 0) -> Path:
    """``count`` small distinct PNGs named 000.png, 001.png, ..."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    return folder


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header says ``width`` x ``height`` (8-bit grey) but whose data is a few bytes: a bomb's shape."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def png(colour: tuple[int, int, int]) -> bytes:
    """An 8x8 PNG of one colour."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buffer, "PNG")
    return buffer.getvalue()


def write_parquet_dataset(folder: Path, *, with_ids: bool = True, bad_row: int | None = None) -> Path:
    """A dataset folder shaped like the offline bundle: train/validation parquet files, an id and an image column."""
    from datasets import Dataset
    from datasets import Image as ImageFeature

    folder.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", 5), ("validation", 3)):
        rows = {
            "caption": [f"{split} {i}" for i in range(count)],
            "image": [{"bytes": png((40 * i, 0, 0)), "path": None} for i in range(count)],
        }
        if bad_row is not None and split == "train":
            rows["image"][bad_row] = {"bytes": b"garbage", "path": None}
        if with_ids:
            rows["id"] = [f"{split[0]}{i:03d}" for i in range(count)]
        Dataset.from_dict(rows).cast_column("image", ImageFeature()).to_parquet(str(folder / f"{split}.parquet"))
    return folder
