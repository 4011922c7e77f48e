/**
 * Stage 3 of the request path: admit. Applies the locks (host/locks.ts, pure) to the classified
 * request, then the abuse velocity check and the first-use bindings (IP, device, city), which
 * have side effects. A binding made by a request is undone if that request does not succeed, so
 * the first *successful* request is the one a key binds to.
 */
import { randomBytes } from 'node:crypto';
import { HostError } from '../errors.ts';
import type { Location } from '../geo.ts';
import { checkRequestLocks, cityLabel, deviceHash, deviceMatches, type LockRefusal } from '../locks.ts';
import type { ConnectionRecord, HostStore, KeyRecord } from '../store.ts';
import type { VelocityTracker } from '../velocity.ts';
import type { ClassifiedRequest } from './classified.ts';

export interface AdmitFacts {
  now: number;
  clientIp: string;
  location: Location | null;
  deviceFingerprint: string | undefined;
  /** The model after alias resolution (see ClassifiedRequest.requestedModel). */
  model: ClassifiedRequest['requestedModel'];
  allowUnknownLocation: boolean;
  scope: string;
  extraScopes: readonly string[];
  toolModels: ClassifiedRequest['toolModels'];
  /** Input size estimate for the velocity check (bytes of a JSON body). */
  jsonBytes: number;
}

export interface AdmitDeps {
  store: HostStore;
  velocity: VelocityTracker;
  /** Records a lock event (and alert); fire and forget. */
  event(key: KeyRecord, type: string, detail: Record<string, unknown>): void;
}

/** A refusal that carries whether it should raise an event (suspensions are announced once, when they begin). */
export class LockRefused extends Error {
  readonly refusal: LockRefusal;
  readonly announce: Record<string, unknown> | false;
  constructor(refusal: LockRefusal, announce: Record<string, unknown> | false = {}) {
    super(refusal.message);
    this.refusal = refusal;
    this.announce = announce;
  }
}

/** What admission bound on this request, to be undone if the request fails. */
export interface Bindings {
  ip: { ip: string; at: number } | null;
}

export async function admit(deps: AdmitDeps, keyIn: KeyRecord, connection: ConnectionRecord, facts: AdmitFacts): Promise<{ key: KeyRecord; bindings: Bindings }> {
  let key = keyIn;
  const refusal = checkRequestLocks(key, connection, facts);
  if (refusal) throw new LockRefused(refusal);

  const model = typeof facts.model === 'string' ? facts.model : undefined;
  const abuse = deps.velocity.record(key.id, facts.clientIp, facts.now, model, Math.ceil(facts.jsonBytes / 4));
  if (abuse) {
    const until = facts.now + deps.velocity.config.suspendForMs;
    await deps.store.updateKey(key.id, { suspendedUntil: until });
    throw new LockRefused(
      { code: 'key_suspended', message: `This SecureGate key is suspended after unusual activity (${abuse}).`, retryAfter: Math.ceil((until - facts.now) / 1000) },
      { reason: abuse, until },
    );
  }

  // A first use that cannot bind what the key auto-locks to is refused before anything binds.
  const device = facts.deviceFingerprint;
  const fingerprint = device !== undefined && device.length >= 16 && device.length <= 256 ? device : undefined;
  const label = cityLabel(facts.location);
  if (key.autoLock.includes('device') && key.deviceHash === null && !fingerprint) {
    throw new LockRefused({ code: 'device_mismatch', message: 'This key locks itself to a device on first use: send x-device-fingerprint (`securegate env --device`).' });
  }
  if (key.autoLock.includes('city') && key.boundCity === null && !label) {
    throw new LockRefused({ code: 'city_not_allowed', message: 'This key locks itself to a city on first use, and the location of this address is unknown.' });
  }
  const bindings: Bindings = { ip: null };
  if (key.boundIp === null) {
    // Of concurrent first requests from different IPs exactly one binds; the others are refused.
    if (await deps.store.bindIpIfUnbound(key.id, facts.clientIp, facts.now)) {
      bindings.ip = { ip: facts.clientIp, at: facts.now };
    } else {
      key = (await deps.store.getKey(key.id))!;
      if (key.boundIp !== facts.clientIp) throw new LockRefused({ code: 'ip_mismatch', message: 'This SecureGate key is locked to another IP address.' });
    }
  }
  // Device and city auto-locks bind after the IP, so one request's identity wins whole.
  if (key.autoLock.includes('device') && key.deviceHash === null && fingerprint) {
    const salt = randomBytes(16).toString('hex');
    if (await deps.store.bindDeviceIfUnbound(key.id, salt, deviceHash(salt, fingerprint), facts.now)) deps.event(key, 'device_bound', { clientIp: facts.clientIp });
    else {
      key = (await deps.store.getKey(key.id))!;
      if (!deviceMatches(key, fingerprint)) throw new LockRefused({ code: 'device_mismatch', message: 'This SecureGate key is bound to another device.' });
    }
  }
  if (key.autoLock.includes('city') && key.boundCity === null && label) {
    if (await deps.store.bindCityIfUnbound(key.id, label, facts.now)) deps.event(key, 'city_bound', { clientIp: facts.clientIp, city: label });
    else {
      key = (await deps.store.getKey(key.id))!;
      if (key.boundCity !== label) throw new LockRefused({ code: 'city_not_allowed', message: `This key locked itself to ${key.boundCity} on first use.` });
    }
  }
  return { key, bindings };
}

/** Confirms (announces) or undoes the IP binding a request made, once its outcome is known. */
export async function settleBindings(deps: AdmitDeps, key: KeyRecord, bindings: Bindings, succeeded: boolean): Promise<void> {
  if (!bindings.ip) return;
  if (succeeded) {
    deps.event(key, 'ip_bound', { clientIp: bindings.ip.ip });
    return;
  }
  await deps.store.unbindIpIfBoundAt(key.id, bindings.ip.ip, bindings.ip.at);
}

export function asHostError(e: LockRefused): HostError {
  return new HostError(e.refusal.code, e.refusal.message, e.refusal.retryAfter);
}
