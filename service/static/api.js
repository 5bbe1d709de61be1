// The API reference: /openapi.json (fetched with the API key, when the service asks for one)
// rendered as tables: each operation's parameters, request body and responses, then the
// schemas they refer to. Only the parts of OpenAPI 3.0 the service's document uses.

import { apiJson, withKey } from "./client.js";
import { $, element } from "./dom.js";

function table(headings, rows) {
  return element("table", {},
    element("thead", {}, element("tr", {}, ...headings.map((h) => element("th", {}, h)))),
    element("tbody", {}, ...rows.map((cells) => element(
      "tr", {}, ...cells.map((c) => element("td", {}, c))))));
}

function schemaName(ref) {
  return ref.split("/").pop();
}

// A schema as a short phrase, with links to named schemas.
function describe(schema) {
  if (!schema) return "any";
  if (schema.$ref) {
    const name = schemaName(schema.$ref);
    return element("a", { href: `#schema-${name}` }, name);
  }
  if (schema.anyOf || schema.oneOf) {
    const parts = (schema.anyOf || schema.oneOf).map(describe);
    return element("span", {}, ...parts.flatMap((p, i) => (i ? [" or ", p] : [p])));
  }
  if (schema.type === "array") return element("span", {}, "array of ", describe(schema.items));
  let text = schema.type ?? "object";
  if (schema.format) text += ` (${schema.format})`;
  if (schema.enum) text += `: one of ${schema.enum.join(", ")}`;
  if (schema.minimum !== undefined) text += `, ≥ ${schema.minimum}`;
  if (schema.pattern) text += `, matching ${schema.pattern}`;
  if (schema.nullable) text += ", or null";
  return text;
}

function propertiesTable(schema) {
  const required = new Set(schema.required ?? []);
  return table(["field", "type", "required", "description"],
    Object.entries(schema.properties ?? {}).map(([name, property]) => [
      element("code", {}, name), describe(property), required.has(name) ? "yes" : "",
      property.description ?? ""]));
}

function requestBody(body) {
  const parts = [element("h4", {}, `Request body${body.required ? "" : " (optional)"}`)];
  for (const [media, content] of Object.entries(body.content)) {
    const schema = content.schema;
    parts.push(element("p", {}, element("code", {}, media), " — ",
                       schema.properties ? "fields:" : describe(schema)));
    if (schema.properties) parts.push(propertiesTable(schema));
  }
  return parts;
}

function operation(path, method, spec) {
  const id = spec.operationId;
  const parts = [element("h3", { id },
    element("span", { class: `method ${method}` }, method), " ", element("code", {}, path),
    ` — ${spec.summary ?? ""}`)];
  if (spec.parameters?.length) {
    parts.push(element("h4", {}, "Parameters"), table(
      ["name", "in", "type", "required", "description"],
      spec.parameters.map((p) => [element("code", {}, p.name), p.in, describe(p.schema),
                                  p.required ? "yes" : "", p.schema?.description ?? ""])));
  }
  if (spec.requestBody) parts.push(...requestBody(spec.requestBody));
  parts.push(element("h4", {}, "Responses"), table(["status", "meaning", "body"],
    Object.entries(spec.responses).map(([status, response]) => [
      element("code", {}, status), response.description ?? "",
      element("span", {}, ...Object.entries(response.content ?? {}).flatMap(
        ([media, content], i) => [i ? "; " : "", element("code", {}, media), " ",
                                  describe(content.schema)]))])));
  return element("section", { class: "operation" }, ...parts);
}

function render(document_) {
  $("#api-intro").replaceChildren(
    `${document_.info.title} ${document_.info.version} — ${document_.info.description ?? ""} `,
    `(OpenAPI ${document_.openapi}, rendered from `, element("code", {}, "/openapi.json"), ").");
  if (document_.security) {
    $("#api-intro").append(" Every operation needs an API key: ",
      element("code", {}, "Authorization: Bearer <key>"), " or ",
      element("code", {}, "x-api-key: <key>"), ".");
  }
  const operations = Object.entries(document_.paths).flatMap(
    ([path, item]) => Object.entries(item).map(([method, spec]) => [path, method, spec]));
  $("#api-toc").replaceChildren(element("ul", {}, ...operations.map(([path, method, spec]) =>
    element("li", {}, element("a", { href: `#${spec.operationId}` },
      `${method.toUpperCase()} ${path}`), ` — ${spec.summary ?? ""}`))));
  $("#api-operations").replaceChildren(...operations.map(([p, m, s]) => operation(p, m, s)));
  $("#api-schemas").replaceChildren(...Object.entries(document_.components.schemas).map(
    ([name, schema]) => element("section", { class: "operation", id: `schema-${name}` },
      element("h3", {}, name),
      schema.properties ? propertiesTable(schema) : element("p", {}, describe(schema)))));
}

async function start() {
  try {
    render(await withKey(() => apiJson("/openapi.json")));
    $("#api").dataset.status = "done";
  } catch (error) {
    $("#api-error").textContent = `GET /openapi.json failed: ${error.message}`;
    $("#api-error").hidden = false;
    $("#api").dataset.status = "error";
  }
}

start();
