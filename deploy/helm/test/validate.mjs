// Validates rendered Helm manifests (deploy/helm/test/check):
//   node validate.mjs FILE default|overrides
// 1. every document against the Kubernetes OpenAPI schema of its kind (kubernetes-models: types,
//    enums, required fields, formats), and no field the schema does not know (a typo such as
//    readinesProbe would otherwise pass: the API server drops unknown fields silently);
// 2. what the chart promises (docs/deploy.md): one gateway owning a PVC, replicas and HPAs from
//    values, every image overridable, driver-k8s's RBAC limited to Sandbox resources (+ pods get) in
//    the sandbox namespace, NetworkPolicies that confine the sandboxes.
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, resolve } from "node:path";
import { parseAllDocuments } from "yaml";

const [file, variant] = process.argv.slice(2);
const problems = [];
const fail = (msg) => problems.push(msg);
const docs = parseAllDocuments(readFileSync(file, "utf8")).map((d) => d.toJSON()).filter(Boolean);
if (docs.length === 0) fail(`${file}: no manifests`);

// Unknown fields: the schema's field names come from kubernetes-models' type declarations (one
// interface per file; the properties of a nested type point at the file that declares it).
const declarations = (mod) => fileURLToPath(import.meta.resolve(mod)).replace(/\.js$/, ".d.ts");
const shapes = new Map();  // .d.ts file -> Map(field -> .d.ts file of its type, or null: not checked inside)
function shapeOf(dts) {
  if (shapes.has(dts)) return shapes.get(dts);
  const text = readFileSync(dts, "utf8");
  const imports = new Map();
  for (const m of text.matchAll(/^import \{ (\w+) \} from "([^"]+)";/gm)) {
    const target = m[2].startsWith(".") ? resolve(dirname(dts), m[2].replace(/\.js$/, ".d.ts"))
                                        : declarations(m[2]);
    imports.set(m[1], target);
  }
  const body = text.match(/^export interface \w+[^{]*\{\n([\s\S]*?)^\}/m);
  const fields = body ? new Map() : null;
  if (body)
    for (const m of body[1].matchAll(/^ {4}"([^"]+)"\??: (.*?);?$/gm)) {
      const t = m[2].replace(/^Array<(\w+)>$/, "$1");
      const file = imports.get(t);
      fields.set(m[1], file && existsSync(file) ? file : null);
    }
  shapes.set(dts, fields);
  return fields;
}
function unknownFields(value, dts, path, out) {
  const fields = shapeOf(dts);
  if (!fields || value === null || typeof value !== "object") return;
  for (const item of Array.isArray(value) ? value : [value]) {
    if (item === null || typeof item !== "object") continue;
    for (const [k, v] of Object.entries(item)) {
      if (!fields.has(k)) out.push(`${path}.${k}: unknown field`);
      else if (fields.get(k)) unknownFields(v, fields.get(k), `${path}.${k}`, out);
    }
  }
}

// 1. The schema of each kind.
for (const d of docs) {
  const where = `${d.kind}/${d.metadata?.name}`;
  if (!d.apiVersion || !d.kind) { fail(`${where}: no apiVersion or kind`); continue; }
  const mod = `kubernetes-models/${d.apiVersion}/${d.kind}`;
  let Model;
  try {
    Model = (await import(mod))[d.kind];
  } catch {
    fail(`${where}: unknown apiVersion/kind ${d.apiVersion} ${d.kind}`);
    continue;
  }
  try {
    new Model(d).validate();
  } catch (e) {
    fail(`${where}: ${e.message}`);
  }
  const unknown = [];
  unknownFields(d, declarations(mod), where, unknown);
  unknown.forEach(fail);
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/.test(d.metadata?.name ?? "") || d.metadata.name.length > 253)
    fail(`${where}: metadata.name is not a DNS subdomain`);
}

// 2. The chart's promises.
const all = (kind) => docs.filter((d) => d.kind === kind);
const one = (kind, component) => {
  const found = docs.filter((d) => d.kind === kind && d.spec?.selector?.matchLabels?.["app.kubernetes.io/component"] === component);
  if (found.length !== 1) fail(`expected one ${kind} for ${component}, found ${found.length}`);
  return found[0] ?? { spec: { template: { spec: { containers: [] } } } };
};
const podSpecs = docs.filter((d) => d.spec?.template?.spec).map((d) => [d, d.spec.template.spec]);

// Selectors match their pod templates.
for (const [d, _] of podSpecs)
  for (const [k, v] of Object.entries(d.spec.selector?.matchLabels ?? {}))
    if (d.spec.template.metadata?.labels?.[k] !== v) fail(`${d.kind}/${d.metadata.name}: selector ${k}=${v} does not match its pods`);

const nats = one("StatefulSet", "nats");
const gateway = one("StatefulSet", "gateway-api");
for (const s of [nats, gateway]) {
  if (s.spec.replicas !== 1) fail(`${s.metadata?.name}: replicas must be 1 (one owner of the state)`);
  if ((s.spec.volumeClaimTemplates ?? []).length !== 1) fail(`${s.metadata?.name}: needs its PVC`);
}
if (!(nats.spec.template.spec.containers[0]?.args ?? []).includes("-js")) fail("nats runs without JetStream (-js)");
if (!all("Service").some((s) => s.spec.selector?.["app.kubernetes.io/component"] === "gateway-api")) fail("no Service for the gateway");

// RBAC: one Role, only Sandbox resources and pods get, bound to the driver's ServiceAccount; no cluster-wide grants.
if (all("ClusterRole").length + all("ClusterRoleBinding").length > 0) fail("the chart must grant nothing cluster-wide");
const roles = all("Role");
if (roles.length !== 1) fail(`expected one Role, found ${roles.length}`);
const allowed = new Set(["agents.x-k8s.io|sandboxes|create,delete,get,list,patch,watch", "|pods|get"]);
for (const r of roles)
  for (const rule of r.rules ?? []) {
    for (const g of rule.apiGroups) for (const res of rule.resources) {
      const key = `${g}|${res}|${[...rule.verbs].sort().join(",")}`;
      if (!allowed.has(key)) fail(`Role ${r.metadata.name}: rule ${key} is more than driver-k8s needs`);
    }
  }
const binding = all("RoleBinding")[0];
const sa = all("ServiceAccount")[0];
if (!binding || !sa || binding.subjects?.[0]?.name !== sa.metadata.name) fail("the RoleBinding must bind the driver's ServiceAccount");
const driver = one("Deployment", "driver-k8s");
if (driver.spec.template.spec.serviceAccountName !== sa?.metadata.name) fail("driver-k8s must run as its ServiceAccount");

// The sandboxes' NetworkPolicy: selects the sandbox pods, no ingress, egress to NATS, DNS, and outside only.
const sandboxNp = all("NetworkPolicy").find((n) => n.spec.podSelector?.matchLabels?.["io.bulwark.managed"] === "true");
if (!sandboxNp) fail("no NetworkPolicy selects the sandboxes");
else {
  if (!sandboxNp.spec.policyTypes.includes("Ingress") || (sandboxNp.spec.ingress ?? []).length) fail("sandboxes must take no connections");
  const ports = sandboxNp.spec.egress.flatMap((e) => (e.ports ?? []).map((p) => p.port));
  if (!ports.includes(4222) || !ports.includes(53)) fail("sandboxes must reach NATS (4222) and DNS (53)");
  const open = sandboxNp.spec.egress.filter((e) => !e.ports).flatMap((e) => e.to);
  for (const t of open) if (!t.ipBlock || !(t.ipBlock.except ?? []).includes("10.0.0.0/8")) fail("sandboxes' open egress must exclude private ranges");
  if (roles[0] && sandboxNp.metadata.namespace !== roles[0].metadata.namespace) fail("the sandboxes' NetworkPolicy must be in the sandbox namespace");
}

// Every container runs without privilege.
for (const [d, spec] of podSpecs)
  for (const c of [...(spec.initContainers ?? []), ...spec.containers]) {
    if (c.securityContext?.allowPrivilegeEscalation !== false) fail(`${d.metadata.name}/${c.name}: allowPrivilegeEscalation must be false`);
    if (spec.securityContext?.runAsNonRoot !== true) fail(`${d.metadata.name}: must run as non-root`);
  }

const images = podSpecs.flatMap(([d, spec]) => [...(spec.initContainers ?? []), ...spec.containers].map((c) => [d.metadata.name, c.image]));
const supervisorArg = (driver.spec.template.spec.containers[0]?.args ?? []).find((a) => a.startsWith("--supervisor-image="));
if (!supervisorArg) fail("driver-k8s gets no --supervisor-image");
const hpas = all("HorizontalPodAutoscaler");
const deployment = (c) => one("Deployment", c);

// NATS operator mode (nats.auth.secretName): each pod mounts only its own keys of the Secret, and
// every key it mounts is in the Secret when the Secret is among the documents.
const natsUsers = { "gateway-api": "gateway-api", scheduler: "scheduler", "policy-service": "policy-service",
                    "privacy-router": "privacy-router", "driver-k8s": "driver-kubernetes" };
function natsAuthOf(d) {
  const spec = d.spec.template.spec;
  const vol = (spec.volumes ?? []).find((v) => v.name === "nats-auth");
  const env = Object.fromEntries((spec.containers[0]?.env ?? []).map((e) => [e.name, e.value]));
  const mount = (spec.containers[0]?.volumeMounts ?? []).find((m) => m.name === "nats-auth");
  if (vol && mount?.mountPath !== "/etc/bulwark/nats") fail(`${d.metadata.name}: the NATS Secret is not mounted at /etc/bulwark/nats`);
  return { vol, env, keys: (vol?.secret?.items ?? []).map((i) => i.key).sort() };
}
function checkNatsAuth(enabled) {
  const secret = all("Secret").find((s) => s.metadata.name === "bulwark-nats");
  for (const [component, user] of Object.entries(natsUsers)) {
    const d = component === "gateway-api" ? gateway : one("Deployment", component);
    const { vol, env, keys } = natsAuthOf(d);
    if (!enabled) {
      if (vol || env.BULWARK_NATS_CREDS) fail(`${component}: NATS credentials without nats.auth.secretName`);
      continue;
    }
    const want = [`${user}.creds`, "ca.crt", ...(component === "gateway-api" ? ["account.seed"] : [])].sort();
    if (JSON.stringify(keys) !== JSON.stringify(want)) fail(`${component}: mounts ${keys} of the NATS Secret, wants only ${want}`);
    if (env.BULWARK_NATS_CREDS !== `/etc/bulwark/nats/${user}.creds`) fail(`${component}: BULWARK_NATS_CREDS ${env.BULWARK_NATS_CREDS}`);
    if (env.BULWARK_NATS_CA !== "/etc/bulwark/nats/ca.crt") fail(`${component}: BULWARK_NATS_CA ${env.BULWARK_NATS_CA}`);
    if (vol?.secret?.secretName !== "bulwark-nats") fail(`${component}: NATS Secret ${vol?.secret?.secretName}`);
    if (secret) for (const k of keys) if (!secret.data?.[k]) fail(`${component}: key ${k} is not in the Secret`);
  }
  const gatewayArgs = gateway.spec.template.spec.containers[0]?.args ?? [];
  if (enabled !== gatewayArgs.includes("--nats-account-seed=/etc/bulwark/nats/account.seed"))
    fail("the gateway mints sandbox credentials exactly when NATS has auth");
  const natsConf = all("ConfigMap").find((c) => c.data?.["nats.conf"])?.data["nats.conf"] ?? "";
  if (enabled !== natsConf.includes("include ../bulwark/nats/nats-auth.conf")) fail("nats.conf includes nats-auth.conf exactly when NATS has auth");
  if (enabled) {
    const { keys } = natsAuthOf(nats);
    if (JSON.stringify(keys) !== JSON.stringify(["ca.crt", "nats-auth.conf", "nats-server.crt", "nats-server.key"]))
      fail(`nats mounts ${keys} of the NATS Secret`);
    if (!secret) fail("no Secret bulwark-nats among the documents (scripts/helm-nats-secret)");
    else if (Object.keys(secret.data ?? {}).some((k) => /operator|sys\.seed|ca\.key|admin/.test(k)))
      fail(`the NATS Secret holds more than pods mount: ${Object.keys(secret.data)}`);
  }
}

if (variant === "default") {
  for (const [name, image] of images) if (!image.startsWith("localhost/bulwark/")) fail(`${name}: default image ${image}`);
  for (const c of ["scheduler", "policy-service", "privacy-router"])
    if (deployment(c).spec.replicas !== 2) fail(`${c}: default replicas must be 2`);
  if (hpas.length) fail("no HPA by default");
  if (roles[0]?.metadata.namespace !== "bulwark-system") fail("the Role belongs in the release namespace by default");
  checkNatsAuth(false);
} else if (variant === "overrides") {
  // overrides.yaml: every image elsewhere, scheduler 5 replicas, HPAs for policy-service and privacy-router, namespace agents.
  for (const [name, image] of images) if (!image.startsWith("registry.example/")) fail(`${name}: image ${image} ignores images.*`);
  if (supervisorArg !== "--supervisor-image=registry.example/sup:2") fail(`supervisor image not overridden: ${supervisorArg}`);
  if (deployment("scheduler").spec.replicas !== 5) fail("scheduler.replicas=5 not applied");
  for (const c of ["policy-service", "privacy-router"]) {
    if (deployment(c).spec.replicas !== undefined) fail(`${c}: an HPA-managed Deployment must not set replicas`);
    const h = hpas.find((x) => x.spec.scaleTargetRef.name === deployment(c).metadata.name);
    if (!h) fail(`${c}: no HPA`);
    else if (h.spec.maxReplicas !== 8) fail(`${c}: HPA maxReplicas ${h.spec.maxReplicas}`);
  }
  if (hpas.length !== 2) fail(`expected 2 HPAs, found ${hpas.length}`);
  if (roles[0]?.metadata.namespace !== "agents") fail("the Role must be in the sandbox namespace agents");
  if (!all("Namespace").some((n) => n.metadata.name === "agents")) fail("createNamespace did not create agents");
  if (!(driver.spec.template.spec.containers[0]?.args ?? []).includes("--namespace=agents")) fail("driver-k8s must watch agents");
  checkNatsAuth(true);
} else {
  fail(`unknown variant ${variant}`);
}

if (problems.length) {
  console.error(`${file} (${variant}): ${problems.length} problem(s):\n  ` + problems.join("\n  "));
  process.exit(1);
}
console.log(`${file} (${variant}): ${docs.length} manifests valid (${[...new Set(docs.map((d) => d.kind))].join(", ")})`);
