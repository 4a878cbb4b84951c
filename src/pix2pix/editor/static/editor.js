// The editor page: sends edit operations to the server, which owns the maps, and shows what comes back.
// No build step and no third-party code: everything here is served by `pix2pix edit`.
"use strict";

const $ = (id) => document.getElementById(id);
const ed = {
  info: null, sid: null, width: 256, height: 256, tool: "brush", cls: 0, radius: 6,
  selection: null, version: 0, pending: 0, queue: Promise.resolve(), stroke: null,
};
window.editor = ed;  // for debugging and the browser tests

// ---------------------------------------------------------------------------- server calls

async function api(method, path, body) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
    if (ed.info && init.body.length > ed.info.max_body) {  // the server would refuse it from the header
      throw new Error(`this request is ${(init.body.length / 1048576).toFixed(1)} MiB; the server takes at most ` +
                      `${(ed.info.max_body / 1048576).toFixed(0)} MiB: use smaller images.`);
    }
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let value;
  try { value = JSON.parse(text); } catch (e) { value = { error: text || response.statusText }; }
  if (!response.ok) throw new Error(value.error || `${response.status} ${response.statusText}`);
  return value;
}

// Operations run one after another, in the order the user made them.
function enqueue(task) {
  ed.pending += 1;
  document.body.dataset.busy = "1";
  ed.queue = ed.queue.then(task).catch(showError).finally(() => {
    ed.pending -= 1;
    if (ed.pending === 0) document.body.dataset.busy = "0";
  });
  return ed.queue;
}

function edit(op) {
  if (!ed.sid) return Promise.resolve();
  return enqueue(async () => {
    const start = performance.now();
    const state = await api("POST", `/api/sessions/${ed.sid}/edit`, op);
    await applyState(state, performance.now() - start);
    if (op.op === "select" || (ed.selection && ["style", "randomize", "relabel", "undo", "redo"].includes(op.op))) {
      await loadSwatches();
    }
  });
}

function openDocument(body) {
  return enqueue(async () => {
    const start = performance.now();
    const state = await api("POST", "/api/sessions", body);
    ed.droppedSteps = 0;
    $("history-note").hidden = true;
    await applyState(state, performance.now() - start);
    await loadSwatches();
  });
}

function showError(err) {
  const box = $("error");
  box.textContent = err && err.message ? err.message : String(err);
  box.hidden = false;
  clearStroke();
}

// ---------------------------------------------------------------------------- showing state

function loadImage(b64) {
  const img = new Image();
  img.src = "data:image/png;base64," + b64;
  return img.decode().then(() => img);
}

async function applyState(state, roundTripMs) {
  $("error").hidden = true;
  const resized = state.width !== ed.width || state.height !== ed.height;
  ed.sid = state.session;
  ed.width = state.width;
  ed.height = state.height;
  if (resized) {
    for (const id of ["view", "stroke", "cursor"]) {
      $(id).width = state.width;
      $(id).height = state.height;
    }
    $("result").width = state.width;
    $("result").height = state.height;
  }
  const view = await loadImage(state.view);
  $("view").getContext("2d").drawImage(view, 0, 0);
  if (state.result) {
    $("result").src = "data:image/png;base64," + state.result;
    await $("result").decode();
  }
  clearStroke();
  ed.selection = state.selection;
  $("undo").disabled = !state.can_undo;
  $("redo").disabled = !state.can_redo;
  showHistory(state.history);
  $("doc-name").textContent = `· ${state.name} · ${state.width}×${state.height}`;
  const gen = state.regenerated ? `generated in ${state.gen_ms.toFixed(0)} ms` : "unchanged";
  $("timing").textContent = `· ${gen} · round trip ${roundTripMs.toFixed(0)} ms`;
  for (const what of ["label", "instance", "result"]) {
    $(`dl-${what}`).href = `/api/sessions/${ed.sid}/download/${what}.png?v=${state.version}`;
  }
  showSelection();
  ed.version += 1;
  document.body.dataset.session = ed.sid;
  document.body.dataset.version = String(ed.version);
}

// The server bounds the undo history in bytes; when it drops the oldest steps, say so.
function showHistory(history) {
  if (!history) return;
  $("undo").title = `${history.undo} step${history.undo === 1 ? "" : "s"} to undo`;
  if (history.dropped > 0) {
    ed.droppedSteps = (ed.droppedSteps || 0) + history.dropped;
    const note = $("history-note");
    note.textContent = `Undo history is limited in memory: the ${ed.droppedSteps} oldest ` +
      `step${ed.droppedSteps === 1 ? " was" : "s were"} dropped; ${history.undo} can be undone.`;
    note.hidden = false;
  }
  document.body.dataset.historyDropped = String(ed.droppedSteps || 0);
}

function className(id) {
  const c = ed.info.classes[id];
  return c ? c.name : `class ${id}`;
}

function showSelection() {
  const sel = ed.selection;
  $("selection").hidden = !sel;
  $("selection-none").hidden = !!sel;
  if (!sel) {
    $("swatches").replaceChildren();
    delete $("swatches").dataset.instance;
    return;
  }
  const kind = sel.instance >= 1000 ? `object ${sel.instance}` : "region";
  $("selection-desc").textContent = `${className(sel.class)} ${kind} · ${sel.pixels} px`;
  $("selection-class").value = String(sel.class);
  const canStyle = ed.info.styles && sel.clusters > 0;
  $("randomize").disabled = !canStyle || sel.clusters < 2;
  $("default-style").disabled = !canStyle || sel.style === null;
  $("styles-note").textContent = canStyle ? `${sel.clusters} styles of ${className(sel.style_class)}; ` +
    `current: ${sel.style === null ? "default (0)" : sel.style}` :
    (ed.info.styles ? `no styles for ${className(sel.style_class)}.` : ed.info.styles_note);
}

async function loadSwatches() {
  const box = $("swatches");
  const sel = ed.selection;
  if (!sel || !ed.info.styles || sel.clusters === 0) {
    box.replaceChildren();
    delete box.dataset.instance;
    return;
  }
  const answer = await api("GET", `/api/sessions/${ed.sid}/swatches`);
  const current = answer.style === null ? 0 : answer.style;
  box.replaceChildren(...answer.swatches.map((s) => {
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.index = String(s.index);
    button.title = `style ${s.index}: ${s.count} training objects`;
    button.style.borderColor = `rgb(${s.color.join(",")})`;
    if (s.index === current) button.classList.add("current");
    const img = document.createElement("img");
    img.src = "data:image/png;base64," + s.thumbnail;
    img.alt = `style ${s.index}`;
    button.append(img, document.createTextNode(String(s.index)));
    button.addEventListener("click", () => edit({ op: "style", cluster: s.index }));
    return button;
  }));
  box.dataset.instance = String(answer.instance);
}

// ---------------------------------------------------------------------------- painting

function toImage(ev) {
  const rect = $("cursor").getBoundingClientRect();
  return [(ev.clientX - rect.left) * ed.width / rect.width, (ev.clientY - rect.top) * ed.height / rect.height];
}

function clearStroke() {
  if (ed.stroke) return;  // a stroke in progress keeps its preview
  const c = $("stroke");
  c.getContext("2d").clearRect(0, 0, c.width, c.height);
}

function strokeColour() {
  const id = ed.tool === "erase" ? ed.info.erase_class : ed.cls;
  return `rgba(${ed.info.classes[id].color.join(",")},0.85)`;
}

function drawStrokeSegment(a, b) {
  const ctx = $("stroke").getContext("2d");
  ctx.strokeStyle = ctx.fillStyle = strokeColour();
  ctx.lineWidth = 2 * ed.radius;
  ctx.lineCap = ctx.lineJoin = "round";
  ctx.beginPath();
  ctx.moveTo(a[0], a[1]);
  ctx.lineTo(b[0] + 0.01, b[1]);
  ctx.stroke();
}

function drawCursor(p) {
  const c = $("cursor");
  const ctx = c.getContext("2d");
  ctx.clearRect(0, 0, c.width, c.height);
  if (!p || !(ed.tool === "brush" || ed.tool === "erase")) return;
  ctx.lineWidth = Math.max(1, ed.width / c.getBoundingClientRect().width);
  ctx.strokeStyle = "rgba(255,255,255,0.9)";
  ctx.beginPath();
  ctx.arc(p[0], p[1], ed.radius, 0, 2 * Math.PI);
  ctx.stroke();
}

function growTarget() {
  const sel = ed.selection;
  if (!$("grow").checked || !sel || sel.instance < 1000 || ed.tool !== "brush") return undefined;
  return Math.floor(sel.instance / 1000) === ed.cls ? sel.instance : undefined;
}

function onPointerDown(ev) {
  if (!ed.sid || ev.button !== 0) return;
  const p = toImage(ev);
  if (ed.tool === "fill") {
    edit({ op: "fill", x: p[0], y: p[1], class: ed.cls });
  } else if (ed.tool === "select") {
    edit({ op: "select", x: p[0], y: p[1] });
  } else {
    $("cursor").setPointerCapture(ev.pointerId);
    ed.stroke = [p];
    drawStrokeSegment(p, p);
  }
}

function onPointerMove(ev) {
  const p = toImage(ev);
  drawCursor(p);
  if (!ed.stroke) return;
  const last = ed.stroke[ed.stroke.length - 1];
  // points a quarter of the brush radius apart trace the same stroke, at a fraction of the server's work
  if (Math.hypot(p[0] - last[0], p[1] - last[1]) < Math.max(0.75, ed.radius / 4)) return;
  ed.stroke.push(p);
  drawStrokeSegment(last, p);
}

function onPointerUp(ev) {
  if (!ed.stroke) return;
  const last = ed.stroke[ed.stroke.length - 1];
  const end = ev && ev.type === "pointerup" ? toImage(ev) : last;
  if (Math.hypot(end[0] - last[0], end[1] - last[1]) >= 0.75) {  // the stroke ends where the pointer did
    ed.stroke.push(end);
    drawStrokeSegment(last, end);
  }
  const points = ed.stroke.map(([x, y]) => [Math.round(x * 100) / 100, Math.round(y * 100) / 100]);
  ed.stroke = null;  // the preview stays until the answer's view replaces it
  if (ed.tool === "erase") {
    edit({ op: "erase", points, radius: ed.radius });
  } else {
    const op = { op: "stroke", points, radius: ed.radius, class: ed.cls };
    const grow = growTarget();
    if (grow !== undefined) op.grow = grow;
    edit(op);
  }
}

// ---------------------------------------------------------------------------- controls

function setTool(tool) {
  ed.tool = tool;
  for (const r of document.querySelectorAll("input[name=tool]")) r.checked = r.value === tool;
  drawCursor(null);
}

function setClass(id) {
  ed.cls = id;
  for (const b of document.querySelectorAll("#legend button")) b.classList.toggle("current", Number(b.dataset.id) === id);
}

function setRadius(r) {
  ed.radius = Math.max(1, Math.min(64, r));
  $("radius").value = String(ed.radius);
  $("radius-out").textContent = String(ed.radius);
}

function buildLegend() {
  const items = ed.info.classes.map((c) => {
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.type = "button";
    b.dataset.id = String(c.id);
    const chip = document.createElement("span");
    chip.className = "chip";
    chip.style.background = `rgb(${c.color.join(",")})`;
    const name = document.createElement("span");
    name.textContent = (c.thing ? "● " : "") + c.name + (c.id === ed.info.erase_class ? " (eraser)" : "");
    const id = document.createElement("span");
    id.className = "class-id";
    id.textContent = String(c.id);
    b.append(chip, name, id);
    b.addEventListener("click", () => setClass(c.id));
    li.append(b);
    return li;
  });
  $("legend").replaceChildren(...items);
  $("selection-class").replaceChildren(...ed.info.classes.map((c) => new Option(`${c.id} ${c.name}`, String(c.id))));
}

function readFile(input) {
  const file = input.files && input.files[0];
  if (!file) return Promise.resolve(null);
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(new Error(`could not read ${file.name}`));
    reader.readAsDataURL(file);
  });
}

async function upload() {
  try {
    const label = await readFile($("upload-label"));
    if (!label) throw new Error("choose a label map file to upload");
    const instance = await readFile($("upload-instance"));
    const body = { source: "upload", label, filename: $("upload-label").files[0].name };
    if (instance) body.instance = instance;
    await openDocument(body);
  } catch (err) {
    showError(err);
  }
}

function wire() {
  const top = $("cursor");
  top.addEventListener("pointerdown", onPointerDown);
  top.addEventListener("pointermove", onPointerMove);
  top.addEventListener("pointerup", onPointerUp);
  top.addEventListener("pointercancel", onPointerUp);
  top.addEventListener("pointerleave", () => drawCursor(null));
  for (const r of document.querySelectorAll("input[name=tool]")) r.addEventListener("change", () => setTool(r.value));
  $("radius").addEventListener("input", () => setRadius(Number($("radius").value)));
  $("undo").addEventListener("click", () => edit({ op: "undo" }));
  $("redo").addEventListener("click", () => edit({ op: "redo" }));
  $("open-dataset").addEventListener("click", () => {
    const [split, name] = JSON.parse($("dataset").value || "[]");
    if (name) openDocument({ source: "dataset", split, name });
  });
  $("upload").addEventListener("click", upload);
  $("new-blank").addEventListener("click", () => openDocument({
    source: "blank", width: Number($("blank-width").value), height: Number($("blank-height").value), fill: ed.cls,
  }));
  $("selection-class").addEventListener("change", () => edit({ op: "relabel", class: Number($("selection-class").value) }));
  $("randomize").addEventListener("click", () => edit({ op: "randomize" }));
  $("randomize-all").addEventListener("click", () => edit({ op: "randomize", all: true }));
  $("default-style").addEventListener("click", () => edit({ op: "style", cluster: null }));
  document.addEventListener("keydown", (ev) => {
    if (ev.target instanceof HTMLInputElement || ev.target instanceof HTMLSelectElement) return;
    const key = ev.key.toLowerCase();
    if ((ev.ctrlKey || ev.metaKey) && key === "z") {
      edit({ op: ev.shiftKey ? "redo" : "undo" });
    } else if ((ev.ctrlKey || ev.metaKey) && key === "y") {
      edit({ op: "redo" });
    } else if (ev.ctrlKey || ev.metaKey || ev.altKey) {
      return;
    } else if (key in { b: 1, f: 1, e: 1, s: 1 }) {
      setTool({ b: "brush", f: "fill", e: "erase", s: "select" }[key]);
    } else if (key === "[" || key === "]") {
      setRadius(ed.radius + (key === "]" ? 2 : -2));
    } else if (key === "escape") {
      edit({ op: "deselect" });
    } else {
      return;
    }
    ev.preventDefault();
  });
}

async function start() {
  wire();
  try {
    ed.info = await api("GET", "/api/info");
    const styles = ed.info.styles ? "styles from k-means clusters" : "no styles";
    $("model-info").textContent = `${ed.info.family} · ${ed.info.label_nc} classes (${ed.info.label_set}) · ` +
      `${styles} · ${ed.info.device}`;
    buildLegend();
    const first = ed.info.classes.find((c) => c.id !== ed.info.erase_class) || ed.info.classes[0];
    setClass(first.id);
    setRadius(ed.radius);
    const listing = await api("GET", "/api/dataset");
    const select = $("dataset");
    select.replaceChildren(...listing.items.map((it) => new Option(`${it.split} / ${it.name}`,
      JSON.stringify([it.split, it.name]))));
    $("dataset-row").hidden = listing.items.length === 0;
    if (listing.items.length) {
      const firstTest = listing.items.find((it) => it.split === "test") || listing.items[0];
      select.value = JSON.stringify([firstTest.split, firstTest.name]);
      await openDocument({ source: "dataset", split: firstTest.split, name: firstTest.name });
    } else {
      await openDocument({ source: "blank", width: 256, height: 256, fill: first.id });
    }
  } catch (err) {
    showError(err);
  }
}

start();
