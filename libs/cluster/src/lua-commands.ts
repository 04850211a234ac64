import type { RedisClient } from './redis.js';

/**
 * Lua scripts run as ioredis custom commands, as BullMQ runs its own: a connection sends a
 * script's body once (EVAL) and afterwards only its SHA1 (EVALSHA); when Redis no longer knows
 * the script (restarted, SCRIPT FLUSH) ioredis sends the body again by itself. Sending the body
 * with every call costs bandwidth and a SHA1 over the body on the server each time.
 */
export interface LuaCommand {
  lua: string;
  /** Keys the script takes; omitted when it varies, then the caller passes the count first. */
  numberOfKeys?: number;
}

/** The commands already defined on each client: name -> script body. */
const definedCommands = new WeakMap<RedisClient, Map<string, string>>();

/**
 * `redis` with `commands` defined on it, each once per client however often this is called
 * (every store built on a shared client calls it). `Commands` types the methods that
 * defineCommand adds at run time, which ioredis cannot type; command names must be unique across
 * the code base, since they are methods of the one client.
 */
export function withLuaCommands<Commands>(
  redis: RedisClient,
  commands: Readonly<Record<keyof Commands & string, LuaCommand>>,
): RedisClient & Commands {
  let defined = definedCommands.get(redis);
  if (defined === undefined) {
    defined = new Map();
    definedCommands.set(redis, defined);
  }
  for (const [name, command] of Object.entries<LuaCommand>(commands)) {
    const body = defined.get(name);
    if (body === command.lua) continue;
    // Two scripts under one name would silently run whichever was defined first.
    if (body !== undefined) throw new Error(`Lua command '${name}' is defined twice, differently`);
    redis.defineCommand(name, command);
    defined.set(name, command.lua);
  }
  return redis as RedisClient & Commands;
}
