// The front page: "Try it" (one photo through /classify, /multicrop, /ensemble or /select),
// "The zoo" (GET /models) and "The frontier" (GET /frontier, JSON and SVG, refreshed while
// in view). All data come from the REST API through client.js; nothing else is fetched.

import { ApiError, api, apiJson, apiKey, forgetApiKey, withKey } from "./client.js";
import { $, element } from "./dom.js";

const FRONTIER_REFRESH_MS = 10000;
// Stages in the order a request passes them; the others (total, batch_size) are not stages.
const STAGES = ["selection", "decode", "preprocess", "queue", "infer", "postprocess", "combine"];
const RUN_LABEL = { classify: "Classify", multicrop: "Classify crops",
                    ensemble: "Run the ensemble", select: "Select and classify" };

const state = { models: [], defaultModel: null, photo: null, run: 0 };

function show(node, text) {
  node.textContent = text ?? "";
  node.hidden = !text;
}

function figure(value, digits = 1) {
  return value === null || value === undefined ? "–" : Number(value).toFixed(digits);
}

function hasWeights(model) {
  return ["pretrained", "random-init", "fine-tuned"].includes(model.weights);
}

function families() {
  return [...new Set(state.models.map((m) => m.family))].sort();
}

function fillSelect(select, values, selected) {
  select.replaceChildren(...values.map((v) => element(
    "option", { value: v, selected: v === selected }, v)));
}

// --- the models: one fetch fills the zoo and every model and family picker ---------------

async function loadModels() {
  const listing = await withKey(() => apiJson("/models"));
  state.models = listing.models;
  state.defaultModel = listing.default_model;
  $("#forget-key").hidden = !apiKey();

  const byName = Object.fromEntries(state.models.map((m) => [m.name, m]));
  const model = $("#model");
  const current = model.value || state.defaultModel;
  model.replaceChildren(...state.models.map((m) => element(
    "option", { value: m.name, selected: m.name === current, disabled: !hasWeights(m) },
    hasWeights(m) ? `${m.name}${m.weights === "pretrained" ? "" : ` (${m.weights})`}`
                  : `${m.name} (no weights)`)));

  const members = $("#members");
  if (!members.querySelector("input")) {
    const usable = state.models.filter(hasWeights);
    const preset = usable.filter((m) => m.weights === "pretrained" && m.num_classes === 1000)
      .slice(0, 2).map((m) => m.name);
    members.append(...usable.map((m) => element("label", {}, element(
      "input", { type: "checkbox", name: "member", value: m.name,
                 checked: preset.includes(m.name) }), ` ${m.name}`)));
  }

  const defaultFamily = byName[state.defaultModel]?.family;
  for (const select of [$("#family"), $("#frontier-family")]) {
    fillSelect(select, families(), select.value || defaultFamily);
  }
  const zooFamily = $("#zoo-family");
  const chosen = zooFamily.value;
  zooFamily.replaceChildren(element("option", { value: "" }, "all families"),
                            ...families().map((f) => element("option", { value: f }, f)));
  zooFamily.value = chosen;
  renderZoo();
}

// --- the zoo -----------------------------------------------------------------------------

function computedOrPublished(model, key) {
  const computed = model.computed?.[key];
  if (computed !== undefined && computed !== null) {
    return element("span", { title: "computed from the stored model" }, figure(computed),
                   element("small", {}, " computed"));
  }
  return element("span", { title: "published" }, figure(model.published?.[key]));
}

function modelState(model) {
  if (model.load_error) return element("span", { className: "bad" }, `failed: ${model.load_error}`);
  if (model.ready) return element("span", { className: "good" }, "ready");
  if (model.loaded) return "loading";
  return hasWeights(model) ? "loads on first use" : "–";
}

function howToGet(model) {
  if (model.weights === "pretrained") return "";
  if (model.weights === "fine-tuned") {  // a user model (docs/transfer_learning.md)
    return element("small", {}, `from ${model.backbone}: ${model.classes.join(", ")}`);
  }
  return element("div", { className: "how" },
    model.weights === "random-init" ? element("small", {}, "random weights, for profiling") : null,
    element("code", {}, `python -m model_store pull ${model.name}`),
    element("details", {}, element("summary", {}, "offline"),
      "fetch the file ", element("code", {}, `python -m model_store info ${model.name}`),
      " names, then ",
      element("code", {}, `python -m model_store import ${model.name} --from-file FILE`)));
}

function renderZoo() {
  const family = $("#zoo-family").value;
  const shown = state.models.filter((m) => !family || m.family === family);
  $("#zoo-table tbody").replaceChildren(...shown.map((m) => element(
    "tr", { "data-name": m.name, "data-weights": m.weights },
    element("td", {}, element("code", {}, m.name)),
    element("td", {}, m.family),
    element("td", {}, `${m.input.size} px`),
    element("td", { className: "num" }, computedOrPublished(m, "params_m")),
    element("td", { className: "num" }, computedOrPublished(m, "mult_adds_m")),
    element("td", { className: "num" }, figure(m.published?.top1)),
    element("td", { className: "source" }, m.published?.source ?? "–"),
    element("td", { className: "weights" },
            element("span", { className: `badge ${m.weights}` }, m.weights), howToGet(m)),
    element("td", { className: "state" }, modelState(m)))));
  $("#zoo-count").textContent = `${shown.length} of ${state.models.length} variants`;
}

// --- try it ------------------------------------------------------------------------------

function mode() {
  return document.querySelector("input[name=mode]:checked").value;
}

function showModeOptions() {
  for (const node of document.querySelectorAll("[data-modes]")) {
    node.hidden = !node.dataset.modes.split(" ").includes(mode());
  }
  updateRunButton();
}

function updateRunButton() {
  const run = $("#run");
  run.disabled = !state.photo;
  run.textContent = state.photo ? RUN_LABEL[mode()] : "Choose a photo first";
}

function choosePhoto(file) {
  if (!file) return;
  state.photo = file;
  const preview = $("#preview");
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  $("#drop-hint").textContent = `${file.name} — drop or click for another`;
  updateRunButton();
  runTry();
}

function request() {
  const form = new FormData();
  form.append("image", state.photo, state.photo.name || "photo");
  form.append("top_k", "5");
  switch (mode()) {
    case "classify":
      form.append("model", $("#model").value);
      return ["/classify", form];
    case "multicrop":
      form.append("model", $("#model").value);
      form.append("crops", $("#crops").value);
      return ["/multicrop", form];
    case "ensemble":
      for (const box of document.querySelectorAll("input[name=member]:checked")) {
        form.append("models", box.value);
      }
      form.append("method", $("#method").value);
      form.append("crops", $("#crops").value);
      return ["/ensemble", form];
    default:
      form.append("family", $("#family").value);
      form.append("latency_budget_ms", $("#budget").value);
      return ["/select", form];
  }
}

async function runTry() {
  if (!state.photo) return;
  const run = ++state.run;
  const runMode = mode();
  const result = $("#result");
  result.dataset.status = "running";
  result.dataset.mode = runMode;
  result.dataset.run = run;
  show($("#error"), "");
  const [path, form] = request();
  try {
    const body = await withKey(async () => apiJson(path, { method: "POST", body: form }));
    if (run !== state.run) return; // a newer run owns the result
    renderResult(body, runMode);
    result.dataset.status = "done";
    if (runMode === "select") {
      $("#frontier-family").value = body.selection.family;
      refreshFrontier();
    }
    loadModels(); // a model may have loaded on this request
  } catch (error) {
    if (run !== state.run) return;
    result.dataset.status = "error";
    const code = error instanceof ApiError ? ` (${error.status} ${error.code})` : "";
    show($("#error"), `${error.message}${code}`);
  }
}

function warnings(body) {
  const all = [body.warning, ...(body.members ?? []).map((m) => m.warning)].filter(Boolean);
  return [...new Set(all)];
}

function renderResult(body, runMode) {
  show($("#warning"), warnings(body).join(" "));
  const what = body.members ? `ensemble of ${body.models.join(", ")} (${body.method})`
    : body.model;
  const crops = body.crops ? ` · ${body.crops} crop${body.crops > 1 ? "s" : ""}` : "";
  $("#result-summary").replaceChildren(
    element("strong", { id: "result-model" }, what), crops, " · weights: ",
    element("span", { className: `badge ${body.weights}`, id: "result-weights" }, body.weights));
  const selection = body.selection;
  show($("#selection-info"), runMode === "select" && selection
    ? `Chose ${selection.chosen}: ${selection.reason}. Expected ${figure(
      selection.expected_latency_ms)} ms, took ${figure(selection.actual_latency_ms)} ms.`
    : "");

  $("#top5").replaceChildren(...body.predictions.map((p) => {
    const bar = element("span", { className: "fill" });
    bar.style.width = `${Math.max(0.5, p.score * 100)}%`;
    return element("li", { "data-index": p.index },
      element("span", { className: "label" }, p.label),
      element("span", { className: "bar" }, bar),
      element("span", { className: "score" }, `${(p.score * 100).toFixed(2)}%`));
  }));
  renderTiming(body);
}

function timingRow(name, timing) {
  return element("tr", {}, element("th", {}, name), ...STAGES.map((stage) => element(
    "td", { className: "num", "data-stage": stage }, figure(timing[stage], 1))),
    element("td", { className: "num total" }, figure(timing.total, 1)),
    element("td", { className: "num" }, timing.batch_size ?? "–"));
}

function renderTiming(body) {
  const rows = [timingRow(body.members ? "request" : body.model, body.timing_ms)];
  for (const member of body.members ?? []) rows.push(timingRow(member.model, member.timing_ms));
  const used = STAGES.filter((s) => [body, ...(body.members ?? [])].some(
    (r) => r.timing_ms[s] !== undefined));
  const table = element("table", { className: "timing", id: "timing-table" },
    element("caption", {}, "Time spent, ms (queue: waiting for a batch; infer: the batch run)"),
    element("thead", {}, element("tr", {}, element("th", {}, ""),
      ...STAGES.map((s) => element("th", { "data-stage": s }, s)),
      element("th", {}, "total"), element("th", {}, "batch"))),
    element("tbody", {}, ...rows));
  for (const cell of table.querySelectorAll("[data-stage]")) {
    cell.hidden = !used.includes(cell.dataset.stage);
  }
  $("#timing").replaceChildren(table);
}

function setUpTry() {
  const drop = $("#drop-zone");
  $("#photo").addEventListener("change", (e) => choosePhoto(e.target.files[0]));
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    choosePhoto(e.dataTransfer.files[0]);
  });
  for (const radio of document.querySelectorAll("input[name=mode]")) {
    radio.addEventListener("change", showModeOptions);
  }
  $("#try-form").addEventListener("submit", (e) => { e.preventDefault(); runTry(); });
  showModeOptions();
}

// --- the frontier ------------------------------------------------------------------------

// Measuring a family loads its variants, so the frontier is fetched only while in view.
const frontier = { inView: false, inFlight: false, pending: false };

async function refreshFrontier() {
  const family = $("#frontier-family").value;
  if (!family) return;
  if (frontier.inFlight) {
    frontier.pending = true; // once this one is done: the family or the choice changed
    return;
  }
  frontier.inFlight = true;
  const query = `/frontier?family=${encodeURIComponent(family)}`;
  try {
    const data = await withKey(() => apiJson(query));
    const svg = await withKey(async () => (await api(`${query}&format=svg`)).blob());
    if ($("#frontier-family").value !== family) return;
    const plot = $("#frontier-plot");
    if (plot.src) URL.revokeObjectURL(plot.src);
    plot.src = URL.createObjectURL(svg);
    renderFrontierTable(data);
    $("#frontier-updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    $("#frontier-choice").textContent = `The frontier is not available: ${error.message}`;
  } finally {
    frontier.inFlight = false;
    if (frontier.pending) {
      frontier.pending = false;
      refreshFrontier();
    }
  }
}

function renderFrontierTable(data) {
  const last = data.last_selection;
  $("#frontier-choice").textContent = last
    ? `Current choice: ${last.chosen}${last.latency_budget_ms
      ? ` for a ${last.latency_budget_ms} ms budget` : ""} — ${last.reason}.`
    : "No selection in this family yet: run “Select by budget” above.";
  const head = element("tr", {}, ...["Variant", "Top-1 (%)", "Expected now (ms)",
    "Service (ms)", "Queue wait (ms)", "Weights", "On the frontier", "Note"].map(
    (h) => element("th", {}, h)));
  const rows = data.variants.map((v) => element(
    "tr", { "data-name": v.name, className: v.name === last?.chosen ? "chosen" : null },
    element("td", {}, element("code", {}, v.name)),
    element("td", { className: "num" }, figure(v.top1)),
    element("td", { className: "num" }, figure(v.expected_latency_ms)),
    element("td", { className: "num" }, figure(v.service_ms)),
    element("td", { className: "num" }, figure(v.queue_wait_ms)),
    element("td", {}, element("span", { className: `badge ${v.weights}` }, v.weights)),
    element("td", {}, v.on_frontier ? "yes" : ""),
    element("td", {}, v.excluded || v.note || "")));
  $("#frontier-table").replaceChildren(element("thead", {}, head),
                                       element("tbody", {}, ...rows));
}

function setUpFrontier() {
  $("#frontier-family").addEventListener("change", refreshFrontier);
  new IntersectionObserver((entries) => {
    frontier.inView = entries.some((entry) => entry.isIntersecting);
    if (frontier.inView) refreshFrontier();
  }).observe($("#frontier"));
  setInterval(() => {
    if (frontier.inView && document.visibilityState === "visible") refreshFrontier();
  }, FRONTIER_REFRESH_MS);
}

// --- start -------------------------------------------------------------------------------

async function start() {
  setUpTry();
  $("#zoo-family").addEventListener("change", renderZoo);
  $("#forget-key").addEventListener("click", () => { forgetApiKey(); location.reload(); });
  try {
    await loadModels();
  } catch (error) {
    show($("#service-error"), `The service did not answer GET /models: ${error.message}`);
    return;
  }
  setUpFrontier();
}

start();
