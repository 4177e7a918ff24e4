// DOM building for the whole client. Every element is made with createElement and every string
// becomes a text node: no markup is ever parsed from a string, so text from users stays text.

const SVG_NS = "http://www.w3.org/2000/svg";

/**
 * Makes an element. `props`: `class`, `text` (textContent), `on` ({event: handler}), `dataset`,
 * booleans (`hidden`, `disabled`, …) as properties, anything else as an attribute.
 * Children: nodes, strings (as text), arrays, or null/false (skipped).
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = String(value);
    else if (key === "on") for (const [event, fn] of Object.entries(value)) el.addEventListener(event, fn);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "value" || key === "checked" || key === "disabled" || key === "hidden" || key === "selected") el[key] = value;
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

/** Appends nodes, strings (as text nodes) and nested arrays. */
export function append(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

/** Replaces all children of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

// Icon outlines (24×24, stroked), drawn as SVG paths built node by node.
const ICONS = {
  hash: "M5 9h14M5 15h14M10 3 8 21M16 3l-2 18",
  lock: "M6 11h12v10H6zM8.5 11V7.5a3.5 3.5 0 0 1 7 0V11",
  plus: "M12 5v14M5 12h14",
  send: "M4 12 20 4l-6 16-3-7z M11 13l9-9",
  edit: "M4 20h4L19 9l-4-4L4 16zM14 6l4 4",
  trash: "M4 7h16M9 7V4h6v3M6 7l1 13h10l1-13",
  thread: "M4 5h16v11H9l-5 4z",
  menu: "M4 6h16M4 12h16M4 18h16",
  close: "M6 6l12 12M18 6 6 18",
  search: "M10.5 17a6.5 6.5 0 1 0 0-13 6.5 6.5 0 0 0 0 13zM15.5 15.5 20 20",
  shield: "M12 3l8 3v6c0 4.5-3.4 8.4-8 9.5-4.6-1.1-8-5-8-9.5V6z",
  user: "M12 12a4 4 0 1 0 0-8 4 4 0 0 0 0 8zM4 21c0-4 3.6-6.5 8-6.5s8 2.5 8 6.5",
  logout: "M15 4h4v16h-4M10 8l-4 4 4 4M6 12h10",
  key: "M8 15a4 4 0 1 0 0-8 4 4 0 0 0 0 8zM11.5 11H21M18 11v3M15 11v2",
  list: "M8 6h12M8 12h12M8 18h12M4 6h.01M4 12h.01M4 18h.01",
  bell: "M6 16V11a6 6 0 0 1 12 0v5l2 2H4zM10 20a2 2 0 0 0 4 0",
  compass: "M12 21a9 9 0 1 0 0-18 9 9 0 0 0 0 18zM15.5 8.5l-2 5-5 2 2-5z",
  message: "M4 4h16v12H8l-4 4z",
  check: "M5 12l5 5 9-10",
  alert: "M12 4 2.5 20h19zM12 10v4M12 17h.01",
  refresh: "M20 12a8 8 0 1 1-2.3-5.6M20 4v4h-4",
  down: "M12 5v14M6 13l6 6 6-6",
  attach: "M20 11.5l-8.1 8.1a5 5 0 0 1-7.1-7.1l8.5-8.5a3.3 3.3 0 0 1 4.7 4.7l-8.5 8.5a1.7 1.7 0 0 1-2.4-2.4L15 7",
  file: "M6 3h8l4 4v14H6zM14 3v4h4",
};

/** An inline icon, hidden from assistive technology (the control carries the label). */
export function icon(name, className = "icon") {
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("class", className);
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  const path = document.createElementNS(SVG_NS, "path");
  path.setAttribute("d", ICONS[name] || "");
  svg.append(path);
  return svg;
}

/** A button with an icon and a visible or screen-reader-only label. */
export function iconButton(name, label, onClick, { className = "icon-btn", showLabel = false } = {}) {
  return h(
    "button",
    { type: "button", class: className, "aria-label": showLabel ? null : label, title: label, on: { click: onClick } },
    icon(name),
    showLabel ? h("span", { text: label }) : null,
  );
}

/** Focuses an element on the next frame (after it is attached). */
export function focusSoon(el) {
  requestAnimationFrame(() => el && el.isConnected && el.focus());
}
