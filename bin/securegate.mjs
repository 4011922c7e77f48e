#!/usr/bin/env node
// Entry shim for the `securegate` bin. The CLI is TypeScript run by Node 24's type stripping;
// on an older Node say so in one line instead of failing with a syntax error. The project ships
// its own Node 24 (the `node` devDependency, first on PATH under npx and npm scripts), so
// package.json declares no `engines`: npm itself may run on an older Node and would warn about it
// on every `npx securegate` although nothing runs on that Node.
const [major] = process.versions.node.split('.').map(Number);
if (major < 24) {
  process.stderr.write(`securegate needs Node.js 24 or newer (this is ${process.version}): run it as npx securegate … from the checkout, which uses the project's own Node 24\n`);
  process.exit(3);
}
// `securegate … | head` closes stdout early; that is not an error worth a stack trace.
process.stdout.on('error', (error) => {
  if (error.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw error;
});
const { main } = await import('../cli/main.ts');
process.exitCode = await main(process.argv);
