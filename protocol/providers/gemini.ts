import { GEMINI_NATIVE_ENDPOINTS } from './endpoints.ts';
import { OPENAI_COMPATIBLE as O, type ProviderSpec } from './types.ts';

/** Google Gemini through its OpenAI-compatible endpoint (`/v1beta/openai`). */
export const gemini: ProviderSpec = {
  id: 'gemini',
  name: 'Google Gemini (OpenAI-compatible)',
  origin: 'https://generativelanguage.googleapis.com',
  authScheme: 'bearer',
  upstreamBase: '/v1beta/openai',
  endpoints: [...O.chat, ...O.embeddings, ...O.models, ...O.imagesGenerations, ...O.audioSpeech],
};

/**
 * Google Gemini's native API (`x-goog-api-key`): generateContent, streamGenerateContent,
 * countTokens, embedContent on `/v1beta/models/{model}` — the paths the Google GenAI SDKs call.
 */
export const geminiNative: ProviderSpec = {
  id: 'gemini-native',
  name: 'Google Gemini (native)',
  origin: 'https://generativelanguage.googleapis.com',
  authScheme: 'header:x-goog-api-key',
  upstreamBase: '/v1beta',
  endpoints: [],
  nativeEndpoints: GEMINI_NATIVE_ENDPOINTS,
};
