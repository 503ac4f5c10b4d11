// Validate glTF/GLB files with the Khronos glTF validator (npm gltf-validator).
// Usage: node validate_gltf.js FILE...   Prints one JSON line per file: {file, errors, warnings, messages}.
"use strict";
const fs = require("fs");
const path = require("path");
const validator = require("gltf-validator");

async function check(file) {
  const data = new Uint8Array(fs.readFileSync(file));
  const report = await validator.validateBytes(data, {
    uri: path.basename(file),
    maxIssues: 50,
    externalResourceFunction: (uri) => new Promise((resolve, reject) => {
      fs.readFile(path.resolve(path.dirname(file), decodeURIComponent(uri)), (err, bytes) =>
        err ? reject(err.toString()) : resolve(new Uint8Array(bytes)));
    }),
  });
  const issues = report.issues;
  const messages = issues.messages.filter((m) => m.severity <= 1)
    .map((m) => `${m.severity === 0 ? "error" : "warning"} ${m.code} ${m.pointer || ""}: ${m.message}`);
  return { file, errors: issues.numErrors, warnings: issues.numWarnings, messages };
}

(async () => {
  for (const file of process.argv.slice(2)) {
    let result;
    try {
      result = await check(file);
    } catch (err) {  // not glTF at all
      result = { file, errors: 1, warnings: 0, messages: [`error ${String(err)}`] };
    }
    console.log(JSON.stringify(result));
  }
})().catch((err) => { console.error(String(err)); process.exit(2); });
