// Validates Istio resources against the CRD schemas (Istio's crd-all.gen.yaml,
// compiled by @kubernetes-models/istio), plus what the compiled schemas leave
// out: unknown fields (which Kubernetes' strict field validation rejects),
// checked with TypeScript's excess-property check against the package's
// generated types, and the CRDs' CEL rules. Prints the resources as JSON;
// exits 1 on any error.
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { parseAllDocuments } from "yaml";
import { WasmPlugin } from "@kubernetes-models/istio/extensions.istio.io/v1alpha1/WasmPlugin";
import { DestinationRule } from "@kubernetes-models/istio/networking.istio.io/v1/DestinationRule";
import { PeerAuthentication } from "@kubernetes-models/istio/security.istio.io/v1/PeerAuthentication";
import { RequestAuthentication } from "@kubernetes-models/istio/security.istio.io/v1/RequestAuthentication";

const models = {
  "extensions.istio.io/v1alpha1 WasmPlugin": WasmPlugin,
  "networking.istio.io/v1 DestinationRule": DestinationRule,
  "security.istio.io/v1 PeerAuthentication": PeerAuthentication,
  "security.istio.io/v1 RequestAuthentication": RequestAuthentication,
};
// The generated TypeScript interface of each kind, by module.
const types = {
  "extensions.istio.io/v1alpha1 WasmPlugin": ["IWasmPlugin", "extensions.istio.io/v1alpha1/WasmPlugin"],
  "networking.istio.io/v1 DestinationRule": ["IDestinationRule", "networking.istio.io/v1/DestinationRule"],
  "security.istio.io/v1 PeerAuthentication": ["IPeerAuthentication", "security.istio.io/v1/PeerAuthentication"],
  "security.istio.io/v1 RequestAuthentication": ["IRequestAuthentication", "security.istio.io/v1/RequestAuthentication"],
};

// One typed constant per resource, one per line, so a diagnostic's line
// names the resource. Returns "<where>: <message>" for each excess property.
function unknownFields(entries) {
  if (entries.length === 0) return [];
  const here = dirname(fileURLToPath(import.meta.url));
  const dir = join(here, "node_modules", ".typecheck");
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `manifests-${process.pid}.ts`);
  const imports = Object.values(types).map(
    ([name, module]) => `import type { ${name} } from "@kubernetes-models/istio/${module}";`,
  );
  const lines = entries.map(({ key, resource }, i) => `export const r${i}: ${types[key][0]} = ${JSON.stringify(resource)};`);
  writeFileSync(file, [...imports, ...lines].join("\n") + "\n");
  try {
    const program = ts.createProgram([file], {
      noEmit: true,
      strict: true,
      skipLibCheck: true,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
    });
    return ts.getPreEmitDiagnostics(program).map((d) => {
      const message = ts.flattenDiagnosticMessageText(d.messageText, " ");
      if (d.file === undefined || d.start === undefined) return `typecheck: ${message}`;
      const line = d.file.getLineAndCharacterOfPosition(d.start).line - imports.length;
      return `${entries[line]?.where ?? "typecheck"}: ${message}`;
    });
  } finally {
    rmSync(file, { force: true });
  }
}

// x-kubernetes-validations of these CRDs, which ajv does not evaluate.
// DestinationRule's own (durations of at least 1ms, no wildcard in
// workloadSelector labels) are not checked: deploy/istio sets neither.
function celRules(resource) {
  const spec = resource.spec ?? {};
  const errors = [];
  if (spec.selector !== undefined && (spec.targetRef !== undefined || spec.targetRefs !== undefined)) {
    errors.push("spec: only one of targetRefs or selector can be set");
  }
  if (spec.targetRef !== undefined && spec.targetRefs !== undefined) {
    errors.push("spec: only one of targetRef or targetRefs can be set");
  }
  return errors;
}

const resources = [];
const errors = [];
const typed = [];
for (const file of process.argv.slice(2)) {
  parseAllDocuments(readFileSync(file, "utf8")).forEach((doc, index) => {
    const where = `${file}#${index}`;
    doc.errors.forEach((e) => errors.push(`${where}: ${e.message}`));
    const resource = doc.toJSON();
    if (resource === null) return;
    const model = models[`${resource.apiVersion} ${resource.kind}`];
    if (model === undefined) {
      errors.push(`${where}: no schema for ${resource.apiVersion} ${resource.kind}`);
      return;
    }
    try {
      new model(resource).validate();
    } catch (error) {
      errors.push(`${where}: ${error.message}`);
    }
    celRules(resource).forEach((e) => errors.push(`${where}: ${e}`));
    typed.push({ key: `${resource.apiVersion} ${resource.kind}`, resource, where });
    resources.push({ file, index, resource });
  });
}
errors.push(...unknownFields(typed));
errors.forEach((e) => console.error(e));
console.log(JSON.stringify(resources));
process.exit(errors.length > 0 ? 1 : 0);
