import { spawnSync } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  findRedisServer,
  isLogMessage,
  ReadyMessage,
  spawnService,
  type ServiceProcess,
} from '#processes';
import { appEntry, testModelDir } from '#testing';

/**
 * A private IPv4 network of Linux network namespaces, one per "host", each with its own veth
 * link into a bridge that lives in a namespace of its own (the switch). The test process, in the
 * root namespace, gets one more switch port so it can reach the hosts. The hosts have no default
 * route: they reach each other and the test process, nothing else. Needs root (CAP_NET_ADMIN and
 * CAP_SYS_ADMIN) and iproute2.
 */

/** Why network namespaces cannot be used here, or undefined when they can. */
export function networkNamespacesUnavailable(): string | undefined {
  if (process.platform !== 'linux')
    return `network namespaces are Linux-only (${process.platform})`;
  if (process.getuid?.() !== 0) {
    return 'creating network namespaces needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN)';
  }
  const probe = `djt-probe-${randomBytes(3).toString('hex')}`;
  const steps: string[][] = [
    ['netns', 'add', probe],
    ['-n', probe, 'link', 'add', 'probe-br', 'type', 'bridge'],
    ['-n', probe, 'link', 'add', 'probe-a', 'type', 'veth', 'peer', 'name', 'probe-b'],
  ];
  try {
    for (const args of steps) {
      const result = spawnSync('ip', args, { encoding: 'utf8' });
      if (result.error !== undefined)
        return `iproute2's \`ip\` could not run: ${result.error.message}`;
      if (result.status !== 0) {
        return `\`ip ${args.join(' ')}\` is not permitted here: ${result.stderr.trim()}`;
      }
    }
    return undefined;
  } finally {
    spawnSync('ip', ['netns', 'del', probe]);
  }
}

/** Runs `ip …`; throws with its stderr when it fails. */
function ip(...args: string[]): void {
  const result = spawnSync('ip', args, { encoding: 'utf8' });
  if (result.status !== 0) {
    throw new Error(`ip ${args.join(' ')} failed: ${result.stderr.trim() || String(result.error)}`);
  }
}

/** A /24 in 10.0.0.0/8 that no route of the root namespace covers, as "10.a.b". */
function unusedSubnet(): string {
  for (let attempt = 0; attempt < 50; attempt += 1) {
    const subnet = `10.${randomInt(100, 250)}.${randomInt(1, 250)}`;
    const routes = spawnSync('ip', ['-4', 'route', 'show', 'to', 'match', `${subnet}.1`], {
      encoding: 'utf8',
    }).stdout;
    if (routes.split('\n').every((line) => line === '' || line.startsWith('default'))) {
      return subnet;
    }
  }
  throw new Error('no free 10.x.y.0/24 subnet found for the test network');
}

export interface Host {
  readonly name: string;
  readonly namespace: string;
  readonly address: string;
  /** The host's port on the switch: down = the host's cable is pulled. */
  readonly switchPort: string;
}

export class VirtualNetwork {
  private readonly hosts = new Map<string, Host>();
  private readonly namespaces: string[] = [];
  private readonly rootLink: string;
  /** The test process's own address on the network (its port on the switch). */
  private readonly testAddress: string;
  private readonly switchNamespace: string;

  private constructor(
    private readonly id: string,
    private readonly subnet: string,
  ) {
    this.switchNamespace = `djt-${id}-switch`;
    this.rootLink = `dj${id}t`;
    this.testAddress = `${subnet}.1`;
  }

  /**
   * Builds the network: unique names per run (`djt-<id>-<host>` namespaces, `dj<id>…` links),
   * so concurrent runs never collide. On a failure half-way, what was built is removed.
   */
  static create(hostNames: readonly string[]): VirtualNetwork {
    const network = new VirtualNetwork(randomBytes(3).toString('hex'), unusedSubnet());
    try {
      network.build(hostNames);
    } catch (error) {
      network.destroy();
      throw error;
    }
    return network;
  }

  private build(hostNames: readonly string[]): void {
    const sw = this.switchNamespace;
    this.addNamespace(sw);
    ip('-n', sw, 'link', 'add', 'br0', 'type', 'bridge');
    ip('-n', sw, 'link', 'set', 'br0', 'up');
    hostNames.forEach((name, index) => {
      const namespace = `djt-${this.id}-${name}`;
      this.addNamespace(namespace);
      const hostLink = `dj${this.id}h${index}`;
      const switchPort = `dj${this.id}s${index}`;
      const address = `${this.subnet}.${10 + index}`;
      ip('link', 'add', hostLink, 'type', 'veth', 'peer', 'name', switchPort);
      ip('link', 'set', hostLink, 'netns', namespace);
      ip('link', 'set', switchPort, 'netns', sw);
      ip('-n', sw, 'link', 'set', switchPort, 'master', 'br0', 'up');
      ip('-n', namespace, 'addr', 'add', `${address}/24`, 'dev', hostLink);
      ip('-n', namespace, 'link', 'set', hostLink, 'up');
      ip('-n', namespace, 'link', 'set', 'lo', 'up');
      this.hosts.set(name, { name, namespace, address, switchPort });
    });
    const rootPort = `dj${this.id}r`;
    ip('link', 'add', this.rootLink, 'type', 'veth', 'peer', 'name', rootPort);
    ip('link', 'set', rootPort, 'netns', sw);
    ip('-n', sw, 'link', 'set', rootPort, 'master', 'br0', 'up');
    ip('addr', 'add', `${this.testAddress}/24`, 'dev', this.rootLink);
    ip('link', 'set', this.rootLink, 'up');
  }

  private addNamespace(namespace: string): void {
    ip('netns', 'add', namespace);
    this.namespaces.push(namespace);
  }

  host(name: string): Host {
    const host = this.hosts.get(name);
    if (host === undefined) throw new Error(`no host '${name}' in the test network`);
    return host;
  }

  /** Pulls the host's cable at the switch: it stays up, but nothing reaches it or leaves it. */
  disconnect(name: string): void {
    ip('-n', this.switchNamespace, 'link', 'set', this.host(name).switchPort, 'down');
  }

  reconnect(name: string): void {
    ip('-n', this.switchNamespace, 'link', 'set', this.host(name).switchPort, 'up');
  }

  /**
   * Removes every namespace and link this network made. Safe to call more than once and after a
   * partial build; processes still running in a namespace must be stopped first.
   */
  destroy(): void {
    // Deleting a namespace destroys the veth ends inside it, and with them their peers.
    for (const namespace of this.namespaces.splice(0).reverse()) {
      spawnSync('ip', ['netns', 'del', namespace]);
    }
    spawnSync('ip', ['link', 'del', this.rootLink]);
  }

  /** Namespaces and links of this network still present (for the cleanup check). */
  leftovers(): string[] {
    const namespaces = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout;
    const links = spawnSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' }).stdout;
    return [
      ...namespaces.split('\n').filter((line) => line.startsWith(`djt-${this.id}-`)),
      ...links.split('\n').filter((line) => line.includes(`dj${this.id}`)),
    ];
  }
}

/** Shows child output when a test run sets DEBUG_CHILDREN=1. */
function forwardWhenDebugging(name: string) {
  return (line: string): void => {
    if (process.env.DEBUG_CHILDREN === '1') process.stderr.write(`[${name}] ${line}\n`);
  };
}

/** `ip netns exec` replaces itself with the command, so the pid is the command's own. */
async function spawnOnHost(
  host: Host,
  name: string,
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
  isReady: (line: string) => boolean,
): Promise<ServiceProcess> {
  return spawnService(name, 'ip', ['netns', 'exec', host.namespace, ...argv], {
    env,
    isReady,
    onLine: forwardWhenDebugging(name),
  });
}

/** Redis port inside its own namespace, where nothing else listens. @defaultValue 6379 */
const REDIS_PORT = 6379;

/**
 * A redis-server on `host`, listening on the host's network address only (not loopback) and,
 * as on a real network, with a password (Redis refuses remote clients without one).
 */
export async function startRedisOnHost(
  host: Host,
): Promise<{ url: string; service: ServiceProcess }> {
  const binary = findRedisServer();
  if (binary === undefined)
    throw new Error('redis-server is missing (the global setup installs it)');
  const dir = mkdtempSync(join(tmpdir(), 'dijiang-netns-redis-'));
  const password = randomBytes(12).toString('hex');
  const service = await spawnOnHost(
    host,
    `redis@${host.name}`,
    [
      binary,
      '--bind',
      host.address,
      '--port',
      String(REDIS_PORT),
      '--dir',
      dir,
      '--save',
      '',
      '--appendonly',
      'no',
      '--maxmemory-policy',
      'noeviction',
      '--requirepass',
      password,
    ],
    process.env,
    (line) => line.includes('Ready to accept connections'),
  );
  return { url: `redis://:${password}@${host.address}:${REDIS_PORT}`, service };
}

/** Gateway HTTP port inside its namespace. @defaultValue 8080 */
const GATEWAY_PORT = 8080;

/** A gateway on `host`, listening on the host's address. */
export async function startGatewayOnHost(
  host: Host,
  redisUrl: string,
  env: Record<string, string>,
): Promise<{ url: string; service: ServiceProcess }> {
  const service = await spawnOnHost(
    host,
    `gateway@${host.name}`,
    [process.execPath, appEntry('gateway')],
    {
      ...process.env,
      LOG_LEVEL: 'info',
      ...env,
      REDIS_URL: redisUrl,
      HOST: host.address,
      PORT: String(GATEWAY_PORT),
    },
    (line) => isLogMessage(line, ReadyMessage.Gateway),
  );
  return { url: `http://${host.address}:${GATEWAY_PORT}`, service };
}

/** A worker on `host` serving the test model; ready once registered. */
export async function startWorkerOnHost(
  host: Host,
  redisUrl: string,
  env: Record<string, string>,
): Promise<ServiceProcess> {
  return spawnOnHost(
    host,
    `worker@${host.name}`,
    [process.execPath, appEntry('worker')],
    {
      ...process.env,
      LOG_LEVEL: 'info',
      MODEL_DIR: testModelDir(),
      ENGINE_THREADS: '1',
      ...env,
      REDIS_URL: redisUrl,
    },
    (line) => isLogMessage(line, ReadyMessage.Worker),
  );
}
