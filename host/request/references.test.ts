import { describe, expect, it } from 'vitest';
import { MODEL_UNKNOWN } from './classified.ts';
import { referencedScopes, toolModels } from './references.ts';

describe('stored data a body names by id', () => {
  it('needs files:read for a file part, stored:read for earlier responses, prompts and conversations', () => {
    expect(referencedScopes({ model: 'm', messages: [{ role: 'user', content: [{ type: 'file', file: { file_id: 'file-1' } }] }] })).toEqual(['files:read']);
    expect(referencedScopes({ model: 'm', previous_response_id: 'resp_1' })).toEqual(['stored:read']);
    expect(referencedScopes({ model: 'm', prompt: { id: 'pmpt_1' } })).toEqual(['stored:read']);
    expect(referencedScopes({ model: 'm', input: [{ type: 'item_reference', id: 'msg_1' }] })).toEqual(['stored:read']);
    expect(referencedScopes({ model: 'm', tools: [{ type: 'file_search', vector_store_ids: ['vs_1'] }] })).toEqual(['vector_stores:read']);
    expect(referencedScopes({ contents: [{ parts: [{ fileData: { fileUri: 'https://generativelanguage.googleapis.com/v1beta/files/x' } }] }] })).toEqual(['files:read']);
  });

  it('does not mistake a schema property or metadata for a reference', () => {
    const tools = [{ type: 'function', function: { name: 'f', parameters: { type: 'object', properties: { file_id: { type: 'string' } } } } }];
    expect(referencedScopes({ model: 'm', tools, metadata: { file_id: 'x' }, messages: [{ role: 'user', content: 'file_id' }] })).toEqual([]);
  });
});

describe('models a body runs through its tools', () => {
  it('lists a tool model, and an unnamed image generation model as unknown', () => {
    expect(toolModels({ tools: [{ type: 'image_generation', model: 'gpt-image-1' }, { type: 'function', function: { name: 'f' } }] })).toEqual(['gpt-image-1']);
    expect(toolModels({ tools: [{ type: 'image_generation' }] })).toEqual([MODEL_UNKNOWN]);
    expect(toolModels({ tools: [{ type: 'image_generation', model: 7 }] })).toEqual([MODEL_UNKNOWN]);
    expect(toolModels({ model: 'x' })).toEqual([]);
  });
});
