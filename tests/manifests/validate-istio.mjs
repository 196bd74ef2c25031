// Validates Istio resources against the CRD schemas (Istio's crd-all.gen.yaml,
// compiled by @kubernetes-models/istio), plus the CRDs' CEL rules the JSON
// schema cannot express. Prints the resources as JSON; exits 1 on any error.
import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";
import { WasmPlugin } from "@kubernetes-models/istio/extensions.istio.io/v1alpha1/WasmPlugin";
import { PeerAuthentication } from "@kubernetes-models/istio/security.istio.io/v1/PeerAuthentication";
import { RequestAuthentication } from "@kubernetes-models/istio/security.istio.io/v1/RequestAuthentication";

const models = {
  "extensions.istio.io/v1alpha1 WasmPlugin": WasmPlugin,
  "security.istio.io/v1 PeerAuthentication": PeerAuthentication,
  "security.istio.io/v1 RequestAuthentication": RequestAuthentication,
};

// x-kubernetes-validations of these CRDs, which ajv does not evaluate.
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
    resources.push({ file, index, resource });
  });
}
errors.forEach((e) => console.error(e));
console.log(JSON.stringify(resources));
process.exit(errors.length > 0 ? 1 : 0);
