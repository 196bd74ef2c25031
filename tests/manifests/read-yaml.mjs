// Prints every YAML document of the files given as one JSON array of
// {file, index, document}, so Rust tests can look at YAML without a YAML crate.
import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";

const out = [];
let failed = false;
for (const file of process.argv.slice(2)) {
  parseAllDocuments(readFileSync(file, "utf8")).forEach((doc, index) => {
    for (const error of doc.errors) {
      console.error(`${file}#${index}: ${error.message}`);
      failed = true;
    }
    out.push({ file, index, document: doc.toJSON() });
  });
}
console.log(JSON.stringify(out));
process.exit(failed ? 1 : 0);
