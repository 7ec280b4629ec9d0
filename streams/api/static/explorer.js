// graphrag-streams explorer: one page over the HTTP API (no framework; cytoscape.js for the graph).
// Every text from the graph goes in through textContent, and only youtu.be links become hrefs.
"use strict";

const TYPE_COLOURS = {
  PERSON: "#d9534f", ORGANIZATION: "#0d6efd", LOCATION: "#198754", EVENT: "#fd7e14", CONCEPT: "#6f42c1",
  TECHNOLOGY: "#20c997", WORK: "#d63384", SPECIES: "#0dcaf0", SUBSTANCE: "#795548",
};
const colour = (type) => TYPE_COLOURS[type] || "#6c757d";
let cy = null;            // the cytoscape instance (window.explorerGraph for tests)
let currentEntity = null; // the entity whose detail is shown

// ------------------------------------------------------------------ small helpers

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") node.textContent = v;
    else if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) node.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function videoLink(moment, label) {
  const safe = typeof moment.url === "string" && moment.url.startsWith("https://youtu.be/");
  return el("a", { href: safe ? moment.url : "#", target: "_blank", rel: "noopener", class: "moment",
                   text: label || moment.cite });
}

function typeBadge(type) {
  const b = el("span", { class: "type", text: type || "?" });
  b.style.background = colour(type);
  return b;
}

function showError(message) {
  const box = document.getElementById("error");
  box.textContent = message;
  box.hidden = false;
  clearTimeout(showError.timer);
  showError.timer = setTimeout(() => { box.hidden = true; }, 6000);
}

async function api(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  const body = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

// ------------------------------------------------------------------ explore: search

async function search() {
  const q = document.getElementById("search").value.trim();
  const type = document.getElementById("search-type").value;
  const params = new URLSearchParams({ search: q, limit: "30" });
  if (type) params.set("type", type);
  try {
    const found = await api(`/api/entities?${params}`);
    if (q !== document.getElementById("search").value.trim()) return; // a newer search is on its way
    const list = document.getElementById("results");
    list.dataset.query = q;
    list.replaceChildren(...found.map((e) => el("li", {},
      el("button", { type: "button", "data-id": e.id, onclick: () => { location.hash = `#/entity/${encodeURIComponent(e.id)}`; } },
        el("span", { text: e.name }), typeBadge(e.type),
        el("span", { class: "muted", text: ` ${e.mention_count} mentions` })))));
    if (!found.length) list.replaceChildren(el("li", { class: "muted", text: "No entity matches." }));
  } catch (err) { showError(`Search failed: ${err.message}`); }
}

// ------------------------------------------------------------------ explore: graph and detail

function drawNeighbourhood(hood) {
  const maxMentions = Math.max(1, ...hood.nodes.map((n) => n.mention_count));
  const elements = [
    ...hood.nodes.map((n) => ({ data: { id: n.id, label: n.name, type: n.type, mentions: n.mention_count,
                                        size: 18 + 42 * Math.sqrt(n.mention_count / maxMentions),
                                        colour: colour(n.type), center: n.id === hood.center ? 1 : 0 } })),
    ...hood.edges.map((e) => ({ data: { id: e.id, source: e.source, target: e.target, label: e.type,
                                        width: 1 + Math.min(6, Math.log2(1 + e.weight)) } })),
  ];
  if (cy) cy.destroy();
  cy = cytoscape({
    container: document.getElementById("graph"),
    elements,
    style: [
      { selector: "node", style: { "background-color": "data(colour)", width: "data(size)", height: "data(size)",
                                   label: "data(label)", "font-size": 11, color: "#1d2330",
                                   "text-valign": "bottom", "text-margin-y": 3 } },
      { selector: "node[center = 1]", style: { "border-width": 3, "border-color": "#1d2330" } },
      { selector: "node:selected", style: { "border-width": 3, "border-color": "#6ea8fe" } },
      { selector: "edge", style: { width: "data(width)", "line-color": "#c8ced8", "target-arrow-color": "#c8ced8",
                                   "target-arrow-shape": "triangle", "curve-style": "bezier",
                                   "font-size": 9, color: "#4a5263", "text-rotation": "autorotate" } },
      // Relation names only on the selected node's edges: all of them at once are unreadable.
      { selector: "edge.near", style: { label: "data(label)", "line-color": "#8a93a3", "target-arrow-color": "#8a93a3" } },
    ],
    layout: { name: "cose", animate: false, randomize: false, nodeRepulsion: () => 9000, idealEdgeLength: () => 90 },
  });
  window.explorerGraph = cy;
  cy.on("tap", "node", (evt) => showEntity(evt.target.id(), { redraw: false }));
  cy.on("dbltap", "node", (evt) => { location.hash = `#/entity/${encodeURIComponent(evt.target.id())}`; });
  const types = [...new Set(hood.nodes.map((n) => n.type))].sort();
  document.getElementById("legend").replaceChildren(...types.map((t) => {
    const s = el("span", { text: t });
    s.style.setProperty("--c", colour(t));
    return s;
  }));
  document.getElementById("graph").dataset.nodes = String(hood.nodes.length);
}

function renderDetail(e) {
  const box = document.getElementById("detail");
  const parts = [el("h2", { text: e.name }, typeBadge(e.type)),
                 el("p", { class: "muted", text: `${e.mention_count} mentions in ${e.video_count} video(s)` })];
  if (e.aliases.length > 1) parts.push(el("p", { class: "muted", text: `also: ${e.aliases.slice(1).join(", ")}` }));
  if (e.description) parts.push(el("p", { text: e.description }));
  parts.push(el("h3", { text: `Evidence (${e.evidence.length})` }));
  parts.push(el("ul", { class: "evidence", id: "evidence" }, ...e.evidence.map((ev) => el("li", {},
    videoLink(ev.moment), el("span", { class: "excerpt", text: ` “${ev.excerpt}”` })))));
  if (e.neighbours.length) {
    parts.push(el("h3", { text: `Relations (${e.neighbours.length})` }));
    parts.push(el("ul", { class: "neighbours" }, ...e.neighbours.map((n) => el("li", {},
      el("span", { text: n.direction === "out" ? `${n.type.toLowerCase().replaceAll("_", " ")} ` : "← " }),
      el("a", { href: `#/entity/${encodeURIComponent(n.entity.id)}`, text: n.entity.name }),
      el("span", { class: "muted", text: n.direction === "in" ? ` (${n.type.toLowerCase().replaceAll("_", " ")})` : "" }),
      el("span", { class: "muted", text: ` · weight ${n.weight}` })))));
  }
  if (e.communities.length) {
    parts.push(el("h3", { text: "Communities" }));
    parts.push(el("ul", {}, ...e.communities.map((c) => el("li", {},
      el("a", { href: `#/community/${encodeURIComponent(c.id)}`, text: c.title || c.id }),
      el("span", { class: "muted", text: ` level ${c.level}, ${c.size} entities` })))));
  }
  box.replaceChildren(...parts);
  box.dataset.entity = e.id;
}

let latestEntityRequest = 0;
async function showEntity(id, { redraw = true } = {}) {
  const request = ++latestEntityRequest;
  try {
    const [detail, hood] = await Promise.all([api(`/api/entities/${encodeURIComponent(id)}`),
                                              redraw ? api(`/api/entities/${encodeURIComponent(id)}/neighbourhood`) : null]);
    if (request !== latestEntityRequest) return; // the user has moved on to another entity
    if (hood) drawNeighbourhood(hood);
    currentEntity = detail.id;
    renderDetail(detail);
    if (cy) {
      cy.$("node:selected").unselect();
      cy.edges().removeClass("near");
      cy.$id(detail.id).select().connectedEdges().addClass("near");
    }
    document.querySelectorAll("#results button").forEach((b) => b.classList.toggle("selected", b.dataset.id === detail.id));
  } catch (err) { showError(`Could not load the entity: ${err.message}`); }
}

// ------------------------------------------------------------------ communities

async function loadCommunities() {
  const level = document.getElementById("community-level").value;
  try {
    const list = await api(`/api/communities?limit=200${level !== "" ? `&level=${level}` : ""}`);
    const levels = document.getElementById("community-level");
    if (levels.options.length === 1) {
      const all = [...new Set(list.map((c) => c.level))].sort((a, b) => a - b);
      all.forEach((l) => levels.append(el("option", { value: String(l), text: String(l) })));
    }
    const box = document.getElementById("community-list");
    box.replaceChildren(...list.map((c) => el("li", {}, el("button", { type: "button", "data-id": c.id,
      onclick: () => { location.hash = `#/community/${encodeURIComponent(c.id)}`; } },
      el("span", { text: c.title || c.id }), el("span", { class: "muted", text: ` L${c.level} · ${c.size}` })))));
    if (!list.length) box.replaceChildren(el("li", { class: "muted", text: "No communities yet: run `graphrag-streams communities run`." }));
  } catch (err) { showError(`Could not list communities: ${err.message}`); }
}

async function showCommunity(id) {
  try {
    const c = await api(`/api/communities/${encodeURIComponent(id)}`);
    const parts = [el("h2", { text: c.title || c.id }),
                   el("p", { class: "muted", text: `level ${c.level} · ${c.size} entities · rating ${c.rating ?? "?"}` }),
                   el("p", { text: c.summary })];
    if (c.findings.length) {
      parts.push(el("h3", { text: "Findings" }));
      parts.push(el("ul", { class: "findings" }, ...c.findings.map((f) => el("li", {}, el("span", { text: `${f.text} ` }),
        ...f.evidence.map((m) => videoLink(m))))));
    }
    parts.push(el("h3", { text: "Members" }));
    parts.push(el("p", {}, ...c.members.slice(0, 200).flatMap((m, i) => [i ? ", " : "",
      el("a", { href: `#/entity/${encodeURIComponent(m.id)}`, text: m.name })])));
    document.getElementById("community-detail").replaceChildren(...parts);
  } catch (err) { showError(`Could not load the community: ${err.message}`); }
}

// ------------------------------------------------------------------ ask

function answerLine(line) {
  // "[cite](https://youtu.be/...)" markdown links and bare youtu.be links become real links;
  // the rest stays text.
  const out = el("div", { class: "answer-line" });
  const re = /\[([^\]]+)\]\((https:\/\/youtu\.be\/[^)\s]+)\)|(https:\/\/youtu\.be\/[^\s:)]+)/g;
  let last = 0; let m;
  while ((m = re.exec(line)) !== null) {
    const href = m[2] || m[3];
    out.append(line.slice(last, m.index), el("a", { href, target: "_blank", rel: "noopener", text: m[1] || href }));
    last = m.index + m[0].length;
  }
  out.append(line.slice(last));
  return out;
}

async function ask(event) {
  event.preventDefault();
  const q = document.getElementById("question").value.trim();
  if (!q) return;
  const mode = document.getElementById("ask-mode").value;
  const box = document.getElementById("answer");
  box.replaceChildren(el("p", { class: "muted", text: "Thinking…" }));
  try {
    const a = await api(`/api/query?${new URLSearchParams({ q, mode })}`);
    const parts = [el("div", { class: "answer-text" }, ...a.answer.split("\n").map(answerLine))];
    if (a.citations.length) {
      parts.push(el("h3", { text: `Citations (${a.citations.length})` }));
      parts.push(el("ul", { class: "citations", id: "citations" }, ...a.citations.map((c) => el("li", {}, videoLink(c)))));
    }
    if (a.entities.length) {
      parts.push(el("p", { class: "muted" }, "Entities: ", ...a.entities.flatMap((e, i) => [i ? ", " : "",
        el("a", { href: `#/entity/${encodeURIComponent(e.id)}`, text: e.name })])));
    }
    parts.push(el("p", { class: "muted", text: `answered by ${a.generated_by}` }));
    box.replaceChildren(...parts);
  } catch (err) { box.replaceChildren(); showError(`The question failed: ${err.message}`); }
}

// ------------------------------------------------------------------ pipeline

async function loadPipeline() {
  try {
    const [p, videos] = await Promise.all([api("/api/pipeline"), api("/api/videos")]);
    const card = (label, value) => el("div", { class: "card" }, el("b", { text: String(value) }), label);
    document.getElementById("pipeline-totals").replaceChildren(
      el("div", { class: "cards" },
        ...Object.entries(p.videos_by_status).map(([s, n]) => card(`videos ${s}`, n)),
        card("chunks", p.counts.chunks), card("entities", p.counts.entities), card("relations", p.counts.relations),
        card("dead letters", p.dead_letters ?? "?")),
      el("p", { class: "muted", id: "dlq-breakdown", text: p.dead_letters_error ? p.dead_letters_error : p.dead_letters
        ? `dead letters by stage: ${Object.entries(p.dead_letters_by_stage).map(([k, v]) => `${k} ${v}`).join(", ")}; ` +
          `by reason: ${Object.entries(p.dead_letters_by_reason).map(([k, v]) => `${k} ${v}`).join(", ")}`
        : "no dead letters" }),
      el("p", { class: "muted", id: "stage-breakdown", text: "videos per stage: " +
        Object.entries(p.videos_by_stage).map(([stage, states]) =>
          `${stage} ${Object.entries(states).map(([s, n]) => `${n} ${s}`).join(", ")}`).join("; ") }));
    document.querySelector("#videos-table tbody").replaceChildren(...videos.map((v) => el("tr", {},
      el("td", {}, videoLink({ url: `https://youtu.be/${v.video_id}`, cite: v.video_id })),
      el("td", { text: v.title || "" }),
      el("td", { class: `status-${v.status}`, text: v.status }),
      el("td", { text: `${v.chunks_stored}/${v.chunk_count ?? "?"}` }),
      el("td", { text: Object.entries(v.stages).sort().map(([k, s]) => `${k}=${s}`).join(" ") }),
      el("td", { text: v.error || "" }))));
  } catch (err) { showError(`Could not load the pipeline: ${err.message}`); }
}

// ------------------------------------------------------------------ routing

let pipelineTimer = null;
function decoded(text) {
  try { return decodeURIComponent(text); } catch { return text; }
}

function route() {
  const [, view = "explore", arg] = location.hash.match(/^#\/([^/]*)\/?(.*)$/) || [];
  const section = view === "entity" ? "explore" : view === "community" ? "communities" : view;
  document.querySelectorAll(".view").forEach((v) => { v.hidden = v.id !== `view-${section}`; });
  document.querySelectorAll("nav a[data-view]").forEach((a) => a.classList.toggle("active", a.dataset.view === section));
  clearInterval(pipelineTimer);
  if (view === "entity" && arg) showEntity(decoded(arg));
  if (section === "communities") { loadCommunities(); if (view === "community" && arg) showCommunity(decoded(arg)); }
  if (section === "pipeline") { loadPipeline(); pipelineTimer = setInterval(loadPipeline, 5000); }
}

document.addEventListener("DOMContentLoaded", () => {
  const typeSelect = document.getElementById("search-type");
  api("/api/entity-types").then((types) => Object.entries(types).forEach(([t, n]) =>
    typeSelect.append(el("option", { value: t, text: `${t.toLowerCase()} (${n})` })))).catch(() => {});
  let timer = null;
  document.getElementById("search").addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(search, 200); });
  document.getElementById("search-form").addEventListener("submit", (e) => { e.preventDefault(); search(); });
  typeSelect.addEventListener("change", search);
  document.getElementById("community-level").addEventListener("change", loadCommunities);
  document.getElementById("ask-form").addEventListener("submit", ask);
  window.addEventListener("hashchange", route);
  search();
  route();
});
