// What the console and the leaders' cockpit share: DOM helpers, the JSON caller (with the session's CSRF token),
// and the words of the session's language. Every string from a record goes in with textContent, never as markup.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const session = { csrf: null, words: null, language: null, timezone: null, utcOffset: null };
const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, text = null, ns = null) {
  const node = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== null) node.textContent = String(text);
  return node;
}

async function call(method, url, body) {
  const headers = { "Accept": "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && session.csrf) headers["X-CSRF-Token"] = session.csrf;
  const resp = await fetch(url, { method, headers, credentials: "same-origin",
                                  body: body === undefined ? undefined : JSON.stringify(body) });
  let doc = {};
  try { doc = await resp.json(); } catch (e) { doc = {}; }
  if (!resp.ok) throw new Error(doc.error || `${resp.status} ${resp.statusText}`);
  return doc;
}

function useSession(s) {
  Object.assign(session, { csrf: s.csrf, words: s.words, language: s.language, timezone: s.timezone,
                           utcOffset: s.utc_offset });
  document.documentElement.lang = s.language;
  for (const node of document.querySelectorAll("[data-ui]")) node.textContent = t(node.dataset.ui);
  for (const node of document.querySelectorAll("[data-ui-label]")) node.setAttribute("aria-label", t(node.dataset.uiLabel));
}

function t(key, values = {}) {
  const word = (session.words && session.words.ui[key]) || key;
  return word.replace(/\{(\w+)\}/g, (m, name) => (name in values ? String(values[name]) : m));
}
function term(section, key) { return (session.words && session.words[section][key]) || key; }

// Swedish dates are ISO-ordered: the same "YYYY-MM-DD hh:mm:ss" as every time the server writes.
function localNow() { return new Date().toLocaleString("sv-SE", { timeZone: session.timezone }); }
