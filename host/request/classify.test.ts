import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { canonicalAllowList, PROVIDERS, providerSpec } from '../../protocol/index.ts';
import { HostError } from '../errors.ts';
import { MODEL_UNKNOWN } from './classified.ts';
import { classify, type RawRequest } from './classify.ts';

const openai = providerSpec('openai')!;
const options = { jsonBodyLimit: 1024 * 1024, bufferWhole: false };

function raw(method: string, url: string, body?: string | Buffer, headers: Record<string, string> = {}): RawRequest {
  const bytes = body === undefined ? undefined : Buffer.from(body);
  return {
    method,
    url,
    headers: { ...(bytes ? { 'content-length': String(bytes.length) } : {}), ...headers },
    body: Readable.from(bytes ? [bytes] : []),
  };
}

async function code(p: Promise<unknown>): Promise<string> {
  const e = await p.then(() => undefined, (x: unknown) => x);
  expect(e).toBeInstanceOf(HostError);
  return (e as HostError).code;
}

const chat = JSON.stringify({ model: 'gpt-4o', messages: [] });

describe('classification', () => {
  it('reads the model of a JSON body under every JSON media type spelling', async () => {
    for (const type of ['application/json', 'Application/JSON', 'application/json; charset=utf-8', 'application/vnd.api+json']) {
      const c = await classify(raw('POST', '/v1/chat/completions', chat, { 'content-type': type }), openai, null, options);
      expect(c.requestedModel, type).toBe('gpt-4o');
      expect(c.scope).toBe('inference:write');
      expect(c.endpoint.price.unit).toBe('tokens');
    }
  });

  it('refuses a JSON endpoint body of another media type, or none', async () => {
    for (const headers of [{ 'content-type': 'text/plain' }, {}, { 'content-type': 'application/jsonx' }, { 'content-type': 'application/json; charset=utf-16' }] as Array<Record<string, string>>) {
      expect(await code(classify(raw('POST', '/v1/chat/completions', chat, headers), openai, null, options))).toBe('unsupported_media_type');
    }
  });

  it('marks a JSON request without a model as unknown rather than model-free', async () => {
    const c = await classify(raw('POST', '/v1/chat/completions', '{"messages":[]}', { 'content-type': 'application/json' }), openai, null, options);
    expect(c.requestedModel).toBe(MODEL_UNKNOWN);
    const numeric = await classify(raw('POST', '/v1/chat/completions', '{"model":42}', { 'content-type': 'application/json' }), openai, null, options);
    expect(numeric.requestedModel).toBe(MODEL_UNKNOWN);
  });

  it('refuses paths and methods no endpoint declares, and paths with dot segments or encodings', async () => {
    for (const [method, url] of [['PUT', '/v1/files'], ['GET', '/v1/organization/users'], ['GET', '/v1/files/../models'], ['GET', '/v1/files/%2e%2e/x'], ['GET', '/v1//models'], ['GET', '/any/v1/x'], ['HEAD', '/v1/models']]) {
      expect(await code(classify(raw(method!, url!), openai, null, options)), `${method} ${url}`).toBe('endpoint_not_allowed');
    }
  });

  it('classifies reads, writes and deletes of the same path by method', async () => {
    expect((await classify(raw('GET', '/v1/files/file-1'), openai, null, options)).scope).toBe('files:read');
    expect((await classify(raw('DELETE', '/v1/files/file-1'), openai, null, options)).scope).toBe('files:delete');
    expect((await classify(raw('GET', '/v1/chat/completions'), openai, null, options)).scope).toBe('stored:read');
    expect((await classify(raw('DELETE', '/v1/models/ft:gpt-4o:x'), openai, null, options)).scope).toBe('fine_tuning:delete');
  });

  it('refuses a repeated Content-Type, which an upstream might read differently', async () => {
    const r = raw('POST', '/v1/chat/completions', chat, { 'content-type': 'application/json' });
    r.rawHeaders = ['Content-Type', 'application/json', 'content-type', 'text/plain'];
    expect(await code(classify(r, openai, null, options))).toBe('unsupported_media_type');
  });

  it('refuses a body on a GET', async () => {
    expect(await code(classify(raw('GET', '/v1/models', '{"x":1}', { 'content-type': 'application/json' }), openai, null, options))).toBe('invalid_request');
  });

  it('reads the model from the path for Gemini native and Azure deployments', async () => {
    const gemini = await classify(raw('POST', '/v1beta/models/gemini-2.5-pro:generateContent', '{"contents":[]}', { 'content-type': 'application/json' }), providerSpec('gemini-native')!, null, options);
    expect(gemini.requestedModel).toBe('gemini-2.5-pro');
    const azure = await classify(raw('POST', '/openai/deployments/prod-4o/chat/completions?api-version=1', '{"messages":[]}', { 'content-type': 'application/json' }), providerSpec('azure')!, null, options);
    expect(azure.requestedModel).toBe('prod-4o');
    expect(azure.query).toBe('?api-version=1');
  });

  it('reads the multipart model strictly and refuses a duplicated one', async () => {
    const part = (name: string, value: string) => `--b\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`;
    const file = '--b\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\nContent-Type: audio/wav\r\n\r\nRIFF\r\n';
    const ok = await classify(raw('POST', '/v1/audio/transcriptions', `${file}${part('model', 'whisper-1')}--b--\r\n`, { 'content-type': 'multipart/form-data; boundary=b' }), openai, null, options);
    expect(ok.requestedModel).toBe('whisper-1');
    const twice = raw('POST', '/v1/audio/transcriptions', `${file}${part('model', 'whisper-1')}${part('model', 'gpt-4o-transcribe')}--b--\r\n`, { 'content-type': 'multipart/form-data; boundary=b' });
    expect(await code(classify(twice, openai, null, options))).toBe('invalid_request');
  });

  it('streams file uploads instead of reading them', async () => {
    const c = await classify(raw('POST', '/v1/files', '--b\r\n', { 'content-type': 'multipart/form-data; boundary=b' }), openai, null, options);
    expect(c.body.format).toBe('stream');
    expect(c.scope).toBe('files:write');
  });

  it('admits any-API calls only on the connection allow-list', async () => {
    const any = providerSpec('any')!;
    const allow = canonicalAllowList(['GET /v1/charges', 'POST /v1/refunds']);
    expect((await classify(raw('GET', '/any/v1/charges'), any, allow, options)).endpoint.price.unit).toBe('request');
    expect(await code(classify(raw('DELETE', '/any/v1/charges'), any, allow, options))).toBe('endpoint_not_allowed');
    expect(await code(classify(raw('GET', '/v1/charges'), any, allow, options))).toBe('endpoint_not_allowed');
  });
});

describe('endpoint tables', () => {
  it('give every provider endpoint a unique id and an anchored pattern', () => {
    for (const spec of Object.values(PROVIDERS)) {
      const rows = [...spec.endpoints, ...(spec.nativeEndpoints ?? [])];
      const keys = rows.map((e) => `${e.method} ${e.id}`);
      expect(new Set(keys).size, spec.id).toBe(keys.length);
      for (const e of rows) {
        expect(e.path.source.startsWith('^'), `${spec.id} ${e.id}`).toBe(true);
        expect(e.path.source.endsWith('$'), `${spec.id} ${e.id}`).toBe(true);
      }
    }
  });

  it('price every inference endpoint by a unit the pricing engine knows, and nothing with a model as free except counting', () => {
    for (const spec of Object.values(PROVIDERS)) {
      for (const e of [...spec.endpoints, ...(spec.nativeEndpoints ?? [])]) {
        if (e.kind === 'inference' && e.price.unit === 'free') expect(e.id, spec.id).toMatch(/count_tokens|input_tokens|moderations/);
      }
    }
  });
});
