import type { ProviderSpec } from './types.ts';

/** OpenAI: every endpoint a project key can call; admin and organisation endpoints never. */
export const openai: ProviderSpec = {
  id: 'openai',
  name: 'OpenAI',
  origin: 'https://api.openai.com',
  authScheme: 'bearer',
  upstreamBase: '/v1',
  errorShape: 'openai',
  priceProvider: 'openai',
  allowedPaths: [
    /^\/chat\/completions(\/[\w-]+(\/messages)?)?$/,
    /^\/completions$/,
    /^\/embeddings$/,
    /^\/responses(\/[\w-]+(\/(cancel|input_items))?)?$/,
    /^\/responses\/input_tokens$/,
    /^\/models(\/[\w.:/-]+)?$/,
    /^\/moderations$/,
    /^\/audio\/(transcriptions|translations|speech)$/,
    /^\/images\/(generations|edits|variations)$/,
    /^\/files(\/[\w-]+(\/content)?)?$/,
    /^\/uploads(\/[\w-]+(\/(parts|complete|cancel))?)?$/,
    /^\/batches(\/[\w-]+(\/cancel)?)?$/,
    /^\/vector_stores(\/[\w-]+(\/(files|file_batches|search)(\/[\w-]+(\/(content|cancel|files))?)?)?)?$/,
    /^\/fine_tuning\/jobs(\/[\w-]+(\/(cancel|events|checkpoints|pause|resume))?)?$/,
  ],
};
