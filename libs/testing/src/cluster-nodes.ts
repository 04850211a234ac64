import { Redis } from 'ioredis';

/** One line of `CLUSTER NODES`: a node as the node asked sees it. */
export interface ClusterNodeView {
  id: string;
  port: number;
  flags: readonly string[];
  /** The id of the primary it replicates; undefined for a primary. */
  primaryId: string | undefined;
  /** The slots it serves, as inclusive ranges (a primary's only). */
  slotRanges: readonly (readonly [number, number])[];
}

/**
 * Parses `CLUSTER NODES`: `id ip:port@cport flags primary ping pong epoch link slot…`, where a
 * slot is `N` or `N-M`, and `[N->-id]` / `[N-<-id]` mark a slot moving (not served yet).
 */
export function parseClusterNodes(reply: string): ClusterNodeView[] {
  return reply
    .trim()
    .split('\n')
    .map((line) => {
      const [id = '', address = '', flags = '', primary = '-', ...rest] = line.trim().split(' ');
      const slotRanges = rest
        .slice(4)
        .filter((slot) => !slot.startsWith('['))
        .map((slot): [number, number] => {
          const [first = '', last = first] = slot.split('-');
          return [Number(first), Number(last)];
        });
      return {
        id,
        port: Number(/:(\d+)@/.exec(address)?.[1] ?? Number.NaN),
        flags: flags.split(','),
        primaryId: primary === '-' ? undefined : primary,
        slotRanges,
      };
    });
}

/** Runs one command on the node at `port` over a connection of its own. */
export async function askNode(port: number, ...args: string[]): Promise<unknown> {
  const client = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0 });
  try {
    await client.connect();
    const [command = '', ...rest] = args;
    return await client.call(command, ...rest);
  } finally {
    client.disconnect();
  }
}
