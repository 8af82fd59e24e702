/**
 * The data and HTTP libraries whose coverage request-budget checks (library-coverage.ts): the
 * ones it instruments, by the name of its instrumentation, and common ones nothing instruments.
 * Supported versions are not here: they are read from the instrumentations' own module
 * definitions, so they cannot drift from what is patched.
 */

/** What a library's requests are missing from when it is not instrumented. */
export type LibraryWork = 'queries' | 'commands' | 'routes' | 'calls' | 'jobs';

export interface KnownLibrary {
  /** The package, as the app requires it. */
  readonly name: string;
  /** Packages that are one library to the user share a family; each problem is told once per family. */
  readonly family?: string;
  /** request-budget's instrumentation for it (an INSTRUMENTATION_NAMES entry); none when it has none. */
  readonly instrumentation?: string;
  readonly work: LibraryWork;
  /** Covered through this package (loaded by it) when no definition of its own name covers it. */
  readonly wraps?: string;
  /**
   * Its instrumentation subscribes to a diagnostics channel: it sees the library whenever it was
   * loaded, and may declare no module definitions at all.
   */
  readonly throughChannel?: boolean;
}

export const KNOWN_LIBRARIES: readonly KnownLibrary[] = [
  { name: 'pg', instrumentation: 'pg', work: 'queries' },
  { name: 'mysql2', instrumentation: 'mysql2', work: 'queries' },
  // Also mongoose's queries: they are the mongodb driver's, judged when mongoose loads it.
  { name: 'mongodb', instrumentation: 'mongodb', work: 'queries' },
  { name: 'ioredis', instrumentation: 'ioredis', work: 'commands' },
  // node-redis 4+: `redis` re-exports `@redis/client`, which is what instrumentation-redis patches.
  { name: 'redis', family: 'redis', instrumentation: 'redis', work: 'commands', wraps: '@redis/client' },
  { name: '@redis/client', family: 'redis', instrumentation: 'redis', work: 'commands' },
  // postgres.js: its instrumentation reads the `postgres:query` channel, however it was loaded.
  { name: 'postgres', instrumentation: 'postgres', work: 'queries', throughChannel: true },
  { name: 'express', instrumentation: 'express', work: 'routes' },
  { name: 'koa', instrumentation: 'koa', work: 'routes' },
  { name: 'fastify', instrumentation: 'fastify', work: 'routes', throughChannel: true },
  { name: 'undici', instrumentation: 'undici', work: 'calls', throughChannel: true },
  // Queues: each processed job a root of its own (jobs/).
  { name: 'bullmq', instrumentation: 'bullmq', work: 'jobs' },
  // RabbitMQ consumers and publishers (instrumentation-amqplib and jobs/amqplib-jobs.ts).
  { name: 'amqplib', instrumentation: 'amqplib', work: 'jobs' },
  // An ES module: seen under --import, and under --require when the app require()s it (Node 22.12+).
  { name: 'pg-boss', instrumentation: 'pg-boss', work: 'jobs' },
  // Nothing request-budget installs instruments these.
  { name: 'better-sqlite3', work: 'queries' },
  { name: 'sqlite3', work: 'queries' },
  { name: 'mysql', work: 'queries' },
  { name: 'mariadb', work: 'queries' },
  { name: 'tedious', work: 'queries' },
  { name: 'oracledb', work: 'queries' },
  { name: 'cassandra-driver', work: 'queries' },
  { name: 'memcached', work: 'commands' },
];
