// Small DOM helpers shared by the page and the API reference. Text goes in as text nodes,
// never as HTML, so nothing the service returns is parsed as markup.

export const $ = (selector) => document.querySelector(selector);

// <tag attributes...>children</tag>; an attribute that is null, undefined or false is left
// out, true gives an empty one.
export function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    node.setAttribute(name === "className" ? "class" : name, value === true ? "" : value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}
