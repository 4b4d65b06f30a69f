// MOM web view: draws /ui/api/state on the Poincaré disk, follows /ui/api/events (server-sent
// events) and replays the receipts of /ui/api/receipts. Read-only; no dependencies.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const state = { snapshot: null, receipts: [], moves: [], selected: null, head: undefined, playing: null };

function $(id) { return document.getElementById(id); }
function svg(tag, attrs) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  return el;
}
function html(tag, text, attrs) {
  const el = document.createElement(tag);
  if (text !== undefined && text !== null) el.textContent = String(text);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  return el;
}
function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); }
function fmt(x, digits) { return x === null || x === undefined ? "–" : Number(x).toFixed(digits === undefined ? 2 : digits); }

// Colours: hue per region, lightness per zone within it.
function palette(nodes) {
  const regions = [...new Set(nodes.map(n => n.region || "?"))].sort();
  const zones = {};
  for (const n of nodes) {
    const r = n.region || "?";
    (zones[r] = zones[r] || new Set()).add(n.zone || "?");
  }
  const colour = {};
  regions.forEach((r, i) => {
    const hue = Math.round((360 * i) / Math.max(regions.length, 1) + 200) % 360;
    const zs = [...zones[r]].sort();
    zs.forEach((z, j) => { colour[r + "\u0000" + z] = `hsl(${hue}, 65%, ${40 + (35 * j) / Math.max(zs.length, 1)}%)`; });
  });
  return { colour: n => colour[(n.region || "?") + "\u0000" + (n.zone || "?")] || "#999", regions, zones };
}

// SVG path of a geodesic computed by the operator (geometry::disk::geodesic), in disk
// coordinates (the #plot group flips y, so the arc's sweep flag is its ccw flag).
function geodesicPath(g) {
  const [x1, y1] = g.from, [x2, y2] = g.to;
  if (g.kind === "line") return `M${x1},${y1} L${x2},${y2}`;
  return `M${x1},${y1} A${g.r},${g.r} 0 0 ${g.ccw ? 1 : 0} ${x2},${y2}`;
}

function render(s) {
  state.snapshot = s;
  $("role").textContent = s.leading ? "leader" : "follower";
  $("version").textContent = "v" + s.version;
  $("projection").textContent = "Projection: " + s.projection;
  const notes = $("notes");
  clear(notes);
  for (const n of s.notes) notes.appendChild(html("div", n, { class: "note" }));
  drawDisk(s);
  drawTables(s);
  if (s.receiptHead !== state.head) {
    state.head = s.receiptHead;
    loadReceipts();
  }
}

function drawDisk(s) {
  const pal = palette(s.nodes);
  const pos = {};
  for (const n of s.nodes) if (n.xy) pos[n.name] = n.xy;
  const links = $("links"), edges = $("edges"), moves = $("moves"), nodes = $("nodes"), targets = $("targets"), labels = $("labels");
  for (const g of [links, edges, moves, nodes, targets, labels]) clear(g);
  for (const n of s.nodes) {
    if (!n.xy) continue;
    const g = svg("g", { class: "node " + n.health, "data-node": n.name });
    const c = svg("circle", { cx: n.xy[0], cy: n.xy[1], r: 0.022 + Math.min(n.agentPods, 6) * 0.004, fill: pal.colour(n) });
    const title = svg("title");
    title.textContent = `${n.name} (${n.region || "?"}/${n.zone || "?"}) ${n.health}${n.failedReason ? ": " + n.failedReason : ""}; ${n.agentPods} agent pods`;
    c.appendChild(title);
    g.appendChild(c);
    nodes.appendChild(g);
    // Labels point inwards so the ones on the rim stay inside the picture.
    const right = n.xy[0] <= 0;
    const t = svg("text", { x: n.xy[0] + (right ? 0.035 : -0.035), y: -n.xy[1] + 0.012, "text-anchor": right ? "start" : "end" });
    t.textContent = n.name;
    labels.appendChild(t);
  }
  for (const a of s.agents) {
    if (!a.target) continue;
    const [x, y] = a.target;
    for (const p of a.pods) {
      if (p.node && pos[p.node]) links.appendChild(svg("line", { class: "link", x1: x, y1: y, x2: pos[p.node][0], y2: pos[p.node][1] }));
    }
    const g = svg("g", { class: "target", "data-target": a.id });
    const d = 0.03;
    const path = svg("path", { d: `M${x},${y + d} L${x + d},${y} L${x},${y - d} L${x - d},${y} z` });
    const title = svg("title");
    title.textContent = `target of ${a.id}: ${a.replicas}/${a.desired} replicas` + (a.targetNear ? ` (drawn by its nearest node, ${a.targetNear})` : "");
    path.appendChild(title);
    g.appendChild(path);
    targets.appendChild(g);
    // Labels above the target, alternately to its left and right, so fanned-out neighbours'
    // labels do not overlap each other (nor the node label beside the node).
    const near = s.agents.filter(b => b.target && Math.hypot(b.target[0] - x, b.target[1] - y) < 0.15);
    const meanX = near.reduce((sum, b) => sum + b.target[0], 0) / near.length;
    const left = x < meanX || (x === meanX && s.agents.indexOf(a) % 2 === 0);
    const t = svg("text", { x: x + (left ? -0.02 : 0.02), y: -y - 0.04, class: "agent-label", "text-anchor": left ? "end" : "start" });
    t.textContent = `${a.name} ×${a.replicas}`;
    labels.appendChild(t);
  }
  for (const e of s.edges) {
    const p = svg("path", { class: "peer", d: geodesicPath(e.geodesic), "data-edge": e.from + " → " + e.to });
    edges.appendChild(p);
  }
  for (const m of state.moves.slice(-20)) {
    const a = pos[m.from], b = pos[m.to];
    if (!a || !b) continue;
    moves.appendChild(svg("line", { class: "move", x1: a[0], y1: a[1], x2: b[0], y2: b[1], "data-move": m.pod }));
  }
  const legend = $("legend");
  clear(legend);
  for (const r of pal.regions) {
    for (const z of [...pal.zones[r]].sort()) {
      const span = html("span", `${r} / ${z}`);
      const dot = html("i");
      dot.style.background = pal.colour({ region: r === "?" ? null : r, zone: z === "?" ? null : z });
      span.prepend(dot);
      legend.appendChild(span);
    }
  }
  legend.appendChild(html("span", "◆ agent target, thin lines to its replicas; purple arcs: peer geodesics; orange arrows: descheduler moves; red ring: failed node"));
}

function drawTables(s) {
  const agents = $("agents").tBodies[0];
  clear(agents);
  if (s.agents.length === 0) agents.appendChild(html("tr")).appendChild(html("td", "no agents yet", { colspan: 8 }));
  for (const a of s.agents) {
    const tr = html("tr", null, { "data-agent": a.id, "data-replicas": a.replicas, "data-desired": a.desired });
    for (const v of [a.id, a.workloadType, a.desired, a.replicas, a.ready, a.pool, a.quota ?? "–", fmt(a.payment)]) tr.appendChild(html("td", v));
    if (a.budgetRefusal) tr.title = a.budgetRefusal;
    agents.appendChild(tr);
  }
  const pools = $("pools").tBodies[0];
  clear(pools);
  for (const p of s.pools) {
    const tr = html("tr", null, { "data-pool": p.name });
    for (const v of [p.name, p.nodes, p.agents, p.wanted, p.pressure || "not measured", fmt(p.payments), p.budgetCap || "–"]) tr.appendChild(html("td", v));
    pools.appendChild(tr);
  }
  const b = s.budget;
  $("budget").textContent = b.maxHourlyCost === null || b.maxHourlyCost === undefined
    ? "No budget set (MomConfig spec.budget.maxHourlyCost)."
    : `Budget: ${fmt(b.hourlyCost)} of ${fmt(b.maxHourlyCost)} per hour.` + b.refusals.map(([a, w]) => ` ${a}: ${w}.`).join("");
  const nodes = $("nodes-table").tBodies[0];
  clear(nodes);
  if (s.nodes.length === 0) nodes.appendChild(html("tr")).appendChild(html("td", "no nodes yet", { colspan: 6 }));
  for (const n of s.nodes) {
    const tr = html("tr", null, { "data-node-row": n.name, class: n.health });
    for (const v of [n.name, n.region || "–", n.zone || "–", n.pool, n.health, n.agentPods]) tr.appendChild(html("td", v));
    if (n.failedReason) tr.title = n.failedReason;
    nodes.appendChild(tr);
  }
}

async function loadReceipts() {
  try {
    const r = await fetch("/ui/api/receipts?limit=200");
    if (!r.ok) { $("chain").textContent = await r.text(); return; }
    const t = await r.json();
    state.receipts = t.receipts;
    state.moves = t.moves;
    const rep = t.report;
    $("chain").textContent = rep.receipts === 0
      ? "no receipts yet"
      : `chain ${rep.firstSequence}…${rep.lastSequence}: ` + (t.ok ? "verified" : `${rep.problems.length} problem(s)`) +
        ` (${t.trustedKeys} trusted key(s), ${t.leftOut} object(s) left out); showing the newest ${t.receipts.length}`;
    drawTimeline();
    if (state.snapshot) drawDisk(state.snapshot);
  } catch (e) {
    $("chain").textContent = "receipts unavailable: " + e;
  }
}

function drawTimeline() {
  const tl = $("timeline");
  clear(tl);
  state.receipts.forEach((r, i) => {
    const b = html("button", `#${r.sequence} ${r.action}`, { type: "button", class: "tick " + r.verification, "data-sequence": r.sequence });
    b.addEventListener("click", () => select(i));
    tl.appendChild(b);
  });
  const scrub = $("scrub");
  scrub.max = Math.max(state.receipts.length - 1, 0);
  if (state.selected !== null) {
    const i = state.receipts.findIndex(r => r.sequence === state.selected);
    if (i >= 0) select(i);
  }
}

function select(i) {
  const r = state.receipts[i];
  if (!r) return;
  state.selected = r.sequence;
  $("scrub").value = i;
  $("scrub-label").textContent = `#${r.sequence} (${i + 1} of ${state.receipts.length})`;
  for (const b of document.querySelectorAll(".tick")) b.classList.toggle("selected", Number(b.dataset.sequence) === r.sequence);
  const box = $("receipt");
  clear(box);
  box.setAttribute("data-sequence", r.sequence);
  box.appendChild(html("h3", `Receipt #${r.sequence}: ${r.action} ${r.subject}`));
  const v = html("p");
  const label = html("span", r.verification === "verified" ? "verified" : "verification problem", { class: r.verification === "verified" ? "verified" : "problem-text", id: "verification" });
  v.appendChild(html("span", "Verification: "));
  v.appendChild(label);
  v.appendChild(html("span", r.verification === "verified"
    ? " — hash chain, signatures (anchors) and checkpoints checked by the operator's verifier"
    : " — " + r.problems.map(p => `${p.kind}: ${p.detail}`).join("; ")));
  box.appendChild(v);
  box.appendChild(html("p", `time ${r.time} · level ${r.level} · key ${r.keyId}`, { class: "small" }));
  box.appendChild(html("p", `hash ${r.hash}`, { class: "small" }));
  box.appendChild(html("p", `prev ${r.prevHash}`, { class: "small" }));
  box.appendChild(html("h4", "Decision"));
  box.appendChild(html("pre", JSON.stringify(r.decision, null, 2), { id: "decision" }));
}

function togglePlay() {
  if (state.playing) { clearInterval(state.playing); state.playing = null; $("play").textContent = "▶ replay"; return; }
  if (state.receipts.length === 0) return;
  let i = 0;
  $("play").textContent = "■ stop";
  select(i);
  state.playing = setInterval(() => {
    i += 1;
    if (i >= state.receipts.length) { togglePlay(); return; }
    select(i);
  }, 700);
}

function connect() {
  const es = new EventSource("/ui/api/events");
  es.addEventListener("snapshot", ev => {
    $("conn").textContent = "live";
    $("conn").className = "conn live";
    render(JSON.parse(ev.data));
  });
  es.onopen = () => { $("conn").textContent = "live"; $("conn").className = "conn live"; };
  es.onerror = () => { $("conn").textContent = "reconnecting…"; $("conn").className = "conn down"; };
}

async function start() {
  $("play").addEventListener("click", togglePlay);
  $("scrub").addEventListener("input", e => select(Number(e.target.value)));
  try {
    const r = await fetch("/ui/api/state");
    if (r.ok) render(await r.json());
  } catch (e) {
    $("conn").textContent = "state unavailable";
  }
  connect();
  // A follower writes no receipts, so its snapshot has no chain head to follow: poll instead.
  setInterval(() => { if (state.head === null || state.head === undefined) loadReceipts(); }, 15000);
}

document.addEventListener("DOMContentLoaded", start);
