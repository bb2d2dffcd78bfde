"""Writes the sample documents in examples/data/ (a 4-page PDF and a 20-second video), drawn by the project.

The committed files came from this script; run it again to recreate them (needs Pillow and PyAV).
"""

from __future__ import annotations

import argparse
from fractions import Fraction
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

HERE = Path(__file__).resolve().parent / "data"
PAGE = (1240, 1754)  # A4 at 150 dpi


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _titled(title: str) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    page = Image.new("RGB", PAGE, "white")
    draw = ImageDraw.Draw(page)
    draw.text((100, 90), title, fill="black", font=_font(72))
    draw.line([(100, 200), (PAGE[0] - 100, 200)], fill="black", width=4)
    return page, draw


def revenue_chart() -> Image.Image:
    page, draw = _titled("Quarterly revenue")
    values = [320, 410, 380, 560]
    for i, (quarter, value) in enumerate(zip(("Q1", "Q2", "Q3", "Q4"), values, strict=True)):
        x = 200 + i * 230
        draw.rectangle([x, 1300 - value * 1.6, x + 150, 1300], fill=(40, 90, 200))
        draw.text((x + 40, 1330), quarter, fill="black", font=_font(48))
        draw.text((x + 20, 1240 - value * 1.6), f"${value}k", fill="black", font=_font(40))
    draw.line([(150, 1300), (1100, 1300)], fill="black", width=5)
    return page


def architecture_diagram() -> Image.Image:
    page, draw = _titled("System architecture")
    boxes = {
        "Client": (150, 400),
        "API server": (520, 400),
        "GPU encoder": (520, 900),
        "Vector DB": (900, 400),
    }
    for label, (x, y) in boxes.items():
        draw.rounded_rectangle([x, y, x + 300, y + 180], radius=30, outline="black", width=6, fill=(230, 240, 255))
        draw.text((x + 30, y + 65), label, fill="black", font=_font(40))
    for (x0, y0), (x1, y1) in [((450, 490), (520, 490)), ((820, 490), (900, 490)), ((670, 580), (670, 900))]:
        draw.line([(x0, y0), (x1, y1)], fill="black", width=6)
    return page


def results_table() -> Image.Image:
    page, draw = _titled("Results by region")
    rows = [
        ("Region", "Units", "Growth"),
        ("North", "1,204", "+12%"),
        ("South", "980", "+4%"),
        ("East", "1,530", "+21%"),
        ("West", "760", "-3%"),
    ]
    for r, row in enumerate(rows):
        for c, cell in enumerate(row):
            x, y = 150 + c * 320, 350 + r * 140
            draw.rectangle(
                [x, y, x + 320, y + 140],
                outline="black",
                width=3,
                fill=(220, 220, 220) if r == 0 else "white",
            )
            draw.text((x + 30, y + 45), cell, fill="black", font=_font(44))
    return page


def photo_page() -> Image.Image:
    page, draw = _titled("Team offsite at the lake")
    draw.rectangle([150, 300, 1090, 1100], fill=(135, 200, 235))
    draw.rectangle([150, 800, 1090, 1100], fill=(30, 110, 170))
    draw.polygon([(150, 800), (450, 450), (750, 800)], fill=(90, 120, 90))
    draw.ellipse([850, 350, 1000, 500], fill=(250, 220, 60))
    draw.text((150, 1150), "Everyone at the lake shore, summer 2026.", fill="black", font=_font(40))
    return page


def write_pdf(path: Path) -> Path:
    pages = [revenue_chart(), architecture_diagram(), results_table(), photo_page()]
    pages[0].save(path, save_all=True, append_images=pages[1:], resolution=150)
    return path


def video_frame(t: float, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """Four 5-second scenes: a red ball rolling, a blue square growing, bars rising, a title card."""
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    scene, local = divmod(t, 5.0)
    w, h = size
    if scene == 0:
        draw.rectangle([0, 180, w, h], fill=(120, 180, 90))
        x = int(local / 5 * (w - 60))
        draw.ellipse([x, 120, x + 60, 180], fill=(220, 30, 30))
    elif scene == 1:
        side = int(20 + local / 5 * 160)
        draw.rectangle([(w - side) // 2, (h - side) // 2, (w + side) // 2, (h + side) // 2], fill=(30, 60, 220))
    elif scene == 2:
        for i, height in enumerate((0.4, 0.7, 0.55, 0.9)):
            top = int(h - 20 - height * (h - 60) * min(1.0, local / 3))
            draw.rectangle([40 + i * 65, top, 90 + i * 65, h - 20], fill=(40, 90, 200))
    else:
        img.paste((20, 20, 20), (0, 0, w, h))
        draw.text((60, 100), "Thanks for watching", fill="white", font=_font(24))
    return img


def write_video(path: Path, seconds: int = 20, fps: int = 10) -> Path:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps, 1))
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        stream.options = {"crf": "28", "preset": "veryslow"}
        for i in range(seconds * fps):
            frame = av.VideoFrame.from_image(video_frame(i / fps))
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for path in (write_pdf(args.out / "report.pdf"), write_video(args.out / "talk.mp4")):
        print(f"wrote {path} ({path.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
