// Checks docs/openapi.yaml and what the running gateway answered against it.
//   node validate.mjs SPEC.yaml OBSERVED.json
// OBSERVED.json (written by tests/integration/openapi_test.cpp):
//   {"routes": [{"method", "path"}],   every route the gateway registers (route_specs())
//    "observations": [{"method", "path", "url", "status", "headers": {lowercase: value}, "body"}]}
// Fails (exit 1) listing every problem as "METHOD path -> status: what", so a broken contract
// names its path, status and schema error. Checks:
//   1. the document is valid OpenAPI (@seriousme/openapi-schema-validator);
//   2. every route the gateway registers is documented, and every documented operation is served;
//   3. every observed status is documented for its operation, its body validates against that
//      response's schema (Ajv, JSON Schema 2020-12 as OpenAPI 3.1 uses), a response without
//      content has an empty body, and required response headers are present;
//   4. every documented operation was observed at least once succeeding (2xx) and once failing
//      (4xx/5xx).
import { readFileSync } from "node:fs";
import { Validator } from "@seriousme/openapi-schema-validator";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import YAML from "yaml";

const [specPath, observedPath] = process.argv.slice(2);
if (!specPath || !observedPath) {
  console.error("usage: node validate.mjs SPEC.yaml OBSERVED.json");
  process.exit(2);
}

const problems = [];
const METHODS = ["get", "put", "post", "delete", "patch", "head", "options", "trace"];

const specText = readFileSync(specPath, "utf8");
const spec = YAML.parse(specText);

// 1. The document itself.
const docValidator = new Validator();
const docResult = await docValidator.validate(spec);
if (!docResult.valid) {
  problems.push(`${specPath} is not valid OpenAPI ${spec.openapi}: ${JSON.stringify(docResult.errors, null, 1).slice(0, 4000)}`);
}

const observed = JSON.parse(readFileSync(observedPath, "utf8"));

// JSON pointer helpers for "#/a/b~1c".
const escape = (s) => s.replace(/~/g, "~0").replace(/\//g, "~1");
function resolve(pointer) {
  let node = spec;
  for (const part of pointer.replace(/^#\//, "").split("/")) {
    node = node?.[part.replace(/~1/g, "/").replace(/~0/g, "~")];
  }
  return node;
}
// A response object, following one $ref; returns [object, pointer of the object].
function responseAt(pointer) {
  const r = resolve(pointer);
  if (r && r.$ref) return [resolve(r.$ref), r.$ref];
  return [r, pointer];
}

const ajv = new Ajv2020({ strict: false, allErrors: true, validateSchema: false });
addFormats(ajv);
// The whole document as one schema resource, so "#/components/schemas/X" refs resolve in it.
ajv.addSchema({ ...spec, $id: "openapi.json" });
const compiled = new Map();
function validatorFor(pointer) {
  if (!compiled.has(pointer)) compiled.set(pointer, ajv.compile({ $ref: "openapi.json" + pointer }));
  return compiled.get(pointer);
}

// 2. Routes served <-> operations documented.
const documented = new Set();
for (const [path, item] of Object.entries(spec.paths ?? {})) {
  for (const m of METHODS) if (item[m]) documented.add(`${m.toUpperCase()} ${path}`);
}
const served = new Set((observed.routes ?? []).map((r) => `${r.method} ${r.path}`));
for (const r of served) if (!documented.has(r)) problems.push(`${r}: served by the gateway but not in ${specPath}`);
for (const r of documented) if (!served.has(r)) problems.push(`${r}: in ${specPath} but the gateway does not serve it`);

// 3. Each observation against its operation's response.
const seen = new Map(); // "METHOD path" -> {ok, error}
for (const o of observed.observations ?? []) {
  const op = `${o.method} ${o.path}`;
  const where = `${op} -> ${o.status} (${o.url})`;
  const entry = seen.get(op) ?? { ok: 0, error: 0 };
  if (o.status >= 200 && o.status < 300) entry.ok++;
  else if (o.status >= 400) entry.error++;
  seen.set(op, entry);

  const opPointer = `#/paths/${escape(o.path)}/${o.method.toLowerCase()}`;
  const operation = resolve(opPointer);
  if (!operation) {
    problems.push(`${where}: no such operation in ${specPath}`);
    continue;
  }
  const statusKey = String(o.status);
  const key = operation.responses?.[statusKey] ? statusKey : operation.responses?.[`${statusKey[0]}XX`] ? `${statusKey[0]}XX` : operation.responses?.default ? "default" : null;
  if (!key) {
    problems.push(`${where}: status ${o.status} is not documented (documented: ${Object.keys(operation.responses ?? {}).join(", ")}); body: ${String(o.body).slice(0, 300)}`);
    continue;
  }
  const [response, responsePointer] = responseAt(`${opPointer}/responses/${key}`);
  for (const [name, h] of Object.entries(response.headers ?? {})) {
    const header = h.$ref ? resolve(h.$ref) : h;
    if (header.required && !(name.toLowerCase() in (o.headers ?? {}))) problems.push(`${where}: required header ${name} is missing`);
  }
  const media = response.content?.["application/json"];
  const contentType = (o.headers ?? {})["content-type"] ?? "";
  if (!media) {
    // A non-JSON body (a tar archive): only its Content-Type can be checked.
    const types = Object.keys(response.content ?? {});
    if (types.length > 0) {
      if (!types.some((t) => contentType.startsWith(t))) problems.push(`${where}: Content-Type is '${contentType}', not one of ${types.join(", ")}`);
    } else if (o.body !== "") problems.push(`${where}: documented without a body, got: ${String(o.body).slice(0, 300)}`);
    continue;
  }
  if (!contentType.startsWith("application/json")) problems.push(`${where}: Content-Type is '${contentType}', not application/json`);
  let body;
  try {
    body = JSON.parse(o.body);
  } catch (e) {
    problems.push(`${where}: the body is not JSON (${e.message}): ${String(o.body).slice(0, 300)}`);
    continue;
  }
  const validate = validatorFor(`${responsePointer}/content/application~1json/schema`);
  if (!validate(body)) {
    const errs = validate.errors.map((e) => `${e.instancePath || "(body)"} ${e.message}${e.params?.additionalProperty ? ` '${e.params.additionalProperty}'` : ""} [schema ${e.schemaPath}]`);
    problems.push(`${where}: the body does not match its schema:\n      ${errs.slice(0, 10).join("\n      ")}\n      body: ${String(o.body).slice(0, 600)}`);
  }
}

// 4. Coverage: a success and an error of every documented operation.
for (const op of documented) {
  const e = seen.get(op) ?? { ok: 0, error: 0 };
  if (!e.ok) problems.push(`${op}: never observed succeeding (2xx): the test must exercise it`);
  if (!e.error) problems.push(`${op}: never observed failing (4xx/5xx): the test must exercise an error of it`);
}

if (problems.length) {
  console.error(`openapi contract: ${problems.length} problem(s)`);
  for (const p of problems) console.error("  - " + p);
  process.exit(1);
}
console.log(`openapi contract: ${documented.size} operations, ${observed.observations.length} responses, all valid`);
