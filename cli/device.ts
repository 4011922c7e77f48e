/**
 * Device fingerprint for `keys bind-device` and `env`: SHA-256 over stable machine identifiers
 * (Linux /etc/machine-id, macOS IOPlatformUUID, Windows MachineGuid) plus platform and
 * architecture. The gateway stores it only as an HMAC under a per-key salt.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { arch, platform } from 'node:os';

export function machineId(): string {
  for (const path of ['/etc/machine-id', '/var/lib/dbus/machine-id']) {
    if (existsSync(path)) {
      const id = readFileSync(path, 'utf8').trim();
      if (id) return id;
    }
  }
  try {
    if (platform() === 'darwin') {
      const out = execFileSync('ioreg', ['-rd1', '-c', 'IOPlatformExpertDevice'], { encoding: 'utf8' });
      const m = /"IOPlatformUUID" = "([^"]+)"/.exec(out);
      if (m) return m[1]!;
    }
    if (platform() === 'win32') {
      const out = execFileSync('reg', ['query', 'HKLM\\SOFTWARE\\Microsoft\\Cryptography', '/v', 'MachineGuid'], { encoding: 'utf8' });
      const m = /MachineGuid\s+REG_SZ\s+(\S+)/.exec(out);
      if (m) return m[1]!;
    }
  } catch {
    // fall through
  }
  throw new Error('no stable machine identifier found on this machine (/etc/machine-id, IOPlatformUUID or MachineGuid)');
}

export function deviceFingerprint(id = machineId()): string {
  return createHash('sha256').update(`securegate-device-v1\n${id}\n${platform()}\n${arch()}`).digest('hex');
}
