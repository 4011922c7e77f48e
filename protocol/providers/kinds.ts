/** Operation kinds and access levels of provider endpoints; key scopes are `kind:access` atoms. */
export const ENDPOINT_KINDS = ['inference', 'models', 'stored', 'files', 'uploads', 'batches', 'fine_tuning', 'vector_stores', 'any'] as const;
export type EndpointKind = (typeof ENDPOINT_KINDS)[number];
export const ACCESS = ['read', 'write', 'delete'] as const;
export type Access = (typeof ACCESS)[number];
