/**
 * A hostile host talks to the enclave RPC directly (docs/architecture.md §8.4): it cannot redirect a key to
 * another origin, call a path outside the allow-list, or relabel the provider — and nothing
 * reaches the other origin.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeConnectionDescriptor, RPC_CONNECTION_HEADER, type ConnectionDescriptor } from '../../protocol/index.ts';
import { startMockUpstream, type MockUpstream } from '../mock-upstream/index.ts';
import { enclaveRpc, enrollConnection, startTestStack, type ManualConnection } from './helpers.ts';

let stack: Awaited<ReturnType<typeof startTestStack>>;
let evil: MockUpstream;
let conn: ManualConnection;

beforeAll(async () => {
  stack = await startTestStack();
  evil = await startMockUpstream({ apiKey: 'whatever' });
  conn = await enrollConnection(stack, { upstreamKey: stack.demo!.upstreamKey });
});
afterAll(async () => {
  await evil?.close();
  await stack?.cleanup();
});

function descriptor(overrides: Partial<ConnectionDescriptor> = {}): string {
  return encodeConnectionDescriptor({
    connectionId: conn.connectionId,
    provider: 'openai',
    origin: conn.binding.origin,
    authScheme: 'bearer',
    sealedRecord: conn.sealedRecord,
    threshold: stack.threshold,
    ...overrides,
  });
}

async function rpc(path: string, header: string, method = 'POST') {
  const pool = enclaveRpc(stack);
  try {
    const res = await pool.request({
      path,
      method: method as 'POST',
      headers: { [RPC_CONNECTION_HEADER]: header, 'content-type': 'application/json' },
      body: method === 'GET' ? null : JSON.stringify({ model: 'gpt-4o-mini', messages: [] }),
    });
    return { status: res.statusCode, body: (await res.body.json()) as { error?: { code: string; message: string } } };
  } finally {
    await pool.close();
  }
}

describe('enclave RPC against a hostile host', () => {
  it('forwards an honest request (control)', async () => {
    const res = await rpc('/forward/v1/chat/completions', descriptor());
    expect(res.status).toBe(200);
  });

  it('refuses a record whose origin was changed, and nothing reaches the other origin', async () => {
    const res = await rpc('/forward/v1/chat/completions', descriptor({ origin: evil.origin }));
    expect(res.status).toBe(403);
    expect(res.body.error?.code).toBe('sealed_record_invalid');
    expect(evil.requests).toHaveLength(0);
  });

  it('refuses a tampered record for a connection it has just served, then serves the honest one again', async () => {
    expect((await rpc('/forward/v1/chat/completions', descriptor())).status).toBe(200);
    const bytes = Buffer.from(conn.sealedRecord, 'base64');
    bytes[bytes.length - 5]! ^= 0x01;
    const res = await rpc('/forward/v1/chat/completions', descriptor({ sealedRecord: bytes.toString('base64') }));
    expect(res.status).toBe(403);
    expect(res.body.error?.code).toBe('sealed_record_invalid');
    expect((await rpc('/forward/v1/chat/completions', descriptor())).status).toBe(200);
  });

  it('refuses a relabelled provider or auth scheme', async () => {
    for (const d of [descriptor({ authScheme: 'x-api-key' }), descriptor({ provider: 'openrouter' })]) {
      const res = await rpc('/forward/v1/chat/completions', d);
      expect(res.status).toBe(403);
    }
  });

  it('refuses paths outside the provider allow-list before any upstream call', async () => {
    const before = stack.mock!.requests.length;
    for (const path of ['/forward/v1/organization/api_keys', '/forward/v1/dashboard/billing/usage', '/forward/v1/../v1/organization/users', '/forward/other/thing', '/forward/v1/chat/completions/../../organization']) {
      const res = await rpc(path, descriptor(), 'GET');
      expect(res.status, path).toBe(403);
      expect(res.body.error?.code, path).toBe('path_not_allowed');
    }
    expect(stack.mock!.requests.length).toBe(before);
  });

  it('refuses a non-https, non-loopback origin even with a valid-looking record', async () => {
    const res = await rpc('/forward/v1/chat/completions', descriptor({ origin: 'http://example.com' }));
    expect(res.status).toBe(403);
    expect(res.body.error?.code).toBe('origin_not_allowed');
  });

  it('answers malformed descriptors with 400', async () => {
    const res = await rpc('/forward/v1/chat/completions', 'not-base64-json');
    expect(res.status).toBe(400);
    expect(res.body.error?.code).toBe('bad_request');
  });
});
