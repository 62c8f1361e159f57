// Renders the OpenAPI document of this server as a readable reference, with no library and
// nothing fetched from anywhere but this server.
"use strict";

function element(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function resolve(spec, schema) {
  let current = schema || {};
  for (let hops = 0; current.$ref && hops < 10; hops += 1) {
    const path = current.$ref.replace(/^#\//, "").split("/");
    current = path.reduce((node, key) => node[key], spec);
  }
  return current;
}

function describeType(spec, schema) {
  const resolved = resolve(spec, schema);
  if (resolved.enum) return "one of " + resolved.enum.join(", ");
  if (resolved.const !== undefined) return JSON.stringify(resolved.const);
  const type = Array.isArray(resolved.type) ? resolved.type.join(" | ") : resolved.type;
  if (type === "array") return "array of " + describeType(spec, resolved.items);
  const bounds = [];
  if (resolved.minimum !== undefined) bounds.push("≥ " + resolved.minimum);
  if (resolved.maximum !== undefined) bounds.push("≤ " + resolved.maximum);
  if (resolved.maxLength !== undefined) bounds.push("≤ " + resolved.maxLength + " chars");
  return (type || "object") + (bounds.length ? " (" + bounds.join(", ") + ")" : "");
}

function fieldsTable(spec, schema) {
  const resolved = resolve(spec, schema);
  const required = new Set(resolved.required || []);
  const table = element("table", {}, element("tr", {},
    element("th", {}, "Field"), element("th", {}, "Type"),
    element("th", {}, "Required"), element("th", {}, "Notes")));
  for (const [name, property] of Object.entries(resolved.properties || {})) {
    const field = resolve(spec, property);
    table.append(element("tr", {}, element("td", {}, element("code", {}, name)),
      element("td", {}, describeType(spec, field)),
      element("td", {}, required.has(name) ? "yes" : "no"),
      element("td", {}, field.description || "")));
  }
  return table;
}

function requestBody(spec, operation) {
  const content = operation.requestBody && operation.requestBody.content;
  if (!content) return [];
  const schema = resolve(spec, content["application/json"].schema);
  const parts = [element("h3", {}, "Request body (application/json)")];
  if (schema.description) parts.push(element("p", {}, schema.description));
  for (const branch of schema.oneOf || [schema]) {
    const resolved = resolve(spec, branch);
    parts.push(element("div", { class: "branch" },
      element("h3", {}, "Service type: " + (resolved.title || "body")),
      element("p", {}, resolved.description || ""),
      fieldsTable(spec, resolved)));
  }
  return parts;
}

function parameters(operation) {
  if (!operation.parameters || !operation.parameters.length) return [];
  const table = element("table", {}, element("tr", {}, element("th", {}, "Parameter"),
    element("th", {}, "In"), element("th", {}, "Notes")));
  for (const parameter of operation.parameters) {
    table.append(element("tr", {}, element("td", {}, element("code", {}, parameter.name)),
      element("td", {}, parameter.in), element("td", {}, parameter.description || "")));
  }
  return [element("h3", {}, "Parameters"), table];
}

function responses(operation) {
  const table = element("table", {}, element("tr", {}, element("th", {}, "Status"),
    element("th", {}, "Meaning")));
  for (const [status, response] of Object.entries(operation.responses || {})) {
    table.append(element("tr", {}, element("td", {}, element("code", {}, status)),
      element("td", {}, response.description || "")));
  }
  return [element("h3", {}, "Responses"), table];
}

function render(spec, root) {
  root.replaceChildren(element("p", {}, spec.info.description || ""));
  for (const [path, item] of Object.entries(spec.paths)) {
    for (const [method, operation] of Object.entries(item)) {
      root.append(element("details", { class: "operation", id: method + path },
        element("summary", {}, element("span", { class: "method " + method }, method),
          element("span", { class: "path" }, path),
          element("span", { class: "summary" }, operation.summary || "")),
        element("div", {}, element("p", {}, operation.description || ""),
          ...parameters(operation), ...requestBody(spec, operation), ...responses(operation))));
    }
  }
  const wanted = document.getElementById(decodeURIComponent(location.hash.slice(1)));
  if (wanted) wanted.open = true;
  root.setAttribute("data-rendered", "true");
}

document.addEventListener("DOMContentLoaded", async () => {
  const root = document.getElementById("reference");
  try {
    const response = await fetch(root.dataset.spec, { headers: { Accept: "application/json" } });
    render(await response.json(), root);
  } catch (error) {
    root.replaceChildren(element("p", { class: "error" }, "Could not load the document: " + error));
  }
});
