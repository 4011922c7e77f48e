/**
 * Authenticated releases against the owner's shareholder set (issue 18; protocol/SPEC.md §1, §3),
 * with the real enclave process and shareholder processes. Records sealed by onboarding (version
 * 0x04) bind the set the owner's CLI pinned — ids, identity keys, t — and the enclave
 * authenticates each release against THAT set, not against its own configuration, which here the
 * operator has tampered with: it lists an attacker's key for sh-2. Each shareholder is reached
 * through `<dir>/shareholder-<id>.sock` (as enclave-init.sh wires it), a relay that can drop
 * requests or forge releases with the attacker's key, as the host in the middle could.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { devPcrPolicy } from '../../attestation/dev.ts';
import {
  encodeConnectionDescriptor,
  encodeShare,
  generateOwnerKeyPair,
  generateX25519KeyPair,
  prepareConnection,
  RPC_CONNECTION_HEADER,
  sealShareEnvelope,
  sealUpstreamKey,
  shareholderSetSha256,
  signOwnerMessage,
  splitSecret,
  fromHex,
  toHex,
  type KeyBinding,
  type ShareholderSetMember,
} from '../../protocol/index.ts';
import { createKey } from '../../cli/owner.ts';
import { connectTestProvider, enclaveMetrics, enclaveRpc, enrollConnection, eventually, startTestStack } from './helpers.ts';
import { startShareholderRelays, type ShareholderRelays } from './shareholder-relays.ts';

let stack: Awaited<ReturnType<typeof startTestStack>>;
/** The attacker's X25519 key: the operator lists it for sh-2 in the enclave's configuration. */
const attacker = generateX25519KeyPair();
const attackerKey = toHex(attacker.publicKey);
/** The relays on the enclave's shareholder routes, forging with the attacker's key. */
let relays: ShareholderRelays;
/** A share that is no one's: what a forger without any share sends "from sh-<index>". */
const garbage = (index: number) => encodeShare({ index, data: new Uint8Array(48).fill(7) });

beforeAll(async () => {
  relays = await startShareholderRelays(['sh-1', 'sh-2', 'sh-3', 'sh-4', 'sh-5'], attacker, 'sg-set-sock-');
  stack = await startTestStack({ enclaveArgs: ['--shareholder-socket-dir', relays.dir] });
  relays.serve(stack);
  // The operator swaps sh-2's identity key in the enclave's configuration for the attacker's.
  const file = join(stack.dataDir, 'enclave-shareholders.json');
  const configured = JSON.parse(await readFile(file, 'utf8')) as Array<{ id: string; url: string; publicKey: string }>;
  await writeFile(file, JSON.stringify(configured.map((sh) => (sh.id === 'sh-2' ? { ...sh, publicKey: attackerKey } : sh))));
  await stack.restartEnclave();
});
afterAll(async () => {
  await stack?.cleanup();
  await relays?.close();
});

const pins = () => stack.shareholders.map(({ id, url, publicKey }) => ({ id, url, publicKey }));

/** Onboards a connection exactly as the CLI does (record 0x04), without registering it at the host. */
async function onboard(): Promise<{ binding: KeyBinding; sealedRecord: string; set: ShareholderSetMember[] }> {
  const binding: KeyBinding = { connectionId: `conn_${randomBytes(12).toString('hex')}`, provider: 'openai', origin: stack.mock!.origin, authScheme: 'bearer' };
  const prepared = await prepareConnection({
    apiKey: new TextEncoder().encode(stack.demo!.upstreamKey),
    binding,
    shareholders: pins(),
    threshold: stack.threshold,
    ownerSecretKey: generateOwnerKeyPair().secretKey,
    pcrPolicy: devPcrPolicy(stack.pcr0),
  });
  expect(prepared.sealedRecord[0]).toBe(0x04);
  for (const { shareholder, body } of prepared.enrollments) {
    const res = await fetch(`${shareholder.url}/v1/shares`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    expect(res.status).toBe(201);
  }
  return { binding, sealedRecord: Buffer.from(prepared.sealedRecord).toString('base64'), set: prepared.shareholderSet };
}

function descriptor(c: { binding: KeyBinding; sealedRecord: string }, shareholders: ShareholderSetMember[] | undefined): string {
  const { connectionId, provider, origin, authScheme } = c.binding;
  return encodeConnectionDescriptor({ connectionId, provider, origin, authScheme, sealedRecord: c.sealedRecord, threshold: stack.threshold, ...(shareholders ? { shareholders } : {}) });
}

async function rpc(header: string) {
  const pool = enclaveRpc(stack);
  try {
    const res = await pool.request({
      path: '/forward/v1/chat/completions',
      method: 'POST',
      headers: { [RPC_CONNECTION_HEADER]: header, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
    });
    return { status: res.statusCode, body: (await res.body.json()) as { error?: { code: string } } };
  } finally {
    await pool.close();
  }
}

/** A counter of the enclave's metrics (0 when absent). */
async function metric(name: string, labels: string): Promise<number> {
  const line = (await enclaveMetrics(stack)).split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
  return line ? Number(line.split(' ').pop()) : 0;
}
const badShares = async () => (await enclaveMetrics(stack)).split('\n').filter((l) => l.startsWith('securegate_enclave_bad_shares_total{'));
const unauthenticated = (id: string) => metric('securegate_enclave_share_fetch_failures_total', `shareholder="${id}",reason="unauthenticated"`);

const chat = (key: string) =>
  new OpenAI({ apiKey: key, baseURL: `${stack.hostUrl}/v1`, maxRetries: 0 }).chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });

describe('releases authenticated against the shareholder set the record binds', () => {
  it('authenticates sh-2 by the record\'s key although the enclave configuration lists an attacker\'s key for it (CLI → host → enclave)', async () => {
    const id = await connectTestProvider(stack, 'openai');
    const { key } = await createKey(stack.hostUrl, stack.adminToken, id);
    // Only sh-1, sh-2 and sh-3 are reachable: without sh-2's release no key can be rebuilt.
    relays.drop.add('sh-4').add('sh-5');
    try {
      const before = await unauthenticated('sh-2');
      const completion = await chat(key);
      expect(completion.choices[0]!.message.content).toContain('mock upstream');
      expect(await unauthenticated('sh-2')).toBe(before);
    } finally {
      relays.drop.clear();
    }
  });

  it('refuses a release forged with the attacker\'s (configured) key for sh-2 as unauthenticated, never blaming sh-2', async () => {
    const conn = await onboard();
    const before = await unauthenticated('sh-2');
    relays.forge.set('sh-2', garbage(2));
    try {
      // A fresh connection's first lease asks sh-1, sh-2, sh-3; sh-2's forged release is refused and sh-4 asked instead.
      const res = await rpc(descriptor(conn, conn.set));
      expect(res.status).toBe(200);
      expect(await eventually(async () => ((await unauthenticated('sh-2')) > before ? true : undefined))).toBe(true);
      expect(await badShares()).toEqual([]);
    } finally {
      relays.forge.clear();
    }
  });

  it('gives a host that swaps the set in the descriptor no key: the record does not open, and no shareholder is named', async () => {
    const conn = await onboard();
    const upstreamBefore = stack.mock!.requests.length;
    // The host lists its own key for sh-2 and forges sh-2's releases with it: shares that
    // authenticate under the swapped set, but a set the record's AAD does not bind.
    const swapped = conn.set.map((m) => (m.id === 'sh-2' ? { ...m, publicKey: attackerKey } : m));
    relays.forge.set('sh-2', garbage(2));
    try {
      const res = await rpc(descriptor(conn, swapped));
      expect(res.status).toBe(403);
      expect(res.body.error?.code).toBe('sealed_record_invalid');
    } finally {
      relays.forge.clear();
    }
    // Every key its own: nothing authenticates, nothing is rebuilt.
    const allSwapped = await rpc(descriptor(conn, conn.set.map((m) => ({ ...m, publicKey: attackerKey }))));
    expect(allSwapped.status).toBeGreaterThanOrEqual(400);
    expect(['sealed_record_invalid', 'shareholders_unavailable']).toContain(allSwapped.body.error?.code);
    expect(stack.mock!.requests.length).toBe(upstreamBefore);
    expect(await badShares()).toEqual([]);
    // The owner's set opens it; with the key cached, a swapped set is still refused.
    expect((await rpc(descriptor(conn, conn.set))).status).toBe(200);
    const warm = await rpc(descriptor(conn, swapped));
    expect(warm.status).toBe(403);
    expect(warm.body.error?.code).toBe('sealed_record_invalid');
    // Without its set (an older binding) the record is refused too.
    expect((await rpc(descriptor(conn, undefined))).body.error?.code).toBe('sealed_record_invalid');
  });

  it('does not blame an honest shareholder when a host seals its own record under the connection id with a set mixing its keys and theirs', async () => {
    const conn = await onboard();
    // The host's record for the owner's connection id: its own DEK and key, a set naming the real
    // sh-1 and sh-2 and its own key for sh-3..sh-5, whose releases it forges with shares of its DEK.
    const dek = new Uint8Array(randomBytes(32));
    const own = splitSecret(dek, stack.threshold, 5);
    const mixed = conn.set.map((m) => (['sh-1', 'sh-2'].includes(m.id) ? m : { ...m, publicKey: attackerKey }));
    const binding: KeyBinding = { ...conn.binding, shareholderSetSha256: shareholderSetSha256(mixed, stack.threshold) };
    const record = Buffer.from(sealUpstreamKey(new TextEncoder().encode('sk-the-hosts-own'), dek, binding, (n) => new Uint8Array(randomBytes(n)))).toString('base64');
    for (const i of [3, 4, 5]) relays.forge.set(`sh-${i}`, encodeShare(own[i - 1]!));
    try {
      // sh-1's and sh-2's authentic shares do not fit the host's key: named, they would be framed.
      // The host's record opens (its own key reaches the mock upstream, which refuses it: 401) —
      // no worse than the host registering a connection of its own.
      const res = await rpc(descriptor({ binding: conn.binding, sealedRecord: record }, mixed));
      expect(res.status).toBe(401);
    } finally {
      relays.forge.clear();
    }
    expect(await badShares()).toEqual([]);
  });

  it('still serves records sealed before the set was bound (older versions use the configured keys)', async () => {
    const conn = await enrollConnection(stack, { upstreamKey: stack.demo!.upstreamKey });
    expect(Buffer.from(conn.sealedRecord, 'base64')[0]).toBe(0x01);
    const completion = await chat(conn.key);
    expect(completion.choices[0]!.message.content).toContain('mock upstream');
    // A set sent with an older record is refused before any share is asked for.
    const res = await rpc(descriptor(conn, pins().map(({ id, publicKey }) => ({ id, publicKey }))));
    expect(res.body.error?.code).toBe('sealed_record_invalid');
  });

  it('stores the set only with a 0x04 record naming the same shareholders (admin API)', async () => {
    const conn = await onboard();
    const register = (body: Record<string, unknown>) =>
      fetch(`${stack.hostUrl}/admin/v1/connections`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${stack.adminToken}` },
        body: JSON.stringify({ provider: 'openai', origin: conn.binding.origin, authScheme: 'bearer', threshold: stack.threshold, shareholders: conn.set.map((m) => m.id), ...body }),
      });
    const old = sealUpstreamKey(new TextEncoder().encode('sk-x'), new Uint8Array(randomBytes(32)), conn.binding, (n) => new Uint8Array(randomBytes(n)));
    const id = () => `conn_${randomBytes(12).toString('hex')}`;
    expect((await register({ id: id(), sealedRecord: Buffer.from(old).toString('base64'), shareholderSet: conn.set })).status).toBe(400);
    expect((await register({ id: id(), sealedRecord: conn.sealedRecord, shareholderSet: conn.set.slice(1) })).status).toBe(400);
    expect((await register({ id: conn.binding.connectionId, sealedRecord: conn.sealedRecord, shareholderSet: conn.set })).status).toBe(201);
  });

  it('names a shareholder whose authentic share is bad, when the key was rebuilt from shareholders the configuration confirms', async () => {
    // A 0x04 record enrolled by hand so that sh-3 holds a corrupted share (its store went bad).
    const set = pins().map(({ id, publicKey }) => ({ id, publicKey }));
    const binding: KeyBinding = {
      connectionId: `conn_${randomBytes(12).toString('hex')}`, provider: 'openai', origin: stack.mock!.origin, authScheme: 'bearer',
      shareholderSetSha256: shareholderSetSha256(set, stack.threshold),
    };
    const dek = new Uint8Array(randomBytes(32));
    const record = sealUpstreamKey(new TextEncoder().encode(stack.demo!.upstreamKey), dek, binding, (n) => new Uint8Array(randomBytes(n)));
    const shares = splitSecret(dek, stack.threshold, 5);
    const owner = generateOwnerKeyPair();
    for (const [i, sh] of stack.shareholders.entries()) {
      if (sh.id === 'sh-3') shares[i]!.data[3]! ^= 0x5a;
      const envelope = await sealShareEnvelope(fromHex(sh.publicKey), encodeShare(shares[i]!), { purpose: 'enroll', connectionId: binding.connectionId, shareholderId: sh.id });
      const signed = signOwnerMessage(owner.secretKey, {
        type: 'enroll', connectionId: binding.connectionId, shareholderId: sh.id, issuedAt: Date.now(),
        envelopeSha256: createHash('sha256').update(envelope).digest('hex'), policy: devPcrPolicy(stack.pcr0), maxReleasesPerMinute: 600,
      });
      const res = await fetch(`${sh.url}/v1/shares`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ envelope: Buffer.from(envelope).toString('base64'), signed }) });
      expect(res.status).toBe(201);
    }
    // sh-2 (whose configured key the operator swapped) is unreachable, so the key is rebuilt from
    // sh-1, sh-4 and sh-5: members whose set key the configuration confirms.
    relays.drop.add('sh-2');
    try {
      const res = await rpc(descriptor({ binding, sealedRecord: Buffer.from(record).toString('base64') }, set));
      expect(res.status).toBe(200);
    } finally {
      relays.drop.clear();
    }
    expect(await badShares()).toEqual(['securegate_enclave_bad_shares_total{shareholder="sh-3"} 1']);
  });
});
