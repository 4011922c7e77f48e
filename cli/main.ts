/**
 * The `securegate` command line. Runs on the owner's or verifier's machine; holds the owner's
 * signing key and sees plaintext upstream keys only while splitting them locally.
 */
import { Command, CommanderError } from 'commander';
import { attestVerify } from './attest.ts';
import { EXIT, processIo, type Io } from './output.ts';

const collect = (value: string, previous: string[] = []) => [...previous, value];

export function buildProgram(io: Io): Command {
  const program = new Command('securegate')
    .description('SecureGate: use AI API keys without handing the real key to the machine that serves traffic.')
    .exitOverride()
    .configureOutput({ writeOut: io.out, writeErr: io.err })
    .showHelpAfterError('(run with --help for usage)');

  const attest = program.command('attest').description('verify what code holds your keys (Nitro Enclaves attestation)');
  attest
    .command('verify')
    .argument('<file>', 'attestation document: raw CBOR (COSE_Sign1) or base64')
    .description('verify an attestation document offline: AWS root chain, validity time, signature, nonce, PCRs')
    .option('--at <unix-seconds>', 'verify as of this time (default: now)')
    .option('--root <pem-file>', 'pin this root instead of the embedded AWS Nitro Enclaves Root-G1')
    .option('--expect-pcr <index>=<hex>', 'require a PCR value (repeatable)', collect)
    .option('--nonce <hex>', 'require this nonce in the document')
    .option('--allow-debug', 'accept debug-mode documents (PCR0 all zeros)')
    .option('--json', 'print the result as JSON')
    .addHelpText(
      'after',
      `
Exit codes: 0 valid, 1 invalid (code printed), 2 usage error, 4 unreadable input.

Examples:
  $ securegate attest verify doc.cbor
  $ securegate attest verify doc.b64 --at 1616602241 --expect-pcr 0=672cd3c9… --json
  $ securegate attest verify doc.cbor --root dev-root.pem --nonce 00ff…`,
    )
    .action(async (file: string, options) => {
      program.setOptionValue('exitCode', await attestVerify(file, options, io));
    });
  return program;
}

export async function main(argv: string[], io: Io = processIo): Promise<number> {
  const program = buildProgram(io);
  try {
    await program.parseAsync(argv);
  } catch (e) {
    if (e instanceof CommanderError) {
      return e.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    io.err(`securegate: ${(e as Error).message}\n`);
    return EXIT.unavailable;
  }
  return (program.getOptionValue('exitCode') as number | undefined) ?? EXIT.ok;
}
