#!/usr/bin/env node
// Entry shim for the `securegate` bin. The CLI is TypeScript run by Node 24's type stripping;
// on an older Node say so plainly instead of failing with a syntax error.
const [major] = process.versions.node.split('.').map(Number);
if (major < 24) {
  process.stderr.write(
    `securegate needs Node.js 24 or newer (this is ${process.version}).\n` +
      'Run it through the project (npx securegate …, npm run securegate -- …) so the pinned Node 24 is used.\n',
  );
  process.exit(3);
}
// `securegate … | head` closes stdout early; that is not an error worth a stack trace.
process.stdout.on('error', (error) => {
  if (error.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw error;
});
const { main } = await import('../cli/main.ts');
process.exitCode = await main(process.argv);
