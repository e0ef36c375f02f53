// Validates Kubernetes objects against the Kubernetes API's JSON schemas,
// offline: kubernetes-models ships them, generated from the Kubernetes
// OpenAPI spec, as compiled validators (types, required fields, enums,
// formats). Unknown fields are refused by ../chart_test.go's strict
// decode, which these schemas do not do.
//
//   node validate.mjs objects.json   (a JSON array of objects)
//
// Prints one line per object and exits 1 if any is invalid.
import { readFileSync } from "node:fs";

const objects = JSON.parse(readFileSync(process.argv[2], "utf8"));
let invalid = 0;
for (const obj of objects) {
  const what = `${obj.apiVersion} ${obj.kind} ${obj.metadata?.name}`;
  let Model;
  try {
    // "v1" is the core group; "apps/v1" and the like are group/version.
    Model = (await import(`kubernetes-models/${obj.apiVersion}/${obj.kind}`))[obj.kind];
  } catch (err) {
    console.log(`INVALID ${what}: no schema for this kind (${err.message})`);
    invalid++;
    continue;
  }
  try {
    new Model(obj).validate();
    console.log(`valid ${what}`);
  } catch (err) {
    console.log(`INVALID ${what}: ${err.message}`);
    invalid++;
  }
}
console.log(`${objects.length - invalid} valid, ${invalid} invalid`);
process.exit(invalid ? 1 : 0);
