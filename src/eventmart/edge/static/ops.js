/* The ops console: lag per group as a live inline-SVG chart (polling /api/ops/lag every
   2 s), the lag table (one row per group, its partitions in a <details>), service health
   (every 10 s) and the dead letters' Redrive buttons. Each group gets its own colour,
   however many groups there are: hues spread by the golden angle. */
"use strict";

(function () {
  const em = window.eventmart;
  const SVG = "http://www.w3.org/2000/svg";
  const LAG_EVERY_MS = 2000;
  const SERVICES_EVERY_MS = 10000;
  const KEEP = 60; // samples: two minutes at 2 s
  const H = 220, LEFT = 44, RIGHT = 12, TOP = 10, BOTTOM = 24;

  function svg(name, attrs, text) {
    const el = document.createElementNS(SVG, name);
    Object.keys(attrs || {}).forEach(function (k) { el.setAttribute(k, String(attrs[k])); });
    if (text != null) el.textContent = text;
    return el;
  }

  function cell(text, className) {
    const td = document.createElement("td");
    td.textContent = text == null ? "\u2014" : String(text);
    if (className) td.className = className;
    return td;
  }

  document.addEventListener("DOMContentLoaded", function () {
    const chart = em.byTestId("ops-lag-chart");
    if (!chart) return;
    const legend = em.byTestId("lag-legend");
    const totalEl = em.byTestId("lag-total");
    const updated = em.byTestId("lag-updated");
    const lagBody = em.byTestId("lag-table").tBodies[0];
    const series = new Map(); // group -> [{t, lag}]
    const colours = new Map(); // group -> colour, stable for the page's life
    let samples = 0;
    let stopped = false;

    function colour(group) {
      if (!colours.has(group)) {
        const i = colours.size;
        const hue = Math.round((i * 137.508 + 220) % 360);
        // Alternate the lightness too, so neighbouring hues still tell apart.
        const light = [42, 32, 52][i % 3];
        colours.set(group, "hsl(" + hue + ", 70%, " + light + "%)");
      }
      return colours.get(group);
    }

    function record(data) {
      const t = Date.now();
      const seen = new Set();
      (data.groups || []).forEach(function (g) {
        seen.add(g.group);
        if (!series.has(g.group)) series.set(g.group, []);
        series.get(g.group).push({ t: t, lag: g.lag });
      });
      series.forEach(function (points, group) {
        if (!seen.has(group)) points.push({ t: t, lag: 0 });
        while (points.length > KEEP) points.shift();
      });
      samples += 1;
    }

    function draw() {
      // One viewBox unit per CSS pixel: text stays its size at any width.
      const W = Math.max(240, Math.round(chart.getBoundingClientRect().width) || 600);
      chart.setAttribute("viewBox", "0 0 " + W + " " + H);
      const keep = chart.querySelector("title");
      chart.replaceChildren(keep);
      const now = Date.now();
      const span = KEEP * LAG_EVERY_MS;
      let max = 10;
      series.forEach(function (points) {
        points.forEach(function (p) { if (p.lag > max) max = p.lag; });
      });
      max = Math.ceil(max * 1.1);
      const x = function (t) { return LEFT + (W - LEFT - RIGHT) * (1 - (now - t) / span); };
      const y = function (v) { return TOP + (H - TOP - BOTTOM) * (1 - v / max); };
      [0, 0.5, 1].forEach(function (f) {
        const v = Math.round(max * f);
        chart.appendChild(svg("line", { class: f === 0 ? "axis" : "grid", x1: LEFT, x2: W - RIGHT, y1: y(v), y2: y(v) }));
        chart.appendChild(svg("text", { x: LEFT - 6, y: y(v) + 4, "text-anchor": "end" }, v));
      });
      chart.appendChild(svg("line", { class: "axis", x1: LEFT, x2: LEFT, y1: TOP, y2: H - BOTTOM }));
      chart.appendChild(svg("text", { x: LEFT, y: H - 6 }, "\u2212" + span / 1000 + " s"));
      chart.appendChild(svg("text", { x: W - RIGHT, y: H - 6, "text-anchor": "end" }, "now"));
      legend.replaceChildren();
      series.forEach(function (points, group) {
        const c = colour(group);
        const coords = points.map(function (p) { return x(p.t).toFixed(1) + "," + y(p.lag).toFixed(1); });
        const line = svg("polyline", { class: "series", stroke: c, "data-group": group, points: coords.join(" ") });
        line.appendChild(svg("title", {}, group));
        chart.appendChild(line);
        const last = points[points.length - 1];
        chart.appendChild(svg("circle", { fill: c, cx: x(last.t), cy: y(last.lag), r: 3 }));
        const item = document.createElement("li");
        const swatch = svg("svg", { viewBox: "0 0 12 12", "aria-hidden": "true" });
        swatch.appendChild(svg("rect", { fill: c, width: 12, height: 12, rx: 2 }));
        item.appendChild(swatch);
        item.appendChild(document.createTextNode(group + ": " + points[points.length - 1].lag));
        legend.appendChild(item);
      });
      chart.dataset.samples = String(samples);
    }

    function partitionTable(g) {
      const inner = document.createElement("table");
      inner.className = "table compact";
      const head = inner.createTHead().insertRow();
      ["Topic", "Partition", "Committed", "End", "Lag", "Owner"].forEach(function (name, i) {
        const th = document.createElement("th");
        th.scope = "col";
        th.textContent = name;
        if (i >= 1 && i <= 4) th.className = "num";
        head.appendChild(th);
      });
      const body = inner.createTBody();
      (g.partitions || []).forEach(function (p) {
        const tr = document.createElement("tr");
        tr.dataset.testid = "lag-partition";
        tr.dataset.group = g.group;
        tr.dataset.topic = p.topic;
        tr.dataset.partition = String(p.partition);
        tr.append(cell(p.topic, "mono"), cell(p.partition, "num"), cell(p.committed, "num"),
          cell(p.end, "num"), cell(p.lag, "num"), cell(p.owner, "mono"));
        body.appendChild(tr);
      });
      return inner;
    }

    function table(data) {
      // Keep the groups whose partitions the reader opened open across refreshes.
      const open = new Set();
      lagBody.querySelectorAll("details[open]").forEach(function (d) { open.add(d.dataset.group); });
      const rows = [];
      (data.groups || []).forEach(function (g) {
        const parts = g.partitions || [];
        const owners = [];
        parts.forEach(function (p) { if (p.owner && owners.indexOf(p.owner) < 0) owners.push(p.owner); });
        const tr = document.createElement("tr");
        tr.dataset.testid = "lag-row";
        tr.dataset.group = g.group;
        tr.dataset.lag = String(g.lag);
        tr.dataset.partitions = String(parts.length);
        const th = document.createElement("th");
        th.scope = "row";
        th.className = "mono";
        th.textContent = g.group;
        const details = document.createElement("details");
        details.className = "partitions";
        details.dataset.group = g.group;
        details.open = open.has(g.group);
        const summary = document.createElement("summary");
        summary.textContent = parts.length + (parts.length === 1 ? " partition" : " partitions");
        details.append(summary, partitionTable(g));
        const detail = document.createElement("td");
        detail.appendChild(details);
        tr.append(th, cell(g.lag, "num"), cell(parts.length, "num"),
          cell(owners.length ? owners.join(", ") : null, "mono owners"), detail);
        rows.push(tr);
      });
      lagBody.replaceChildren.apply(lagBody, rows);
      totalEl.textContent = String(data.total_lag);
      chart.dataset.total = String(data.total_lag);
      chart.setAttribute("aria-label", "Consumer lag: " + data.total_lag + " messages in all");
    }

    async function pollLag() {
      if (stopped) return;
      if (!document.hidden) {
        const answer = await em.api("GET", "/api/ops/lag");
        if (answer.status === 401 || answer.status === 403) {
          stopped = true;
          updated.textContent = "stopped: " + em.detail(answer.data);
          return;
        }
        if (answer.ok) {
          record(answer.data);
          table(answer.data);
          draw();
          updated.textContent = "updated " + new Date().toLocaleTimeString();
        } else {
          updated.textContent = "lag unavailable: " + em.detail(answer.data);
        }
      }
      setTimeout(pollLag, LAG_EVERY_MS);
    }

    try {
      const initial = JSON.parse(chart.dataset.initial || "{}");
      record(initial);
      draw();
    } catch (err) { /* first poll fills it */ }
    setTimeout(pollLag, LAG_EVERY_MS);
    window.addEventListener("resize", draw);

    /* services */
    const services = em.byTestId("ops-services").tBodies[0];
    async function pollServices() {
      if (stopped) return;
      if (!document.hidden) {
        const answer = await em.api("GET", "/api/ops/services");
        if (answer.ok) {
          services.replaceChildren.apply(services, answer.data.map(function (s) {
            const tr = document.createElement("tr");
            tr.dataset.testid = "service-row";
            tr.dataset.service = s.service;
            const th = document.createElement("th");
            th.scope = "row";
            th.textContent = s.service;
            const state = document.createElement("span");
            state.className = "health health-" + (s.state === "ready" ? "ok" : s.state === "starting" ? "warn" : "bad");
            state.dataset.testid = "service-state";
            state.textContent = s.state;
            const health = document.createElement("td");
            health.appendChild(state);
            const breaker = cell(s.breaker);
            breaker.dataset.testid = "service-breaker";
            tr.append(th, health, breaker, cell(s.url, "mono wide-only"));
            return tr;
          }));
        }
      }
      setTimeout(pollServices, SERVICES_EVERY_MS);
    }
    setTimeout(pollServices, SERVICES_EVERY_MS);

    /* dead letters */
    const dlqMessage = em.byTestId("dlq-message");
    document.addEventListener("click", async function (event) {
      const button = event.target.closest('[data-testid="dlq-redrive"]');
      if (!button || button.disabled) return;
      const id = button.dataset.letterId;
      button.disabled = true;
      const answer = await em.api("POST", "/api/ops/dlq/" + encodeURIComponent(id) + "/redrive");
      if (answer.ok) {
        button.textContent = "Redriven";
        button.closest("tr").dataset.redriven = "yes";
        em.say(dlqMessage, "Redriven " + answer.data.redriven + " to group " + answer.data.group + ".", "ok");
      } else {
        button.disabled = false;
        em.say(dlqMessage, "Could not redrive " + id + ": " + em.detail(answer.data), "error");
      }
    });
  });
})();
