"""A LangChain agent that searches PDF pages and video clips by what they look like, and looks at what it found.

    python examples/langchain_agent.py "Which slide shows the revenue chart?"
    python examples/langchain_agent.py --model /models/VLM2Vec-V2.0 --files docs/ talks/ -- "the demo of the robot arm"

Pages and clips are embedded with VLM2Vec-V2 into an embedded Chroma (``--db``; re-running reuses it: ids
are content hashes). The agent (``langchain.agents.create_agent``) gets one tool over the store; the images of
what it retrieves are shown to the chat model, so it answers from the pages themselves.

Chat model (any OpenAI-compatible endpoint with a vision model, e.g. vLLM serving Qwen2.5-VL):
``VLM2VEC_CHAT_BASE_URL`` (or ``OPENAI_BASE_URL``), ``VLM2VEC_CHAT_API_KEY`` (or ``OPENAI_API_KEY``),
``VLM2VEC_CHAT_MODEL``. Without them the example runs the retrieval alone and says so.
Needs: ``pip install "langchain-vlm2vec[agent]"``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from langchain_core.messages import HumanMessage, ToolMessage

from langchain_vlm2vec import (
    VLM2VecEmbeddings,
    VLM2VecPDFLoader,
    VLM2VecRetriever,
    VLM2VecSearchTool,
    VLM2VecVideoLoader,
    add_media_documents,
)

DATA = Path(__file__).parent / "data"
SYSTEM_PROMPT = (
    "You answer questions about a collection of PDF documents and videos. Use the search tool to find the "
    "relevant pages or clips, look at their images, and answer citing the file and the page or time span."
)


def chat_settings() -> dict[str, str] | None:
    """The OpenAI-compatible chat endpoint from the environment, or None when it is not configured."""
    base_url = os.environ.get("VLM2VEC_CHAT_BASE_URL") or os.environ.get("OPENAI_BASE_URL")
    model = os.environ.get("VLM2VEC_CHAT_MODEL")
    if not (base_url and model):
        return None
    api_key = os.environ.get("VLM2VEC_CHAT_API_KEY") or os.environ.get("OPENAI_API_KEY") or "none"
    return {"base_url": base_url, "model": model, "api_key": api_key}


def build_tool(args: argparse.Namespace) -> VLM2VecSearchTool:
    from langchain_chroma import Chroma

    options: dict[str, Any] = {"device": args.device} if args.device else {}
    if args.base_model:
        options["base_model"] = args.base_model
    embeddings = VLM2VecEmbeddings(args.model, **options)
    store = Chroma(
        collection_name="pages_and_clips",
        embedding_function=embeddings,
        persist_directory=str(args.db),
        collection_configuration={"hnsw": {"space": "cosine"}},  # scores are then cosine similarities
    )
    # folders go to both loaders (each takes its own kind from them); files by their suffix
    pdf_paths = [f for f in args.files if f.is_dir() or f.suffix.lower() == ".pdf"]
    video_paths = [f for f in args.files if f.is_dir() or f.suffix.lower() != ".pdf"]
    loaders: list[VLM2VecPDFLoader | VLM2VecVideoLoader] = []
    if pdf_paths:
        loaders.append(VLM2VecPDFLoader(pdf_paths, skip_errors=True))
    if video_paths:
        loaders.append(VLM2VecVideoLoader(video_paths, clip_seconds=args.clip_seconds, skip_errors=True))
    documents = [doc for loader in loaders for doc in loader.lazy_load()]
    for err in (err for loader in loaders for err in loader.errors):
        print(f"skipped: {err}", file=sys.stderr)
    new = add_media_documents(store, documents)  # what the store holds already is not embedded again
    print(f"{len(documents)} pages and clips indexed ({len(new)} new) in {args.db}")
    retriever = VLM2VecRetriever(vectorstore=store, k=args.k)
    # Tool messages carry text only (OpenAI's chat API refuses images there); the images travel in the artifact
    # and the middleware below shows them to the model as a user message.
    return VLM2VecSearchTool(retriever=retriever, images_in_content=False)


def run_agent(tool: VLM2VecSearchTool, question: str, settings: dict[str, str]) -> str:
    from langchain.agents import AgentState, create_agent
    from langchain.agents.middleware import before_model
    from langchain_openai import ChatOpenAI

    @before_model
    def show_retrieved_images(state: AgentState, runtime: Any) -> dict[str, Any] | None:
        blocks: list[dict[str, Any]] = []
        for message in reversed(state["messages"]):
            if not isinstance(message, ToolMessage):
                break
            for rank, doc in enumerate(message.artifact or [], 1):
                if block := doc.metadata.get("image_block"):
                    blocks += [{"type": "text", "text": f"[{rank}] {doc.page_content}"}, dict(block)]
        if not blocks:
            return None
        intro = {"type": "text", "text": "Images of the pages and clips the search returned:"}
        return {"messages": [HumanMessage(content=[intro, *blocks])]}

    from pydantic import SecretStr

    model = ChatOpenAI(model=settings["model"], base_url=settings["base_url"], api_key=SecretStr(settings["api_key"]))
    agent = create_agent(model, [tool], system_prompt=SYSTEM_PROMPT, middleware=[show_retrieved_images])
    result = agent.invoke({"messages": [{"role": "user", "content": question}]})
    return str(result["messages"][-1].text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("question")
    parser.add_argument("--files", nargs="+", default=[DATA / "report.pdf", DATA / "talk.mp4"], type=Path)
    parser.add_argument("--model", default="VLM2Vec/VLM2Vec-V2.0", help="Hub id or local directory")
    parser.add_argument("--base-model", help="local copy of the base model an adapter names")
    parser.add_argument("--device", help="cuda, cpu, ... (default: cuda when available)")
    parser.add_argument("--db", type=Path, default=Path(".chroma-langchain"), help="Chroma directory")
    parser.add_argument("--clip-seconds", type=float, default=10.0)
    parser.add_argument("-k", type=int, default=3, help="pages or clips per search")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    tool = build_tool(args)
    settings = chat_settings()
    if settings is None:
        print(
            "No chat model configured (set VLM2VEC_CHAT_BASE_URL and VLM2VEC_CHAT_MODEL, and an API key if "
            "needed): running the retrieval only."
        )
        result = tool.invoke({"query": args.question})
        print(result)
        return 0
    print(run_agent(tool, args.question, settings))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
