// PCVOS interactive page: plain JavaScript, no dependencies. State lives on the server (session folder);
// this page holds the shown frame, its mask being edited, and the undo stack of this visit.
"use strict";

const $ = (id) => document.getElementById(id);
const canvas = $("canvas");
const ctx = canvas.getContext("2d");

const state = {
  session: null,         // session info from the server
  palette: [],           // [256][3]
  frame: 0,
  image: null,           // HTMLImageElement of the shown frame
  mask: null,            // Uint8Array(W * H) of the shown frame
  maskSource: "none",    // annotation | propagating | propagated | none
  object: 1,             // object being painted
  drawing: false,
  last: null,            // last brush position during a stroke
  polygon: [],           // polygon corners in video pixels
  cursor: null,          // brush outline position
  undo: [],              // {frame, before: Uint8Array, wasAnnotated}
  loadToken: 0,
  job: null,             // {id, cursor} of the propagation being followed
  timings: {},           // propagate click -> first mask on screen (read by the browser test)
};
window.pcvos = state;

// ---------------------------------------------------------------------------------------- server calls
async function api(method, url, body, raw) {
  const options = { method, headers: {} };
  if (body instanceof FormData) options.body = body;
  else if (raw) { options.body = body; options.headers["Content-Type"] = "application/octet-stream"; }
  else if (body !== undefined) { options.body = JSON.stringify(body); options.headers["Content-Type"] = "application/json"; }
  const response = await fetch(url, options);
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail || detail; } catch (e) { /* not JSON */ }
    throw new Error(detail);
  }
  return response;
}
const sessionUrl = (path) => `/api/sessions/${state.session.id}${path}`;

function showError(error) { $("error").textContent = error ? String(error.message || error) : ""; }
function setStatus(text) { $("status").textContent = text; }

// ---------------------------------------------------------------------------------------- sessions
async function loadConfig() {
  const config = await (await api("GET", "/api/config")).json();
  for (const [id, values] of [["set-precision", config.precisions], ["set-memory", config.memories]]) {
    $(id).innerHTML = values.map((v) => `<option value="${v}">${v}</option>`).join("");
  }
  const sessions = await (await api("GET", "/api/sessions")).json();
  $("session-list").innerHTML = '<option value="">reopen a session…</option>' +
    sessions.map((s) => `<option value="${s.id}">${s.id}</option>`).join("");
}

function useSession(info, frame) {
  state.session = info;
  state.palette = info.palette;
  state.undo = [];
  canvas.width = info.width;
  canvas.height = info.height;
  $("slider").max = info.count - 1;
  $("session-name").textContent = `${info.id}: ${info.count} frames, ${info.width}x${info.height}`;
  const s = info.settings;
  $("set-L").value = s.clip_length; $("set-precision").value = s.precision;
  $("set-memory").value = s.memory; $("set-size").value = s.size;
  if (!info.objects.length) state.object = 1;
  else if (!info.objects.some((o) => o.id === state.object)) state.object = info.objects[0].id;
  renderObjects();
  history.replaceState(null, "", `?session=${info.id}`);
  goTo(frame || 0);
}

function updateSession(info) {
  state.session = info;
  $("slider").max = info.count - 1;
  renderObjects();
  renderLabel();
}

async function openPath(path) {
  showError();
  setStatus("opening…");
  useSession(await (await api("POST", "/api/sessions", { path })).json());
}

async function openSession(id) {
  showError();
  useSession(await (await api("GET", `/api/sessions/${id}`)).json());
  const job = state.session.job;
  if (job && job.state === "running") followJob(job.id);
}

// ---------------------------------------------------------------------------------------- frames
async function goTo(frame) {
  if (!state.session) return;
  frame = Math.max(0, Math.min(state.session.count - 1, frame | 0));
  state.frame = frame;
  $("slider").value = frame;
  state.polygon = [];
  const token = ++state.loadToken;
  const image = new Image();
  const loaded = new Promise((resolve, reject) => { image.onload = resolve; image.onerror = reject; });
  image.src = sessionUrl(`/frames/${frame}.jpg`);
  try {
    const [mask] = await Promise.all([fetchMask(frame), loaded]);
    if (token !== state.loadToken) return;   // a later frame was asked for meanwhile
    state.image = image;
    state.mask = mask.data;
    state.maskSource = mask.source;
    render();
    renderLabel();
  } catch (error) {
    if (token === state.loadToken) showError(error);
  }
}

async function fetchMask(frame) {
  const response = await api("GET", sessionUrl(`/masks/${frame}`));
  const source = response.headers.get("X-Mask-Source") || "none";
  const size = state.session.width * state.session.height;
  if (response.status === 204) return { data: new Uint8Array(size), source };
  return { data: new Uint8Array(await response.arrayBuffer()), source };
}

async function reloadMask() {
  const frame = state.frame;
  const mask = await fetchMask(frame);
  if (frame !== state.frame || state.drawing) return;
  state.mask = mask.data;
  state.maskSource = mask.source;
  render();
  renderLabel();
}

function renderLabel() {
  if (!state.session) return;
  const annotated = state.session.annotated.includes(state.frame) ? " · annotated" : "";
  $("frame-label").textContent = `frame ${state.frame} / ${state.session.count - 1}${annotated}`;
  setStatus(`mask: ${state.maskSource} · annotated frames: ${state.session.annotated.join(", ") || "none"}`);
}

// ---------------------------------------------------------------------------------------- drawing
const overlayCanvas = document.createElement("canvas");
const overlayCtx = overlayCanvas.getContext("2d");

function render() {
  if (!state.image) return;
  const { width, height } = canvas;
  ctx.drawImage(state.image, 0, 0, width, height);
  if ($("overlay-on").checked && state.mask) {
    overlayCanvas.width = width; overlayCanvas.height = height;
    const pixels = overlayCtx.createImageData(width, height);
    const out = pixels.data;
    const alpha = Math.round(255 * $("opacity").value / 100);
    const mask = state.mask;
    for (let i = 0; i < mask.length; i++) {
      const id = mask[i];
      if (id === 0) continue;
      const colour = state.palette[id];
      out[4 * i] = colour[0]; out[4 * i + 1] = colour[1]; out[4 * i + 2] = colour[2]; out[4 * i + 3] = alpha;
    }
    overlayCtx.putImageData(pixels, 0, 0);
    ctx.drawImage(overlayCanvas, 0, 0);
  }
  if (state.polygon.length) {
    ctx.strokeStyle = `rgb(${state.palette[state.object].join(",")})`;
    ctx.lineWidth = Math.max(1, width / 400);
    ctx.beginPath();
    state.polygon.forEach(([x, y], i) => (i ? ctx.lineTo(x + 0.5, y + 0.5) : ctx.moveTo(x + 0.5, y + 0.5)));
    if (state.cursor) ctx.lineTo(state.cursor[0] + 0.5, state.cursor[1] + 0.5);
    ctx.stroke();
  } else if (state.cursor && tool() !== "polygon") {
    ctx.strokeStyle = "#fff";
    ctx.lineWidth = Math.max(1, width / 600);
    ctx.beginPath();
    ctx.arc(state.cursor[0] + 0.5, state.cursor[1] + 0.5, brush(), 0, 2 * Math.PI);
    ctx.stroke();
  }
}

const tool = () => document.querySelector('input[name="tool"]:checked').value;
const brush = () => Number($("brush").value);

function videoPoint(event) {
  const rect = canvas.getBoundingClientRect();
  // object-fit: contain keeps the aspect ratio: find the drawn area inside the element box
  const scale = Math.min(rect.width / canvas.width, rect.height / canvas.height);
  const left = rect.left + (rect.width - canvas.width * scale) / 2;
  const top = rect.top + (rect.height - canvas.height * scale) / 2;
  return [Math.floor((event.clientX - left) / scale), Math.floor((event.clientY - top) / scale)];
}

function beginEdit() {
  // The first edit of a frame starts from the mask shown there (a correction of the propagated mask).
  state.undo.push({
    frame: state.frame, before: state.mask.slice(), wasAnnotated: state.maskSource === "annotation",
  });
  if (state.undo.length > 100) state.undo.shift();
}

function stamp(cx, cy) {
  const { width, height } = canvas;
  const r = brush();
  const erase = tool() === "erase";
  const id = state.object;
  const mask = state.mask;
  for (let y = Math.max(0, Math.ceil(cy - r)); y <= Math.min(height - 1, Math.floor(cy + r)); y++) {
    for (let x = Math.max(0, Math.ceil(cx - r)); x <= Math.min(width - 1, Math.floor(cx + r)); x++) {
      if ((x - cx) * (x - cx) + (y - cy) * (y - cy) > r * r) continue;
      const i = y * width + x;
      if (erase) { if (mask[i] === id) mask[i] = 0; } else mask[i] = id;
    }
  }
}

function strokeTo(point) {
  const [x0, y0] = state.last || point;
  const [x1, y1] = point;
  const steps = Math.max(1, Math.ceil(Math.hypot(x1 - x0, y1 - y0) / Math.max(1, brush() / 2)));
  for (let s = 1; s <= steps; s++) stamp(x0 + (x1 - x0) * s / steps, y0 + (y1 - y0) * s / steps);
  if (!state.last) stamp(x1, y1);
  state.last = point;
}

function fillPolygon(points) {
  // Even-odd rule on pixel centres: exact and the same on every browser (no anti-aliasing).
  const { width, height } = canvas;
  const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
  const id = state.object, erase = tool() === "erase", mask = state.mask;
  for (let y = Math.max(0, Math.min(...ys)); y <= Math.min(height - 1, Math.max(...ys)); y++) {
    const cy = y + 0.5;
    const crossings = [];
    for (let i = 0, j = points.length - 1; i < points.length; j = i++) {
      const [xi, yi] = points[i], [xj, yj] = points[j];
      if ((yi + 0.5 > cy) !== (yj + 0.5 > cy)) crossings.push(xi + (cy - yi - 0.5) * (xj - xi) / (yj - yi) + 0.5);
    }
    crossings.sort((a, b) => a - b);
    for (let k = 0; k + 1 < crossings.length; k += 2) {
      for (let x = Math.max(0, Math.ceil(crossings[k] - 0.5)); x <= Math.min(width - 1, Math.floor(crossings[k + 1] - 0.5)); x++) {
        const i = y * width + x;
        if (erase) { if (mask[i] === id) mask[i] = 0; } else mask[i] = id;
      }
    }
  }
}

async function saveMask() {
  const frame = state.frame;
  const data = state.mask.slice();
  try {
    const info = await (await api("PUT", sessionUrl(`/annotations/${frame}`), data, true)).json();
    if (frame === state.frame) state.maskSource = data.some((v) => v) ? "annotation" : "none";
    updateSession(info);
    showError();
  } catch (error) { showError(error); }
}

function ensureObject() {
  if (!state.session.objects.length) { showError("add an object first"); return false; }
  return true;
}

canvas.addEventListener("mousedown", (event) => {
  if (!state.session || !state.mask || event.button !== 0) return;
  canvas.focus();
  if (!ensureObject()) return;
  const point = videoPoint(event);
  if (tool() === "polygon") {
    state.polygon.push(point);
    render();
    return;
  }
  beginEdit();
  state.drawing = true;
  state.last = null;
  strokeTo(point);
  render();
});
canvas.addEventListener("mousemove", (event) => {
  if (!state.session) return;
  state.cursor = videoPoint(event);
  if (state.drawing) strokeTo(state.cursor);
  render();
});
canvas.addEventListener("mouseleave", () => { state.cursor = null; render(); });
window.addEventListener("mouseup", () => {
  if (!state.drawing) return;
  state.drawing = false;
  state.last = null;
  saveMask();
});
canvas.addEventListener("dblclick", (event) => { event.preventDefault(); closePolygon(); });

function closePolygon() {
  // a double click also added its point(s) with mousedown: drop repeated corners
  const points = state.polygon.filter((p, i, all) => i === 0 || p[0] !== all[i - 1][0] || p[1] !== all[i - 1][1]);
  state.polygon = [];
  if (points.length < 3) { render(); return; }
  beginEdit();
  fillPolygon(points);
  render();
  saveMask();
}

async function undo() {
  const entry = state.undo.pop();
  if (!entry) { setStatus("nothing to undo"); return; }
  try {
    let info;
    if (entry.wasAnnotated) info = await (await api("PUT", sessionUrl(`/annotations/${entry.frame}`), entry.before, true)).json();
    else info = await (await api("DELETE", sessionUrl(`/annotations/${entry.frame}`))).json();
    updateSession(info);
    await goTo(entry.frame);
  } catch (error) { showError(error); }
}

// ---------------------------------------------------------------------------------------- objects
function renderObjects() {
  const box = $("objects");
  box.innerHTML = "";
  const objects = state.session ? state.session.objects : [];
  for (const obj of objects) {
    const item = document.createElement("span");
    item.className = "object" + (obj.id === state.object ? " selected" : "");
    item.dataset.id = obj.id;
    item.innerHTML = `<span class="swatch" style="background: rgb(${obj.colour.join(",")})"></span>${obj.id}`;
    item.addEventListener("click", () => { state.object = obj.id; renderObjects(); });
    box.appendChild(item);
  }
  if (!objects.length) box.textContent = "no objects yet";
}

$("add-object").addEventListener("click", async () => {
  if (!state.session) return;
  try {
    const info = await (await api("POST", sessionUrl("/objects"))).json();
    state.object = info.object;
    updateSession(info);
  } catch (error) { showError(error); }
});
$("remove-object").addEventListener("click", async () => {
  if (!state.session || !state.session.objects.length) return;
  if (!confirm(`Remove object ${state.object} from every frame?`)) return;
  try {
    updateSession(await (await api("DELETE", sessionUrl(`/objects/${state.object}`))).json());
    state.undo = state.undo.filter(() => false);   // the stored masks no longer match the undo entries
    if (state.session.objects.length) state.object = state.session.objects[0].id;
    renderObjects();
    goTo(state.frame);
  } catch (error) { showError(error); }
});

// ---------------------------------------------------------------------------------------- propagation
async function propagate(direction) {
  if (!state.session) return;
  showError();
  state.timings = { clicked: performance.now() };
  try {
    const start = $("from-here").checked ? state.frame : null;
    const job = await (await api("POST", sessionUrl("/propagate"), { direction, start })).json();
    followJob(job.id);
  } catch (error) { showError(error); }
}

async function followJob(id) {
  state.job = { id, cursor: 0 };
  $("cancel").disabled = false;
  while (state.job && state.job.id === id) {
    let job;
    try {
      job = await (await api("GET", sessionUrl(`/job?since=${state.job.cursor}`))).json();
    } catch (error) { showError(error); break; }
    state.job.cursor = job.cursor;
    $("progress").max = Math.max(1, job.total);
    $("progress").value = job.done;
    $("job-label").textContent = `${job.direction}: ${job.done} / ${job.total} frames (${job.state})`;
    if (job.frames.length) {
      if ($("follow").checked) await goTo(job.frames[job.frames.length - 1]);
      else if (job.frames.includes(state.frame)) await reloadMask();
      const elapsed = performance.now() - state.timings.clicked;
      if (state.timings.clicked && !state.timings.firstMaskMs && state.maskSource !== "none") {
        state.timings.firstMaskMs = elapsed;
      }
      if (state.timings.clicked && !state.timings.firstPropagatedMs && state.maskSource !== "none" &&
          !state.session.annotated.includes(state.frame)) {
        state.timings.firstPropagatedMs = elapsed;   // the first mask of a frame that was not annotated
      }
    }
    if (job.state !== "running") {
      state.job = null;
      $("cancel").disabled = true;
      const first = state.timings.firstMaskMs ? `, first mask on screen after ${(state.timings.firstMaskMs / 1000).toFixed(2)} s` : "";
      if (job.state === "done") {
        $("job-label").textContent = `${job.direction}: ${job.done} frames in ${job.seconds.toFixed(1)} s ` +
          `(${job.fps ? job.fps.toFixed(2) : "–"} FPS${first}); ${job.changed} masks changed`;
      } else if (job.state === "failed") showError(`propagation failed, earlier masks kept: ${job.error}`);
      else $("job-label").textContent = `${job.direction}: cancelled after ${job.done} frames; earlier masks kept`;
      updateSession(await (await api("GET", sessionUrl(""))).json());
      await reloadMask();
      state.timings.finished = job.state;
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, 150));
  }
}

for (const direction of ["forward", "backward", "both"]) {
  $(`propagate-${direction}`).addEventListener("click", () => propagate(direction));
}
$("cancel").addEventListener("click", async () => {
  try { await api("POST", sessionUrl("/cancel")); } catch (error) { showError(error); }
});

// ---------------------------------------------------------------------------------------- settings, export
$("apply-settings").addEventListener("click", async () => {
  if (!state.session) return;
  const body = {
    clip_length: Number($("set-L").value), precision: $("set-precision").value,
    memory: $("set-memory").value, size: Number($("set-size").value),
  };
  try {
    updateSession(await (await api("PUT", sessionUrl("/settings"), body)).json());
    setStatus("settings applied; the next propagation recomputes every frame");
  } catch (error) { showError(error); }
});

$("export").addEventListener("click", async () => {
  if (!state.session) return;
  showError();
  $("export-links").textContent = "exporting…";
  try {
    const out = await (await api("POST", sessionUrl("/export"), { alpha: $("opacity").value / 100 })).json();
    $("export-links").innerHTML = `${out.masks.length} masks in ${out.folder}<br>` +
      `<a id="download-zip" href="${out.zip}" download>zip (masks + overlay)</a>` +
      (out.overlay ? `<a id="download-overlay" href="${out.overlay}" download>overlay.mp4</a>` : "");
  } catch (error) { $("export-links").textContent = ""; showError(error); }
});

// ---------------------------------------------------------------------------------------- inputs
$("open-form").addEventListener("submit", (event) => {
  event.preventDefault();
  openPath($("open-path").value).catch(showError);
});
$("upload").addEventListener("change", async () => {
  const file = $("upload").files[0];
  if (!file) return;
  const form = new FormData();
  form.append("file", file);
  setStatus(`uploading ${file.name}…`);
  try { useSession(await (await api("POST", "/api/sessions/upload", form)).json()); } catch (error) { showError(error); }
  $("upload").value = "";
});
$("session-list").addEventListener("change", () => {
  const id = $("session-list").value;
  if (id) openSession(id).catch(showError);
});
$("import").addEventListener("change", async () => {
  const file = $("import").files[0];
  if (!file || !state.session) return;
  const form = new FormData();
  form.append("file", file);
  try {
    if (state.mask) beginEdit();
    updateSession(await (await api("POST", sessionUrl(`/annotations/${state.frame}/import`), form)).json());
    await goTo(state.frame);
  } catch (error) { state.undo.pop(); showError(error); }
  $("import").value = "";
});
$("clear-frame").addEventListener("click", async () => {
  if (!state.session || state.maskSource !== "annotation") return;
  beginEdit();
  try {
    updateSession(await (await api("DELETE", sessionUrl(`/annotations/${state.frame}`))).json());
    await goTo(state.frame);
  } catch (error) { showError(error); }
});
$("undo").addEventListener("click", undo);
$("slider").addEventListener("input", () => goTo(Number($("slider").value)));
$("prev").addEventListener("click", () => goTo(state.frame - 1));
$("next").addEventListener("click", () => goTo(state.frame + 1));
$("brush").addEventListener("input", () => { $("brush-label").textContent = $("brush").value; render(); });
$("overlay-on").addEventListener("change", render);
$("opacity").addEventListener("input", render);

document.addEventListener("keydown", (event) => {
  if (event.target instanceof HTMLInputElement && event.target.type === "text") return;
  if (event.target instanceof HTMLSelectElement) return;
  const step = event.shiftKey ? 10 : 1;
  if (event.key === "ArrowLeft") { goTo(state.frame - step); event.preventDefault(); }
  else if (event.key === "ArrowRight") { goTo(state.frame + step); event.preventDefault(); }
  else if ((event.ctrlKey || event.metaKey) && event.key === "z") { undo(); event.preventDefault(); }
  else if (event.key === "Enter" && state.polygon.length) closePolygon();
  else if (event.key === "Escape") { state.polygon = []; render(); }
  else if (event.key === "p") document.querySelector('input[value="paint"]').checked = true;
  else if (event.key === "e") document.querySelector('input[value="erase"]').checked = true;
  else if (event.key === "g") document.querySelector('input[value="polygon"]').checked = true;
  else if (event.key === "[" || event.key === "]") {
    $("brush").value = brush() + (event.key === "]" ? 2 : -2);
    $("brush-label").textContent = $("brush").value;
    render();
  }
});

loadConfig().then(() => {
  const id = new URLSearchParams(location.search).get("session");
  if (id) return openSession(id);
}).catch(showError);
