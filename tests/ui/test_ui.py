"""`vlm2vec ui` in a real browser (Debian's headless Chromium via Playwright) against the app on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from uihelp import ANSWER, App

QUERY = "a red circle"


def _cards(page: Any) -> list[dict[str, Any]]:
    return page.eval_on_selector_all(
        ".card",
        """cards => cards.map(card => {
            const img = card.querySelector('img');
            return {id: card.dataset.id, kind: card.dataset.kind, text: card.innerText,
                    width: img.naturalWidth, height: img.naturalHeight, complete: img.complete};
        })""",
    )


def _search(page: Any, text: str | None = None) -> list[dict[str, Any]]:
    before = page.eval_on_selector("#message", "m => m.textContent")
    if text is not None:
        page.fill("#text", text)
    page.click("#go")
    page.wait_for_function(
        "before => { const m = document.querySelector('#message').textContent;"
        " return m !== before && !m.startsWith('Searching'); }",
        arg=before,
    )
    page.wait_for_function("[...document.querySelectorAll('.card img')].every(i => i.complete)")
    return _cards(page)


def _open(page: Any, app: App) -> None:
    page.goto(app.url)
    page.wait_for_function("document.querySelector('#summary').textContent.includes('files')")


def test_text_search_shows_the_hits_of_the_search_service(page: Any, app: App, service: Any, shots: Path) -> None:
    _open(page, app)
    assert page.inner_text("#summary").startswith("4 files: 2 clips, 1 image, 5 pages")
    cards = _search(page, QUERY)
    expected = service.search(QUERY, k=12)
    assert [c["id"] for c in cards] == [h.id for h in expected]
    assert len(cards) == app.corpus.items == 8
    assert all(c["width"] > 0 for c in cards), "every thumbnail and storyboard loads"
    clip = next(c for c in cards if c["kind"] == "clip")
    assert (clip["width"], clip["height"]) == (2 * 192 + 2, 2 * 144 + 2), "a clip shows 4 frames (160x120 at 144 px)"
    first = cards[0]["text"]
    assert f"score {expected[0].score:.3f}" in first
    assert "rerank" not in first  # no reranker configured: no second score, no switch
    assert not page.is_visible("#rerank-switch")
    assert "8 results" in page.inner_text("#message")
    page.screenshot(path=shots / "01-text-search.png", full_page=True)
    assert not page.problems


def test_image_search_from_the_file_picker(page: Any, app: App, service: Any, shots: Path) -> None:
    assert app.corpus is not None
    photo = app.corpus.files["photo"]
    _open(page, app)
    page.set_input_files("#image", str(photo))
    page.wait_for_selector("#query-image:not([hidden])")
    assert page.inner_text("#query-name") == "photo.png"
    cards = _search(page)
    assert [c["id"] for c in cards] == [h.id for h in service.search(image=photo, k=12)]
    assert "the image photo.png" in page.inner_text("#message")
    page.screenshot(path=shots / "02-image-search.png", full_page=True)
    page.click("#clear-image")
    assert page.is_hidden("#query-image")
    assert not page.problems


def test_an_image_dropped_or_pasted_is_the_query(page: Any, app: App, service: Any) -> None:
    assert app.corpus is not None
    photo = app.corpus.files["photo"]
    _open(page, app)
    make_file = "bytes => new File([new Uint8Array(bytes)], 'dropped.png', {type: 'image/png'})"
    data = list(photo.read_bytes())
    page.evaluate(
        f"""bytes => {{ const dt = new DataTransfer(); dt.items.add(({make_file})(bytes));
        const drop = new DragEvent('drop', {{dataTransfer: dt, bubbles: true}});
        document.querySelector('#drop').dispatchEvent(drop); }}""",
        data,
    )
    page.wait_for_selector("#query-image:not([hidden])")
    assert page.inner_text("#query-name") == "dropped.png"
    assert [c["id"] for c in _search(page)] == [h.id for h in service.search(image=photo, k=12)]
    page.click("#clear-image")
    page.evaluate(
        f"""bytes => {{ const dt = new DataTransfer(); dt.items.add(({make_file})(bytes));
        document.dispatchEvent(new ClipboardEvent('paste', {{clipboardData: dt, bubbles: true}})); }}""",
        data,
    )
    page.wait_for_selector("#query-image:not([hidden])")
    assert page.inner_text("#query-name") == "dropped.png"
    assert not page.problems


def test_a_page_opens_full_size_rendered_from_its_pdf_by_keyboard(page: Any, app: App, shots: Path) -> None:
    _open(page, app)
    page.evaluate("document.activeElement.blur()")
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "text"
    assert page.input_value("#text") == ""  # the key focuses the box, and is not typed into it
    page.keyboard.type(QUERY)
    page.keyboard.press("Enter")
    page.wait_for_selector(".card")
    page.wait_for_function("[...document.querySelectorAll('.card img')].every(i => i.complete)")
    card = page.locator(".card[data-kind=page]").first
    thumb_width = card.locator("img").evaluate("i => i.naturalWidth")
    card.focus()
    page.keyboard.press("Enter")
    page.wait_for_function("() => { const i = document.querySelector('#full'); return i && i.naturalWidth > 0; }")
    full_width = page.eval_on_selector("#full", "i => i.naturalWidth")
    assert full_width > thumb_width  # rendered at 150 dpi now; the index holds 72 dpi images
    assert full_width == round(306 * 150 / 72)
    assert "page" in page.inner_text("#viewer-note") and "×" in page.inner_text("#viewer-note")
    page.screenshot(path=shots / "03-page-full-size.png")
    page.keyboard.press("Escape")
    assert not page.eval_on_selector("#viewer", "d => d.open")
    assert page.evaluate("document.activeElement.classList.contains('card')"), "focus returns to the result"
    assert not page.problems


def test_a_clip_plays_from_its_start_with_range_requests(page: Any, app: App, shots: Path) -> None:
    statuses: list[int] = []
    page.on("response", lambda r: statuses.append(r.status) if r.url.endswith("/video") else None)
    _open(page, app)
    page.uncheck("input[value=page]")
    page.uncheck("input[value=image]")
    cards = _search(page, QUERY)
    assert [c["kind"] for c in cards] == ["clip", "clip"]
    later = page.locator(".card[data-kind=clip]", has_text="0:02–0:04")
    later.click()
    page.wait_for_function(
        "() => { const v = document.querySelector('#player');"
        " return v && v.readyState >= 2 && v.currentTime >= 2.0 && !v.paused; }"
    )
    time = page.eval_on_selector("#player", "v => v.currentTime")
    assert 2.0 <= time < 4.0
    assert 206 in statuses, statuses
    page.screenshot(path=shots / "04-clip-playing.png")
    assert not page.problems


def test_filters_by_kind_and_by_folder(page: Any, app: App) -> None:
    assert app.corpus is not None
    _open(page, app)
    page.uncheck("input[value=clip]")
    page.uncheck("input[value=image]")
    assert {c["kind"] for c in _search(page, QUERY)} == {"page"}
    page.check("input[value=clip]")
    page.check("input[value=image]")
    page.fill("#within", str(app.corpus.root / "media"))
    cards = _search(page, QUERY)
    assert sorted(c["kind"] for c in cards) == ["clip", "clip", "image"]
    page.uncheck("input[value=clip]")
    page.uncheck("input[value=image]")
    assert _search(page, QUERY) == []
    assert page.inner_text("#message").startswith(f"No results for “{QUERY}” in ")
    page.check("input[value=image]")
    page.fill("#within", str(app.corpus.files["report"]))  # a file: its pages only
    page.check("input[value=page]")
    assert [c["text"].split("\n")[0] for c in _search(page, QUERY)] == ["report.pdf"] * 3


def test_the_rerank_switch_adds_the_second_stage(
    page: Any, rerank_app: App, service: Any, tiny_reranker: Any, shots: Path
) -> None:
    from dataclasses import replace

    _open(page, rerank_app)
    assert page.is_visible("#rerank-switch") and page.is_checked("#rerank")
    cards = _search(page, QUERY)
    expected = replace(service, reranker=tiny_reranker, candidates=8).search(QUERY, k=12)
    assert [c["id"] for c in cards] == [h.id for h in expected]
    for card, hit in zip(cards, expected, strict=True):
        assert f"score {hit.score:.3f}" in card["text"] and f"rerank {hit.rerank_score:.3f}" in card["text"]
    page.screenshot(path=shots / "09-reranked.png", full_page=True)
    page.uncheck("#rerank")
    plain = _search(page, QUERY)
    assert [c["id"] for c in plain] == [h.id for h in service.search(QUERY, k=12)]
    assert not any("rerank" in c["text"] for c in plain)


def test_an_empty_index_says_so(page: Any, empty_app: App, shots: Path) -> None:
    page.goto(empty_app.url)
    message = page.locator("#message")
    message.wait_for()
    page.wait_for_function("document.querySelector('#message').textContent.includes('empty')")
    assert "This index is empty" in message.inner_text()
    assert page.inner_text("#message code") == f"vlm2vec index PATH --db {empty_app.where}"
    assert page.is_hidden("#files")
    assert page.is_disabled("#text") and page.is_disabled("#go")
    page.screenshot(path=shots / "05-empty-index.png", full_page=True)


def test_a_query_the_server_refuses_is_shown_as_a_message(page: Any, app: App, tmp_path: Path, shots: Path) -> None:
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"this is no PNG at all")
    _open(page, app)
    page.set_input_files("#image", str(fake))
    page.wait_for_selector("#query-image:not([hidden])")
    _search(page)
    message = page.locator("#message.error")
    assert message.get_attribute("role") == "alert"
    text = message.inner_text()
    assert text.startswith("Search failed: the query image: not an image") and "(HTTP 422)" in text
    assert page.locator(".card").count() == 0
    page.screenshot(path=shots / "06-server-error.png")


def test_ask_shows_the_answer_and_the_images_sent(page: Any, app: App, shots: Path) -> None:
    assert app.chat is not None and app.corpus is not None
    _open(page, app)
    assert page.is_visible("#ask") and "fake-vlm" in page.inner_text("#ask-model")
    sent_before = len(app.chat.requests)
    page.fill("#within", str(app.corpus.root / "media"))  # two clips and an image
    page.fill("#question", "Which clip shows the red circle?")
    page.click("#ask-go")
    page.wait_for_function(f"document.querySelector('#answer').textContent.includes({ANSWER[-20:]!r})")
    (request,) = app.chat.requests[sent_before:]
    user = request["body"]["messages"][-1]["content"]
    sent_urls = [p["image_url"]["url"] for p in user if p["type"] == "image_url"]
    shown = page.eval_on_selector_all(".sent-images img", "imgs => imgs.map(i => i.src)")
    assert shown == sent_urls and len(shown) == 4 + 4 + 1  # each clip as 4 frames, the image itself
    assert page.locator(".sent-list li").count() == 3 == page.locator(".card").count()
    assert page.inner_text(".sent-list").count("(4 frames)") == 2
    assert "Sent to fake-vlm: 3 hits, 9 images" in page.inner_text("#sent")
    page.screenshot(path=shots / "07-ask.png", full_page=True)


def test_narrow_window_has_no_sideways_scrolling(browser: Any, app: App, shots: Path) -> None:
    context = browser.new_context(viewport={"width": 360, "height": 780}, color_scheme="dark")  # a phone at night
    try:
        page = context.new_page()
        page.goto(app.url)
        page.wait_for_function("document.querySelector('#summary').textContent.includes('files')")
        page.fill("#text", QUERY)
        page.click("#go")
        page.wait_for_selector(".card")
        page.wait_for_function("[...document.querySelectorAll('.card img')].every(i => i.complete)")
        page.click("#contents summary")
        assert page.evaluate("document.documentElement.scrollWidth") <= 360
        page.screenshot(path=shots / "08-narrow.png", full_page=True)
    finally:
        context.close()


def test_only_what_the_index_references_is_served(app: App, service: Any) -> None:
    hits = service.search(QUERY, k=12)
    clip = next(h for h in hits if h.kind == "clip")
    page = next(h for h in hits if h.kind == "page")
    with httpx.Client(base_url=app.url, timeout=30) as client:
        for path in [
            "/item/nope/thumb",
            "/item/..%2F..%2F..%2Fetc%2Fpasswd/full",
            "/item/%2Fetc%2Fpasswd/video",
            f"/item/{page.id}/video",  # a page has no video
            "/static/app.py",
            "/static/..%2Fapp.py",
            "/static/../app.py",
            "/etc/passwd",
            f"/file{clip.metadata['source']}",
        ]:
            assert client.get(path).status_code == 404, path
        got = client.get(f"/item/{clip.id}/video", headers={"Range": "bytes=0-99"})
        size = Path(clip.metadata["source"]).stat().st_size
        assert got.status_code == 206 and len(got.content) == 100
        assert got.headers["content-range"] == f"bytes 0-99/{size}"
        assert got.headers["content-type"] == "video/mp4"
        assert client.get(f"/item/{page.id}/thumb").headers["content-type"] == "image/webp"  # the index's own
        image = next(h for h in hits if h.kind == "image")
        assert client.get(f"/item/{image.id}/thumb").headers["content-type"] == "image/jpeg"  # made small here
        assert client.get("/", headers={"Host": "evil.example"}).status_code == 400  # DNS rebinding
        refused = client.post("/api/search", content=b'{"text": "x"}', headers={"Content-Type": "text/plain"})
        assert refused.status_code == 415
        bad_k = client.post("/api/search", json={"text": "x", "k": 0})
        assert bad_k.status_code == 422 and "k must be" in bad_k.json()["error"]["message"]


@pytest.mark.parametrize("name", ["index.html", "app.js", "style.css"])
def test_the_page_loads_nothing_from_the_network(name: str) -> None:
    from importlib import resources

    text = resources.files("vlm2vec_core.apps.webui").joinpath("static", name).read_text()
    assert "http://" not in text and "https://" not in text and "//cdn" not in text


def test_a_chat_endpoint_that_is_not_there_is_a_502_naming_it(service: Any) -> None:
    from uihelp import in_process_app

    from vlm2vec_core.apps.chat import ChatConfig

    with in_process_app(service, chat=ChatConfig("http://127.0.0.1:9/v1", "m", None)) as url:
        got = httpx.post(f"{url}/api/ask", json={"question": QUERY, "k": 1}, timeout=60)
    assert got.status_code == 502
    assert "http://127.0.0.1:9/v1 cannot be reached" in got.json()["error"]["message"]
