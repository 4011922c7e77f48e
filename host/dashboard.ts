/**
 * Serves the built dashboard (dashboard/dist, a Vite app) at /dashboard/ with a strict Content
 * Security Policy: scripts only from this origin, and network access only to this origin and the
 * shareholders the page enrolls to. The page is served by the host, so a hostile host could serve
 * a hostile page: the dashboard says so, and points to the CLI for enrollment that does not trust
 * the host.
 */
import { existsSync } from 'node:fs';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance } from 'fastify';

export interface EnrollmentConfig {
  threshold: number;
  shareholders: Array<{ id: string; url: string; publicKey: string }>;
  pcrPolicy: { allow: Array<Record<string, string>>; allowDebug?: boolean };
}

export async function registerDashboard(app: FastifyInstance, options: { dir: string | undefined; enrollment: EnrollmentConfig | undefined; dev: boolean }): Promise<void> {
  const shareholderOrigins = (options.enrollment?.shareholders ?? []).map((s) => new URL(s.url).origin);
  const csp = [
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    `connect-src 'self' ${shareholderOrigins.join(' ')}`.trim(),
    "frame-ancestors 'none'",
    "base-uri 'none'",
    "form-action 'self'",
  ].join('; ');
  app.get('/dashboard', async (_req, reply) => reply.redirect('/dashboard/'));
  if (!options.dir || !existsSync(options.dir)) {
    app.get('/dashboard/*', async (_req, reply) =>
      reply.status(503).type('text/plain').send('The dashboard is not built on this server: run `npm run build:dashboard` (npm start and npm test do it for you).\n'),
    );
    return;
  }
  await app.register(async (scope) => {
    scope.addHook('onSend', async (_req, reply) => {
      reply.header('content-security-policy', csp);
      reply.header('x-content-type-options', 'nosniff');
      reply.header('referrer-policy', 'no-referrer');
      reply.header('x-frame-options', 'DENY');
    });
    await scope.register(fastifyStatic, { root: options.dir!, prefix: '/dashboard/', index: 'index.html', wildcard: false });
  });
}
