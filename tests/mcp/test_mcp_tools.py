"""`vlm2vec mcp`: the SDK's own client against the server in a subprocess, over stdio and streamable HTTP.

One stdio session (the classic initialize handshake desktop clients use) runs every call once and records what
came back; the tests below read those records. The HTTP server runs with an API key, talked to by the SDK's
streamable HTTP client (the modern protocol). The index is built in the test with the tiny checkpoint.
"""

from __future__ import annotations

import asyncio
import base64
import io
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mcphelp import ALL_ITEMS, GONE_PAGES, PDF_PAGES, VIDEO_CLIPS, McpIndex, server_env
from PIL import Image

from procs import Service, free_port

mcp = pytest.importorskip("mcp")


@dataclass
class Session:
    tools: list[Any]
    calls: dict[str, Any]
    transport_errors: list[Exception] = field(default_factory=list)
    stderr: str = ""


def _run(coroutine: Any) -> Any:
    """``asyncio.run`` on a thread of its own: another test module (Playwright's sync API) may have left an
    event loop running on this one."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


def texts(result: Any) -> list[str]:
    return [c.text for c in result.content if c.type == "text"]


def pictures(result: Any) -> list[Image.Image]:
    out = []
    for block in result.content:
        if block.type == "image":
            assert block.mime_type == "image/jpeg"
            image = Image.open(io.BytesIO(base64.b64decode(block.data)))
            image.load()  # the whole file decodes, not only its header
            assert image.format == "JPEG"
            out.append(image)
    return out


def calls_for(index: McpIndex) -> dict[str, tuple[str, dict[str, Any]]]:
    photo, talks = index.files["image"], index.root / "talks"
    return {
        "text": ("search", {"query": "a page of a report", "k": ALL_ITEMS}),
        "image": ("search", {"image": b64(photo), "k": 3, "kinds": ["image", "page"]}),
        "data_url": ("search", {"image": f"data:image/png;base64,{b64(photo)}", "query": "this", "k": 2}),
        "clips_within": ("search", {"query": "a talk", "within": [str(talks)], "k": 5}),
        "no_images": ("search", {"query": "report", "k": 2, "images": False}),
        "nowhere": ("search", {"query": "report", "within": [str(index.root / "nothing-here")]}),
        "list_files": ("list_files", {}),
        "bad_k": ("search", {"query": "x", "k": 0}),
        "bad_kind": ("search", {"query": "x", "kinds": ["slide"]}),
        "bad_base64": ("search", {"image": "%%% this is not base64 %%%"}),
        "not_an_image": ("search", {"image": base64.b64encode(b"plain text, no picture").decode()}),
        "a_path": ("search", {"image": str(photo)}),
        "nothing_asked": ("search", {"k": 3}),
        "no_reranker": ("search", {"query": "x", "rerank": True}),
        "after_errors": ("search", {"query": "report", "k": 1}),
    }


async def _stdio_session(index: McpIndex, errlog: Path) -> Session:
    params = mcp.StdioServerParameters(command=index.command()[0], args=index.command()[1:], env=server_env())
    transport_errors: list[Exception] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, Exception):  # a line on stdout that is not JSON-RPC
            transport_errors.append(message)

    with errlog.open("w") as err:
        async with (
            mcp.stdio_client(params, errlog=err) as (read, write),
            mcp.ClientSession(read, write, message_handler=on_message, read_timeout_seconds=120) as session,
        ):
            await session.initialize()
            tools = (await session.list_tools()).tools
            calls: dict[str, Any] = {}
            for name, (tool, arguments) in calls_for(index).items():
                calls[name] = await session.call_tool(tool, arguments)
            try:
                calls["unknown_tool"] = await session.call_tool("no_such_tool", {})
            except mcp.MCPError as exc:  # a protocol error
                calls["unknown_tool"] = exc
    return Session(tools, calls, transport_errors, errlog.read_text())


@pytest.fixture(scope="module")
def stdio(mcp_index: McpIndex, tmp_path_factory: pytest.TempPathFactory) -> Session:
    errlog = tmp_path_factory.mktemp("mcp-stdio") / "stderr.log"
    return _run(asyncio.wait_for(_stdio_session(mcp_index, errlog), timeout=240))


def test_tools_are_listed_with_their_input_schemas(stdio: Session) -> None:
    tools = {t.name: t for t in stdio.tools}
    assert set(tools) == {"search", "list_files"}
    schema = tools["search"].input_schema
    props = schema["properties"]
    assert {"query", "image", "k", "kinds", "within", "rerank", "images"} <= set(props)
    assert schema.get("required", []) == []
    assert props["k"]["minimum"] == 1 and props["k"]["maximum"] == 50
    kinds = next(option for option in props["kinds"]["anyOf"] if option.get("type") == "array")
    assert sorted(kinds["items"]["enum"]) == ["clip", "image", "page"]
    assert "base64" in props["image"]["description"]
    assert tools["list_files"].input_schema.get("properties", {}) == {}
    assert tools["search"].annotations.read_only_hint is True


def test_nothing_but_the_protocol_on_stdout(stdio: Session) -> None:
    assert stdio.transport_errors == []
    assert "Traceback" not in stdio.stderr


def test_text_search_names_the_files_and_shows_each_hit(stdio: Session, mcp_index: McpIndex) -> None:
    result = stdio.calls["text"]
    assert not result.is_error, texts(result)
    hits = result.structured_content["hits"]
    assert [h["rank"] for h in hits] == list(range(1, ALL_ITEMS + 1))
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    pages = PDF_PAGES + GONE_PAGES
    assert sorted(h["kind"] for h in hits) == sorted(["page"] * pages + ["clip"] * VIDEO_CLIPS + ["image"])
    body = "\n".join(texts(result))
    for name in ("report.pdf", "talk.mp4", "photo.png", "old.pdf"):
        assert name in body
    for h in hits:
        assert f"reference: {h['reference']}" in body
        assert h["source"].startswith(str(mcp_index.root))
        if h["kind"] == "page":
            assert (
                h["reference"] == f"{h['source']}#page={h['page']}" and f"page {h['page']} of {h['page_count']}" in body
            )
        if h["kind"] == "clip":
            assert h["reference"] == f"{h['source']}#t={h['start_seconds']:g},{h['end_seconds']:g}"
            assert f"({h['start_seconds']:g}-{h['end_seconds']:g} s)" in body
    # one picture per hit, right after its line, all different, none blank
    kinds_in_order = []
    blocks = result.content
    for n, block in enumerate(blocks):
        if block.type == "image":
            assert blocks[n - 1].type == "text" and blocks[n - 1].text.startswith("#")
            kinds_in_order.append(hits[len(kinds_in_order)]["kind"])
    images = pictures(result)
    assert len(images) == ALL_ITEMS
    assert all(max(im.size) <= 1024 for im in images)
    for image, kind in zip(images, kinds_in_order, strict=True):
        assert np.asarray(image.convert("L")).std() > 5  # a picture, not a blank
        if kind == "clip":  # a strip of frames, wider than tall
            assert image.width > 2 * image.height
    assert len({im.tobytes() for im in images}) == ALL_ITEMS


def test_page_pictures_are_the_pages_rendered_again(stdio: Session, mcp_index: McpIndex) -> None:
    from vlm2vec_core.apps.mcp_server import RENDER_DPI
    from vlm2vec_core.media.pdf import pdf_pages

    result = stdio.calls["text"]
    hits = result.structured_content["hits"]
    images = pictures(result)
    pdf = mcp_index.files["pdf"]
    rendered = [np.asarray(p.image.convert("L"), dtype=np.int16) for p in pdf_pages(pdf, dpi=RENDER_DPI)]
    checked = []
    for hit, image in zip(hits, images, strict=True):
        if hit["file"] != "report.pdf":
            continue
        sent = np.asarray(image.convert("L"), dtype=np.int16)
        assert sent.shape == rendered[0].shape  # the page at RENDER_DPI, not the 768 px display thumbnail
        errors = [np.abs(sent - page).mean() for page in rendered]
        assert int(np.argmin(errors)) + 1 == hit["page"] and min(errors) < 4  # its own page, up to JPEG
        checked.append(hit["page"])
    assert sorted(checked) == list(range(1, PDF_PAGES + 1))


def test_a_deleted_file_shows_its_thumbnail_and_says_so(stdio: Session) -> None:
    result = stdio.calls["text"]
    lines = [b.text for b in result.content if b.type == "text" and "old.pdf" in b.text]
    assert len(lines) == GONE_PAGES
    assert "(the indexed thumbnail only: " in lines[0]
    gone = next(n for n, b in enumerate(result.content) if b.type == "text" and "old.pdf" in b.text)
    assert result.content[gone + 1].type == "image"


def test_image_search_finds_the_picture_first(stdio: Session) -> None:
    for name in ("image", "data_url"):
        result = stdio.calls[name]
        assert not result.is_error, texts(result)
        hits = result.structured_content["hits"]
        assert hits[0]["file"] == "photo.png", hits
        assert "the image" in texts(result)[0]
        assert len(pictures(result)) == len(hits)
    assert {h["kind"] for h in stdio.calls["image"].structured_content["hits"]} <= {"image", "page"}


def test_within_a_folder_and_without_pictures(stdio: Session) -> None:
    within = stdio.calls["clips_within"]
    assert {h["file"] for h in within.structured_content["hits"]} == {"talk.mp4"}
    assert len(within.structured_content["hits"]) == VIDEO_CLIPS
    bare = stdio.calls["no_images"]
    assert len(bare.structured_content["hits"]) == 2 and pictures(bare) == []
    nowhere = stdio.calls["nowhere"]
    assert not nowhere.is_error and nowhere.structured_content["hits"] == []
    assert "nothing matched" in texts(nowhere)[0]


def test_list_files(stdio: Session, mcp_index: McpIndex) -> None:
    result = stdio.calls["list_files"]
    assert not result.is_error
    data = result.structured_content
    rows = {Path(r["source"]).name: r for r in data["files"]}
    assert set(rows) == {"report.pdf", "photo.png", "talk.mp4", "old.pdf"}
    assert (rows["old.pdf"]["items"], rows["old.pdf"]["present"]) == (GONE_PAGES, False)
    assert "old.pdf  (gone)" in texts(result)[0]
    del rows["old.pdf"]
    assert (rows["report.pdf"]["kind"], rows["report.pdf"]["items"]) == ("pdf", PDF_PAGES)
    assert (rows["talk.mp4"]["kind"], rows["talk.mp4"]["items"]) == ("video", VIDEO_CLIPS)
    assert (rows["photo.png"]["kind"], rows["photo.png"]["items"]) == ("image", 1)
    assert all(r["present"] and r["indexed_at"].endswith("+00:00") for r in rows.values())
    assert data["items"] == ALL_ITEMS and data["model"] and data["rerank"] is False
    text = texts(result)[0]
    assert f"4 file(s), {ALL_ITEMS} item(s)" in text and str(mcp_index.files["pdf"].resolve()) in text


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("bad_k", "k\n  Input should be greater than or equal to 1"),
        ("bad_kind", "kinds"),
        ("bad_base64", "the image argument: not valid base64"),
        ("not_an_image", "not an image"),
        ("a_path", "paths and URLs are not read"),
        ("nothing_asked", "give a text `query`, an `image`"),
        ("no_reranker", "no reranker is configured"),
    ],
)
def test_bad_arguments_are_tool_errors(stdio: Session, call: str, message: str) -> None:
    result = stdio.calls[call]
    assert result.is_error
    text = " ".join(texts(result))
    assert message in text, text
    assert text.strip() != "Error executing tool search"  # a reason, not the SDK's bare word for a crash


def test_an_unknown_tool_is_an_error_and_the_server_carries_on(stdio: Session) -> None:
    answer = stdio.calls["unknown_tool"]  # the last call of the session
    assert not isinstance(answer, Exception), answer
    assert answer.is_error and texts(answer) == ["Unknown tool: no_such_tool"]
    after = stdio.calls["after_errors"]  # made after all the bad calls (dicts keep calls_for's order)
    assert not after.is_error and len(after.structured_content["hits"]) == 1 and len(pictures(after)) == 1


async def _http_calls(url: str, key: str | None) -> tuple[list[str], Any, Any]:
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=120)) as http,
        mcp.Client(streamable_http_client(url, http_client=http)) as client,
    ):
        names = [t.name for t in (await client.list_tools()).tools]
        result = await client.call_tool("search", {"query": "a chart", "k": 2})
        files = await client.call_tool("list_files", {})
    return names, result, files


def test_streamable_http_with_an_api_key_and_a_reranker(
    mcp_index: McpIndex, tiny_reranker_dir: Path, tmp_path: Path
) -> None:
    import httpx

    port = free_port()
    keys = tmp_path / "keys.txt"
    keys.write_text("# one key a line\nsecret-key-1\n")
    cmd = mcp_index.command(
        "--http", "--port", str(port), "--api-key-file", str(keys), "--rerank", str(tiny_reranker_dir)
    )
    server = Service(cmd, f"http://127.0.0.1:{port}/health", tmp_path / "server.log", env=server_env())
    server.start(timeout=120)
    try:
        url = f"http://127.0.0.1:{port}/mcp"
        refused = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, timeout=10)
        assert refused.status_code == 401 and "API key" in refused.text
        wrong = httpx.post(url, json={}, headers={"Authorization": "Bearer nope"}, timeout=10)
        assert wrong.status_code == 401
        names, result, files = _run(asyncio.wait_for(_http_calls(url, "secret-key-1"), timeout=180))
        assert sorted(names) == ["list_files", "search"]
        assert not result.is_error, texts(result)
        hits = result.structured_content["hits"]
        assert len(hits) == 2 and len(pictures(result)) == 2
        # reranked by default when the server has a reranker: both scores, in the second stage's order
        assert all(0.0 < h["rerank_score"] < 1.0 for h in hits)
        assert hits[0]["rerank_score"] >= hits[1]["rerank_score"]
        assert "(reranked)" in texts(result)[0] and f"rerank {hits[0]['rerank_score']:.4f}" in texts(result)[1]
        assert files.structured_content["rerank"] is True
    finally:
        server.stop()


def test_no_public_binding_without_keys(mcp_index: McpIndex) -> None:
    cmd = mcp_index.command("--http", "--host", "0.0.0.0")
    done = subprocess.run(cmd, env=server_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "refusing to serve MCP on 0.0.0.0 without API keys" in done.stderr and done.stdout == ""
    stdio_with_port = subprocess.run(
        mcp_index.command("--port", "9"), env=server_env(), capture_output=True, text=True, timeout=120
    )
    assert stdio_with_port.returncode == 2 and "go with --http" in stdio_with_port.stderr


def test_a_missing_index_is_one_line(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "vlm2vec_core.apps.cli", "mcp", "--db", str(tmp_path / "none")]
    done = subprocess.run(cmd, env=server_env(), capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 2 and "no index at" in done.stderr and done.stdout == ""


def test_without_the_extra_one_line_names_the_pip_command(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['mcp'] = None\n"  # as if the [mcp] extra were not installed
        "from vlm2vec_core.apps.cli import main\n"
        f"sys.exit(main(['mcp', '--db', {str(tmp_path / 'db')!r}]))"
    )
    done = subprocess.run([sys.executable, "-c", code], env=server_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        'error: the MCP SDK (mcp>=2.3) is needed for this; install it with: pip install "vlm2vec-core[mcp]"'
    ]
