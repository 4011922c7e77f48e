/**
 * The `securegate` command line. Runs on the owner's or verifier's machine; holds the owner's
 * signing key and sees plaintext upstream keys only while splitting them locally.
 */
import { Command, CommanderError } from 'commander';
import { attestVerify } from './attest.ts';
import { connectCommand, keysCreateCommand, keysListCommand, loginCommand, providersCommand } from './commands.ts';
import { CliError } from './owner.ts';
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
  program
    .command('login')
    .description('log in to a SecureGate server (a local dev stack from `npm start` needs no token)')
    .option('--server <url>', 'server URL (default: $SECUREGATE_URL or http://127.0.0.1:8080)')
    .option('--token-stdin', 'read an admin token from stdin')
    .option('--json', 'print the result as JSON')
    .addHelpText('after', '\nExamples:\n  $ securegate login                      # local dev stack\n  $ echo "$TOKEN" | securegate login --server https://gw.example.com --token-stdin')
    .action(async (options) => {
      program.setOptionValue('exitCode', await loginCommand(options, io));
    });

  program
    .command('connect')
    .argument('<provider>', 'openai, anthropic, openrouter (see `securegate providers`)')
    .description('seal an upstream API key on this machine and split it across the shareholders')
    .option('--api-key-stdin', 'read the API key from stdin (otherwise a hidden prompt)')
    .option('--base-url <url>', 'pin another upstream origin (https; plain http only for loopback in dev)')
    .option('--name <name>', 'a name for this connection')
    .option('--threshold <t>', 'shares needed to rebuild the key (default 3)')
    .option('--json', 'print {"id": …} as JSON')
    .addHelpText('after', '\nThe key never leaves this machine in the clear: the gateway receives only the sealed record.\n\nExamples:\n  $ securegate connect openai\n  $ printenv OPENAI_API_KEY | securegate connect openai --api-key-stdin --json')
    .action(async (provider: string, options) => {
      program.setOptionValue('exitCode', await connectCommand(provider, options, io));
    });

  const keys = program.command('keys').description('create and list SG_ proxy keys');
  keys
    .command('create')
    .requiredOption('--connection <id>', 'connection the key uses')
    .option('--json', 'print {"id", "key"} as JSON')
    .description('create an SG_ key (printed once)')
    .addHelpText('after', '\nExample:\n  $ securegate keys create --connection conn_1a2b… --json')
    .action(async (options) => {
      program.setOptionValue('exitCode', await keysCreateCommand(options, io));
    });
  keys
    .command('list')
    .option('--json', 'print as JSON')
    .description('list SG_ keys (hints only; keys are never stored)')
    .action(async (options) => {
      program.setOptionValue('exitCode', await keysListCommand(options, io));
    });

  program
    .command('providers')
    .option('--json', 'print as JSON')
    .description('list supported providers')
    .action((options) => {
      program.setOptionValue('exitCode', providersCommand(options, io));
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
    if (e instanceof CliError) {
      io.err(`securegate: ${e.message}\n`);
      return e.exitCode;
    }
    io.err(`securegate: ${(e as Error).message}\n`);
    return EXIT.unavailable;
  }
  return (program.getOptionValue('exitCode') as number | undefined) ?? EXIT.ok;
}
