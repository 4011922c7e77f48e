/**
 * Rotation takes the old connection's data key out of the enclave at once: the host asks the
 * enclave to evict it (POST /evict), so the enclave no longer serves it from its cache — a
 * request presenting the old connection (here a hostile host speaking the RPC directly) needs a
 * new reconstruction through the shareholders, i.e. a new release they count and may refuse.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeConnectionDescriptor, RPC_CONNECTION_HEADER, RPC_EVICT_PATH } from '../../protocol/index.ts';
import { adminApi, enclaveMetrics, enclaveRpc, enrollConnection, startTestStack, type ManualConnection } from './helpers.ts';

let stack: Awaited<ReturnType<typeof startTestStack>>;

beforeAll(async () => {
  stack = await startTestStack();
});
afterAll(async () => {
  await stack?.cleanup();
});

/** Reconstructions of any data key through the shareholders since the enclave started. */
async function reconstructions(): Promise<number> {
  const line = (await enclaveMetrics(stack)).split('\n').find((l) => l.startsWith('securegate_enclave_key_reconstruction_seconds_count'));
  return Number(line?.split(' ').pop() ?? 0);
}

/** A chat completion for `c` sent straight to the enclave RPC, as the host (or a hostile one) would. */
async function forwardDirectly(c: ManualConnection): Promise<number> {
  const pool = enclaveRpc(stack);
  try {
    const header = encodeConnectionDescriptor({
      connectionId: c.connectionId, provider: c.binding.provider, origin: c.binding.origin, authScheme: c.binding.authScheme, sealedRecord: c.sealedRecord, threshold: stack.threshold,
    });
    const res = await pool.request({
      path: '/forward/v1/chat/completions',
      method: 'POST',
      headers: { [RPC_CONNECTION_HEADER]: header, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
    });
    await res.body.dump();
    return res.statusCode;
  } finally {
    await pool.close();
  }
}

describe('evicting a rotated connection\'s data key', () => {
  it('drops the old connection\'s key from the enclave when its keys are rotated away, so it needs a new release', async () => {
    const old = await enrollConnection(stack, { upstreamKey: stack.demo!.upstreamKey });
    const next = await enrollConnection(stack, { upstreamKey: stack.demo!.upstreamKey });
    expect(await forwardDirectly(old)).toBe(200);
    const warm = await reconstructions();
    // Cached: the same connection again costs no reconstruction.
    expect(await forwardDirectly(old)).toBe(200);
    expect(await reconstructions()).toBe(warm);

    const rotated = await adminApi(stack)<{ moved: number; evicted: boolean }>('POST', `/connections/${old.connectionId}/rotate`, { to: next.connectionId });
    expect(rotated.status).toBe(200);
    expect(rotated.json).toMatchObject({ moved: 1, evicted: true });

    // Gone from the cache: serving the old connection again takes a new reconstruction (releases the shareholders count).
    expect(await forwardDirectly(old)).toBe(200);
    expect(await reconstructions()).toBe(warm + 1);
  });

  it('refuses an eviction request that is not JSON { connectionId } without dropping anything', async () => {
    const pool = enclaveRpc(stack);
    try {
      // Over 16 KiB is refused whole, even with a string connectionId.
      for (const body of ['not json', '', 'null', '{}', '{"connectionId":7}', JSON.stringify({ connectionId: 'c'.repeat(17 * 1024) })]) {
        const res = await pool.request({ path: RPC_EVICT_PATH, method: 'POST', headers: { 'content-type': 'application/json' }, body });
        expect(res.statusCode).toBe(400);
        expect(((await res.body.json()) as { error: { code: string } }).error.code).toBe('bad_request');
      }
    } finally {
      await pool.close();
    }
  });
});
