// The operator console: polls /api/overview and draws it. Every value from the server goes into the
// page through textContent or an SVG attribute, never as HTML.
"use strict";
(() => {
  const POLL_MS = 2000;
  const SVG = "http://www.w3.org/2000/svg";
  const $ = (id) => document.getElementById(id);

  const el = (tag, attrs = {}, ...children) => {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
    for (const child of children) node.append(child);
    return node;
  };
  const svgEl = (tag, attrs = {}) => {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
    return node;
  };
  const time = (ms) => (ms == null ? "-" : new Date(ms).toLocaleString());
  const seconds = (ms) => {
    if (ms == null) return "-";
    const s = ms / 1000;
    if (s < 60) return `${s.toFixed(1)} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
    return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  };
  const cell = (text, cls) => el("td", cls ? { class: cls } : {}, String(text));
  const num = (n, badWhenPositive = false) => cell(n, n > 0 && badWhenPositive ? "n bad" : "n");

  // Rows are swapped in only when they changed, so a button is not replaced under the pointer.
  const fill = (id, rows, empty) => {
    const body = $(id).querySelector("tbody");
    const columns = $(id).querySelectorAll("thead th").length;
    const fresh = rows.length ? rows : [el("tr", {}, el("td", { colspan: columns, class: "empty" }, empty))];
    const markup = fresh.map((row) => row.outerHTML).join("");
    if (body.dataset.markup === markup) return;
    body.dataset.markup = markup;
    body.replaceChildren(...fresh);
  };

  const csrfToken = () => {
    const match = document.cookie.match(/(?:^|;\s*)doopage_console_csrf=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  };

  const retry = async (button, companyId) => {
    button.disabled = true;
    try {
      const answer = await fetch("api/retry", {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
        body: JSON.stringify({ company_id: companyId }),
      });
      const result = await answer.json();
      $("notice").textContent = answer.ok
        ? `${result.queued} failed event${result.queued === 1 ? "" : "s"} queued again; the worker uses the mapping file as it is now.`
        : `Retry refused: ${result.detail || answer.status}`;
    } catch (error) {
      $("notice").textContent = `Retry failed: ${error.message}`;
    }
    refresh(false);
  };
  const retryButton = (companyId, label) => {
    const button = el("button", { type: "button", class: "retry" }, label);
    if (companyId != null) button.dataset.company = String(companyId);
    button.addEventListener("click", () => retry(button, companyId));
    return button;
  };

  const companies = (data) =>
    fill(
      "companies",
      data.companies.map((c) =>
        el(
          "tr",
          { "data-company": c.company_id },
          cell(c.name ? `${c.company_id} (${c.name})` : c.company_id),
          cell(c.spreadsheet_id ?? "not mapped", c.spreadsheet_id ? "" : "bad"),
          num(c.received),
          num(c.written),
          num(c.pending),
          num(c.failed, true),
          num(c.unrouted, true),
          cell(c.lag_ms == null ? "-" : seconds(c.lag_ms), "n"),
        ),
      ),
      "No company mapped and no event received yet.",
    );

  const spreadsheets = (data) =>
    fill(
      "spreadsheets",
      data.spreadsheets.map((s) => {
        const flush = s.last_flush;
        const summary = flush == null ? "never flushed"
          : flush.error != null ? `${time(flush.at_ms)}: failed after ${flush.seconds.toFixed(2)} s`
          : `${time(flush.at_ms)}: ${flush.events} events, ${flush.rows_updated} rows updated, ` +
            `${flush.rows_added} added, ${flush.seconds.toFixed(2)} s, ${flush.requests} requests`;
        const action = el("td");
        for (const companyId of s.companies) {
          const failed = data.companies.find((c) => c.company_id === companyId)?.failed ?? 0;
          if (failed > 0) action.append(retryButton(companyId, `Retry ${failed} failed`));
        }
        return el(
          "tr",
          { "data-spreadsheet": s.spreadsheet_id },
          el("td", {}, el("a", { href: s.link, target: "_blank", rel: "noopener noreferrer" }, s.spreadsheet_id)),
          cell(s.companies.join(", ")),
          cell(summary),
          cell(s.last_error ? `${s.last_error} (${time(s.last_error_ms)})` : "-", s.last_error ? "error" : ""),
          cell(s.credential || "-"),
          action,
        );
      }),
      "The mapping names no spreadsheet.",
    );

  const failed = (data) => {
    $("failed-total").textContent = data.failed_total ? `${data.failed_total} parked` : "none";
    const all = $("retry-all");
    all.hidden = data.failed_total === 0;
    fill(
      "failed",
      data.failed.map((f) =>
        el("tr", {}, num(f.id), cell(f.company_id), cell(f.event_type), cell(time(f.received_ms)),
          num(f.attempts), cell(f.error, "error detail")),
      ),
      "No failed events.",
    );
  };

  const unrouted = (data) =>
    fill(
      "unrouted",
      data.unrouted.map((u) =>
        el("tr", { "data-company": u.company_id }, cell(u.company_id), num(u.events), cell(time(u.oldest_ms)))),
      "Every company with events is mapped.",
    );

  const rejections = (data) =>
    fill(
      "rejections",
      data.rejections.map((r) =>
        el("tr", {}, cell(time(r.at_ms)), cell(r.endpoint || "-"), cell(r.reason), num(r.status),
          cell(r.detail, "detail"))),
      "No webhook refused.",
    );

  const budget = (data) => {
    const b = data.budget;
    for (const [kind, used, limit] of [["reads", b.reads, b.reads_limit], ["writes", b.writes, b.writes_limit]]) {
      $(`budget-${kind}`).value = used;
      $(`budget-${kind}`).max = limit;
      $(`budget-${kind}-text`).textContent = `${used} of ${limit} in the last minute`;
    }
    $("throttled").textContent = String(b.throttled_last_hour);
    fill(
      "throttles",
      data.throttles.map((t) => el("tr", {}, cell(time(t.at_ms)), cell(t.kind), cell(t.spreadsheet_id))),
      "No 429 from Google.",
    );
  };

  // A chart over the minutes: bars (first series) and lines (the others), scaled to the largest value.
  const chart = (id, minutes, series, unit) => {
    const svg = $(id);
    const width = 720, height = 170, left = 44, bottom = 18, top = 8;
    const plotW = width - left - 6, plotH = height - bottom - top;
    const values = series.flatMap((s) => minutes.map(s.value)).filter((v) => v != null);
    const max = Math.max(1, ...values);
    const x = (i) => left + (i * plotW) / minutes.length;
    const y = (v) => top + plotH - (v * plotH) / max;
    const parts = [
      svgEl("line", { class: "axis", x1: left, y1: top + plotH, x2: width - 6, y2: top + plotH }),
      svgEl("line", { class: "axis", x1: left, y1: top, x2: left, y2: top + plotH }),
    ];
    const label = (text, attrs) => { const t = svgEl("text", attrs); t.textContent = text; return t; };
    const top_label = Number.isInteger(max) ? max.toLocaleString() : max.toFixed(1);
    parts.push(label(`${top_label}${unit}`, { x: left - 4, y: top + 8, "text-anchor": "end" }));
    parts.push(label(`0`, { x: left - 4, y: top + plotH, "text-anchor": "end" }));
    if (minutes.length) {
      const clock = (ms) => new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
      parts.push(label(clock(minutes[0].at_ms), { x: left, y: height - 4 }));
      parts.push(label(clock(minutes[minutes.length - 1].at_ms), { x: width - 6, y: height - 4, "text-anchor": "end" }));
    }
    let drawn = 0;
    for (const s of series) {
      if (s.bars) {
        minutes.forEach((m, i) => {
          const v = s.value(m);
          if (!v) return;
          drawn += 1;
          parts.push(svgEl("rect", { class: s.cls, x: x(i), y: y(v), width: Math.max(1, plotW / minutes.length - 1), height: top + plotH - y(v) }));
        });
      } else {
        const points = minutes.map((m, i) => [i, s.value(m)]).filter(([, v]) => v != null && (v > 0 || s.zero));
        if (points.length) {
          drawn += points.length;
          const step = plotW / minutes.length / 2;
          const xy = points.map(([i, v]) => [(x(i) + step).toFixed(1), y(v).toFixed(1)]);
          parts.push(svgEl("polyline", { class: s.cls, points: xy.map((p) => p.join(",")).join(" ") }));
          // A dot on each minute, so that a lone minute shows too.
          for (const [cx, cy] of xy) parts.push(svgEl("circle", { class: `${s.cls} dot`, cx, cy, r: 2.5 }));
        }
      }
    }
    svg.replaceChildren(...parts);
    svg.dataset.drawn = String(drawn);
  };

  const charts = (data) => {
    chart("chart-events", data.minutes, [
      { cls: "received", bars: true, value: (m) => m.received },
      { cls: "written", value: (m) => m.written },
    ], "");
    chart("chart-latency", data.minutes, [
      { cls: "average", value: (m) => (m.latency_avg_ms == null ? null : m.latency_avg_ms / 1000) },
      { cls: "longest", value: (m) => (m.latency_max_ms == null ? null : m.latency_max_ms / 1000) },
    ], " s");
  };

  let timer = null;
  const refresh = async (schedule = true) => {
    try {
      const answer = await fetch("api/overview", { cache: "no-store", headers: { Accept: "application/json" } });
      if (!answer.ok) throw new Error(`HTTP ${answer.status}`);
      const data = await answer.json();
      $("mapping-file").textContent = data.mapping_file;
      $("mapping-error").textContent = data.mapping_error ? `The mapping file changed but cannot be used, so the previous mapping stays in use:\n${data.mapping_error}` : "";
      companies(data);
      spreadsheets(data);
      charts(data);
      budget(data);
      failed(data);
      unrouted(data);
      rejections(data);
      $("status").textContent = `Live, updated ${new Date().toLocaleTimeString()}`;
      document.body.dataset.loaded = "1";
    } catch (error) {
      $("status").textContent = `Not updating (${error.message}), retrying`;
    }
    if (schedule) timer = setTimeout(refresh, POLL_MS);
  };
  $("retry-all").addEventListener("click", (event) => retry(event.currentTarget, null));
  refresh();
  window.addEventListener("pagehide", () => clearTimeout(timer));
})();
