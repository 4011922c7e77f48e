/**
 * The `securegate` command line. Runs on the owner's or verifier's machine; holds the owner's
 * signing key and sees plaintext upstream keys only while splitting them locally.
 */
import { Command, CommanderError } from 'commander';
import { attestVerify, attestVerifyServer } from './attest.ts';
import { connectCommand, pushCommand } from './connect.ts';
import { providersCommand } from './providers.ts';
import { loginCommand, logoutCommand } from './session.ts';
import { approveRelease, attestAudit, cancelWidening, pendingWidenings } from './releases.ts';
import { connectionPolicyCommand } from './connection-policy.ts';
import { usageVerifyCommand } from './usage-verify.ts';
import { alertsCommand, auditCommand, projectsCommand, statusCommand, usageCommand } from './reports.ts';
import { envCommand, keyAction, keysCreate, keysList, keysShow, keysUpdate, modelsAlias, type KeyOptionFlags } from './keys.ts';
import { CliError, EXIT } from './errors.ts';
import { EXAMPLES } from './examples.ts';
import { accountCommand, accountsCommand, inviteCommand, membersCommand, removeMemberCommand, setRoleCommand, signupCommand, tokensCommand } from './accounts.ts';
import { processIo, type Io } from './output.ts';

const collect = (value: string, previous: string[] = []) => [...previous, value];

const KEY_REF = 'key id, name, hint (SG_ab12…wxyz) or the SG_ key itself';

const KEY_OPTION_HELP = `
Scopes (--scopes): what the key may be used for, comma-separated. Deny unless granted.
  inference              call models and list them (the default)
  <kind>:<access>        one kind and access: read, write or delete
  <kind>                 read and write of that kind — never delete: deleting is always explicit
  kinds: models, stored, files, uploads, batches, fine_tuning, vector_stores
  e.g. --scopes inference,files:read   or   --scopes inference,files,files:delete

Cities (--cities): ";"-separated, each "City" or "City, CC" (ISO country code); off clears.
Models (--models): comma-separated; off clears (any model). A city or model the server does not
know is refused (asked on a terminal) unless --allow-unknown: a typo must not lock a key out.

Limits: --daily-limit, --weekly-limit, --monthly-limit and --lifetime-limit are dollars per UTC
day, week (from Monday) and calendar month, and over the key's life; --rpm and --tpm are requests
and tokens per UTC minute (over them: 429 with retry-after). --expires-at refuses every request
from that moment (401 key_expired). Each takes off; changing one leaves the others as they are.
`;

export function buildProgram(io: Io): Command {
  const program = new Command('securegate')
    .description('SecureGate: use AI API keys without handing the real key to the machine that serves traffic.')
    .exitOverride()
    .configureOutput({ writeOut: io.out, writeErr: io.err })
    .showHelpAfterError('(run with --help for usage)');

  const attest = program.command('attest').description('verify what code holds your keys (Nitro Enclaves attestation)');
  attest
    .command('verify')
    .argument('[file]', 'attestation document: raw CBOR (COSE_Sign1) or base64 (or use --server)')
    .option('--server <url>', 'verify a live gateway: fresh document with your own nonce, PCRs against --manifest')
    .option('--manifest <file|url>', 'signed release manifest to compare PCR0/1/2 with (with --server)')
    .option('--release-key <hex>', 'pinned Ed25519 release public key that must have signed the manifest (with --server)')
    .description('verify an attestation document offline: AWS root chain, validity time, signature, nonce, PCRs')
    .option('--at <unix-seconds>', 'verify as of this time (default: now)')
    .option('--root <pem-file>', 'pin this root instead of the embedded AWS Nitro Enclaves Root-G1')
    .option('--expect-pcr <index>=<hex>', 'require a PCR value (repeatable)', collect)
    .option('--nonce <hex>', 'require this nonce in the document')
    .option('--allow-debug', 'accept debug-mode documents (PCR0 all zeros)')
    .option('--pcr3 <role-arn|hex>', 'your owner binding: the parent IAM role; reports (and requires) that the document carries it')
    .option('--pcr8 <hex>', 'your owner binding: the EIF signing certificate measurement; reports (and requires) it')
    .option('--json', 'print the result as JSON')
    .addHelpText(
      'after',
      `
Exit codes: 0 valid, 1 invalid (code printed), 2 usage error, 4 unreadable input.

Examples:
  $ securegate attest verify doc.cbor
  $ securegate attest verify doc.b64 --at 1616602241 --expect-pcr 0=672cd3c9… --json
  $ securegate attest verify doc.cbor --root dev-root.pem --nonce 00ff…
  $ securegate attest verify --server https://gw.example.com --manifest release.json --release-key 3b6a…`,
    )
    .action(async (file: string | undefined, options) => {
      if (options.server) {
        if (!options.manifest || !options.releaseKey) {
          io.err('securegate attest verify --server needs --manifest <file|url> and --release-key <hex>\n');
          program.setOptionValue('exitCode', EXIT.usage);
          return;
        }
        program.setOptionValue('exitCode', await attestVerifyServer(options, io));
        return;
      }
      if (!file) {
        io.err('securegate attest verify: give a document file, or --server <url> --manifest … --release-key …\n');
        program.setOptionValue('exitCode', EXIT.usage);
        return;
      }
      program.setOptionValue('exitCode', await attestVerify(file, options, io));
    });
  attest
    .command('audit')
    .option('--connection <id>', 'only this connection')
    .option('--json', 'print as JSON')
    .description("check every pinned shareholder's audit log: hash chain intact, every release to approved PCRs")
    .action(async (o) => {
      program.setOptionValue('exitCode', await attestAudit(o, io));
    });

  program
    .command('login')
    .description('log in to a SecureGate server (a local dev stack from `npm start` needs no token)')
    .option('--server <url>', 'server URL (default: $SECUREGATE_URL or http://127.0.0.1:8080)')
    .option('--token-stdin', 'read an admin token from stdin')
    .option('--email <email>', 'log in with your account\'s email and password (hidden prompt); saves an admin token')
    .option('--password-stdin', 'with --email: read the password from stdin')
    .option('--account <id>', 'with --email: which of your accounts (default: the first you joined)')
    .option('--json', 'print the result as JSON')
    .addHelpText('after', '\nExamples:\n  $ securegate login                      # local dev stack\n  $ securegate login --server https://gw.example.com --email me@example.com\n  $ echo "$TOKEN" | securegate login --server https://gw.example.com --token-stdin')
    .action(async (options) => {
      program.setOptionValue('exitCode', await loginCommand(options, io));
    });

  program
    .command('signup')
    .description('create your user (and an account, or join one with an invite) and log in')
    .requiredOption('--email <email>', 'your email')
    .option('--invite <code>', 'an invite from an account owner or the operator')
    .option('--account-name <name>', 'name of the new account (open sign-up)')
    .option('--server <url>', 'server URL')
    .option('--password-stdin', 'read the password from stdin (otherwise a hidden prompt)')
    .option('--json', 'print as JSON')
    .addHelpText('after', '\nExample:\n  $ securegate signup --server https://gw.example.com --email me@example.com --invite sgi_…')
    .action((o) => run(() => signupCommand(o, io))());

  const account = program.command('account').description('your account: plan and limits, members, invites, admin tokens');
  account.command('show', { isDefault: true }).option('--json', 'print as JSON').description('account, plan, limits and usage').action((o) => run(() => accountCommand(o, io))());
  account.command('members').option('--json', 'print as JSON').description('list members and their roles').action((o) => run(() => membersCommand(o, io))());
  account
    .command('invite')
    .option('--role <role>', 'owner or member', 'member')
    .option('--projects <ids>', 'members only: limit them to these projects (comma-separated; default all)')
    .option('--json', 'print as JSON')
    .description('create a one-time invite (valid 7 days)')
    .addHelpText('after', '\nExample:\n  $ securegate account invite --role member')
    .action((o) => run(() => inviteCommand(o, io))());
  account.command('remove-member').argument('<user-id>', 'the member (see `account members`)').option('--json', 'print as JSON').description('remove a member (an account keeps one owner)').action((id: string, o) => run(() => removeMemberCommand(id, o, io))());
  account
    .command('set-role')
    .argument('<user-id>', 'the member (see `account members`)')
    .argument('<role>', 'owner or member')
    .option('--projects <ids>', 'members only: the projects they may use (comma-separated, or "all")')
    .option('--json', 'print as JSON')
    .description('make a member an owner, or an owner a member (an account keeps one owner)')
    .action((id: string, r: string, o) => run(() => setRoleCommand(id, r, o, io))());
  account.command('tokens').option('--json', 'print as JSON').description('list admin API tokens (never their values)').action((o) => run(() => tokensCommand('list', undefined, o, io))());
  account
    .command('token-create')
    .argument('<name>', 'what the token is for, e.g. "ci"')
    .option('--role <role>', 'owner or member', 'owner')
    .option('--json', 'print as JSON')
    .description('create an admin API token (shown once)')
    .action((name: string, o) => run(() => tokensCommand('create', name, o, io))());
  account.command('token-revoke').argument('<id>', 'token id').option('--json', 'print as JSON').description('revoke an admin API token').action((id: string, o) => run(() => tokensCommand('revoke', id, o, io))());

  const projects = program.command('projects').description('projects: daily caps and what new keys auto-lock to');
  projects.command('list').option('--json', 'print as JSON').description('list your projects').action((o) => run(() => projectsCommand('list', undefined, o, io))());
  projects
    .command('set')
    .argument('<project-id>', 'project')
    .option('--auto-lock <list>', 'default for new keys: ip,device,city (or none for IP only)')
    .option('--daily-limit <usd>', 'daily spend cap for the whole project (or none)')
    .option('--json', 'print as JSON')
    .description('change a project\'s defaults and caps')
    .addHelpText('after', '\nExample:\n  $ securegate projects set proj_default --auto-lock ip,device --daily-limit 50')
    .action((id: string, o) => run(() => projectsCommand('set', id, o, io))());

  const accounts = program.command('accounts').description('server operator: create accounts, list them, change plans');
  accounts.command('list').option('--json', 'print as JSON').description('every account with its plan and usage').action((o) => run(() => accountsCommand('list', [], o, io))());
  accounts
    .command('create')
    .argument('<name>', 'account name')
    .option('--plan <plan>', 'plan id (default: the sign-up plan)')
    .option('--json', 'print as JSON')
    .description('create an account; prints its owner\'s one-time invite')
    .addHelpText('after', '\nExample:\n  $ securegate accounts create "Acme" --plan pro')
    .action((name: string, o) => run(() => accountsCommand('create', [name], o, io))());
  accounts
    .command('set-plan')
    .argument('<account-id>', 'account')
    .argument('<plan>', 'plan id')
    .option('--json', 'print as JSON')
    .description('move an account to another plan (never deletes anything)')
    .action((id: string, plan: string, o) => run(() => accountsCommand('set-plan', [id, plan], o, io))());

  program
    .command('logout')
    .option('--all', 'also remove the owner signing key and shareholder pins (you lose the ability to change your connections\' policies)')
    .option('--json', 'print as JSON')
    .description('forget the server credentials stored on this machine')
    .action((o) => {
      program.setOptionValue('exitCode', logoutCommand(o, io));
    });

  program
    .command('connect')
    .argument('<provider>', 'openai, anthropic, openrouter (see `securegate providers`)')
    .description('seal an upstream API key on this machine and split it across the shareholders')
    .option('--api-key-stdin', 'read the API key from stdin (otherwise a hidden prompt)')
    .option('--base-url <url>', 'pin another upstream origin (https; plain http only for loopback in dev)')
    .option('--name <name>', 'a name for this connection')
    .option('--threshold <t>', 'shares needed to rebuild the key (default 3)')
    .option('--rotate <connection>', 'replace the upstream key of an existing connection (keys keep working)')
    .option('--auth <scheme>', 'any-API: bearer, basic, x-api-key, header:<name> or query:<name>')
    .option('--allow <rule>', 'any-API: allowed request, e.g. "GET /v1/customers/*" (repeatable)', collect)
    .option('--release-manifest <file>', 'signed release manifest: the enclave image (PCR0/1/2) the shares are pinned to')
    .option('--release-key <hex>', 'pinned Ed25519 release public key that must have signed --release-manifest')
    .option('--pcr8 <hex>', 'owner binding: PCR8 of your signed EIF (its signing certificate); default from the manifest or config')
    .option('--pcr3 <role-arn|hex>', 'owner binding: the IAM role of your parent instances (PCR3)')
    .option('--widening-delay <duration>', 'how long a policy update admitting a new enclave waits before it takes effect (default 24h; 0 = none)')
    .option('--operations <list>', 'what the enclave lets this connection do, comma-separated (default inference; e.g. inference,files:read)')
    .option('--models <list>', 'only these models, comma-separated (enforced in the enclave)')
    .option('--daily-requests <n>', 'requests per UTC day the enclave serves for this connection')
    .option('--daily-tokens <n>', 'tokens per UTC day')
    .option('--daily-dollars <usd>', 'dollars per UTC day, at the allowed models\' prices signed into the policy (needs --models)')
    .option('--json', 'print the connection and the policies signed for it as JSON')
    .addHelpText(
      'after',
      '\nThe key never leaves this machine in the clear: the gateway receives only the sealed record.\n\nExamples:\n  $ securegate connect openai\n  $ printenv NEW_OPENAI_KEY | securegate connect openai --rotate conn_1a2b… --api-key-stdin\n  $ printenv OPENAI_API_KEY | securegate connect openai --api-key-stdin --json\n  $ securegate connect azure --base-url https://myres.openai.azure.com\n  $ securegate connect any --base-url https://api.stripe.com --auth basic --allow "GET /v1/customers/*"   # then call /any/v1/customers/…\n  $ securegate connect openai --release-manifest release.json --release-key 3b6a… --pcr8 9f2c… --models gpt-4o-mini --daily-dollars 5',
    )
    .action(async (provider: string, options) => {
      program.setOptionValue('exitCode', await connectCommand(provider, options, io));
    });

  const run = (fn: () => Promise<number> | number) => async () => {
    program.setOptionValue('exitCode', await fn());
  };
  const withKeyOptions = (cmd: Command) =>
    cmd
      .option('--name <name>', 'a label for the key')
      .option('--models <list>', 'allowed models, comma-separated; off = any model')
      .option('--cities <list>', 'allowed cities, ";"-separated, each "City" or "City, CC", e.g. "San Francisco, US; Paris"; off = any city')
      .option('--scopes <list>', 'what the key may do, comma-separated (default inference; see below)')
      .option('--allow-unknown', 'save cities or models the server does not know (asked on a terminal)')
      .option('--inactive-expiry <duration>', 'expire after this long unused: 7d, 12h, off')
      .option('--require-signature', 'require signed requests (prints the signing secret once)')
      .option('--no-require-signature', 'stop requiring signed requests')
      .option('--daily-limit <dollars>', 'spend cap per UTC day, e.g. 5 (or off)')
      .option('--lifetime-limit <dollars>', 'spend cap over the key\'s life (or off)')
      .option('--daily-requests <n>', 'request cap per UTC day (any-API connections), or off')
      .option('--weekly-limit <dollars>', 'spend cap per UTC week, Monday 00:00 to Monday (or off)')
      .option('--monthly-limit <dollars>', 'spend cap per UTC calendar month (or off)')
      .option('--expires-at <date>', 'refuse every request from then on: 2027-01-31 (00:00 UTC), 2027-01-31T18:00:00Z, or off')
      .option('--rpm <n>', 'requests per minute (UTC minute), or off')
      .option('--tpm <n>', 'tokens per minute, input + output (each request holds its max until it ends), or off')
      .option('--auto-lock <list>', 'bind on first use to: ip (always), device, city — e.g. ip,device,city')
      .option('--json', 'print as JSON');

  const keys = program.command('keys').description('create SG_ proxy keys and manage their locks');
  withKeyOptions(
    keys
      .command('create')
      .requiredOption('--connection <id>', 'connection the key uses')
      .option('--project <id>', 'project (default: the connection\'s)')
      .description('create an SG_ key (printed once)'),
  )
    .addHelpText('after', `${KEY_OPTION_HELP}\nExamples:\n  $ securegate keys create --connection conn_1a2b… --models gpt-4o-mini --inactive-expiry 7d\n  $ securegate keys create --connection conn_1a2b… --cities "London, GB; Paris, FR" --json\n  $ securegate keys create --connection conn_1a2b… --scopes inference,files:read`)
    .action((o: KeyOptionFlags & { connection: string }) => run(() => keysCreate(o, io))());
  keys
    .command('list')
    .option('--json', 'print as JSON')
    .description('list SG_ keys: name, status, spent today / cap, lifetime, last used (hints only; keys are never stored)')
    .action((o) => run(() => keysList(o, io))());
  keys
    .command('show')
    .argument('<key>', KEY_REF)
    .option('--json', 'print as JSON')
    .description('show one key and its locks')
    .action((id: string, o) => run(() => keysShow(id, o, io))());
  withKeyOptions(keys.command('update').argument('<key>', KEY_REF).description('change a key\'s models, cities, scopes, limits, expiry or signature requirement'))
    .addHelpText('after', `${KEY_OPTION_HELP}\nExamples:\n  $ securegate keys update key_123 --models gpt-4o,gpt-4o-mini --inactive-expiry off\n  $ securegate keys update "agent laptop" --cities off --scopes inference,files`)
    .action((id: string, o: KeyOptionFlags) => run(() => keysUpdate(id, o, io))());
  keys
    .command('lock')
    .argument('<key>', KEY_REF)
    .requiredOption('--ip <address>', 'pin the key to this IP (IPv4 or IPv6)')
    .option('--json', 'print as JSON')
    .description('pin a key to an IP address by hand')
    .action((id: string, o) => run(() => keyAction(id, 'lock', o, io))());
  keys
    .command('bind-device')
    .argument('<key>', KEY_REF)
    .option('--fingerprint <hex>', 'register this fingerprint instead of this machine\'s')
    .option('--json', 'print as JSON')
    .description('bind a key to this machine; requests must then send x-device-fingerprint (see `securegate env --device`)')
    .action((id: string, o) => run(() => keyAction(id, 'bind-device', o, io))());
  keys
    .command('revoke')
    .argument('<key>', KEY_REF)
    .option('--yes', 'do not ask (scripts; without a terminal it is required)')
    .option('--json', 'print as JSON')
    .description('revoke a key permanently (asks first on a terminal)')
    .addHelpText('after', '\nExamples:\n  $ securegate keys revoke "agent laptop"\n  $ securegate keys revoke key_1a2b… --yes --json')
    .action((id: string, o) => run(() => keyAction(id, 'revoke', o, io))());
  for (const [name, action, text] of [
    ['unsuspend', 'unsuspend', 'lift an abuse suspension'],
    ['activate', 'activate', 'switch a killed or expired key back on'],
  ] as const) {
    keys.command(name).argument('<key>', KEY_REF).option('--json', 'print as JSON').description(text).action((id: string, o) => run(() => keyAction(id, action, o, io))());
  }
  program
    .command('kill')
    .argument('<key>', KEY_REF)
    .option('--json', 'print as JSON')
    .description('kill switch: stop a key everywhere at once (reversible with `keys activate`)')
    .action((id: string, o) => run(() => keyAction(id, 'kill', o, io))());
  program
    .command('repin')
    .argument('<key>', KEY_REF)
    .option('--json', 'print as JSON')
    .description('unbind a key\'s IP; the next successful request binds it again')
    .action((id: string, o) => run(() => keyAction(id, 'repin', o, io))());
  program
    .command('env')
    .option('--lang <lang>', 'curl, node, python, langchain or openclaw (default: all)')
    .option('--device', 'include this machine\'s x-device-fingerprint header')
    .option('--signed', 'snippets that sign requests (keys created with --require-signature)')
    .option('--json', 'print as JSON')
    .description('print ready-to-paste client snippets for this gateway')
    .action((o) => run(() => envCommand(o, io))());
  withKeyOptions(
    program
      .command('push')
      .argument('[api-key]', 'never: the upstream key is refused on the command line (shell history, ps); pipe it in or type it at the prompt')
      .option('--provider <provider>', 'provider of the key (default openai)')
      .option('--base-url <url>', 'pin another upstream origin')
      .option('--threshold <t>', 'shares needed to rebuild the key (default 3)')
      .description('connect an upstream API key (hidden prompt on a terminal, or stdin) and create a locked SG_ key for it, in one step'),
  )
    .addHelpText('after', '\nExamples:\n  $ securegate push --daily-limit 5 --models gpt-4o-mini --inactive-expiry 7d      # asks for the key, hidden\n  $ printenv OPENAI_API_KEY | securegate push --daily-limit 5 --models gpt-4o-mini')
    .action((apiKey: string | undefined, o) => run(() => pushCommand(apiKey, o, io))());
  program
    .command('status')
    .argument('[key]', `a key (${KEY_REF}): its state, pinned IP, spend today and lifetime, top model`)
    .option('--json', 'print as JSON')
    .description('account summary, or one key\'s live status')
    .addHelpText('after', '\nExamples:\n  $ securegate status\n  $ securegate status key_1a2b… --json')
    .action((keyId: string | undefined, o) => run(() => statusCommand(keyId, o, io))());
  program
    .command('usage')
    .option('--key <id>', 'only this key')
    .option('--days <n>', 'look back this many days (default 30)')
    .option('--json', 'print as JSON')
    .option('--verify', "compare the host's records with the enclave's signed receipts and the shareholders' lease logs")
    .option('--connection <id>', 'with --verify: only this connection')
    .option('--root <pem-file>', 'with --verify: attestation root to pin (default: the AWS Nitro root)')
    .option('--expect-pcr <index>=<hex>', 'with --verify: require a PCR value in every enclave attestation (repeatable)', collect)
    .option('--threshold <t>', 'with --verify: the shareholder threshold (default: from your config)')
    .description('spend and tokens per day, key and model; --verify checks them against the enclave and the shareholders')
    .action((o) => run(() => (o.verify ? usageVerifyCommand({ ...o, days: o.days ?? '1' }, io) : usageCommand(o, io)))());
  program
    .command('audit')
    .option('--key <key>', 'only this key (id, name, hint or SG_ key)')
    .option('--since <when>', '2026-11-24, ISO time, unix seconds, or 24h / 7d ago')
    .option('--until <when>', 'same forms as --since')
    .option('--model <model>', 'requested or resolved model')
    .option('--outcome <outcome>', 'allowed or refused')
    .option('--limit <n>', 'rows per page (default 100)')
    .option('--all', 'follow pages to the end')
    .option('--json', 'print as JSON')
    .option('--csv', 'print as CSV')
    .description('the request audit trail: every request, allowed or refused (never bodies)')
    .addHelpText('after', '\nExamples:\n  $ securegate audit --key key_1a2b… --since 24h\n  $ securegate audit --since 2026-11-01 --all --csv > audit.csv')
    .action((o) => run(() => auditCommand(o, io))());
  const alerts = program.command('alerts').description('alert targets: webhooks and email for budget, IP, device and suspension events');
  alerts
    .command('add')
    .option('--webhook <url>', 'POST signed JSON to this URL')
    .option('--email <address>', 'send email (the server needs --smtp-url)')
    .option('--project <id>', 'project (default proj_default)')
    .option('--json', 'print as JSON')
    .description('add a webhook or email target')
    .addHelpText('after', '\nExamples:\n  $ securegate alerts add --webhook https://hooks.example.com/securegate\n  $ securegate alerts add --email security@example.com')
    .action((o) => run(() => alertsCommand('add', o, io))());
  alerts.command('list').option('--json', 'print as JSON').description('list alert targets').action((o) => run(() => alertsCommand('list', o, io))());
  alerts
    .command('test')
    .option('--project <id>', 'project (default proj_default)')
    .option('--json', 'print as JSON')
    .description('send a test alert to every target of the project')
    .action((o) => run(() => alertsCommand('test', o, io))());
  alerts
    .command('remove')
    .argument('<id>', 'alert target id')
    .option('--json', 'print as JSON')
    .description('remove an alert target')
    .action((id: string, o) => run(() => alertsCommand('remove', { ...o, id }, io))());

  const connections = program.command('connections').description('connections: approve enclave releases, change their owner-signed policy');
  connections
    .command('approve-release')
    .argument('<manifest>', 'signed release manifest (release-manifest.json)')
    .requiredOption('--release-key <hex>', 'pinned Ed25519 release public key')
    .option('--connection <id>', 'only this connection (repeatable; default: all of yours)', collect)
    .option('--withdraw', 'remove the release instead: shareholders stop releasing to that image')
    .option('--json', 'print as JSON')
    .description('let a new enclave release receive your shares (owner-signed policy update to every shareholder)')
    .addHelpText('after', '\nExamples:\n  $ securegate connections approve-release release-v1.1.json --release-key 3b6a…\n  $ securegate connections approve-release release-v1.0.json --release-key 3b6a… --withdraw')
    .action((manifest: string, o) => run(() => approveRelease(manifest, o, io))());
  connections
    .command('pending')
    .option('--connection <id>', 'only this connection (repeatable; default: all of yours)', collect)
    .option('--json', 'print as JSON')
    .description('policy widenings waiting out your delay (a new enclave admitted from the time shown)')
    .addHelpText('after', '\nExamples:\n  $ securegate connections pending\n  $ securegate connections pending --connection conn_1a2b… --json')
    .action((o) => run(() => pendingWidenings(o, io))());
  connections
    .command('cancel-widening')
    .argument('<connection>', 'the connection whose pending widening to cancel')
    .option('--json', 'print as JSON')
    .description('cancel a pending policy widening at every shareholder (owner-signed) before it takes effect')
    .addHelpText('after', '\nExamples:\n  $ securegate connections cancel-widening conn_1a2b…   # after an unexpected policy_widening_pending alert')
    .action((id: string, o) => run(() => cancelWidening(id, o, io))());
  connections
    .command('policy')
    .argument('<connection>', 'connection id')
    .option('--models <list>', 'allowed models, comma-separated; off = any model')
    .option('--operations <list>', 'allowed operations, e.g. inference,files:read')
    .option('--daily-requests <n>', 'requests per UTC day, or off')
    .option('--daily-tokens <n>', 'tokens per UTC day, or off')
    .option('--daily-dollars <usd>', 'dollars per UTC day at the prices in the policy, or off')
    .option('--lease-requests <n>', 'requests one lease (key reconstruction) may serve, or off')
    .option('--lease-tokens <n>', 'tokens one lease may serve, or off')
    .option('--threshold <t>', 'shareholder threshold t you connected with (default: your config; never taken from the server)')
    .option('--json', 'print as JSON')
    .description("sign a new version of the connection's policy and send it to every pinned shareholder; the enclave enforces it from its next lease")
    .addHelpText('after', '\nExamples:\n  $ securegate connections policy conn_1a2b… --models gpt-4o-mini --daily-requests 500\n  $ securegate connections policy conn_1a2b… --daily-dollars 20 --lease-requests 25')
    .action((id: string, o) => run(() => connectionPolicyCommand(id, o, io))());

  const models = program.command('models').description('model registry: aliases per project');
  models
    .command('alias')
    .argument('<alias>', 'name clients send, e.g. gpt-4')
    .argument('<target>', 'exact provider model, e.g. gpt-4-0613')
    .option('--project <id>', 'project (default proj_default)')
    .option('--json', 'print as JSON')
    .description('map an alias to an exact model; requests are rewritten before forwarding')
    .action((alias: string, target: string, o) => run(() => modelsAlias(alias, target, o, io))());

  program
    .command('providers')
    .option('--json', 'print as JSON')
    .description('list supported providers')
    .action((options) => {
      program.setOptionValue('exitCode', providersCommand(options, io));
    });
  addExamples(program, []);
  return program;
}

/** Adds the examples table (cli/examples.ts) to the commands that have no examples of their own. */
function addExamples(command: Command, path: string[]): void {
  if (command.commands.length === 0) {
    const lines = EXAMPLES[path.join(' ')];
    if (lines) command.addHelpText('after', `\n${lines.length > 1 ? 'Examples' : 'Example'}:\n${lines.map((l) => `  $ ${l}`).join('\n')}`);
    return;
  }
  for (const sub of command.commands) addExamples(sub, [...path, sub.name()]);
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
