/**
 * Reading secrets on the owner's machine: from stdin or a hidden terminal prompt, never from argv
 * (shell history, `ps`). Buffers holding a secret are wiped once copied out.
 */
import { CliError, EXIT } from './errors.ts';

export async function readStdin(): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  const buf = Buffer.concat(chunks);
  let end = buf.length;
  while (end > 0 && (buf[end - 1] === 0x0a || buf[end - 1] === 0x0d)) end--;
  const out = new Uint8Array(buf.subarray(0, end));
  buf.fill(0);
  return out;
}

/** Hidden prompt on a TTY: characters are not echoed. */
export async function promptHidden(question: string, notTty = 'no key given: pipe it in with --api-key-stdin (keys are never taken on the command line)'): Promise<Uint8Array> {
  const stdin = process.stdin;
  if (!stdin.isTTY) throw new CliError(notTty, EXIT.usage);
  // Echo off before the question is shown: a key typed (or pasted) the moment the prompt appears
  // must never reach the screen.
  stdin.setRawMode(true);
  stdin.resume();
  process.stderr.write(question);
  const bytes: number[] = [];
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      for (const b of chunk) {
        if (b === 0x0d || b === 0x0a) {
          stdin.setRawMode(false);
          stdin.pause();
          stdin.off('data', onData);
          process.stderr.write('\n');
          resolve(new Uint8Array(bytes));
          bytes.fill(0);
          return;
        }
        if (b === 0x03) {
          stdin.setRawMode(false);
          reject(new CliError('cancelled', EXIT.cancelled));
          return;
        }
        if (b === 0x7f) bytes.pop();
        else bytes.push(b);
      }
    };
    stdin.on('data', onData);
  });
}

/** The password from stdin (--password-stdin) or a hidden prompt; never from argv. */
export async function readPassword(fromStdin: boolean | undefined): Promise<string> {
  const bytes = fromStdin ? await readStdin() : await promptHidden('Password (hidden): ', 'no password given: pipe it in with --password-stdin (passwords are never taken on the command line)');
  return Buffer.from(bytes).toString('utf8');
}
