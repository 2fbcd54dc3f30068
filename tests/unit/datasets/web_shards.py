"""Webdataset shards in img2dataset's layout (``<key>.jpg``, ``<key>.txt``, ``<key>.json``), written
with webdataset's own writer, holding small real JPEGs."""

from __future__ import annotations

import io
import json
from pathlib import Path

from PIL import Image

COLOURS = ["red", "green", "blue", "yellow"]


def jpeg(colour: str, size: int = 20) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, format="JPEG")
    return buf.getvalue()


def caption(shard: int, i: int) -> str:
    return f"a {COLOURS[(shard + i) % 4]} square number {shard * 100 + i}"


def write_shards(folder: Path, shards: int = 2, per_shard: int = 3, *, incomplete: bool = False,
                 corrupt: tuple[int, int] | None = None) -> list[Path]:
    """``shards`` shards of ``per_shard`` samples (``caption(s, i)`` on a square of that colour); with
    ``incomplete`` every shard also holds a sample without a caption; ``corrupt=(s, i)`` breaks the
    image bytes of that sample."""
    import webdataset as wds

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for s in range(shards):
        path = folder / f"{s:05d}.tar"
        with wds.TarWriter(str(path)) as sink:
            for i in range(per_shard):
                image = b"\xff\xd8 not a jpeg" if corrupt == (s, i) else jpeg(COLOURS[(s + i) % 4])
                sink.write({"__key__": f"{s:05d}{i:04d}", "jpg": image, "txt": caption(s, i),
                            "json": json.dumps({"url": f"http://example.com/{s}/{i}.jpg"}).encode()})
            if incomplete:
                sink.write({"__key__": f"{s:05d}9999", "jpg": jpeg("black")})
        (folder / f"{s:05d}_stats.json").write_text(json.dumps({"successes": per_shard + int(incomplete)}))
        paths.append(path)
    return paths
