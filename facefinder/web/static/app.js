// The review page: plain DOM over the finder's JSON API (facefinder/web/server.py).
//
// Why it is written this way:
// * no framework, no build step, no CDN: the finder runs offline from a USB stick;
// * every piece of data (file names, people's names) reaches the page as text nodes or
//   properties, never as markup, so a photo called "<img onerror=...>.jpg" is just a name;
// * the CSP allows only this file and style.css: no inline script, style or handler, so
//   outlines are placed through element.style (the CSSOM, which the CSP permits);
// * the page lives under the address the finder printed (/s/<token>/), which holds the
//   run's token: every request is made relative to it (api/..., no leading slash),
//   so nothing else (no cookie, which any server on 127.0.0.1 would be sent) carries it;
// * one key per answer (y / n) on the focused card, then the next card gets the focus,
//   so a long list can be gone through without the mouse.

"use strict";

const main = document.getElementById("main");
const summaryLine = document.getElementById("summary");
const errorLine = document.getElementById("error");
const statusLine = document.getElementById("status");
const MAX_UPLOAD = 25 * 1024 * 1024; // the server's limit, checked here to say it sooner
const PAGE_SIZE = 120;

let people = []; // [{name, references, confirmed, photos, maybe}], kept for name lists
let view = null; // the page shown: {reload(focus)} when it has cards to answer
let renderCount = 0; // a newer render makes an older one's late answers moot

// ------------------------------------------------------------------ small helpers

class ApiError extends Error {}

/** The API's JSON answer; an ApiError with the server's one-line reason otherwise. */
async function api(path, { method = "GET", json, bytes } = {}) {
  const options = { method, headers: {}, cache: "no-store" };
  if (bytes !== undefined) {
    options.body = bytes;
    options.headers["Content-Type"] = "application/octet-stream";
  } else if (json !== undefined) {
    options.body = JSON.stringify(json);
    options.headers["Content-Type"] = "application/json";
  }
  let response;
  try {
    response = await fetch(path, options);
  } catch {
    throw new ApiError("The finder does not answer: is it still running?");
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const reason = data && typeof data.error === "string" ? data.error : response.statusText;
    throw new ApiError(`${reason || "error"} (${response.status})`);
  }
  return data;
}

// Set as attributes: they have no property, or a read-only one (input.list).
const ATTRIBUTES = new Set(["role", "list", "scope"]);

/** An element: props become properties (text: textContent, on*: listeners), children
 *  are nodes or text. Nothing is ever parsed as HTML. */
function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key === "for") el.htmlFor = value;
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key.startsWith("aria-") || key.startsWith("data-") || ATTRIBUTES.has(key)) {
      el.setAttribute(key, value === true ? "true" : String(value));
    } else el[key] = value;
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

function oneLine(text) {
  return String(text).replace(/\s+/g, " ").trim();
}

function showError(error) {
  const text = error instanceof ApiError ? error.message : `Something went wrong: ${error}`;
  errorLine.textContent = oneLine(text);
  errorLine.title = errorLine.textContent;
  errorLine.hidden = false;
}

function clearError() {
  errorLine.hidden = true;
  errorLine.textContent = "";
}

function announce(text) {
  statusLine.textContent = oneLine(text);
}

/** Run an action started by the user; its failure becomes the error line. */
async function attempt(action) {
  try {
    await action();
  } catch (error) {
    showError(error);
  }
}

const enc = encodeURIComponent;
const fileOf = (face) => String(face).split("-")[0];
const distance = (d) => (typeof d === "number" ? d.toFixed(2) : "");
const plural = (n, one, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

function fileImage(file, side, at) {
  let url = `api/files/${enc(file)}/image?side=${side}`;
  if (typeof at === "number") url += `&at=${at}`;
  return url;
}

function faceImage(face, side = 160) {
  return `api/faces/${enc(face)}/image?side=${side}`;
}

function image(src, alt, className) {
  const img = h("img", { src, alt, loading: "lazy", decoding: "async", class: className });
  img.addEventListener("error", () => img.classList.add("broken"), { once: true });
  return img;
}

/** A picture with faces outlined. ``size`` is the original's [width, height]; boxes are
 *  [x, y, w, h] in its pixels, shown in % so they follow the picture at any width. */
function framed(src, size, alt, boxes = [], className = "") {
  const frame = h("div", { class: `frame ${className}`.trim() });
  frame.append(image(src, alt));
  if (!Array.isArray(size) || !(size[0] > 0 && size[1] > 0)) return frame;
  frame.style.aspectRatio = `${size[0]} / ${size[1]}`;
  for (const item of boxes) {
    const [x, y, w, hgt] = item.box;
    const box = h("div", { class: `box ${item.kind || ""}`.trim(), "aria-hidden": "true" });
    box.style.left = `${(100 * x) / size[0]}%`;
    box.style.top = `${(100 * y) / size[1]}%`;
    box.style.width = `${(100 * w) / size[0]}%`;
    box.style.height = `${(100 * hgt) / size[1]}%`;
    if (y < size[1] * 0.08) box.classList.add("low"); // no room above: label below
    if (item.label) box.append(h("span", { class: "label", text: item.label }));
    frame.append(box);
  }
  return frame;
}

function when(match) {
  if (match.kind === "video" && typeof match.first === "number") {
    return `video ${clock(match.first)}–${clock(match.last ?? match.first)}`;
  }
  return match.taken ? match.taken.slice(0, 10) : "";
}

function clock(seconds) {
  const s = Math.round(seconds);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

function heading(text) {
  const h2 = h("h2", { text, tabIndex: -1 });
  return h2;
}

function setTitle(text) {
  document.title = `${text} · Face finder`;
}

function peopleList() {
  const id = "people-names";
  let list = document.getElementById(id);
  if (!list) {
    list = h("datalist", { id });
    document.body.append(list);
  }
  list.replaceChildren(...people.map((p) => h("option", { value: p.name })));
  return id;
}

// ------------------------------------------------------------------ header

async function loadSummary() {
  const s = await api("api/summary");
  const parts = [
    `${plural(s.files, "file")} in ${s.photos}`,
    `${plural(s.matches, "photo")} found`,
    `${s.maybes} maybe`,
    `${plural(s.decisions, "answer")} given`,
    `${s.model}, threshold ${s.threshold}`,
  ];
  if (s.unreadable) parts.splice(1, 0, `${s.unreadable} unreadable`);
  summaryLine.textContent = parts.join(" · ");
}

async function loadPeople() {
  people = (await api("api/people")).people;
  peopleList();
  return people;
}

document.getElementById("refresh").addEventListener("click", (event) => {
  const button = event.currentTarget;
  button.disabled = true;
  button.textContent = "Looking…";
  announce("Searching the folder again…");
  attempt(async () => {
    await api("api/refresh", { method: "POST" });
    announce("Searched again.");
    await Promise.all([loadSummary(), render()]);
  }).finally(() => {
    button.disabled = false;
    button.textContent = "Look again";
  });
});

// ------------------------------------------------------------------ answering

/** Send one verdict; then the page reloads its list and focuses the card after this one. */
async function decide(face, person, verdict, card) {
  const cards = card ? [...document.querySelectorAll("[data-face]")] : [];
  const index = cards.indexOf(card);
  const next = index >= 0 && index + 1 < cards.length ? cards[index + 1].dataset.face : null;
  if (card) card.setAttribute("aria-busy", "true");
  try {
    await api("api/decisions", { method: "POST", json: { face, person, verdict } });
    clearError();
    const said = { yes: `Yes: ${person}`, no: `Not ${person}`, undo: "Answer undone" }[verdict];
    announce(said);
    await Promise.all([loadSummary(), loadPeople()]);
    if (view && view.reload) await view.reload({ face, next, index, verdict });
  } catch (error) {
    showError(error);
  } finally {
    if (card && card.isConnected) card.removeAttribute("aria-busy");
  }
}

/** After a reload: focus the card that came after the one answered (or the one in its
 *  place), so y/n/y/n goes down the list. */
function refocus(hint, fallbackFirst = false) {
  const cards = [...main.querySelectorAll("[data-face]")];
  if (!cards.length) {
    const title = main.querySelector("h2");
    if (title) title.focus();
    return;
  }
  let target = null;
  if (hint) {
    const byFace = (face) => cards.find((c) => c.dataset.face === face);
    target = (hint.next && byFace(hint.next)) ||
      (hint.verdict === "undo" && byFace(hint.face)) ||
      cards[Math.min(Math.max(hint.index, 0), cards.length - 1)];
  } else if (fallbackFirst) {
    target = cards[0];
  }
  if (target) target.focus();
}

document.addEventListener("keydown", (event) => {
  if (event.altKey || event.ctrlKey || event.metaKey || event.isComposing) return;
  const target = event.target;
  if (target.closest && target.closest("input, textarea, select")) return;
  const card = target.closest ? target.closest("[data-face]") : null;
  if (!card) return;
  const key = event.key.toLowerCase();
  if ((key === "y" || key === "n") && card.dataset.person && card.dataset.decidable === "yes") {
    event.preventDefault();
    if (card.getAttribute("aria-busy") === "true") return;
    decide(card.dataset.face, card.dataset.person, key === "y" ? "yes" : "no", card);
  } else if (key === "u" && card.dataset.undo) {
    event.preventDefault();
    decide(card.dataset.face, card.dataset.undo, "undo", card);
  } else if (["arrowright", "arrowdown", "arrowleft", "arrowup"].includes(key)
             && target === card) {
    const cards = [...main.querySelectorAll("[data-face]")];
    const step = key === "arrowright" || key === "arrowdown" ? 1 : -1;
    const next = cards[cards.indexOf(card) + step];
    if (next) {
      event.preventDefault();
      next.focus();
    }
  } else if (key === "enter" && target === card && card.dataset.file) {
    event.preventDefault();
    location.hash = `#/photo/${card.dataset.file}`;
  }
});

/** One found photo (or suggestion) of ``person`` as a card to answer. */
function matchCard(match, person, { suggestion = false, threshold = null } = {}) {
  const isMaybe = suggestion && threshold !== null && match.distance >= threshold;
  const confirmed = Boolean(match.confirmed);
  const status = confirmed ? "confirmed" : isMaybe ? "maybe" : suggestion ? "found, not confirmed" : "not confirmed yet";
  const video = match.kind === "video";
  const src = video ? fileImage(match.file, 320, match.first ?? 0) : fileImage(match.file, 320);
  const outline = video ? [] : [{ box: match.box, kind: confirmed ? "confirmed" : "", label: person }];
  const card = h("li", {
    class: `card${confirmed ? " confirmed" : ""}`,
    tabIndex: 0,
    "data-face": match.face,
    "data-file": match.file,
    "data-person": person,
    "data-decidable": match.face ? "yes" : "no",
    "data-undo": confirmed ? person : null,
    "aria-label": `${match.path}: ${status}. Press y for yes, n for no, Enter to open the photo.`,
  });
  card.append(
    h("a", { href: `#/photo/${match.file}`, tabIndex: -1, "aria-hidden": "true" },
      framed(src, match.size, "", outline)),
    h("p", { class: "path", text: match.path }),
    h("p", { class: "meta", text: [confirmed ? "" : `distance ${distance(match.distance)}`, when(match)]
      .filter(Boolean).join(" · ") }),
  );
  if (confirmed) card.append(h("span", { class: "badge", text: "✓ Confirmed" }));
  else if (isMaybe) card.append(h("span", { class: "badge maybe", text: "Maybe" }));
  else if (suggestion) card.append(h("span", { class: "badge check", text: "Found, check" }));
  const actions = h("div", { class: "actions" });
  if (match.face) {
    if (!confirmed) {
      actions.append(h("button", {
        type: "button", class: "yes", text: "Yes (y)", "aria-label": `Yes, this is ${person}`,
        onclick: () => decide(match.face, person, "yes", card),
      }));
    }
    actions.append(h("button", {
      type: "button", class: "no", text: "No (n)", "aria-label": `No, this is not ${person}`,
      onclick: () => decide(match.face, person, "no", card),
    }));
    if (confirmed) {
      actions.append(h("button", {
        type: "button", text: "Undo (u)", "aria-label": "Undo the yes",
        onclick: () => decide(match.face, person, "undo", card),
      }));
    }
  }
  actions.append(h("a", { href: `#/photo/${match.file}`, class: "button", text: "Open" }));
  card.append(actions);
  return card;
}

function keysHelp() {
  return h("p", { class: "intro keys" },
    "On a card: ", h("kbd", { text: "y" }), " yes, ", h("kbd", { text: "n" }), " no, ",
    h("kbd", { text: "u" }), " undo a yes, ", h("kbd", { text: "←" }), " ", h("kbd", { text: "→" }),
    " move, ", h("kbd", { text: "Enter" }), " open the photo. ", h("kbd", { text: "Tab" }),
    " reaches every button.");
}

// ------------------------------------------------------------------ pages

async function showPeople(run) {
  setTitle("People");
  const list = await loadPeople();
  if (run !== renderCount) return;
  const title = heading("People");
  if (!list.length) {
    main.replaceChildren(title, h("p", { class: "empty",
      text: "Nobody to look for yet: put photos of each person in reference/<Name>/, or name a group under “Who else is here”." }));
    return;
  }
  const rows = list.map((p) => h("tr", {},
    h("th", { scope: "row" }, h("a", { href: `#/person/${enc(p.name)}`, text: p.name })),
    h("td", { class: "n", text: String(p.photos) }),
    h("td", { class: "n", text: String(p.confirmed) }),
    h("td", { class: "n" }, p.maybe
      ? h("a", { href: `#/maybe/${enc(p.name)}`, text: String(p.maybe), "aria-label": `${p.maybe} maybe for ${p.name}` })
      : "0"),
    h("td", { class: "n", text: String(p.references) }),
  ));
  main.replaceChildren(
    title,
    h("p", { class: "intro", text: "Everyone searched for. Open a person to see their photos and say yes or no to each face." }),
    h("table", { class: "people" },
      h("caption", { text: plural(list.length, "person", "people") }),
      h("thead", {}, h("tr", {},
        h("th", { scope: "col", text: "Person" }),
        h("th", { scope: "col", class: "n", text: "Photos found" }),
        h("th", { scope: "col", class: "n", text: "Confirmed faces" }),
        h("th", { scope: "col", class: "n", text: "Maybe" }),
        h("th", { scope: "col", class: "n", text: "Reference photos" }))),
      h("tbody", {}, rows)),
  );
}

async function showPerson(run, name) {
  setTitle(name);
  let shown = PAGE_SIZE;
  const title = heading(name);
  const count = h("p", { class: "intro" });
  const cards = h("ul", { class: "cards", "aria-label": `Photos of ${name}` });
  const more = h("button", { type: "button", class: "more", text: "Show more", hidden: true });

  async function reload(hint) {
    const data = await api(`api/matches?person=${enc(name)}&limit=${shown}`);
    if (run !== renderCount) return;
    const person = people.find((p) => p.name.toLowerCase() === name.toLowerCase());
    const maybe = person && person.maybe ? person.maybe : 0;
    const confirmed = data.matches.filter((m) => m.confirmed).length;
    count.replaceChildren(
      `${plural(data.total, "photo")} found, ${confirmed} confirmed. `,
      maybe ? h("a", { href: `#/maybe/${enc(name)}`, text: `${maybe} more maybe` }) : "",
    );
    cards.replaceChildren(...data.matches.map((m) => matchCard(m, m.person)));
    more.hidden = data.total <= data.matches.length;
    if (!data.matches.length) cards.replaceChildren(h("li", { class: "empty", text: `No photo of ${name} found.` }));
    refocus(hint);
  }

  more.addEventListener("click", () => {
    shown += PAGE_SIZE;
    attempt(() => reload(null));
  });
  await loadPeople();
  if (run !== renderCount) return;
  main.replaceChildren(title, count, keysHelp(), cards, more);
  view = { reload };
  await reload(null);
  title.focus();
}

async function showMaybe(run, name, kind) {
  setTitle(name ? `Maybe ${name}` : "Maybe");
  await loadPeople();
  if (run !== renderCount) return;
  const title = heading(name ? `Is this ${name}?` : "Maybe");
  const tabs = h("ul", { class: "tabs", "aria-label": "People" }, people.map((p) => h("li", {},
    h("a", {
      href: `#/maybe/${enc(p.name)}${kind === "both" ? "?kind=both" : ""}`,
      text: `${p.name} (${p.maybe})`,
      "aria-current": name && p.name.toLowerCase() === name.toLowerCase() ? "page" : null,
    }))));
  if (!name) {
    const first = people.find((p) => p.maybe) || people[0];
    main.replaceChildren(title, h("p", { class: "intro",
      text: "Faces just over the line for a person: say yes or no, and the next one is ready. Choose a person:" }), tabs);
    if (first) main.append(h("p", {}, h("a", { href: `#/maybe/${enc(first.name)}`, text: `Start with ${first.name}` })));
    return;
  }
  const kinds = h("ul", { class: "tabs", "aria-label": "Which faces" },
    h("li", {}, h("a", { href: `#/maybe/${enc(name)}`, text: "Maybe (just over the line)",
      "aria-current": kind === "maybe" ? "page" : null })),
    h("li", {}, h("a", { href: `#/maybe/${enc(name)}?kind=both`, text: "Check these (maybe and found, not confirmed)",
      "aria-current": kind === "both" ? "page" : null })));
  const cards = h("ul", { class: "cards", "aria-label": `Suggestions for ${name}` });
  const note = h("p", { class: "intro" });

  async function reload(hint) {
    const data = await api(`api/suggestions?person=${enc(name)}&kind=${kind}&limit=200`);
    if (run !== renderCount) return;
    const list = data.suggestions;
    note.textContent = list.length
      ? `${plural(list.length, "face")} to check, best first. The first one has the focus: y or n.`
      : `Nothing left to check for ${name}.`;
    cards.replaceChildren(...list.map((m) => matchCard(m, m.person, { suggestion: true, threshold: data.threshold })));
    refocus(hint, true);
  }

  main.replaceChildren(title, tabs, kinds, note, keysHelp(), cards);
  view = { reload };
  await reload(null);
}

async function showClusters(run, hidden) {
  setTitle("Who else is here");
  await loadPeople();
  const data = await api(`api/clusters?limit=200${hidden ? "&hidden=1" : ""}`);
  if (run !== renderCount) return;
  const clusters = data.clusters.filter((c) => Boolean(c.hidden) === hidden);
  const names = peopleList();
  const title = heading(hidden ? "Hidden groups" : "Who else is here?");
  const picked = new Set();
  const merge = h("button", { type: "button", class: "primary", text: "Merge the 2 selected groups", disabled: true });
  const mergeNote = h("span", { class: "meta", "aria-live": "polite", text: "Select two groups of the same person to merge them." });

  function updateMerge() {
    merge.disabled = picked.size !== 2;
    mergeNote.textContent = picked.size === 2 ? "Ready to merge."
      : picked.size > 2 ? "Select exactly two groups." : "Select two groups of the same person to merge them.";
  }

  merge.addEventListener("click", () => attempt(async () => {
    const [into, other] = [...picked];
    await api(`api/clusters/${into}/merge`, { method: "POST", json: { other } });
    clearError();
    announce(`Groups ${into} and ${other} merged.`);
    await render();
  }));

  const items = clusters.map((c, i) => {
    const inputId = `name-${c.id}`;
    const item = h("li", { class: "cluster", "data-cluster": String(c.id), "aria-labelledby": `cluster-${c.id}` });
    const form = h("form", { class: "name-form", "aria-label": `Name group ${c.id}` },
      h("label", { for: inputId, text: "Name" }),
      h("input", { type: "text", id: inputId, list: names, autocomplete: "off", maxLength: 100, required: true,
        placeholder: "Who is this?" }),
      h("button", { type: "submit", class: "yes", text: "Name them" }));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const value = form.querySelector("input").value.trim();
      if (!value) return;
      attempt(async () => {
        await api(`api/clusters/${c.id}/name`, { method: "POST", json: { name: value } });
        clearError();
        announce(`Group ${c.id} is now ${value}.`);
        await Promise.all([loadSummary(), render()]);
      });
    });
    const pick = h("input", { type: "checkbox", id: `pick-${c.id}` });
    pick.addEventListener("change", () => {
      if (pick.checked) picked.add(c.id);
      else picked.delete(c.id);
      item.classList.toggle("picked", pick.checked);
      updateMerge();
    });
    const hide = h("button", {
      type: "button", class: hidden ? "" : "no",
      text: hidden ? "Show again" : "Hide: strangers",
      "aria-label": hidden ? `Show group ${c.id} again` : `Hide group ${c.id}: strangers`,
    });
    hide.addEventListener("click", () => attempt(async () => {
      await api(`api/clusters/${c.id}/hide`, { method: "POST", json: { hidden: !hidden } });
      clearError();
      announce(hidden ? `Group ${c.id} shown again.` : `Group ${c.id} hidden.`);
      await render();
    }));
    item.append(
      h("h3", { id: `cluster-${c.id}`, text: `Group ${c.id}: ${plural(c.size, "face")} in ${plural(c.photos, "photo")}` }),
      h("ul", { class: "faces", "aria-label": `Faces of group ${c.id}` }, c.faces.map((face, n) => h("li", {},
        h("a", { href: `#/photo/${fileOf(face)}`, "aria-label": `Open the photo of face ${n + 1} of group ${c.id}` },
          image(faceImage(face), `face ${n + 1} of group ${c.id}`, "crop"))))),
      h("div", { class: "controls" }, form,
        h("label", { for: pick.id }, pick, " Select to merge"), hide),
    );
    if (i === 0) item.classList.add("first");
    return item;
  });
  const switcher = hidden
    ? h("a", { href: "#/others", text: "Back to the groups shown" })
    : h("a", { href: "#/others?hidden=1", text: "Hidden groups" });
  main.replaceChildren(
    title,
    h("p", { class: "intro", text: hidden
      ? "Groups you hid as strangers. Show one again to name it."
      : "Faces that match nobody, grouped by likeness, largest groups first. Name a group to make it a person (or add it to one), merge two groups of the same person, or hide strangers." }),
    h("div", { class: "toolbar" }, hidden ? null : merge, hidden ? null : mergeNote, switcher),
    clusters.length ? h("ul", { class: "clusters" }, items)
      : h("p", { class: "empty", text: hidden ? "No hidden group." : "No group of unknown faces: everyone found is named." }),
  );
  view = null;
  title.focus();
}

async function showPhoto(run, file, again = false) {
  await loadPeople();
  const data = await api(`api/photos/${enc(file)}`);
  if (run !== renderCount) return;
  setTitle(data.path);
  const names = peopleList();
  const label = (face, n) => {
    const who = face.person ? `${face.person}${face.confirmed ? " ✓" : ""}`
      : face.maybe ? `${face.maybe}?`
      : face.cluster !== null && face.cluster !== undefined ? `Group ${face.cluster}`
      : face.skipped ? face.skipped : "unknown";
    return `${n + 1} ${who}`;
  };
  const video = data.kind === "video";
  const objects = data.objects || [];
  const boxes = video ? [] : [
    ...objects.map((o) => ({ box: o.box, label: `${o.class} ${o.score.toFixed(2)}`, kind: "object" })),
    ...data.faces.map((f, n) => ({
      box: f.box, label: label(f, n),
      kind: f.confirmed ? "confirmed" : f.person || f.maybe ? "" : "unknown",
    }))];
  const seen = new Map();  // each class once, at its best score (a video has many frames)
  for (const o of objects) seen.set(o.class, Math.max(seen.get(o.class) ?? 0, o.score));
  const objectLine = seen.size ? h("p", { class: "objects", text: "Objects: " +
    [...seen].sort((a, b) => b[1] - a[1]).map(([c, s]) => `${c} ${s.toFixed(2)}`).join(", ") }) : null;
  const src = video ? fileImage(file, 1280, data.faces.length ? data.faces[0].time ?? 0 : 0) : fileImage(file, 1280);
  const rows = data.faces.map((f, n) => faceRow(f, n, label(f, n), names));
  const title = heading(data.path);
  main.replaceChildren(
    title,
    h("p", { class: "intro", text: [data.kind === "video" ? "Video" : "Photo",
      data.size ? `${data.size[0]}×${data.size[1]}` : "", data.taken ? `taken ${data.taken}` : "",
      plural(data.faces.length, "face")].filter(Boolean).join(" · ") }),
    ...(objectLine ? [objectLine] : []),
    h("div", { class: "photo-layout" },
      framed(src, video ? null : data.size, `The photo ${data.path}`, boxes, "big"),
      h("div", {}, keysHelp(),
        h("ol", { class: "face-list", "aria-label": "Faces in this photo" }, rows))),
  );
  view = {
    reload: async (hint) => {
      await showPhoto(run, file, true);
      refocus(hint);
    },
  };
  if (!again) title.focus();
}

/** One face of the photo page: who it is, and the answers that make sense for it. */
function faceRow(face, n, label, names) {
  const person = face.person || face.maybe;
  const row = h("li", {
    class: `face-row${face.confirmed ? " confirmed" : ""}`,
    tabIndex: 0,
    "data-face": face.face,
    "data-person": person || "",
    "data-decidable": person && !face.skipped ? "yes" : "no",
    "data-undo": face.decided || null,
    "aria-label": `Face ${label}`,
  });
  const text = [];
  if (face.person) {
    text.push(face.confirmed ? `${face.person}, confirmed` : `${face.person} (distance ${distance(face.distance)})`);
  } else if (face.maybe) text.push(`Maybe ${face.maybe}`);
  else if (face.cluster !== null && face.cluster !== undefined) text.push(`Unknown, in group ${face.cluster}`);
  else if (face.skipped) text.push(`Not used: ${face.skipped}`);
  else text.push("Unknown");
  if (face.rejected && face.rejected.length) text.push(`not: ${face.rejected.join(", ")}`);
  const actions = h("div", { class: "actions" });
  if (person && !face.skipped) {
    if (!face.confirmed) {
      actions.append(h("button", { type: "button", class: "yes", text: `Yes, ${person} (y)`,
        onclick: () => decide(face.face, person, "yes", row) }));
    }
    actions.append(h("button", { type: "button", class: "no", text: `Not ${person} (n)`,
      onclick: () => decide(face.face, person, "no", row) }));
  }
  if (face.decided) {
    actions.append(h("button", { type: "button", text: "Undo (u)",
      onclick: () => decide(face.face, face.decided, "undo", row) }));
  }
  const body = h("div", {},
    h("p", {}, h("strong", { text: `${n + 1}. ` }), text.join(" · ")), actions);
  if (!face.skipped && !face.confirmed) {
    const inputId = `who-${face.face}`;
    const form = h("form", { "aria-label": `Name face ${n + 1}` },
      h("label", { for: inputId, text: person ? "Someone else:" : "Who is this?" }),
      h("input", { type: "text", id: inputId, list: names, autocomplete: "off", maxLength: 100, required: true }),
      h("button", { type: "submit", text: "Save" }));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const value = form.querySelector("input").value.trim();
      if (value) decide(face.face, value, "yes", row);
    });
    body.append(form);
  }
  row.append(image(faceImage(face.face), `face ${n + 1}`, "crop"), body);
  return row;
}

async function showSearch(run) {
  setTitle("Search by photo");
  const title = heading("Search by photo");
  const input = h("input", { type: "file", id: "upload", accept: "image/*" });
  const results = h("div", { class: "results-area", "aria-live": "polite" });
  const form = h("form", { class: "upload" },
    h("label", { for: "upload", text: "A photo of someone:" }), input,
    h("button", { type: "submit", class: "primary", text: "Search" }));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    attempt(() => searchWith(input.files[0], results));
  });
  input.addEventListener("change", () => attempt(() => searchWith(input.files[0], results)));
  main.replaceChildren(title,
    h("p", { class: "intro", text: "Choose a photo (it stays on this PC): its faces are compared with everyone searched for and every face of the collection." }),
    form, results);
  view = null;
  if (run === renderCount) title.focus();
}

let lastUpload = null;

async function searchWith(file, results) {
  if (!file) throw new ApiError("Choose a photo first.");
  if (file.size > MAX_UPLOAD) throw new ApiError(`${file.name} is too large (at most 25 MB).`);
  results.replaceChildren(h("p", { text: `Looking at ${file.name}…` }));
  const bytes = await file.arrayBuffer();
  const data = await api("api/search", { method: "POST", bytes });
  clearError();
  if (lastUpload) URL.revokeObjectURL(lastUpload);
  lastUpload = URL.createObjectURL(file);
  const picture = new Image();
  picture.src = lastUpload;
  try {
    await picture.decode();
  } catch {
    // the server read it but this browser cannot show it (HEIC): answers without a picture
  }
  const size = picture.naturalWidth ? [picture.naturalWidth, picture.naturalHeight] : null;
  const boxes = data.faces.map((f, n) => ({ box: f.box, label: `${n + 1}`, kind: f.people.some((p) => p.match) ? "confirmed" : "" }));
  const answers = data.faces.map((f, n) => h("section", { class: "answer", "aria-labelledby": `answer-${n}` },
    h("h3", { id: `answer-${n}`, text: `Face ${n + 1}${f.skipped ? ` (not compared: ${f.skipped})` : ""}` }),
    f.people.length ? h("p", { text: "Nearest people:" }) : null,
    f.people.length ? h("ul", {}, f.people.map((p) => h("li", {},
      h("a", { href: `#/person/${enc(p.name)}`, text: p.name }),
      ` ${distance(p.distance)}${p.match ? " — a match" : ""}`))) : null,
    f.faces.length ? h("p", { text: "Nearest faces in the collection:" }) : null,
    f.faces.length ? h("ul", { class: "near" }, f.faces.map((near) => h("li", {},
      h("a", { href: `#/photo/${near.file}` },
        image(faceImage(near.face), `face in ${near.path}`, "crop")),
      h("div", { class: "path", text: near.path }),
      h("div", { text: `${distance(near.distance)}${near.person ? ` · ${near.person}` : ""}` })))) : null,
  ));
  results.replaceChildren(h("div", { class: "results" },
    h("div", {}, framed(lastUpload, size, `The uploaded photo ${file.name}`, boxes)),
    h("div", {}, data.faces.length ? answers : h("p", { class: "empty", text: `No face found in ${file.name}.` }))));
  announce(`${plural(data.faces.length, "face")} found in ${file.name}.`);
}

// ------------------------------------------------------------------ routing

function parseHash() {
  const hash = location.hash || "#/people";
  const [path, query] = hash.slice(2).split("?");
  const parts = path.split("/").map((p) => {
    try {
      return decodeURIComponent(p);
    } catch {
      return p;
    }
  });
  return { page: parts[0] || "people", arg: parts[1] || "", params: new URLSearchParams(query || "") };
}

async function render() {
  const run = ++renderCount;
  const { page, arg, params } = parseHash();
  view = null;
  for (const link of document.querySelectorAll("nav a[data-page]")) {
    const current = link.dataset.page === page || (page === "person" && link.dataset.page === "people");
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  try {
    if (page === "person" && arg) await showPerson(run, arg);
    else if (page === "maybe") await showMaybe(run, arg, params.get("kind") === "both" ? "both" : "maybe");
    else if (page === "others") await showClusters(run, params.get("hidden") === "1");
    else if (page === "photo" && arg) await showPhoto(run, arg);
    else if (page === "search") await showSearch(run);
    else await showPeople(run);
  } catch (error) {
    if (run !== renderCount) return;
    showError(error);
    if (!main.querySelector("h2")) main.replaceChildren(heading("This page could not be shown"));
  }
}

window.addEventListener("hashchange", () => {
  if (!location.hash.startsWith("#/")) return; // "Skip to the page" and the like
  clearError();
  render();
});

attempt(loadSummary);
render();
