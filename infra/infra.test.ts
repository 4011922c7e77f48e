/**
 * What can be validated here of the deployment files (no Docker engine, no Nitro hardware, no
 * terraform): YAML parses with the expected keys, shell scripts parse (`bash -n` / `sh -n`),
 * systemd units have their sections and an ExecStart, and the release tooling reads real
 * nitro-cli output.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { measurementsFrom } from './enclave/release.ts';
import { clientIp, TrustedProxies } from '../host/client-ip.ts';

const file = (p: string) => readFileSync(new URL(p, import.meta.url), 'utf8');

describe('deployment files', () => {
  it('ships a vsock-proxy allow-list of host:443 entries only', () => {
    const doc = parse(file('./vsock/vsock-proxy.yaml')) as { allowlist: Array<{ address: string; port: number }> };
    expect(doc.allowlist.length).toBeGreaterThan(3);
    for (const e of doc.allowlist) {
      expect(e.address).toMatch(/^[a-z0-9.-]+$/);
      expect(e.port).toBe(443);
    }
    expect(doc.allowlist.map((e) => e.address)).toEqual(expect.arrayContaining(['api.openai.com', 'api.anthropic.com']));
  });

  it('ships an allocator config with memory and CPUs', () => {
    expect(parse(file('./vsock/allocator.yaml'))).toEqual({ memory_mib: 2048, cpu_count: 2 });
  });

  it('has shell scripts that parse', () => {
    execFileSync('bash', ['-n', new URL('./enclave/build.sh', import.meta.url).pathname]);
    execFileSync('sh', ['-n', new URL('./enclave/enclave-init.sh', import.meta.url).pathname]);
  });

  const shellcheck = ['/usr/bin/shellcheck', '/usr/local/bin/shellcheck'].find((p) => existsSync(p));
  if (!shellcheck && process.env.CI === 'true') throw new Error('shellcheck is required under CI=true (.ci/run installs Debian\'s shellcheck)');
  it.skipIf(!shellcheck)(`passes shellcheck on every shell script${shellcheck ? '' : ' [skipped: shellcheck not installed]'}`, () => {
    const scripts = ['./enclave/build.sh', './enclave/enclave-init.sh', '../.ci/run'].map((p) => new URL(p, import.meta.url).pathname);
    // Throws (with shellcheck's findings) on any warning, info or style note.
    execFileSync(shellcheck!, ['-S', 'style', ...scripts], { encoding: 'utf8' });
  });

  it('has systemd units with the three sections and an ExecStart', () => {
    const dir = new URL('./systemd/', import.meta.url);
    const units = readdirSync(dir);
    expect(units.length).toBeGreaterThanOrEqual(5);
    for (const unit of units) {
      const text = readFileSync(new URL(unit, dir), 'utf8');
      for (const section of ['[Unit]', '[Service]', '[Install]']) expect(text, unit).toContain(section);
      expect(text, unit).toMatch(/^ExecStart=\//m);
    }
  });

  it('builds both images FROM scratch on a root filesystem whose every input is pinned by SHA-256', () => {
    for (const dockerfile of ['./enclave/Dockerfile', '../infra/shareholder/Dockerfile']) {
      const text = file(dockerfile);
      expect(text.match(/^FROM .*$/gm), dockerfile).toEqual(['FROM scratch']);
      expect(text, dockerfile).not.toMatch(/^RUN /m);
    }
    const lock = JSON.parse(file('./enclave/rootfs.lock')) as { packages: Array<{ name: string; version: string; sha256: string }>; node: { version: string; sha256: string } };
    expect(lock.packages.map((p) => p.name)).toEqual(expect.arrayContaining(['dash', 'socat', 'libc6', 'libstdc++6', 'libssl3']));
    for (const p of lock.packages) expect(p.sha256, p.name).toMatch(/^[0-9a-f]{64}$/);
    expect(lock.node).toMatchObject({ version: `v${process.versions.node}`, sha256: expect.stringMatching(/^[0-9a-f]{64}$/) });
  });

  it('ships Kubernetes manifests that parse, with the Nitro Enclaves device and probes', () => {
    type Doc = { kind: string; spec: { template: { spec: { containers: Array<{ name: string; resources: { limits: Record<string, string> }; readinessProbe: { httpGet: { path: string } } }> } } } };
    const docs = parseAllDocuments(file("./kubernetes/gateway.yaml")).map((d) => d.toJSON() as Doc);
    expect(docs.map((d) => d.kind)).toEqual(['ConfigMap', 'Deployment', 'Service']);
    const pod = docs[1]!.spec.template.spec;
    const enclave = pod.containers.find((c) => c.name === "enclave")!;
    expect(enclave.resources.limits['aws.ec2.nitro/nitro_enclaves']).toBe('1');
    const host = pod.containers.find((c) => c.name === "host")!;
    expect(host.readinessProbe.httpGet.path).toBe('/readyz');
    const shareholder = parseAllDocuments(file("./kubernetes/shareholder.yaml")).map((d) => d.toJSON() as Doc);
    expect(shareholder.map((d) => d.kind)).toEqual(['PersistentVolumeClaim', 'Deployment', 'Service']);
  });

  // The shipped host runs behind an AWS ALB (docs/deploy.md): its trusted-proxy configuration must
  // read only X-Forwarded-For, and the service manager must wait longer than the host's own
  // shutdown bound (--shutdown-grace + 5 s) before it kills it.
  const ALB_PEER = '10.0.3.17';
  const THIEF = '203.0.113.66';
  const VICTIM = '81.2.69.142';
  const behindAlb = (trusted: TrustedProxies) => clientIp(ALB_PEER, { 'x-forwarded-for': THIEF, 'cf-connecting-ip': VICTIM, forwarded: `for=${VICTIM}` }, trusted);

  it('runs the systemd host behind the ALB believing only X-Forwarded-For, and waits out its shutdown', () => {
    const unit = file('./systemd/securegate-host.service');
    const exec = /^ExecStart=(.*)$/m.exec(unit)![1]!.split(/\s+/);
    const proxies = exec.flatMap((a, i) => (a === '--trusted-proxy' ? [exec[i + 1]!] : []));
    expect(proxies.length).toBeGreaterThan(0);
    expect(behindAlb(new TrustedProxies(proxies))).toBe(THIEF);
    const grace = Number(exec[exec.indexOf('--shutdown-grace') + 1]);
    expect(Number(/^TimeoutStopSec=(\d+)$/m.exec(unit)![1])).toBeGreaterThan(grace + 5);
  });

  it('runs the Kubernetes host behind the ALB believing only X-Forwarded-For, and waits out its shutdown', () => {
    type Pod = { terminationGracePeriodSeconds: number; containers: Array<{ name: string; command: string[] }> };
    const pod = (parseAllDocuments(file('./kubernetes/gateway.yaml'))[1]!.toJSON() as { spec: { template: { spec: Pod } } }).spec.template.spec;
    const args = pod.containers.find((c) => c.name === 'host')!.command;
    const proxies = args.flatMap((a) => (a.startsWith('--trusted-proxy=') ? [a.slice('--trusted-proxy='.length)] : []));
    expect(proxies.length).toBeGreaterThan(0);
    expect(behindAlb(new TrustedProxies(proxies))).toBe(THIEF);
    const grace = Number(args.find((a) => a.startsWith('--shutdown-grace='))!.split('=')[1]);
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(grace + 5);
  });

  it('ships a Terraform module whose blocks balance and that enables enclaves', () => {
    const main = file('./terraform/main.tf');
    expect(main).toMatch(/enclave_options\s*\{\s*enabled\s*=\s*true/);
    for (const f of ['./terraform/main.tf', './terraform/variables.tf', './terraform/outputs.tf']) {
      const text = file(f).replace(/#.*$/gm, '').replace(/"(?:[^"\\]|\\.)*"/g, '""');
      expect((text.match(/\{/g) ?? []).length, f).toBe((text.match(/\}/g) ?? []).length);
    }
  });

  it('reads PCRs from nitro-cli build-enclave output', () => {
    const out = JSON.stringify({
      Measurements: { HashAlgorithm: 'Sha384 { ... }', PCR0: 'A'.repeat(96), PCR1: 'b'.repeat(96), PCR2: 'c'.repeat(96) },
    });
    expect(measurementsFrom(out)).toEqual({ '0': 'a'.repeat(96), '1': 'b'.repeat(96), '2': 'c'.repeat(96) });
    expect(() => measurementsFrom('{}')).toThrow(/PCR0/);
  });
});
