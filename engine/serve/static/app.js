// camo-engine's page: one POST /v1/protect per photo, all at once (the service batches them).
"use strict";

// Options the page offers, when the service accepts them (GET /v1/options).
const SHOWN = ["victim", "strength", "format"];

async function loadOptions() {
  const response = await fetch("/v1/options");
  const { fields } = await response.json();
  const controls = document.getElementById("controls");
  for (const field of fields.filter((f) => SHOWN.includes(f.name))) {
    const choices = field.choices;
    const label = document.createElement("label");
    label.textContent = `${field.name} `;
    label.title = field.help;
    const input = document.createElement(choices.length ? "select" : "input");
    input.name = field.name;
    input.id = `option-${field.name}`;
    for (const choice of choices) input.add(new Option(choice, choice));
    input.value = field.default ?? "";
    label.append(input);
    controls.append(label);
  }
}

function base64ToBlob(text, type) {
  const bytes = Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  return new Blob([bytes], { type });
}

function kilobytes(n) {
  return `${(n / 1024).toFixed(n < 10240 ? 1 : 0)} KB`;
}

function show(card, file, { report, image }) {
  const q = (selector) => card.querySelector(selector);
  const blob = base64ToBlob(image, report.media_type);
  const url = URL.createObjectURL(blob);
  q(".before").src = URL.createObjectURL(file);
  q(".after").src = url;
  q(".compare").hidden = q(".legend").hidden = q(".facts").hidden = q(".per-view").hidden = false;
  q(".verdict").textContent = !report.protected ? "NOT protected"
    : report.already ? "protected (the original already was)"
    : report.alone ? "protected (the platform's re-encoding alone already was)"
    : "protected";
  q(".verdict").classList.add(report.protected ? "ok" : "no");
  q(".views").textContent = `${report.views_protected} views (${report.strength}, panel ${report.panel})`;
  const rows = q(".view-table tbody");
  for (const view of report.views) {
    const row = rows.insertRow();
    row.insertCell().textContent = view.view;
    row.insertCell().textContent = view.protected ? "protected" : "NOT protected";
    row.insertCell().textContent = `${view.before} → ${view.after}`;
  }
  q(".scores").textContent = `${report.victim}: ${report.before} → ${report.after}`;
  q(".psnr").textContent = report.psnr === null ? "∞ (unchanged)" : `${report.psnr.toFixed(1)} dB`;
  q(".steps").textContent = `${report.steps}`;
  q(".removed").textContent = report.metadata_removed.length ? report.metadata_removed.join(", ") : "none";
  const link = q(".download");
  link.href = url;
  link.download = report.download_name;
  link.textContent = `Download ${report.download_name} (${report.width}×${report.height}, ${kilobytes(report.bytes)})`;
  link.dataset.bytes = report.bytes;
  link.dataset.width = report.width;
  link.dataset.height = report.height;
  link.hidden = false;
  q(".status").textContent = "";
  card.dataset.state = "done";
}

async function protectOne(file, options, card) {
  const body = new FormData();
  body.append("photo", file, file.name);
  for (const [name, value] of Object.entries(options)) body.append(name, value);
  try {
    const response = await fetch("/v1/protect?report=json", { method: "POST", body });
    const answer = await response.json();
    if (!response.ok) throw new Error(answer.error || `HTTP ${response.status}`);
    show(card, file, answer);
  } catch (error) {
    card.querySelector(".status").textContent = `failed: ${error.message}`;
    card.dataset.state = "error";
  }
}

function slide(event) {
  const compare = event.target.closest(".compare");
  compare.querySelector(".after-clip").style.clipPath = `inset(0 0 0 ${event.target.value}%)`;
  compare.querySelector(".divider").style.left = `${event.target.value}%`;
}

document.getElementById("protect-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const files = [...document.getElementById("files").files];
  const options = {};
  for (const input of document.querySelectorAll("#controls [name]")) options[input.name] = input.value;
  const results = document.getElementById("results");
  const template = document.getElementById("result-template");
  const status = document.getElementById("form-status");
  status.textContent = `protecting ${files.length} photo(s)…`;
  const jobs = files.map((file) => {
    const card = template.content.firstElementChild.cloneNode(true);
    card.querySelector(".name").textContent = file.name;
    card.querySelector(".slider").addEventListener("input", slide);
    results.prepend(card);
    return protectOne(file, options, card);
  });
  await Promise.all(jobs);
  status.textContent = "done";
});

loadOptions();
