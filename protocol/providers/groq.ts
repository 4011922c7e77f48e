import { OPENAI_COMPATIBLE as O, type ProviderSpec } from './types.ts';

/** Groq: OpenAI-compatible under `/openai/v1`. */
export const groq: ProviderSpec = {
  id: 'groq',
  name: 'Groq',
  origin: 'https://api.groq.com',
  authScheme: 'bearer',
  upstreamBase: '/openai/v1',
  endpoints: [...O.chat, ...O.models, ...O.audioTranscriptions, ...O.audioSpeech, ...O.responses],
};
