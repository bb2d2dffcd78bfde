// vlm2vec ui: the search page. Plain JavaScript, no build step, nothing loaded from the network.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { info: null, hits: [], image: null, imageName: "", open: -1, opener: null };

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key in node) node[key] = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

function clock(seconds) {
  const minutes = Math.floor(seconds / 60);
  const rest = seconds - minutes * 60;
  const text = Number.isInteger(rest) ? String(rest).padStart(2, "0") : rest.toFixed(1).padStart(4, "0");
  return `${minutes}:${text}`;
}

function where(hit) {
  if (hit.kind === "page") return `page ${hit.page}${hit.page_count ? ` of ${hit.page_count}` : ""}`;
  if (hit.kind === "clip") return `${clock(hit.start)}–${clock(hit.end)}`;
  return "image";
}

function say(text, kind = "info") {
  const message = $("message");
  message.textContent = text;
  message.className = `message ${kind}`;
  message.setAttribute("role", kind === "error" ? "alert" : "status");
}

async function call(url, body) {
  let response;
  try {
    response = await fetch(url, body === undefined ? {} : {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
  } catch (err) {
    throw new Error(`the app does not answer (${err.message}): is vlm2vec ui still running?`);
  }
  let data = null;
  try {
    data = await response.json();
  } catch (err) {
    data = null;
  }
  if (!response.ok) {
    const detail = data && data.error ? data.error.message : (data && data.detail) || response.statusText;
    throw new Error(`${detail} (HTTP ${response.status})`);
  }
  return data;
}

// --- the index ---------------------------------------------------------------------------------

async function loadInfo() {
  let info;
  try {
    info = await call("/api/info");
  } catch (err) {
    $("summary").textContent = "";
    say(`Cannot read the index: ${err.message}`, "error");
    return;
  }
  state.info = info;
  const kinds = Object.entries(info.kinds).map(([kind, n]) => `${n} ${kind}${n === 1 ? "" : "s"}`).join(", ");
  const model = info.model ? `${info.model}${info.family ? ` (${info.family})` : ""}` : "no model recorded";
  $("summary").textContent = `${info.files.length} file${info.files.length === 1 ? "" : "s"}`
    + `${kinds ? `: ${kinds}` : ""} · ${model}`;
  if (info.items === 0) {
    const flag = info.where && info.where.includes("://") ? `--chroma-url ${info.where}` : `--db ${info.where}`;
    say("", "empty");
    $("message").append(
      `This index is empty (${info.where || "the index"}, collection ${info.collection}). Add PDFs, videos and `
      + "images with ", el("code", {}, `vlm2vec index PATH ${flag}`), ", then reload this page.",
    );
    for (const control of $("search").elements) control.disabled = true;
    $("contents").open = true;
  }
  if (info.rerank) {
    $("rerank-switch").hidden = false;
    $("rerank-switch").title = `rerank the best ${info.candidates} with ${info.rerank}`;
  }
  if (info.chat) {
    $("ask").hidden = false;
    $("ask-model").textContent = `(${info.chat.model})`;
  }
  const places = $("places");
  places.replaceChildren(
    ...info.folders.map((folder) => el("option", { value: folder, label: "folder" })),
    ...info.files.map((file) => el("option", { value: file.source, label: file.kind })),
  );
  const facts = [
    ["index", `${info.where} (collection ${info.collection})`],
    ["model", info.model || "–"],
    ["family", info.family || "–"],
    ["dimension", info.dim ? `${info.dim}${info.truncate_dim ? " (truncated)" : ""}` : "–"],
    ["items", `${info.items}${kinds ? ` (${kinds})` : ""}`],
    ["files", String(info.files.length)],
    ["rerank", info.rerank ? `${info.rerank}, best ${info.candidates}` : "off (start with --rerank)"],
    ["ask", info.chat ? `${info.chat.model} at ${info.chat.base_url}` : "off (start with --chat-base-url and --chat-model)"],
  ];
  $("facts").replaceChildren(...facts.flatMap(([term, value]) => [el("dt", {}, term), el("dd", {}, value)]));
  $("files").hidden = info.files.length === 0;
  $("files").tBodies[0].replaceChildren(...info.files.map((file) => el("tr", {},
    el("td", { title: file.source }, file.name, file.present ? null : el("span", { class: "gone" }, " (gone)")),
    el("td", {}, file.kind),
    el("td", { class: "num" }, String(file.items)),
    el("td", { class: "folder", title: file.folder }, file.folder),
  )));
}

// --- the query ---------------------------------------------------------------------------------

function options() {
  const kinds = [...document.querySelectorAll("input[name=kind]:checked")].map((box) => box.value);
  const within = $("within").value.trim();
  const body = { k: Number($("k").value), kinds };
  if (within) body.within = [within];
  if (state.info && state.info.rerank) body.rerank = $("rerank").checked;
  return body;
}

function setImage(file) {
  if (!file) return;
  if (!file.type.startsWith("image/") && file.type !== "") {
    say(`${file.name || "that file"} is not an image (${file.type})`, "error");
    return;
  }
  const reader = new FileReader();
  reader.onload = () => {
    state.image = reader.result;
    state.imageName = file.name || "pasted image";
    $("query-preview").hidden = false;
    $("query-preview").src = reader.result;
    $("query-name").textContent = state.imageName;
    $("query-image").hidden = false;
    $("drop").classList.add("has-image");
    say(`Image query: ${state.imageName}. Add text or press Search.`);
  };
  reader.onerror = () => say(`Cannot read ${file.name}: ${reader.error}`, "error");
  reader.readAsDataURL(file);
}

function clearImage() {
  state.image = null;
  state.imageName = "";
  $("image").value = "";
  $("query-image").hidden = true;
  $("query-preview").removeAttribute("src");
  $("drop").classList.remove("has-image");
}

async function search(event) {
  event.preventDefault();
  const text = $("text").value.trim();
  if (!text && !state.image) {
    say("Type a query, or give an image (drop one, paste one or pick a file).", "error");
    $("text").focus();
    return;
  }
  const body = options();
  if (text) body.text = text;
  if (state.image) body.image = state.image;
  say("Searching…", "busy");
  $("go").disabled = true;
  try {
    const data = await call("/api/search", body);
    showHits(data.hits);
    const what = [text ? `“${text}”` : null, state.image ? `the image ${state.imageName}` : null].filter(Boolean);
    const found = data.hits.length
      ? `${data.hits.length} result${data.hits.length === 1 ? "" : "s"} for ${what.join(" with ")}`
      : `No results for ${what.join(" with ")}${body.within ? ` in ${body.within[0]}` : ""}`;
    const problems = data.problems.length ? ` (${data.problems.length} skipped: ${data.problems.join("; ")})` : "";
    say(`${found} in ${data.seconds.toFixed(2)} s${problems}.`, data.hits.length ? "info" : "empty");
  } catch (err) {
    say(`Search failed: ${err.message}`, "error");
  } finally {
    $("go").disabled = false;
  }
}

// --- the results -------------------------------------------------------------------------------

function picture(hit) {
  if (hit.kind === "clip") {
    const img = el("img", { src: hit.storyboard, alt: `frames of ${hit.label}`, loading: "lazy", class: "storyboard" });
    img.addEventListener("error", () => {
      if (img.src.endsWith("/storyboard")) img.src = hit.thumb;  // the video is gone: its cached thumbnail
    }, { once: true });
    return img;
  }
  return el("img", { src: hit.thumb, alt: hit.label, loading: "lazy" });
}

function scores(hit) {
  const parts = [el("span", { class: "score", title: "cosine similarity" }, `score ${hit.score.toFixed(3)}`)];
  if (hit.rerank_score !== null) {
    parts.push(el("span", { class: "rerank-score", title: "the reranker's score" }, `rerank ${hit.rerank_score.toFixed(3)}`));
  }
  return el("span", { class: "scores" }, ...parts);
}

function showHits(hits) {
  state.hits = hits;
  $("results").replaceChildren(...hits.map((hit, index) => {
    const card = el("button", {
      type: "button", class: `card ${hit.kind}`, dataset: { id: hit.id, kind: hit.kind, index: String(index) },
      title: hit.source || hit.label,
    },
    el("span", { class: "frame" }, picture(hit)),
    el("span", { class: "caption" },
      el("span", { class: "name" }, hit.file_name),
      el("span", { class: "where" }, el("span", { class: `badge ${hit.kind}` }, hit.kind), " ", where(hit)),
      scores(hit)));
    card.addEventListener("click", () => openHit(index, card));
    return el("li", {}, card);
  }));
}

// --- the viewer --------------------------------------------------------------------------------

function openHit(index, opener) {
  const hit = state.hits[index];
  if (!hit) return;
  state.open = index;
  if (opener) state.opener = opener;
  const viewer = $("viewer");
  $("viewer-title").textContent = `${hit.file_name} · ${where(hit)}`;
  $("prev").disabled = index === 0;
  $("next").disabled = index === state.hits.length - 1;
  const body = $("viewer-body");
  stopVideo();
  if (hit.kind === "clip") {
    const video = el("video", { controls: true, preload: "auto", src: `${hit.video}#t=${hit.start}`, id: "player" });
    video.muted = false;
    video.addEventListener("loadedmetadata", () => {
      if (video.currentTime < hit.start) video.currentTime = hit.start;
      video.play().catch(() => { /* autoplay refused: the controls are there */ });
    }, { once: true });
    video.addEventListener("error", () => {
      $("viewer-note").textContent = `Cannot play this video here (${video.error ? video.error.message || video.error.code : "error"}). `
        + "The browser may lack its codec.";
    });
    body.replaceChildren(video);
    $("viewer-note").textContent = `${hit.source} — the clip runs ${clock(hit.start)}–${clock(hit.end)}`;
  } else {
    $("viewer-note").textContent = hit.kind === "page" ? `${hit.source} — rendering page ${hit.page}…` : hit.source;
    const img = el("img", { src: hit.full, alt: hit.label, id: "full" });
    img.addEventListener("load", () => {
      $("viewer-note").textContent = hit.kind === "page"
        ? `${hit.source} — page ${hit.page} of ${hit.page_count}, ${img.naturalWidth}×${img.naturalHeight}`
        : `${hit.source} — ${img.naturalWidth}×${img.naturalHeight}`;
    });
    img.addEventListener("error", async () => {
      let reason = "it could not be loaded";
      try {
        const response = await fetch(hit.full);
        const data = await response.json();
        reason = data.error.message;
      } catch (err) { /* keep the general reason */ }
      $("viewer-note").textContent = `Cannot show ${hit.label}: ${reason}`;
    });
    body.replaceChildren(img);
  }
  if (!viewer.open) viewer.showModal();
}

function stopVideo() {
  const video = $("player");
  if (video) {
    video.pause();
    video.removeAttribute("src");
    video.load();
  }
}

function closeViewer() {
  $("viewer").close();
}

// --- ask ---------------------------------------------------------------------------------------

async function ask(event) {
  event.preventDefault();
  const question = $("question").value.trim();
  if (!question) {
    say("Type a question to ask.", "error");
    return;
  }
  const body = { ...options(), question };
  body.k = Number($("ask-k").value);
  $("answer").textContent = "Asking…";
  $("sent").replaceChildren();
  $("ask-go").disabled = true;
  try {
    const data = await call("/api/ask", body);
    showHits(data.hits);
    if (data.answer === null) {
      $("answer").textContent = "Nothing was retrieved to answer from.";
      return;
    }
    $("answer").textContent = data.answer;
    const frames = data.sent.reduce((n, item) => n + item.images.length, 0);
    $("sent").replaceChildren(
      el("p", { class: "muted" }, `Sent to ${data.model}: ${data.sent.length} hit${data.sent.length === 1 ? "" : "s"}, `
        + `${frames} image${frames === 1 ? "" : "s"}`),
      el("ol", { class: "sent-list" }, ...data.sent.map((item) => el("li", {},
        el("span", { class: "sent-label" }, item.label,
          item.kind === "clip" ? ` (${item.images.length} frames)` : "",
          item.images.length ? "" : " (label only: its image is gone)"),
        el("span", { class: "sent-images" }, ...item.images.map((url, n) =>
          el("img", { src: url, alt: `${item.label}, image ${n + 1} sent` })))))),
    );
  } catch (err) {
    $("answer").textContent = "";
    say(`Ask failed: ${err.message}`, "error");
  } finally {
    $("ask-go").disabled = false;
  }
}

// --- wiring ------------------------------------------------------------------------------------

function wire() {
  $("search").addEventListener("submit", search);
  $("ask-form").addEventListener("submit", ask);
  $("image").addEventListener("change", () => setImage($("image").files[0]));
  $("query-preview").addEventListener("error", () => { $("query-preview").hidden = true; });
  $("clear-image").addEventListener("click", () => { clearImage(); say("Image query removed."); });
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const file = event.dataTransfer && event.dataTransfer.files[0];
    if (file) setImage(file);
  });
  drop.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      $("image").click();
    }
  });
  document.addEventListener("paste", (event) => {
    const items = event.clipboardData ? [...event.clipboardData.items] : [];
    const picture = items.find((item) => item.kind === "file" && item.type.startsWith("image/"));
    if (picture) {
      event.preventDefault();
      setImage(picture.getAsFile());
    }
  });
  $("close").addEventListener("click", closeViewer);
  $("prev").addEventListener("click", () => openHit(state.open - 1));
  $("next").addEventListener("click", () => openHit(state.open + 1));
  const viewer = $("viewer");
  viewer.addEventListener("close", () => {
    stopVideo();
    $("viewer-body").replaceChildren();
    if (state.opener) state.opener.focus();
  });
  viewer.addEventListener("click", (event) => { if (event.target === viewer) closeViewer(); });
  viewer.addEventListener("keydown", (event) => {
    if (event.key === "ArrowLeft" && state.open > 0 && event.target.tagName !== "VIDEO") openHit(state.open - 1);
    if (event.key === "ArrowRight" && state.open < state.hits.length - 1 && event.target.tagName !== "VIDEO") {
      openHit(state.open + 1);
    }
  });
  document.addEventListener("keydown", (event) => {
    const typing = ["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement.tagName);
    if (event.key === "/" && !typing && !viewer.open) {
      event.preventDefault();
      $("text").focus();
    }
  });
  loadInfo();
}

wire();
