/* Stalwart's console pages inside Flower.
 *
 * Every value from the server is put in the page with textContent or an attribute, never as
 * HTML. Pages refresh every few seconds while the tab is visible (paused while hidden, refreshed
 * at once when shown again), keeping filters (in the URL), the page cursor and the selection.
 * Every action is a POST carrying the CSRF token; read-only pages have no action controls.
 */
(function () {
  "use strict";

  const root = document.getElementById("stalwart");
  if (!root) { return; }
  const API = root.dataset.api;
  const BASE = root.dataset.base;
  const READONLY = root.dataset.readonly === "true";
  const CSRF = root.dataset.csrf;
  const REFRESH_MS = 4000;

  // -- DOM helpers (text only) ----------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) { continue; }
      if (key === "class") { node.className = value; }
      else if (key === "text") { node.textContent = String(value); }
      else if (key.startsWith("on")) { node.addEventListener(key.slice(2), value); }
      else { node.setAttribute(key, value === true ? "" : String(value)); }
    }
    for (const child of children) {
      if (child === null || child === undefined) { continue; }
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function $(id) { return document.getElementById(id); }
  function text(value) { return value === null || value === undefined || value === "" ? "—" : String(value); }
  function fill(tbody, rows) { tbody.replaceChildren(...rows); }
  function num(value) { return value === null || value === undefined ? "—" : Number(value).toLocaleString(); }
  function when(iso) { return iso ? iso.replace("T", " ").replace(/\.\d+Z$/, "Z") : "—"; }

  function showError(message) {
    const box = $("stalwart-error");
    if (!box) { return; }
    box.textContent = message || "";
    box.classList.toggle("d-none", !message);
  }

  // -- HTTP -------------------------------------------------------------------------------------

  async function answer(response) {
    let data = null;
    try { data = await response.json(); } catch (err) { data = null; }
    if (!response.ok) {
      const message = data && data.error ? data.error : response.status + " " + response.statusText;
      throw new Error(message);
    }
    return data;
  }

  async function getJSON(path, params) {
    const query = params ? "?" + new URLSearchParams(params).toString() : "";
    return answer(await fetch(API + path + query, {credentials: "same-origin", headers: {"Accept": "application/json"}}));
  }

  async function post(path, body) {
    return answer(await fetch(API + path, {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-XSRFToken": CSRF, "Accept": "application/json"},
      body: JSON.stringify(body || {}),
    }));
  }

  // -- live refresh ---------------------------------------------------------------------------

  function live(refresh) {
    const status = $("refresh-status");
    const dot = $("live-dot");
    let running = false;
    function paused() {
      status.textContent = "Paused while the tab is hidden";
      dot.classList.remove("status-dot-live");
    }
    async function tick() {
      if (document.hidden || running) { return; }
      running = true;
      try {
        await refresh();
        showError("");
        status.textContent = "Updated " + new Date().toLocaleTimeString();
        dot.classList.add("status-dot-live");
      } catch (err) {
        showError(err.message);
        status.textContent = "Update failed";
        dot.classList.remove("status-dot-live");
      } finally {
        running = false;
        if (document.hidden) { paused(); }  // hidden while this refresh ran
      }
    }
    document.addEventListener("visibilitychange", () => { if (document.hidden) { paused(); } else { tick(); } });
    setInterval(tick, REFRESH_MS);
    tick();
    return tick;
  }

  // -- the confirmation dialog ----------------------------------------------------------------

  function dialog(title, body, options) {
    const box = $("stalwart-dialog");
    const confirm = $("dialog-confirm");
    const nameRow = $("dialog-name-row");
    $("dialog-title").textContent = title;
    $("dialog-text").replaceChildren(...body);
    confirm.classList.toggle("d-none", !options || !options.confirm);
    confirm.textContent = options && options.confirm ? options.confirm : "Confirm";
    confirm.disabled = Boolean(options && options.waiting);
    nameRow.classList.toggle("d-none", !options || options.name === undefined);
    if (options && options.name !== undefined) { $("dialog-name").value = options.name; }
    if (!box.open) { box.showModal(); }
    return new Promise((resolve) => {
      box.addEventListener("close", () => resolve(box.returnValue === "confirm"), {once: true});
    });
  }

  async function waitJob(id) {
    for (;;) {
      const job = await getJSON("/jobs/" + encodeURIComponent(id));
      if (job.state !== "running") { return job; }
      await new Promise((r) => setTimeout(r, 400));
    }
  }

  function whyList(why) {
    return el("ul", {}, ...Object.entries(why || {}).map(([reason, n]) => el("li", {text: num(n) + " × " + reason})));
  }

  // Dry run, then confirmation with a name, then the background action.
  async function planAndRun(action, selection, label, after) {
    const box = $("stalwart-dialog");
    dialog("Dry run: " + action + " " + label, [el("p", {text: "Counting what this would do…"})],
      {confirm: action === "replay" ? "Replay" : "Purge", waiting: true});
    try {
      const started = await post("/dead-letters/dry-run", {action: action, ...selection});
      const plan = await waitJob(started.job.id);
      if (plan.state !== "done") { throw new Error(plan.error || "the dry run failed"); }
      const result = plan.result || {};
      const lines = action === "replay"
        ? [el("p", {id: "plan-summary", text: "Replay will republish " + num(result.replay) + " entr" +
            (result.replay === 1 ? "y" : "ies") + " and skip " + num(result.skip) + "."}),
           result.skip ? el("p", {text: "Skipped, and why:"}) : null, result.skip ? whyList(result.why) : null]
        : [el("p", {id: "plan-summary", text: "Purge will delete " + num(result.purge) + " entr" +
            (result.purge === 1 ? "y" : "ies") + ". This cannot be undone."})];
      const count = action === "replay" ? result.replay : result.purge;
      const ok = await dialog(action === "replay" ? "Replay " + label : "Purge " + label, lines.filter(Boolean),
        count ? {confirm: action === "replay" ? "Replay " + num(count) : "Purge " + num(count),
                 name: action + " " + label} : null);
      if (!ok) { return; }
      await post("/dead-letters/confirm", {plan: plan.id, name: $("dialog-name").value});
      if (after) { await after(); }
    } catch (err) {
      if (box.open) { box.close("cancel"); }
      showError(err.message);
    }
  }

  function renderJobs(jobs) {
    const list = $("jobs");
    if (!list) { return; }
    const rows = jobs.filter((j) => !j.kind.startsWith("dry-run")).slice(0, 8).map((job) => {
      const total = job.total || 0;
      const pct = total ? Math.round(100 * job.done / total) : (job.state === "done" ? 100 : 0);
      const counts = job.kind === "replay"
        ? num(job.replayed) + " replayed, " + num(job.skipped) + " skipped"
        : num(job.purged) + " purged";
      return el("li", {"data-job": job.id, "data-state": job.state},
        el("span", {}, el("strong", {text: job.name}), " ", el("span", {class: "text-body-secondary", text: "by " + job.who})),
        el("div", {class: "progress", role: "progressbar", "aria-valuenow": pct, "aria-valuemin": 0, "aria-valuemax": 100},
          el("div", {class: "progress-bar" + (job.state === "failed" ? " bg-danger" : ""), style: "width: " + pct + "%"})),
        el("span", {class: "job-status", text: job.state + " · " + num(job.done) + "/" + num(total) + " · " + counts +
          (job.error ? " · " + job.error : "")}));
    });
    fill(list, rows.length ? rows : [el("li", {class: "text-body-secondary", text: "No bulk actions yet."})]);
  }

  async function refreshJobs() { renderJobs((await getJSON("/jobs")).jobs); }

  // -- dead letters ---------------------------------------------------------------------------

  const FILTERS = ["queue", "task", "reason", "since", "until", "q", "cause"];

  function deadLetters() {
    const params = new URLSearchParams(location.search);
    const selected = new Set();
    let cursors = [null];  // cursors[i] starts page i
    let page = 0;
    let next = null;
    for (const name of FILTERS) { $("f-" + name).value = params.get(name) || ""; }

    function filters() {
      const out = {};
      for (const name of FILTERS) { const v = $("f-" + name).value.trim(); if (v) { out[name] = v; } }
      return out;
    }

    function selectionOfFilter() {
      // The filter as typed: the server reads the times (ISO-8601, relative or epoch ms) as it
      // does for the listing, so the action selects exactly what the table shows.
      const f = filters();
      return {filter: {queue: f.queue, task: f.task, reason: f.reason, cause: f.cause, search: f.q,
        since: f.since, until: f.until}};
    }

    function row(entry) {
      const link = el("a", {href: BASE + "/stalwart/dead-letters/" + encodeURIComponent(entry.id), class: "entry-link",
        text: entry.id.slice(0, 8)});
      const cells = [];
      if (!READONLY) {
        const box = el("input", {type: "checkbox", class: "row-check", "aria-label": "Select " + entry.id,
          checked: selected.has(entry.id), onchange: (e) => {
            if (e.target.checked) { selected.add(entry.id); } else { selected.delete(entry.id); }
            updateSelected();
          }});
        cells.push(el("td", {class: "stalwart-check"}, box));
      }
      cells.push(el("td", {class: "stalwart-when", text: when(entry.dead_at_iso)}),
        el("td", {class: "entry-task", text: text(entry.task)}),
        el("td", {}, el("span", {class: "badge text-bg-danger", text: entry.reason})),
        el("td", {text: text(entry.queue)}),
        el("td", {class: "stalwart-error entry-error", text: (entry.exc_type ? entry.exc_type + ": " : "") + text(entry.error)}),
        el("td", {class: "text-center", text: entry.attempts}),
        el("td", {}, link));
      return el("tr", {"data-entry": entry.id}, ...cells);
    }

    function updateSelected() {
      if (READONLY) { return; }
      $("replay-selected").disabled = selected.size === 0;
      $("purge-selected").disabled = selected.size === 0;
      $("replay-selected").textContent = "Replay selected (" + selected.size + ")…";
      $("purge-selected").textContent = "Purge selected (" + selected.size + ")…";
    }

    async function refresh() {
      const data = await getJSON("/dead-letters", {...filters(), ...(cursors[page] ? {cursor: cursors[page]} : {})});
      fill($("dlq-rows"), data.entries.length ? data.entries.map(row)
        : [el("tr", {}, el("td", {colspan: 8, class: "text-body-secondary", text: "No dead letters match."}))]);
      next = data.cursor;
      $("page-older").disabled = !next;
      $("page-newer").disabled = page === 0;
      $("page-info").textContent = "Page " + (page + 1) + (data.total !== null ? " of " + Math.max(1, Math.ceil(data.total / 50)) : "");
      $("m-total").textContent = num(data.stats.total);
      $("m-matching").textContent = data.total === null ? "many" : num(data.total);
      $("m-replayed").textContent = num(data.stats.replayed);
      $("m-purged").textContent = num(data.stats.purged);
      const note = $("cause-note");
      note.classList.toggle("d-none", !data.cause);
      if (data.cause) {
        note.textContent = "Cause: " + data.cause.task + " · " + data.cause.exc_type + ": " + data.cause.message;
      }
      if (!READONLY) { $("select-all").checked = data.entries.length > 0 && data.entries.every((e) => selected.has(e.id)); }
      await refreshJobs();
    }

    const tick = live(refresh);
    $("filters").addEventListener("submit", (event) => {
      event.preventDefault();
      const query = new URLSearchParams(filters()).toString();
      history.replaceState(null, "", location.pathname + (query ? "?" + query : ""));
      cursors = [null]; page = 0; selected.clear(); updateSelected();
      tick();
    });
    $("page-older").addEventListener("click", () => { if (next) { cursors[page + 1] = next; page += 1; tick(); } });
    $("page-newer").addEventListener("click", () => { if (page > 0) { page -= 1; tick(); } });
    if (READONLY) { return; }
    $("select-all").addEventListener("change", (event) => {
      for (const box of document.querySelectorAll("#dlq-rows .row-check")) {
        const id = box.closest("tr").dataset.entry;
        box.checked = event.target.checked;
        if (box.checked) { selected.add(id); } else { selected.delete(id); }
      }
      updateSelected();
    });
    const done = async () => { selected.clear(); updateSelected(); await tick(); };
    $("replay-selected").addEventListener("click", () =>
      planAndRun("replay", {ids: [...selected]}, selected.size + " selected", done));
    $("purge-selected").addEventListener("click", () =>
      planAndRun("purge", {ids: [...selected]}, selected.size + " selected", done));
    $("replay-matching").addEventListener("click", () => planAndRun("replay", selectionOfFilter(), "matching the filter", done));
    $("purge-matching").addEventListener("click", () => planAndRun("purge", selectionOfFilter(), "matching the filter", done));
  }

  // -- one entry ------------------------------------------------------------------------------

  function entryPage() {
    const id = $("entry").dataset.entry;
    $("refresh-status").textContent = "Loaded " + new Date().toLocaleTimeString();
    if (READONLY) { return; }
    async function act(action) {
      const verb = action === "replay" ? "Replay" : "Purge";
      const ok = await dialog(verb + " this entry?", [el("p", {text: action === "replay"
        ? "The job is published again exactly as it was sent (arguments, headers, canvas)."
        : "The entry is deleted. This cannot be undone."})], {confirm: verb});
      if (!ok) { return; }
      try {
        const result = await post("/dead-letters/" + encodeURIComponent(id) + "/" + action);
        const skipped = result.skipped ? Object.values(result.skipped) : [];
        const box = $("entry-done");
        box.textContent = action === "purge" ? "Purged." : (result.replayed ? "Replayed: the job was published again."
          : "Not replayed: " + skipped.join("; "));
        box.classList.remove("d-none");
        $("entry-replay").disabled = true;
        $("entry-purge").disabled = true;
      } catch (err) { showError(err.message); }
    }
    $("entry-replay").addEventListener("click", () => act("replay"));
    $("entry-purge").addEventListener("click", () => act("purge"));
  }

  // -- causes ---------------------------------------------------------------------------------

  function causesPage() {
    let order = "count";
    function row(cause) {
      const label = "of cause " + cause.task + " · " + cause.exc_type;
      const actions = el("td", {class: "text-end"},
        el("a", {class: "btn btn-outline-secondary btn-sm cause-entries",
          href: BASE + "/stalwart/dead-letters?cause=" + encodeURIComponent(cause.id), text: "Entries"}));
      if (!READONLY) {
        actions.append(" ",
          el("button", {type: "button", class: "btn btn-primary btn-sm cause-replay", text: "Replay…",
            onclick: () => planAndRun("replay", {filter: {cause: cause.id}}, label, tick)}), " ",
          el("button", {type: "button", class: "btn btn-danger btn-sm cause-purge", text: "Purge…",
            onclick: () => planAndRun("purge", {filter: {cause: cause.id}}, label, tick)}));
      }
      return el("tr", {"data-cause": cause.id},
        el("td", {class: "text-end cause-count", text: num(cause.count)}),
        el("td", {class: "cause-task", text: text(cause.task)}),
        el("td", {text: text(cause.exc_type)}),
        el("td", {class: "stalwart-error", title: cause.sample || "", text: text(cause.message)}),
        el("td", {class: "stalwart-when", text: when(cause.first_iso)}),
        el("td", {class: "stalwart-when", text: when(cause.last_iso)}),
        actions);
    }
    async function refresh() {
      const data = await getJSON("/causes", {order: order});
      fill($("cause-rows"), data.causes.length ? data.causes.map(row)
        : [el("tr", {}, el("td", {colspan: 7, class: "text-body-secondary", text: "No dead letters."}))]);
      $("causes-info").textContent = num(data.total) + " causes";
      await refreshJobs();
    }
    const tick = live(refresh);
    for (const button of document.querySelectorAll("[data-order]")) {
      button.addEventListener("click", () => {
        order = button.dataset.order;
        for (const b of document.querySelectorAll("[data-order]")) {
          b.classList.toggle("active", b === button);
          b.setAttribute("aria-pressed", String(b === button));
        }
        tick();
      });
    }
  }

  // -- breakers, limits, switches, queues, audit -------------------------------------------------

  function breakersPage() {
    // A per-key template (smtp:{provider}) is one row followed by a row per busiest key.
    function rows(b) {
      return b.template === true ? [row(b, "template"), ...(b.keys || []).map((k) => row(k, "key"))] : [row(b, "")];
    }
    function row(b, kind) {
      const cls = kind === "template" ? (b.open_keys ? "text-bg-danger" : "text-bg-secondary")
        : b.state === "closed" ? "text-bg-success" : (b.state === "half_open" ? "text-bg-warning" : "text-bg-danger");
      const actions = el("td", {class: "text-end"});
      if (!READONLY && kind !== "template") {
        for (const action of ["open", "close", "reset"]) {
          actions.append(el("button", {type: "button", class: "btn btn-outline-secondary btn-sm breaker-" + action,
            text: action, onclick: async () => {
              const ok = await dialog(action + " breaker " + b.name + "?", [el("p", {text: action === "open"
                ? "Calls will be refused (jobs wait or run their fallback) until it is closed or reset."
                : "The breaker's failure window is cleared."})], {confirm: action});
              if (!ok) { return; }
              try { await post("/breakers/" + encodeURIComponent(b.name) + "/" + action); await tick(); }
              catch (err) { showError(err.message); }
            }}), " ");
        }
      }
      const attrs = kind === "template" ? {"data-breaker-template": b.name} : {"data-breaker": b.name};
      if (kind === "key") { attrs.class = "breaker-key"; }
      return el("tr", attrs,
        el("td", {class: "task-name-value", text: (kind === "key" ? "↳ " : "") + b.name
          + (kind === "template" ? " (" + num(b.tracked_keys) + " keys)" : "")}),
        el("td", {}, el("span", {class: "badge breaker-state " + cls, text: b.state})),
        el("td", {class: "text-end", text: (100 * (b.failure_rate || 0)).toFixed(1) + "%"}),
        el("td", {class: "text-end", text: num(b.calls)}),
        el("td", {class: "text-end", text: num(b.failures)}),
        el("td", {class: "text-end", text: num((b.in_flight || 0) + (b.probes_in_flight || 0))}),
        el("td", {text: b.half_open_in === null || b.half_open_in === undefined ? "—" : b.half_open_in.toFixed(1) + " s"}),
        el("td", {class: "stalwart-error", text: text(b.reason)}),
        actions);
    }
    const tick = live(async () => {
      const data = await getJSON("/breakers");
      fill($("breaker-rows"), data.breakers.length ? data.breakers.flatMap(rows)
        : [el("tr", {}, el("td", {colspan: 9, class: "text-body-secondary", text: "No breaker has been used yet."}))]);
    });
  }

  function limitsPage() {
    live(async () => {
      const data = await getJSON("/limits");
      fill($("limit-rows"), data.limits.length ? data.limits.map((l) => {
        const settings = (l.type === "rate" ? (l.rate || "") + (l.burst ? " burst " + l.burst : "") : "limit " + text(l.limit))
          + (l.template === true ? " per key (" + num(l.tracked_keys) + " keys)" : "");
        return el("tr", {"data-limit": l.name}, el("td", {class: "task-name-value", text: l.name}), el("td", {text: text(l.type)}),
          el("td", {text: settings}), el("td", {class: "text-end", text: num(l.usage)}),
          el("td", {class: "text-end", text: num(l.granted)}), el("td", {class: "text-end", text: num(l.denied)}));
      }) : [el("tr", {}, el("td", {colspan: 6, class: "text-body-secondary", text: "No limit has been used yet."}))]);
      const blocks = Object.entries(data.top_keys).map(([family, keys]) => el("div", {class: "detail-card"},
        el("h3", {class: "h6 stalwart-section-title", text: family}),
        el("ol", {class: "stalwart-timeline"}, ...keys.map((k) => el("li", {"data-limit-key": k.name,
          text: k.name + " — usage " + num(k.usage) + ", activity " + num(k.activity) + ", granted " + num(k.granted)
            + ", denied " + num(k.denied)})))));
      fill($("top-keys"), blocks);
    });
  }

  function switchesPage() {
    let lastPreview = [];
    function row(s) {
      const cell = el("td", {class: "text-end"});
      if (!READONLY) {
        cell.append(el("button", {type: "button", class: "btn btn-outline-success btn-sm switch-resume", text: "Resume",
          onclick: async () => {
            const ok = await dialog("Resume " + s.pattern + "?", [el("p", {text: "These tasks run again:"}),
              el("ul", {}, ...s.matches.map((m) => el("li", {text: m})))], {confirm: "Resume"});
            if (!ok) { return; }
            try { await post("/switches", {pattern: s.pattern, state: "resume"}); await tick(); }
            catch (err) { showError(err.message); }
          }}));
      }
      return el("tr", {"data-pattern": s.pattern}, el("td", {class: "task-name-value", text: s.pattern}),
        el("td", {}, el("span", {class: "badge " + (s.state === "paused" ? "text-bg-warning" : "text-bg-danger"), text: s.state})),
        el("td", {class: "stalwart-when", text: when(s.at_iso)}),
        el("td", {class: "stalwart-error", text: s.matches.length ? s.matches.join(", ") : "(no known task matches)"}),
        cell);
    }
    const tick = live(async () => {
      const data = await getJSON("/switches");
      fill($("switch-rows"), data.switches.length ? data.switches.map(row)
        : [el("tr", {}, el("td", {colspan: 5, class: "text-body-secondary", text: "No switch is set: every task runs."}))]);
    });
    if (READONLY) { return; }
    let timer = null;
    async function preview() {
      const pattern = $("s-pattern").value.trim();
      if (!pattern) { $("s-preview").textContent = "Type a pattern to see the tasks it matches."; lastPreview = []; return; }
      const data = await getJSON("/switches", {preview: pattern});
      lastPreview = data.preview || [];
      $("s-preview").textContent = lastPreview.length ? "Matches " + lastPreview.length + ": " + lastPreview.join(", ")
        : "Matches no task known here (it will apply to any that appears).";
    }
    $("s-pattern").addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(() => preview().catch((e) => showError(e.message)), 250); });
    $("switch-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      await preview();
      const pattern = $("s-pattern").value.trim();
      const state = $("s-state").value;
      const ok = await dialog((state === "paused" ? "Pause " : "Disable ") + pattern + "?", [
        el("p", {text: state === "paused" ? "Jobs of these tasks wait until resumed:" : "Jobs of these tasks are dead-lettered as disabled:"}),
        el("ul", {id: "switch-matches"}, ...(lastPreview.length ? lastPreview.map((m) => el("li", {text: m}))
          : [el("li", {text: "(no task known here matches yet)"})]))], {confirm: state === "paused" ? "Pause" : "Disable"});
      if (!ok) { return; }
      try { await post("/switches", {pattern: pattern, state: state}); await tick(); }
      catch (err) { showError(err.message); }
    });
  }

  function chart(series) {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    const width = series.length;
    const top = Math.max(1, ...series.map((p) => p.count));
    svg.setAttribute("viewBox", "0 0 " + width + " 100");
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", "Dead letters per minute; peak " + top);
    series.forEach((point, i) => {
      if (!point.count) { return; }
      const rect = document.createElementNS(ns, "rect");
      const h = Math.max(2, 96 * point.count / top);
      rect.setAttribute("x", String(i)); rect.setAttribute("width", "0.9");
      rect.setAttribute("y", String(100 - h)); rect.setAttribute("height", String(h));
      const title = document.createElementNS(ns, "title");
      title.textContent = new Date(point.minute * 60000).toLocaleTimeString() + ": " + point.count;
      rect.append(title);
      svg.append(rect);
    });
    return svg;
  }

  function queuesPage() {
    live(async () => {
      const data = await getJSON("/queues");
      fill($("queue-rows"), data.queues.map((q) => el("tr", {"data-queue": q.queue},
        el("td", {class: "task-name-value", text: q.queue}), el("td", {class: "text-end", text: num(q.ready)}),
        el("td", {class: "text-end", text: num(q.delayed)}),
        el("td", {class: "text-end", text: q.oldest_age_seconds === null ? "—" : q.oldest_age_seconds + " s"}))));
      $("m-inflight").textContent = num(data.in_flight);
      $("m-dlq-hour").textContent = num(data.dlq_per_minute.slice(-60).reduce((a, p) => a + p.count, 0));
      const peak = Math.max(0, ...data.dlq_per_minute.map((p) => p.count));
      fill($("dlq-chart"), [chart(data.dlq_per_minute),
        el("div", {class: "stalwart-axis-row"}, el("span", {text: "6 h ago"}),
          el("span", {text: "peak " + num(peak) + " per minute"}), el("span", {text: "now"}))]);
    });
  }

  function auditPage() {
    live(async () => {
      const data = await getJSON("/audit");
      fill($("audit-rows"), data.records.length ? data.records.map((r) => el("tr", {},
        el("td", {class: "stalwart-when", text: when(r.at_iso)}), el("td", {text: text(r.who)}),
        el("td", {class: "audit-action", text: text(r.action)}), el("td", {class: "stalwart-error", text: text(r.what)}),
        el("td", {class: "text-end", text: num(r.count)}),
        el("td", {class: "stalwart-error", text: JSON.stringify(r.detail || {})}))) :
        [el("tr", {}, el("td", {colspan: 6, class: "text-body-secondary", text: "No operator action yet."}))]);
      $("audit-info").textContent = num(data.total) + " records (the newest 100 shown)";
      await refreshJobs();
    });
  }

  const pages = {"dead-letters": deadLetters, "entry": entryPage, "causes": causesPage, "breakers": breakersPage,
    "limits": limitsPage, "switches": switchesPage, "queues": queuesPage, "audit": auditPage};
  const start = pages[root.dataset.page];
  if (start) { start(); }
}());
