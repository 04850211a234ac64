import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { z } from 'zod';
import type { GatewayEnv } from '#config';

/** Who a request acts for. Tenants never see each other's resources. */
export interface Principal {
  tenant: string;
  admin: boolean;
}

interface KeyEntry extends Principal {
  /** SHA-256 of the key: fixed length, so comparisons take the same time for every key. */
  digest: Buffer;
}

const TENANT = /^[A-Za-z0-9._-]{1,64}$/;

const keysFileSchema = z.array(
  z.strictObject({
    key: z.string().min(8, 'keys have at least 8 characters'),
    tenant: z.string().regex(TENANT, '1-64 letters, digits, ".", "_" or "-"').optional(),
    admin: z.boolean().default(false),
  }),
);

const digestOf = (key: string): Buffer => createHash('sha256').update(key, 'utf8').digest();

/** A bare key's tenant: stable, and reveals nothing usable about the key. */
const derivedTenant = (key: string): string => `key-${digestOf(key).toString('hex').slice(0, 12)}`;

function parseKeyList(variable: string, list: string, admin: boolean): KeyEntry[] {
  return list
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== '')
    .map((item) => {
      const separator = item.indexOf(':');
      const tenant = separator === -1 ? undefined : item.slice(0, separator);
      const key = separator === -1 ? item : item.slice(separator + 1);
      if (tenant !== undefined && !TENANT.test(tenant)) {
        throw new Error(
          `${variable}: tenant "${tenant}" must be 1-64 letters, digits, ".", "_" or "-" ` +
            '(entries are `tenant:key` or a bare `key`)',
        );
      }
      if (key.length < 8) {
        throw new Error(`${variable}: every key needs at least 8 characters`);
      }
      return { tenant: tenant ?? derivedTenant(key), admin, digest: digestOf(key) };
    });
}

/**
 * The configured API keys (API_KEYS, ADMIN_API_KEYS, API_KEYS_FILE). A key is checked against
 * every configured key in constant time, without an early exit, so neither a key's content nor
 * its position in the list shows in the response time.
 */
export class ApiKeys {
  private constructor(
    private readonly entries: readonly KeyEntry[],
    readonly disabled: boolean,
  ) {}

  static fromEnv(env: GatewayEnv): ApiKeys {
    if (env.AUTH_DISABLED) {
      if (!isLoopback(env.HOST)) {
        throw new Error(
          `AUTH_DISABLED=true is refused on HOST=${env.HOST}: without keys anyone who reaches the ` +
            'port could use the cluster. Listen on a loopback address (HOST=127.0.0.1) or set ' +
            'API_KEYS.',
        );
      }
      return new ApiKeys([], true);
    }
    const entries = [
      ...parseKeyList('API_KEYS', env.API_KEYS ?? '', false),
      ...parseKeyList('ADMIN_API_KEYS', env.ADMIN_API_KEYS ?? '', true),
    ];
    if (env.API_KEYS_FILE !== undefined) entries.push(...readKeysFile(env.API_KEYS_FILE));
    return new ApiKeys(entries, false);
  }

  get count(): number {
    return this.entries.length;
  }

  /** The principal of `presented`, or undefined for a wrong key. */
  verify(presented: string): Principal | undefined {
    if (this.disabled) return { tenant: 'local', admin: true };
    const digest = digestOf(presented);
    let match: KeyEntry | undefined;
    for (const entry of this.entries) {
      if (timingSafeEqual(entry.digest, digest) && match === undefined) match = entry;
    }
    return match === undefined ? undefined : { tenant: match.tenant, admin: match.admin };
  }
}

function readKeysFile(path: string): KeyEntry[] {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(`API_KEYS_FILE: cannot read ${path} as JSON (${reason})`, { cause: error });
  }
  const parsed = keysFileSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(
      `API_KEYS_FILE ${path}: expected [{"key", "tenant"?, "admin"?}, …]; at ` +
        `${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'invalid'}`,
    );
  }
  return parsed.data.map((item) => ({
    tenant: item.tenant ?? derivedTenant(item.key),
    admin: item.admin,
    digest: digestOf(item.key),
  }));
}

export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return host === '::1' || host === '[::1]';
}
