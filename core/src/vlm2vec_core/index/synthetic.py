"""A labelled demo corpus whose answers are known by construction (``vlm2vec eval --make-synthetic DIR``).

``corpus/facts.pdf``: one large, distinct fact or chart a page (drawn with Pillow); ``corpus/scenes.mp4``:
distinct scenes of ``scene_seconds`` each (written with PyAV); ``query-images/chart.png``: the revenue chart
alone, an image query; and ``queries.jsonl``: a text query per page and per scene, one graded query and one image
query, each labelled with the page or span that answers it. A real model should find nearly all of them; a model
with random weights (the test suite's tiny checkpoints) ranks at chance: the right item first for about one query
in ``items``.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

PAGE_SIZE = (640, 480)  # points: at 144 dpi, 1280x960 pixels
VIDEO_SIZE = (320, 240)
_Draw = Callable[[ImageDraw.ImageDraw, tuple[int, int]], None]


@dataclass(frozen=True)
class Synthetic:
    """What ``make_synthetic`` wrote."""

    root: Path
    pdf: Path
    video: Path
    queries: Path
    pages: int
    scenes: int
    scene_seconds: float

    @property
    def items(self) -> int:
        """Pages plus clips, when the video is cut into clips of ``scene_seconds``."""
        return self.pages + self.scenes

    def summary(self) -> str:
        return (
            f"wrote a labelled demo corpus to {self.root}: corpus/{self.pdf.name} ({self.pages} pages, one fact or "
            f"chart each), corpus/{self.video.name} ({self.scenes} scenes of {self.scene_seconds:g} s), "
            f"{self.queries.name} ({self.pages + self.scenes + 2} labelled queries)\n"
            f"evaluate it: vlm2vec eval {self.root} --model MODEL --clip-seconds {self.scene_seconds:g}\n"
            f"a real model should find nearly every answer; random weights score at chance (Hit@1 about "
            f"1/{self.items} = {1 / self.items:.2f})"
        )


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _title(draw: ImageDraw.ImageDraw, size: tuple[int, int], text: str) -> None:
    """The page's fact in large type, as large as fits the width."""
    width, height = size
    points = height // 12
    while points > 8 and draw.textlength(text, font=_font(points)) > width * 0.94:
        points -= 1
    draw.text((width // 2, height // 10), text, fill=(20, 20, 20), font=_font(points), anchor="mm")


def _bridge(draw: ImageDraw.ImageDraw, size: tuple[int, int]) -> None:
    w, h = size
    _title(draw, size, "The Zorvik bridge is 1,284 metres long")
    draw.rectangle((0, h * 3 // 4, w, h), fill=(60, 110, 200))  # the river
    draw.arc((w // 10, h // 3, w * 9 // 10, h * 5 // 4), 180, 360, fill=(120, 60, 30), width=h // 40)
    draw.line((w // 10, h * 3 // 4, w * 9 // 10, h * 3 // 4), fill=(120, 60, 30), width=h // 30)
    draw.text((w // 2, h * 9 // 10), "1,284 m", fill=(255, 255, 255), font=_font(h // 12), anchor="mm")


def _bars(draw: ImageDraw.ImageDraw, size: tuple[int, int]) -> None:
    w, h = size
    _title(draw, size, "Quarterly revenue 2025 (million EUR)")
    values = {"Q1": 12, "Q2": 18, "Q3": 31, "Q4": 22}
    base, top = h * 7 // 8, h // 5
    step = w // (len(values) + 1)
    for n, (label, value) in enumerate(values.items(), 1):
        x = n * step
        y = base - (base - top) * value // 32
        draw.rectangle((x - step // 3, y, x + step // 3, base), fill=(40, 80, 220) if label != "Q3" else (220, 40, 40))
        draw.text((x, y - h // 30), str(value), fill=(0, 0, 0), font=_font(h // 18), anchor="mb")
        draw.text((x, base + h // 40), label, fill=(0, 0, 0), font=_font(h // 18), anchor="mt")
    draw.line((w // 12, base, w * 11 // 12, base), fill=(0, 0, 0), width=3)


def _pie(draw: ImageDraw.ImageDraw, size: tuple[int, int]) -> None:
    w, h = size
    _title(draw, size, "Energy mix: solar 45%, wind 30%, hydro 25%")
    box = (w // 2 - h * 3 // 10, h // 4, w // 2 + h * 3 // 10, h // 4 + h * 6 // 10)
    start = -90.0
    slices = (("solar 45%", 45, (240, 200, 30)), ("wind 30%", 30, (150, 200, 230)), ("hydro 25%", 25, (40, 120, 200)))
    for n, (label, share, colour) in enumerate(slices):
        end = start + 360 * share / 100
        draw.pieslice(box, start, end, fill=colour, outline=(255, 255, 255), width=3)
        start = end
        y = h // 3 + n * h // 8
        draw.rectangle((w * 3 // 4, y, w * 3 // 4 + h // 20, y + h // 20), fill=colour)
        draw.text((w * 3 // 4 + h // 14, y + h // 40), label, fill=(0, 0, 0), font=_font(h // 22), anchor="lm")


def _mountain(draw: ImageDraw.ImageDraw, size: tuple[int, int]) -> None:
    w, h = size
    _title(draw, size, "Mount Kestrel, 4,810 m: the highest peak of Arvenia")
    draw.rectangle((0, h // 5, w, h), fill=(170, 210, 245))
    draw.polygon([(w // 10, h * 9 // 10), (w // 2, h // 4), (w * 9 // 10, h * 9 // 10)], fill=(110, 100, 90))
    draw.polygon([(w * 2 // 5, h * 2 // 5), (w // 2, h // 4), (w * 3 // 5, h * 2 // 5)], fill=(250, 250, 250))


def _line(draw: ImageDraw.ImageDraw, size: tuple[int, int]) -> None:
    w, h = size
    _title(draw, size, "Museum visitors per month, 2025")
    values = [2, 2.5, 3, 3.2, 4, 5, 6.5, 7, 7.2, 8, 8.5, 9]
    base, top, left, right = h * 7 // 8, h // 5, w // 10, w * 9 // 10
    points = [
        (left + (right - left) * i // (len(values) - 1), int(base - (base - top) * v / 10))
        for i, v in enumerate(values)
    ]
    draw.line((left, base, right, base), fill=(0, 0, 0), width=3)
    draw.line((left, base, left, top), fill=(0, 0, 0), width=3)
    draw.line(points, fill=(40, 160, 60), width=h // 60)
    draw.text((left, base + h // 40), "Jan: 2,000", fill=(0, 0, 0), font=_font(h // 20), anchor="lt")
    draw.text((right, base + h // 40), "Dec: 9,000", fill=(0, 0, 0), font=_font(h // 20), anchor="rt")


def _table(draw: ImageDraw.ImageDraw, size: tuple[int, int]) -> None:
    w, h = size
    _title(draw, size, "Library opening hours")
    rows = [("Monday-Friday", "9:00-17:00"), ("Saturday", "10:00-14:00"), ("Sunday", "closed")]
    top, row_h = h // 4, h // 6
    for n, (day, hours) in enumerate(rows):
        y = top + n * row_h
        draw.rectangle((w // 10, y, w * 9 // 10, y + row_h), outline=(0, 0, 0), width=3)
        draw.line((w // 2, y, w // 2, y + row_h), fill=(0, 0, 0), width=3)
        draw.text((w * 3 // 10, y + row_h // 2), day, fill=(0, 0, 0), font=_font(h // 16), anchor="mm")
        draw.text((w * 7 // 10, y + row_h // 2), hours, fill=(0, 0, 0), font=_font(h // 16), anchor="mm")


# (drawing, the query it answers)
PAGES: tuple[tuple[_Draw, str], ...] = (
    (_bridge, "How long is the Zorvik bridge?"),
    (_bars, "Which quarter of 2025 had the highest revenue?"),
    (_pie, "What share of the energy mix comes from solar power?"),
    (_mountain, "What is the highest mountain of Arvenia?"),
    (_line, "How did the number of museum visitors change over 2025?"),
    (_table, "When is the library open on Saturdays?"),
)


def _scene(index: int, t: float, size: tuple[int, int]) -> Image.Image:
    """Scene ``index`` at ``t`` seconds into it: each scene a distinct picture, with a little motion."""
    w, h = size
    image = Image.new("RGB", size)
    draw = ImageDraw.Draw(image)
    wobble = math.sin(t * 2.0)
    if index == 0:  # a red ball bouncing on green grass
        draw.rectangle((0, 0, w, h), fill=(150, 200, 250))
        draw.rectangle((0, h * 2 // 3, w, h), fill=(40, 160, 60))
        y = int(h * 2 // 3 - h // 8 - abs(wobble) * h // 3)
        draw.ellipse((w // 2 - h // 8, y - h // 8, w // 2 + h // 8, y + h // 8), fill=(220, 30, 30))
    elif index == 1:  # the sun setting over the sea
        draw.rectangle((0, 0, w, h), fill=(250, 150, 60))
        y = int(h // 2 + t * 2)
        draw.ellipse((w // 2 - h // 6, y - h // 6, w // 2 + h // 6, y + h // 6), fill=(255, 230, 60))
        draw.rectangle((0, h * 3 // 5, w, h), fill=(30, 60, 140))
    elif index == 2:  # snow falling at night under a full moon
        draw.rectangle((0, 0, w, h), fill=(10, 15, 50))
        draw.ellipse((w * 3 // 4 - h // 10, h // 8, w * 3 // 4 + h // 10, h // 8 + h // 5), fill=(240, 240, 220))
        for n in range(40):
            x = (n * 37 + n * n * 11) % w
            y = int((n * 53 + n * n * 7 + t * 30) % h)
            draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=(255, 255, 255))
    else:  # a white sailing boat on a blue lake
        draw.rectangle((0, 0, w, h), fill=(180, 220, 250))
        draw.rectangle((0, h // 2, w, h), fill=(30, 110, 200))
        x = int(w // 4 + t * 8) % w
        draw.polygon(
            [(x, h // 2 + h // 12), (x + w // 4, h // 2 + h // 12), (x + w // 5, h // 2 + h // 5)], fill=(120, 70, 30)
        )
        draw.polygon(
            [(x + w // 8, h // 6), (x + w // 8, h // 2 + h // 16), (x + w // 4, h // 2 + h // 16)], fill=(255, 255, 255)
        )
    return image


SCENES = (
    "a red ball bouncing on green grass",
    "the sun setting over the sea",
    "snow falling at night under a full moon",
    "a white sailing boat on a lake",
)


def make_synthetic(
    root: str | Path,
    *,
    scene_seconds: float = 10.0,
    fps: int = 2,
    page_size: tuple[int, int] = PAGE_SIZE,
    video_size: tuple[int, int] = VIDEO_SIZE,
) -> Synthetic:
    """Write the demo corpus and its labelled queries into ``root`` (created if needed); see the module."""
    out = Path(root)
    (out / "corpus").mkdir(parents=True, exist_ok=True)
    (out / "query-images").mkdir(exist_ok=True)
    pdf, video, chart = out / "corpus" / "facts.pdf", out / "corpus" / "scenes.mp4", out / "query-images" / "chart.png"
    pages = []
    for draw_page, _query in PAGES:
        page = Image.new("RGB", page_size, (255, 255, 255))
        draw_page(ImageDraw.Draw(page), page_size)
        pages.append(page)
    buffer = io.BytesIO()
    pages[0].save(buffer, format="PDF", save_all=True, append_images=pages[1:], resolution=72.0)
    pdf.write_bytes(buffer.getvalue())
    alone = Image.new("RGB", (page_size[0] // 2, page_size[1] // 2), (255, 255, 255))
    _bars(ImageDraw.Draw(alone), alone.size)
    alone.save(chart)
    _write_video(video, scene_seconds, fps, video_size)
    rows: list[dict[str, object]] = [
        {"id": f"page-{n}", "query": query, "relevant": [f"corpus/{pdf.name}#page={n}"]}
        for n, (_draw, query) in enumerate(PAGES, 1)
    ]
    rows += [
        {
            "id": f"scene-{n}",
            "query": scene,
            "relevant": [f"corpus/{video.name}#t={n * scene_seconds:g},{(n + 1) * scene_seconds:g}"],
        }
        for n, scene in enumerate(SCENES)
    ]
    rows.append(
        {
            "id": "graded-revenue",
            "query": "a chart of figures that grow",
            "relevant": [
                {"ref": f"corpus/{pdf.name}#page=5", "grade": 2},  # the visitors' line rises all year
                {"ref": f"corpus/{pdf.name}#page=2", "grade": 1},  # revenue rises, then falls in Q4
            ],
        }
    )
    rows.append({"id": "image-chart", "image": f"query-images/{chart.name}", "relevant": [f"corpus/{pdf.name}#page=2"]})
    queries = out / "queries.jsonl"
    queries.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return Synthetic(out, pdf, video, queries, len(PAGES), len(SCENES), scene_seconds)


def _write_video(path: Path, scene_seconds: float, fps: int, size: tuple[int, int]) -> None:
    import av

    per_scene = max(1, round(scene_seconds * fps))
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        if not isinstance(stream, av.VideoStream):  # pragma: no cover - libx264 is a video codec
            raise TypeError("libx264 is not a video codec")
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, fps)
        stream.options = {"preset": "ultrafast", "g": str(fps)}
        pts = 0
        for scene in range(len(SCENES)):
            for frame_index in range(per_scene):
                frame = av.VideoFrame.from_image(_scene(scene, frame_index / fps, size))
                frame.pts = pts
                pts += 1
                container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
