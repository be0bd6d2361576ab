/* The Model Ops view (plugins/modelops/ui): reads /modelops/ui/api/..., draws with Chart.js, and starts the
 * lifecycle DAGs through Airflow's REST API (POST /api/v2/dags/{dag_id}/dagRuns) with the user's session:
 * the Airflow UI authenticates with the `_token` cookie, which the browser sends with these same-origin
 * requests. Nothing here changes state any other way. Text from the server is set with textContent only. */
(function () {
  "use strict";

  const S = JSON.parse(document.getElementById("modelops-settings").textContent);
  const REFRESH_MS = 60000;
  const COLORS = {
    blue: "#1d4ed8", teal: "#0f766e", amber: "#b45309", red: "#b91c1c", grey: "#6b7280", violet: "#6d28d9",
    lightBlue: "rgba(29, 78, 216, 0.25)", lightGrey: "rgba(107, 114, 128, 0.35)",
  };
  const KPI_COLORS = [COLORS.teal, COLORS.violet, COLORS.blue, COLORS.amber];
  const state = { charts: {}, data: {} };
  window.modelops = state; // for people debugging the page (and the browser test): the charts and the data

  // --- small DOM helpers ------------------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function link(href, text) {
    if (!href) return el("span", { text });
    return el("a", { href, target: "_blank", rel: "noopener noreferrer", title: href, text });
  }

  function fmtTime(iso) {
    if (!iso) return "—";
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return iso;
    return d.toISOString().slice(0, 16).replace("T", " ") + " UTC";
  }

  function hourLabel(iso) {
    const d = new Date(iso);
    return `${String(d.getUTCMonth() + 1).padStart(2, "0")}-${String(d.getUTCDate()).padStart(2, "0")} ` +
      `${String(d.getUTCHours()).padStart(2, "0")}:00`;
  }

  function num(value, digits) {
    return value === null || value === undefined ? "—" : Number(value).toFixed(digits === undefined ? 3 : digits);
  }

  function badge(text, kind) {
    return el("span", { class: `badge ${kind || ""}`, text });
  }

  const slug = (model) => model.replace(/[^A-Za-z0-9_-]/g, "_");

  function loginRedirect() {
    const next = window.location.pathname + window.location.search;
    window.location.assign(`${S.airflow_api}/auth/login?next=${encodeURIComponent(next)}`);
  }

  async function getJson(url) {
    const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (response.status === 401) { loginRedirect(); throw new Error("not logged in"); }
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = new Error(detailText(body) || `HTTP ${response.status}`);
      error.status = response.status;
      throw error;
    }
    return body;
  }

  function detailText(body) {
    if (!body || body.detail === undefined) return "";
    if (typeof body.detail === "string") return body.detail;
    if (Array.isArray(body.detail)) return body.detail.map((d) => d.msg || JSON.stringify(d)).join("; ");
    return JSON.stringify(body.detail);
  }

  // --- starting DAG runs through Airflow's REST API -----------------------------------------------------

  async function triggerRun(dagId, conf) {
    const response = await fetch(`${S.airflow_api}/dags/${encodeURIComponent(dagId)}/dagRuns`, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ logical_date: null, conf }),
    });
    if (response.status === 401) { loginRedirect(); throw new Error("not logged in"); }
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      const why = detailText(body) || response.statusText;
      if (response.status === 403) throw new Error(`Airflow refused: you may not start runs of ${dagId} (${why})`);
      if (response.status === 404) throw new Error(`Airflow has no DAG ${dagId} yet (${why})`);
      throw new Error(`Airflow answered ${response.status}: ${why}`);
    }
    return body;
  }

  function actionForm(model, key, title, help, fields, submitText, submitClass, buildConf, dagOf) {
    const result = el("div", { class: "action-result", role: "status", "aria-live": "polite" });
    const button = el("button", { type: "submit", class: `button ${submitClass}`, text: submitText });
    const form = el("form", { class: "action", "data-action": key },
      el("h4", { text: title }), el("p", { class: "muted small", text: help }), ...fields, button, result);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const data = state.data[model];
      if (!data) return;
      const dagId = dagOf(data.actions);
      let conf;
      try { conf = buildConf(data); } catch (error) { showResult(result, false, error.message); return; }
      button.disabled = true;
      showResult(result, null, `Starting ${dagId}…`);
      try {
        const run = await triggerRun(dagId, conf);
        const runUrl = `${S.airflow_ui}/dags/${encodeURIComponent(dagId)}/runs/${encodeURIComponent(run.dag_run_id)}`;
        result.replaceChildren(el("span", { class: "ok-text", text: `Run ${run.dag_run_id} of ${dagId} is ${run.state}. ` }),
          link(runUrl, "Open the run in Airflow"));
        result.className = "action-result ok";
        result.dataset.runId = run.dag_run_id;
      } catch (error) {
        showResult(result, false, error.message);
      } finally {
        button.disabled = false;
      }
    });
    return form;
  }

  function showResult(node, ok, text) {
    node.className = `action-result ${ok === null ? "" : ok ? "ok" : "error"}`;
    node.textContent = text;
  }

  function buildActions(model) {
    const id = slug(model);
    const dataset = el("input", { type: "text", id: `dataset-${id}`, name: "dataset_uri", required: true,
      spellcheck: "false", autocomplete: "off" });
    const train = actionForm(model, "train", "Train", "Start train_<model> on a dataset (file, parquet folder or URI). Data "
      + "already trained on with the same code and params is skipped.",
      [el("label", { for: `dataset-${id}`, text: "dataset_uri" }), dataset], "Start training", "primary",
      () => ({ dataset_uri: dataset.value.trim() }), (a) => a.train_dag_id);

    const target = el("select", { id: `target-${id}`, name: "target_version", required: true });
    const reason = el("input", { type: "text", id: `reason-${id}`, name: "reason", required: true, minlength: "1",
      placeholder: "why (goes into the audit record)", autocomplete: "off" });
    const rollback = actionForm(model, "rollback", "Roll back", "Start rollback_<model>: @champion moves to the chosen version and "
      + "Triton serves it; it only proceeds while @champion is still the version shown here.",
      [el("label", { for: `target-${id}`, text: "target_version" }), target,
        el("label", { for: `reason-${id}`, text: "reason" }), reason], "Roll back", "danger",
      (data) => {
        if (!target.value) throw new Error("Choose a version to roll back to.");
        if (!reason.value.trim()) throw new Error("Give a reason: it goes into the audit record.");
        const champion = data.aliases.find((a) => a.alias === "champion");
        return { target_version: target.value, reason: reason.value.trim(),
          from_version: champion && champion.version ? champion.version : null };
      }, (a) => a.rollback_dag_id);

    const retire = actionForm(model, "retire", "Retirement dry run", "Start retire_<model> with dry_run: it reports (and records "
      + "as a plan) which versions would be retired, and changes nothing.", [], "Run retirement dry run", "secondary",
      () => ({ dry_run: true }), (a) => a.retire_dag_id);
    return { node: el("div", { class: "actions" }, train, rollback, retire), dataset, target };
  }

  // --- charts -------------------------------------------------------------------------------------------

  function lineChart(canvas, labels, datasets, yOptions) {
    return new window.Chart(canvas, {
      type: "line",
      data: { labels, datasets },
      options: {
        animation: false, responsive: true, maintainAspectRatio: false, spanGaps: false,
        interaction: { mode: "index", intersect: false },
        plugins: { legend: { position: "bottom", labels: { boxWidth: 12, font: { size: 11 } } } },
        scales: {
          x: { ticks: { maxRotation: 0, autoSkip: true, maxTicksLimit: 8, font: { size: 10 } }, grid: { display: false } },
          y: { beginAtZero: false, ticks: { font: { size: 10 } }, ...(yOptions || {}) },
        },
        elements: { point: { radius: 0, hoverRadius: 3 }, line: { borderWidth: 2, tension: 0.2 } },
      },
    });
  }

  function constant(length, value) { return Array.from({ length }, () => value); }

  function chartSpecs(mon) {
    const n = mon.hours.length;
    const specs = [{
      key: "drift", title: "Drift: share of features drifted", type: "line", y: { min: 0, max: 1 },
      datasets: [
        { label: "drift share", data: mon.drift_share, borderColor: COLORS.blue, backgroundColor: COLORS.lightBlue },
        { label: `warning ${mon.drift_warning}`, data: constant(n, mon.drift_warning), borderColor: COLORS.amber,
          borderDash: [6, 4], borderWidth: 1 },
        { label: `critical ${mon.drift_critical}`, data: constant(n, mon.drift_critical), borderColor: COLORS.red,
          borderDash: [2, 3], borderWidth: 1 },
      ],
    }];
    mon.kpis.forEach((kpi, i) => {
      specs.push({
        key: `kpi-${kpi.name}`, title: `KPI ${kpi.name}` + (kpi.description ? `: ${kpi.description}` : ""), type: "line",
        datasets: [
          { label: kpi.name, data: kpi.values, borderColor: KPI_COLORS[i % KPI_COLORS.length] },
          { label: "baseline", data: kpi.baselines, borderColor: COLORS.grey, borderDash: [6, 4], borderWidth: 1 },
          { label: `critical below (max_drop ${kpi.max_drop})`, data: kpi.thresholds, borderColor: COLORS.red,
            borderDash: [2, 3], borderWidth: 1 },
        ],
      });
    });
    specs.push({
      key: "rows", title: "Predictions per hour", type: "bar",
      datasets: [{ label: "rows", data: mon.rows, backgroundColor: COLORS.lightGrey, borderColor: COLORS.grey }],
      y: { beginAtZero: true },
    });
    if (mon.latency_p99_ms.some((v) => v !== null)) {
      specs.push({
        key: "latency", title: "Online latency p99 (ms)", type: "line", y: { beginAtZero: true },
        datasets: [{ label: "p99 ms", data: mon.latency_p99_ms, borderColor: COLORS.violet }],
      });
    }
    return specs;
  }

  function renderCharts(model, container, mon) {
    const charts = state.charts[model] || (state.charts[model] = {});
    if (!mon.hours.length) {
      Object.values(charts).forEach((c) => c.destroy());
      state.charts[model] = {};
      container.replaceChildren(el("p", { class: "notice", text: mon.run_id
        ? "The monitoring run has no assessed hours yet."
        : "Not monitored yet: no monitoring run in MLflow (monitor_<model> creates it on its first hour)." }));
      return;
    }
    if (!window.Chart) {
      container.replaceChildren(el("p", { class: "notice error", text: "Chart.js did not load." }));
      return;
    }
    const labels = mon.hours.map(hourLabel);
    const specs = chartSpecs(mon);
    const wanted = new Set(specs.map((s) => s.key));
    for (const [key, chart] of Object.entries(charts)) {
      if (!wanted.has(key)) { chart.destroy(); delete charts[key]; container.querySelector(`[data-chart="${key}"]`)?.remove(); }
    }
    for (const spec of specs) {
      const existing = charts[spec.key];
      if (existing) {
        existing.data.labels = labels;
        existing.data.datasets.forEach((ds, i) => { ds.data = spec.datasets[i].data; ds.label = spec.datasets[i].label; });
        existing.update("none");
        continue;
      }
      const canvas = el("canvas", { id: `chart-${slug(model)}-${spec.key}`, "aria-label": spec.title, role: "img" });
      container.append(el("figure", { class: "chart", "data-chart": spec.key },
        el("figcaption", { text: spec.title }), el("div", { class: "chart-box" }, canvas)));
      const chart = spec.type === "bar"
        ? new window.Chart(canvas, { type: "bar", data: { labels, datasets: spec.datasets }, options: {
          animation: false, responsive: true, maintainAspectRatio: false,
          plugins: { legend: { display: false } },
          scales: { x: { ticks: { maxRotation: 0, autoSkip: true, maxTicksLimit: 8, font: { size: 10 } },
            grid: { display: false } }, y: { beginAtZero: true, ticks: { font: { size: 10 } } } } } })
        : lineChart(canvas, labels, spec.datasets, spec.y);
      charts[spec.key] = chart;
    }
  }

  // --- the status parts ---------------------------------------------------------------------------------

  const ALIAS_TITLES = { champion: "@champion", previous_champion: "@previous_champion", challenger: "@challenger" };
  const LEVEL_KIND = { ok: "ok", warning: "warn", critical: "crit", skipped: "muted" };

  function aliasTile(pointer) {
    return el("div", { class: `tile alias-${pointer.alias}`, "data-alias": pointer.alias },
      el("div", { class: "tile-label", text: ALIAS_TITLES[pointer.alias] || pointer.alias }),
      el("div", { class: "tile-value" }, pointer.version ? link(pointer.mlflow_url, `v${pointer.version}`) : "not set"),
      el("div", { class: "tile-sub muted", text: pointer.since
        ? `since ${fmtTime(pointer.since)} by ${pointer.set_by}` : pointer.version ? "no ledger record of the move" : "" }),
      pointer.reason ? el("div", { class: "tile-sub muted clamp", title: pointer.reason, text: pointer.reason }) : null);
  }

  function tritonTile(triton) {
    let value;
    let kind;
    if (triton.state === "unreachable") { value = "unreachable"; kind = "crit"; }
    else if (triton.state === "not_serving") { value = "not serving"; kind = "warn"; }
    else { value = `v${triton.live_version}`; kind = triton.agrees_with_champion ? "ok" : "crit"; }
    const flag = triton.state === "serving"
      ? badge(triton.agrees_with_champion ? "matches @champion" : "differs from @champion",
        triton.agrees_with_champion ? "ok" : "crit")
      : badge(triton.state === "unreachable" ? "no answer" : "nothing READY", kind);
    return el("div", { class: `tile triton ${kind}`, "data-triton-state": triton.state },
      el("div", { class: "tile-label", text: "Triton serves (live)" }),
      el("div", { class: "tile-value" }, value, " ", flag),
      el("div", { class: "tile-sub muted clamp", title: triton.detail, text: triton.detail }),
      el("div", { class: "tile-sub muted", text: triton.url }));
  }

  function alertsPanel(alerts) {
    if (!alerts.hour) return el("div", { class: "alerts" }, el("p", { class: "muted", text: "No monitored hour yet." }));
    const head = el("div", { class: "alerts-head" },
      el("span", { text: `Latest monitored hour ${fmtTime(alerts.hour)}` }),
      badge(alerts.level || "—", LEVEL_KIND[alerts.level] || "muted"),
      alerts.cold_start ? badge("cold start", "muted") : null,
      alerts.alerted_at ? el("span", { class: "muted small", text: `alert sent ${fmtTime(alerts.alerted_at)}` }) : null);
    const list = alerts.conditions.length
      ? el("ul", { class: "conditions" }, alerts.conditions.map((c) => el("li", {},
        el("code", { text: c.name }), " ",
        el("span", { class: "muted", text: c.threshold === null ? `value ${num(c.value, 3)}` : `value ${num(c.value, 3)} ≥ ${num(c.threshold, 3)}` }),
        el("div", { class: "small", text: c.detail }))))
      : el("p", { class: "muted", text: "No open condition." });
    return el("div", { class: "alerts", "data-level": alerts.level || "" }, head, list);
  }

  function table(headers, rows, emptyText) {
    if (!rows.length) return el("p", { class: "muted", text: emptyText });
    return el("table", {}, el("thead", {}, el("tr", {}, headers.map((h) => el("th", { text: h })))),
      el("tbody", {}, rows));
  }

  function ledgerTable(records) {
    return table(["at", "action", "version", "actor", "reason"], records.map((r) => el("tr", {},
      el("td", { class: "nowrap", text: fmtTime(r.at) }), el("td", {}, badge(r.action, actionKind(r.action))),
      el("td", { text: r.version ? `v${r.version}` : "—" }), el("td", { text: r.actor }),
      el("td", { class: "clamp", title: r.reason, text: r.reason }))), "No promotion, deployment, rollback or retirement on record.");
  }

  function actionKind(action) {
    if (["rollback", "deploy_failed", "retire_failed", "reject"].includes(action)) return "crit";
    if (["promote", "deploy", "approve"].includes(action)) return "ok";
    return "muted";
  }

  function versionsTable(model, versions) {
    return table(["version", "aliases", "gates", "serving", "registered", ""], versions.map((v) => el("tr", { "data-version": v.version },
      el("td", {}, link(v.mlflow_url, `v${v.version}`)),
      el("td", {}, v.aliases.map((a) => badge(`@${a}`, a === "champion" ? "ok" : "muted")),
        v.retired ? badge("retired", "crit") : null, v.quarantined ? badge("quarantined", "crit") : null),
      el("td", { text: v.gates || "—" }), el("td", { text: v.serving || "—" }),
      el("td", { class: "nowrap", text: v.created ? fmtTime(new Date(v.created).toISOString()) : "—" }),
      el("td", {}, el("button", { type: "button", class: "button link", text: "lineage",
        onclick: () => showLineage(model, v.version) })))), "No version registered yet.");
  }

  async function showLineage(model, version) {
    const panel = document.getElementById(`lineage-${slug(model)}`);
    panel.hidden = false;
    panel.replaceChildren(el("p", { class: "muted", text: `Loading the lineage of v${version}…` }));
    try {
      const { lineage, links } = await getJson(`${S.api}/${encodeURIComponent(model)}/versions/${encodeURIComponent(version)}`);
      const run = lineage.training_run || {};
      const metrics = Object.entries(run.metrics || {}).filter(([k]) => !k.startsWith("audit"))
        .sort(([a], [b]) => a.localeCompare(b)).slice(0, 8);
      const rows = [
        ["dataset", lineage.data.dataset_uri || "—"],
        ["data fingerprint", lineage.data.data_fingerprint || "—"],
        ["schema hash", lineage.data.schema_hash || "—"],
        ["validation", lineage.validation.length ? lineage.validation.map((r) => `${r.action} ${fmtTime(r.at)}`).join(", ") : "—"],
        ["training run", link(links.training_run, run.id || "—")],
        ["code commit", run["tag.code_commit"] || "—"],
        ["metrics", metrics.length ? metrics.map(([k, v]) => `${k} ${num(v, 4)}`).join(" · ") : "—"],
        ["gates", (lineage.gates && lineage.gates.result) || "—"],
        ["alias terms", lineage.alias_terms.length ? lineage.alias_terms.map((t) => `@${t.alias} ${fmtTime(t.start)} → ${t.end ? fmtTime(t.end) : "now"}`).join("; ") : "—"],
        ["hours as champion", String(lineage.hours_as_champion)],
        ["deployments", lineage.deployments.length ? lineage.deployments.map((r) => `${r.action} ${fmtTime(r.at)}`).join("; ") : "—"],
        ["retirement", lineage.retirement.length ? lineage.retirement.map((r) => `${r.action} ${fmtTime(r.at)}`).join("; ") : "—"],
      ];
      panel.replaceChildren(
        el("div", { class: "lineage-head" }, el("h4", { text: `Lineage of v${lineage.version}` }),
          link(links.version, "version in MLflow"), link(links.experiment, "experiment in MLflow"),
          el("button", { type: "button", class: "button link", text: "close", onclick: () => { panel.hidden = true; } })),
        el("dl", { class: "lineage" }, rows.map(([k, v]) => [el("dt", { text: k }), el("dd", {}, v)])));
    } catch (error) {
      panel.replaceChildren(el("p", { class: "notice error", text: `Lineage of v${version}: ${error.message}` }));
    }
  }

  // --- one model's section --------------------------------------------------------------------------------

  function buildSection(model) {
    const id = slug(model.name);
    const actions = buildActions(model.name);
    actions.dataset.value = "";
    const section = el("section", { class: "model", id: `model-${id}`, "data-model": model.name },
      el("div", { class: "model-head" },
        el("div", {}, el("h2", { text: model.name }), el("p", { class: "muted", text: model.description })),
        el("div", { class: "model-meta muted" }, el("span", { text: `owner ${model.owner}` }),
          el("span", { class: "mlflow-link" }))),
      el("p", { class: "notice error", hidden: true, "data-part": "error" }),
      el("div", { class: "tiles", "data-part": "tiles" }),
      el("div", { class: "panel", "data-part": "alerts" }),
      el("h3", { text: `Last ${S.hours} monitored hours (UTC)` }),
      el("div", { class: "charts", "data-part": "charts" }),
      el("h3", { text: "Actions" }),
      el("p", { class: "muted small", text: "Each button starts a run of the model's lifecycle DAG through Airflow's REST API "
        + "with your Airflow session: Airflow checks your permissions and the DAG's parameters, and the run shows you as "
        + "the one who triggered it." }),
      actions.node,
      el("div", { class: "two-col" },
        el("div", {}, el("h3", { text: "Versions" }), el("div", { "data-part": "versions" }),
          el("div", { class: "panel lineage-panel", id: `lineage-${id}`, hidden: true })),
        el("div", {}, el("h3", { text: "Latest ledger records" }), el("div", { "data-part": "ledger" }))));
    section.actions = actions;
    return section;
  }

  function part(section, name) { return section.querySelector(`[data-part="${name}"]`); }

  function fillSection(section, data) {
    const model = data.model;
    state.data[model] = data;
    part(section, "error").hidden = true;
    section.querySelector(".mlflow-link").replaceChildren(data.mlflow_url ? link(data.mlflow_url, "registered model in MLflow") : "");
    part(section, "tiles").replaceChildren(...data.aliases.map(aliasTile), tritonTile(data.triton));
    part(section, "alerts").replaceChildren(alertsPanel(data.alerts));
    renderCharts(model, part(section, "charts"), data.monitoring);
    part(section, "versions").replaceChildren(versionsTable(model, data.versions));
    part(section, "ledger").replaceChildren(ledgerTable(data.ledger));
    const { dataset, target } = section.actions;
    if (!dataset.value) dataset.value = data.actions.default_dataset_uri;
    const champion = (data.aliases.find((a) => a.alias === "champion") || {}).version;
    const previous = (data.aliases.find((a) => a.alias === "previous_champion") || {}).version;
    const chosen = target.value || previous || "";
    target.replaceChildren(el("option", { value: "", text: "choose a version" }),
      ...data.versions.filter((v) => v.version !== champion).map((v) => el("option", {
        value: v.version, text: `v${v.version}` + (v.aliases.length ? ` (@${v.aliases.join(", @")})` : "")
          + (v.retired ? " retired" : "") + (v.gates && v.gates !== "passed" ? ` gates ${v.gates}` : ""),
      })));
    target.value = chosen;
  }

  function failSection(section, error) {
    const node = part(section, "error");
    node.hidden = false;
    node.textContent = error.status === 403
      ? `You may not read this model's audit trail and monitoring (${error.message}).`
      : `Could not load this model: ${error.message}`;
  }

  async function refresh() {
    const sections = [...document.querySelectorAll("section.model")];
    await Promise.all(sections.map(async (section) => {
      try { fillSection(section, await getJson(`${S.api}/${encodeURIComponent(section.dataset.model)}`)); }
      catch (error) { failSection(section, error); }
    }));
    document.getElementById("refreshed").textContent = `updated ${new Date().toISOString().slice(11, 19)} UTC`;
    document.body.dataset.loaded = "true";
  }

  // --- links out of the frame -----------------------------------------------------------------------------
  // The Airflow UI frames this page with sandbox="allow-scripts allow-same-origin allow-forms allow-downloads":
  // no popups and no top-level navigation from here. The parent is the same origin, so a link to an Airflow
  // page is handed to the Airflow UI's router (history.pushState + popstate, which it follows), and any other
  // link (the MLflow UI) is opened by an anchor in the parent's document, outside the sandbox.

  function framingParent() {
    try {
      return window.parent !== window && window.parent.location.origin === window.location.origin ? window.parent : null;
    } catch (error) {
      return null;
    }
  }

  function openOutside(parent, href) {
    const url = new URL(href, window.location.href);
    if (url.origin === window.location.origin && url.pathname.startsWith(`${S.airflow_ui}/`)
        && !url.pathname.startsWith(window.location.pathname)) {
      parent.history.pushState(null, "", url.pathname + url.search + url.hash);
      parent.dispatchEvent(new PopStateEvent("popstate", { state: null }));
      return;
    }
    const anchor = parent.document.createElement("a");
    anchor.href = url.toString();
    anchor.target = "_blank";
    anchor.rel = "noopener noreferrer";
    parent.document.body.append(anchor);
    anchor.click();
    anchor.remove();
  }

  document.addEventListener("click", (event) => {
    const anchor = event.target.closest && event.target.closest("a[target='_blank']");
    const parent = anchor && framingParent();
    if (!parent || event.defaultPrevented || event.button !== 0) return;
    event.preventDefault();
    openOutside(parent, anchor.getAttribute("href"));
  });

  function start() {
    const main = document.getElementById("models");
    const nav = document.getElementById("model-nav");
    if (!S.models.length) {
      main.replaceChildren(el("p", { class: "notice", text: "No model is configured (config/models/*.yaml)." }));
      document.body.dataset.loaded = "true";
      return;
    }
    main.replaceChildren(...S.models.map(buildSection));
    if (S.models.length > 1) {
      nav.replaceChildren(...S.models.map((m) => el("a", { href: `#model-${slug(m.name)}`, text: m.name })));
    }
    document.getElementById("refresh").addEventListener("click", refresh);
    refresh();
    window.setInterval(refresh, REFRESH_MS);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
