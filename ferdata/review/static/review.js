// ferdata review: the page's behaviour. Plain JavaScript, no build step, no dependencies.
// Every request carries the token the server printed; writes send it in a header.
"use strict";

const TOKEN = document.querySelector('meta[name="ferdata-token"]').content;
const PAGE = 120; // images fetched per request
const FILTER_NAMES = ["label", "masked", "split", "fold", "face_status", "tag", "leak", "vote"];

const state = {
  meta: null,
  items: [], // loaded images, in the order the server gave them
  total: 0,
  cursor: -1,
  loading: false,
  generation: 0, // bumped when the filters change, so a late page of an old query is dropped
  undo: [], // {kind: "vote", id, before, after} or {kind: "tag", id, tag, on}
  writes: Promise.resolve(), // writes go one after the other, in the order they were made
  keys: {}, // key -> vote
};

const $ = (selector) => document.querySelector(selector);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs = {}) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  return node;
}

async function api(path, body) {
  const options = { headers: { "X-Ferdata-Token": TOKEN } };
  if (body !== undefined) {
    options.method = "POST";
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) {
    const error = new Error(data.error || response.statusText);
    error.status = response.status;
    error.locked = Boolean(data.locked);
    throw error;
  }
  return data;
}

function imageUrl(id, view, size) {
  const query = new URLSearchParams({ id, view, size, token: TOKEN });
  return `/api/image?${query}`;
}

// ------------------------------------------------------------------ messages

let bannerTimer = null;
function banner(text, kind = "error") {
  const node = $("#banner");
  clearTimeout(bannerTimer);
  node.textContent = text;
  node.className = kind;
  node.hidden = false;
  if (kind === "info") bannerTimer = setTimeout(() => { node.hidden = true; }, 4000);
}

function clearBanner() {
  $("#banner").hidden = true;
}

// ------------------------------------------------------------------ controls

function voteWord(vote) {
  if (vote === "not_face") return "not a face";
  if (vote === "flag") return "flag";
  return vote;
}

function fillSelect(select, choices, anyText = "any") {
  select.replaceChildren(el("option", { value: "" }, anyText));
  for (const choice of choices) {
    const text = choice.count === undefined ? choice.value : `${choice.value.replace("_", " ")} (${choice.count})`;
    select.append(el("option", { value: choice.value }, text));
  }
}

function buildControls(meta) {
  const form = $("#filters");
  for (const name of FILTER_NAMES) fillSelect(form.elements[name], meta.facets[name] || []);
  fillSelect(form.elements.order, meta.orders.map((value) => ({ value })), "manifest order");
  form.elements.order.options[0].remove(); // "manifest" is in the list itself
  $("#where").textContent = `${meta.dataset} · ${meta.images.toLocaleString()} images · annotator ${meta.annotator}`;

  const quick = $("#quick");
  const presets = [
    ["label issues", { tag: "label_issue" }],
    ["auto masks", { tag: "auto_mask" }],
    ["leaks", { leak: "yes" }],
    ["not voted yet", { vote: "not_voted" }],
  ];
  if ((meta.facets.face_status || []).some((f) => f.value === "registered")) presets.splice(3, 0, ["registered", { face_status: "registered" }]);
  quick.replaceChildren();
  for (const [text, values] of presets) {
    const button = el("button", { type: "button", "data-preset": JSON.stringify(values) }, text);
    button.addEventListener("click", () => applyPreset(values));
    quick.append(button);
  }
  const clear = el("button", { type: "button" }, "clear filters");
  clear.addEventListener("click", () => applyPreset({}));
  quick.append(clear);

  state.keys = {};
  const keys = $("#keys");
  keys.replaceChildren();
  for (const k of meta.keys) {
    state.keys[k.key] = k.vote;
    keys.append(el("span", {}, el("kbd", {}, k.key), " ", k.name));
  }
  keys.append(
    el("span", {}, el("kbd", {}, "m"), " mask tag on/off"),
    el("span", {}, el("kbd", {}, "u"), " undo"),
    el("span", {}, el("kbd", {}, "←"), el("kbd", {}, "→"), el("kbd", {}, "↑"), el("kbd", {}, "↓"), " move"),
  );
  if (meta.scores) keys.append(el("span", { class: "hint" }, `scores from ${meta.scores}`));
}

function applyPreset(values) {
  const form = $("#filters");
  for (const name of FILTER_NAMES) form.elements[name].value = values[name] || "";
  if (values.tag === "label_issue" && state.meta.orders.includes("label_quality")) form.elements.order.value = "label_quality";
  reload();
}

function query() {
  const form = $("#filters");
  const params = new URLSearchParams();
  for (const name of FILTER_NAMES) if (form.elements[name].value) params.set(name, form.elements[name].value);
  params.set("order", form.elements.order.value || "manifest");
  if (form.elements.desc.checked) params.set("desc", "1");
  for (const button of document.querySelectorAll("#quick button[data-preset]")) {
    const preset = JSON.parse(button.dataset.preset);
    const on = Object.keys(preset).length > 0 && FILTER_NAMES.every((n) => (preset[n] || "") === form.elements[n].value);
    button.classList.toggle("on", on);
  }
  return params;
}

// ------------------------------------------------------------------ the grid

function view() {
  return $("#filters").elements.view.value;
}

function tileCaption(item) {
  const label = item.label === null ? "removed" : item.label;
  const caption = el("figcaption", { title: item.id }, label);
  if (item.tags.includes("label_issue")) caption.append(el("span", { class: "badge issue" }, "issue"));
  if (item.tags.includes("mask")) caption.append(el("span", { class: "badge mask" }, "mask"));
  if (item.leak) caption.append(el("span", { class: "badge leak" }, "leak"));
  if (item.face_status !== "aligned") caption.append(el("span", { class: "badge" }, item.face_status.replace("_", " ")));
  return caption;
}

function tile(item, index) {
  const node = el(
    "figure",
    { class: "tile", "data-index": index, "data-id": item.id },
    el("img", { src: imageUrl(item.id, view(), "thumb"), alt: item.id, loading: "lazy" }),
    el("span", { class: "vote" }, item.vote ? voteWord(item.vote) : ""),
    tileCaption(item),
  );
  node.addEventListener("click", () => select(index));
  return node;
}

function refreshTile(index) {
  const old = document.querySelector(`.tile[data-index="${index}"]`);
  if (!old) return;
  const item = state.items[index];
  old.querySelector(".vote").textContent = item.vote ? voteWord(item.vote) : "";
  old.querySelector("figcaption").replaceWith(tileCaption(item));
}

async function loadMore() {
  if (state.loading || state.items.length >= state.total) return;
  state.loading = true;
  const generation = state.generation;
  try {
    const params = query();
    params.set("offset", state.items.length);
    params.set("limit", PAGE);
    const page = await api(`/api/images?${params}`);
    if (generation !== state.generation) return;
    const grid = $("#grid");
    const sentinel = $("#sentinel");
    for (const item of page.items) {
      state.items.push(item);
      grid.insertBefore(tile(item, state.items.length - 1), sentinel);
    }
    state.total = page.total;
    $("#count").textContent = `${page.total.toLocaleString()} shown by these filters`;
  } catch (error) {
    banner(error.message);
  } finally {
    if (generation === state.generation) state.loading = false;
  }
}

async function reload() {
  state.generation += 1;
  state.loading = false;
  state.items = [];
  state.total = Infinity;
  state.cursor = -1;
  $("#count").textContent = "loading…";
  const grid = $("#grid");
  grid.replaceChildren(el("div", { id: "sentinel" }));
  observer.observe($("#sentinel"));
  await loadMore();
  if (state.items.length) select(0);
  else {
    $("#detail").replaceChildren(el("p", { class: "hint" }, "No image matches these filters."));
    $("#count").textContent = "0 shown by these filters";
  }
  grid.focus({ preventScroll: true });
}

const observer = new IntersectionObserver((entries) => {
  if (entries.some((e) => e.isIntersecting)) loadMore();
}, { root: null, rootMargin: "400px" });

function columns() {
  const tiles = document.querySelectorAll(".tile");
  if (tiles.length < 2) return 1;
  const top = tiles[0].offsetTop;
  let n = 0;
  while (n < tiles.length && tiles[n].offsetTop === top) n += 1;
  return Math.max(1, n);
}

async function move(step) {
  let target = state.cursor + step;
  while (target >= state.items.length && state.items.length < state.total && !state.loading) {
    const before = state.items.length;
    await loadMore();
    if (state.items.length === before) break; // the request failed: the banner says why
  }
  target = Math.max(0, Math.min(target, state.items.length - 1));
  if (target !== state.cursor && state.items.length) select(target);
}

function select(index) {
  const previous = document.querySelector(".tile.current");
  if (previous) previous.classList.remove("current");
  state.cursor = index;
  const node = document.querySelector(`.tile[data-index="${index}"]`);
  if (node) {
    node.classList.add("current");
    node.scrollIntoView({ block: "nearest" });
  }
  showDetail(state.items[index].id);
}

// ------------------------------------------------------------------ the detail

let detailSeq = 0;
async function showDetail(id) {
  const seq = ++detailSeq;
  let d;
  try {
    d = await api(`/api/detail?${new URLSearchParams({ id })}`);
  } catch (error) {
    if (seq === detailSeq) $("#detail").replaceChildren(el("p", { class: "hint" }, error.message));
    return;
  }
  if (seq !== detailSeq) return; // the cursor moved on meanwhile
  $("#detail").replaceChildren(...renderDetail(d));
}

function original(d) {
  const frame = el("div", { class: "frame" }, el("img", { src: imageUrl(d.id, "original", "detail"), alt: `original of ${d.id}` }));
  if (d.width > 0 && d.height > 0 && (d.bbox || d.landmarks)) {
    const overlay = svg("svg", { viewBox: `0 0 ${d.width} ${d.height}`, preserveAspectRatio: "none" });
    if (d.bbox) {
      const [x1, y1, x2, y2] = d.bbox;
      overlay.append(svg("rect", { x: x1, y: y1, width: x2 - x1, height: y2 - y1 }));
    }
    if (d.landmarks) {
      const r = Math.max(d.width, d.height) / 120;
      for (let i = 0; i < d.landmarks.length; i += 2) overlay.append(svg("circle", { cx: d.landmarks[i], cy: d.landmarks[i + 1], r }));
    }
    frame.append(overlay);
  }
  return el("figure", {}, frame, el("figcaption", {}, `original ${d.width}×${d.height}`, d.bbox ? ", detected face and landmarks" : ""));
}

function facts(pairs) {
  const list = el("dl");
  for (const [name, value] of pairs) {
    if (value === null || value === undefined || value === "") continue;
    list.append(el("dt", {}, name), el("dd", {}, String(value)));
  }
  return list;
}

function renderDetail(d) {
  const pictures = el("div", { class: "pictures" }, original(d));
  if (d.crop) pictures.append(el("figure", {}, el("img", { src: imageUrl(d.id, "crop", "thumb"), alt: `aligned crop of ${d.id}` }), el("figcaption", {}, "aligned crop")));
  const label = d.label === null ? "removed" : d.label;
  const parts = [
    el("h2", {}, d.id),
    pictures,
    facts([
      ["label", d.label_status === "original" ? label : `${label} (${d.label_status}; was ${d.label_original})`],
      ["masked", d.masked === null ? "unknown" : `${d.masked}${d.masked_origin ? ` (${d.masked_origin})` : ""}`],
      ["tags", d.tags.map((t) => `${t.tag} (${t.origin})`).join(", ") || "none"],
      ["split", d.split],
      ["fold", d.fold],
      ["subject", d.subject_id],
      ["pair", d.pair_id ? `${d.pair_id}${d.in_pe ? " (MSD-PE)" : ""}` : null],
      ["face", `${d.face_status}${d.det_score !== null && d.det_score !== undefined ? `, score ${d.det_score.toFixed(3)}` : ""}${d.face_error ? ` — ${d.face_error}` : ""}`],
      ["mask score", d.mask_score === null || d.mask_score === undefined ? null : d.mask_score.toFixed(3)],
      ...Object.entries(d.scores).map(([k, v]) => [k, typeof v === "number" ? Number(v.toPrecision(4)) : v]),
    ]),
    el("h3", {}, "votes so far"),
  ];
  parts.push(d.votes.length
    ? el("ul", { class: "votes" }, d.votes.map((v) => el("li", {}, `${v.annotator}: ${voteWord(v.vote) || "ok (not flagged)"}`)))
    : el("p", { class: "hint" }, "none yet"));
  if (d.leaks.length) {
    parts.push(el("h3", {}, `leak partner${d.leaks.length > 1 ? `s (${d.leaks.length})` : ""}`));
    for (const p of d.leaks) {
      const side = (id, text, crop) => el("figure", {}, el("img", { src: imageUrl(id, crop ? "crop" : "original", "thumb"), alt: id }), el("figcaption", {}, text));
      const what = `${p.kind}${p.distance !== null && p.distance !== undefined ? `, distance ${Number(p.distance.toPrecision(3))}` : ""}`;
      parts.push(el("div", { class: "pictures" },
        side(d.id, `this image: ${label}, fold ${d.fold ?? "–"}`, d.crop),
        p.missing ? el("p", { class: "hint" }, `${p.id} is not in the manifest`)
          : side(p.id, `${p.id}: ${p.label ?? "removed"}, fold ${p.fold ?? "–"} (${what})`, p.crop)));
    }
  }
  return parts;
}

// ------------------------------------------------------------------ writes

// Writes that have not been answered yet, shown on <body data-pending> (0: everything is saved).
let pending = 0;
function write(task) {
  pending += 1;
  document.body.dataset.pending = pending;
  state.writes = state.writes.then(task).catch((error) => {
    banner(error.locked ? `Not saved: ${error.message}` : error.message);
  }).finally(() => {
    pending -= 1;
    document.body.dataset.pending = pending;
  });
  return state.writes;
}

function updateMine(count) {
  $("#mine").textContent = `your votes: ${count.toLocaleString()} in ${state.meta.votes_file}`;
}

function indexOf(id) {
  return state.items.findIndex((item) => item.id === id);
}

// Undo entries are pushed when the key is pressed, not when the server answers, so that a quick
// "u" undoes the last key even while its write is still on its way. Writes set an explicit state
// (a vote, or a tag on or off), so undoing a write that failed sets what is already there.
function vote(value) {
  const index = state.cursor;
  const item = state.items[index];
  if (!item) return;
  const before = item.vote;
  const id = item.id;
  item.vote = value;
  refreshTile(index);
  state.undo.push({ kind: "vote", id, before, after: value });
  write(async () => {
    try {
      const answer = await api("/api/vote", { id, vote: value });
      updateMine(answer.votes);
      if (index === state.cursor) showDetail(id);
    } catch (error) {
      item.vote = before;
      refreshTile(index);
      throw error;
    }
  });
  move(1);
}

function toggleTag(tag) {
  const item = state.items[state.cursor];
  if (!item) return;
  const on = !item.tags.includes(tag);
  const id = item.id;
  state.undo.push({ kind: "tag", id, tag, on });
  write(async () => {
    const answer = await api("/api/tag", { id, tag, on });
    applyTagAnswer(answer);
    if (answer.kept_source) banner(`${tag} came with the dataset itself (origin source): kept. Use ferdata tag remove --force to remove it.`, "info");
    else banner(`${tag} ${answer.on ? "added to" : "removed from"} ${id}`, "info");
  });
}

function applyTagAnswer(answer) {
  const index = indexOf(answer.id);
  if (index >= 0) {
    state.items[index].tags = answer.tags;
    state.items[index].origins = answer.origins;
    state.items[index].masked = answer.masked;
    refreshTile(index);
  }
  if (index === state.cursor) showDetail(answer.id);
}

function undo() {
  const entry = state.undo.pop();
  if (!entry) {
    banner("nothing to undo", "info");
    return;
  }
  const index = indexOf(entry.id);
  if (index >= 0) {
    if (entry.kind === "vote") {
      state.items[index].vote = entry.before;
      refreshTile(index);
    }
    select(index);
  }
  write(async () => {
    if (entry.kind === "vote") {
      updateMine((await api("/api/vote", { id: entry.id, vote: entry.before })).votes);
      if (index === state.cursor) showDetail(entry.id);
    } else {
      applyTagAnswer(await api("/api/tag", { id: entry.id, tag: entry.tag, on: !entry.on }));
    }
    banner(`undone: ${entry.kind === "vote" ? `vote on ${entry.id}` : `${entry.tag} on ${entry.id}`}`, "info");
  });
}

// ------------------------------------------------------------------ keyboard

document.addEventListener("keydown", (event) => {
  const target = event.target;
  if (target.matches && target.matches("select, input, textarea")) {
    if (event.key === "Escape") target.blur();
    return;
  }
  if ((event.ctrlKey || event.metaKey) && event.key === "z") {
    event.preventDefault();
    undo();
    return;
  }
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const actions = {
    ArrowRight: () => move(1),
    ArrowLeft: () => move(-1),
    ArrowDown: () => move(columns()),
    ArrowUp: () => move(-columns()),
    m: () => toggleTag("mask"),
    u: undo,
    Backspace: undo,
    Escape: clearBanner,
  };
  const action = actions[event.key] || (state.keys[event.key] && (() => vote(state.keys[event.key])));
  if (!action || state.cursor < 0) return;
  event.preventDefault();
  action();
});

// ------------------------------------------------------------------ start

async function start() {
  try {
    state.meta = await api("/api/meta");
  } catch (error) {
    banner(error.message);
    return;
  }
  buildControls(state.meta);
  updateMine(state.meta.facets.vote[0].count);
  const form = $("#filters");
  form.addEventListener("change", (event) => {
    if (event.target.name === "view") {
      for (const node of document.querySelectorAll(".tile")) {
        node.querySelector("img").src = imageUrl(node.dataset.id, view(), "thumb");
      }
    } else {
      reload();
    }
    event.target.blur();
  });
  form.addEventListener("submit", (event) => event.preventDefault());
  await reload();
  document.body.dataset.pending = 0;
  document.body.dataset.ready = "1";
}

start();
