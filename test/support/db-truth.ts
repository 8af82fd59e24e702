/**
 * Ground truth from the database servers themselves, to hold each cost record against:
 * - PostgreSQL: `pg_stat_statements` (preloaded by .ci/run), filtered by a login role of the
 *   test's own, so test files running side by side never see each other's statements;
 * - MariaDB: the general log written to the `mysql.general_log` table, filtered by a user of
 *   the test's own;
 * - Redis: `MONITOR`, filtered by a database index of the test's own.
 * Each gives a snapshot; the difference between two snapshots is what the server executed in
 * between. The app under test connects as that role, user or database index.
 */
import net from 'node:net';
import pg from 'pg';
import mysql from 'mysql2/promise';

const PG_ADMIN_URL = 'postgres://postgres@127.0.0.1:5432/test';
const MARIADB_ADMIN = { host: '127.0.0.1', port: 3306, user: 'root', database: 'test' } as const;

/** What the server executed between two snapshots. */
export interface ServerDelta {
  /** Statements executed (PostgreSQL: calls; MariaDB: Query and Execute commands; Redis: commands). */
  readonly statements: number;
  /** Rows, where the server counts them (PostgreSQL: rows returned or affected). */
  readonly rows: number;
  /** Executions per statement text as the server normalised or logged it. */
  readonly byStatement: ReadonlyMap<string, { calls: number; rows: number }>;
}

function deltaOf(before: Map<string, { calls: number; rows: number }>, after: Map<string, { calls: number; rows: number }>): ServerDelta {
  const byStatement = new Map<string, { calls: number; rows: number }>();
  let statements = 0;
  let rows = 0;
  for (const [text, now] of after) {
    const was = before.get(text) ?? { calls: 0, rows: 0 };
    const calls = now.calls - was.calls;
    const r = now.rows - was.rows;
    if (calls === 0 && r === 0) continue;
    byStatement.set(text, { calls, rows: r });
    statements += calls;
    rows += r;
  }
  return { statements, rows, byStatement };
}

/** PostgreSQL statements of one login role, counted by pg_stat_statements. */
export interface PgTruth {
  /** Connection string the app uses: this role, database `test`. */
  readonly url: string;
  readonly role: string;
  snapshot(): Promise<Map<string, { calls: number; rows: number }>>;
  /** Runs `fn` and returns what the server executed for this role meanwhile. */
  during(fn: () => Promise<unknown>): Promise<ServerDelta>;
  close(): Promise<void>;
}

/**
 * A login role of the test's own (created if missing, superuser so it can do what the app
 * needs) whose statements pg_stat_statements counts apart from everyone else's.
 */
export async function pgTruth(role: string): Promise<PgTruth> {
  if (!/^[a-z_][a-z0-9_]*$/.test(role)) throw new Error(`pgTruth: role name ${role} must be a plain lower-case identifier`);
  const admin = new pg.Client({ connectionString: PG_ADMIN_URL });
  await admin.connect();
  const preload = await admin.query<{ shared_preload_libraries: string }>('SHOW shared_preload_libraries');
  if (!preload.rows[0].shared_preload_libraries.includes('pg_stat_statements')) {
    await admin.end();
    throw new Error('pg_stat_statements is not preloaded on this PostgreSQL; .ci/run sets it up (ALTER SYSTEM SET shared_preload_libraries, then a restart)');
  }
  await admin.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
  const exists = await admin.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [role]);
  if (exists.rowCount === 0) {
    try {
      await admin.query(`CREATE ROLE ${role} LOGIN SUPERUSER`);
    } catch (error) {
      // Two test files may race to create the same role; the loser finds it there.
      if ((error as { code?: string }).code !== '23505' && (error as { code?: string }).code !== '42710') throw error;
    }
  }
  const snapshot = async () => {
    const { rows } = await admin.query<{ query: string; calls: string; rows: string }>(
      `SELECT s.query, sum(s.calls)::text AS calls, sum(s.rows)::text AS rows
         FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid
        WHERE r.rolname = $1 GROUP BY s.query`,
      [role],
    );
    return new Map(rows.map((r) => [r.query, { calls: Number(r.calls), rows: Number(r.rows) }]));
  };
  return {
    url: `postgres://${role}@127.0.0.1:5432/test`,
    role,
    snapshot,
    async during(fn) {
      const before = await snapshot();
      await fn();
      return deltaOf(before, await snapshot());
    },
    close: () => admin.end(),
  };
}

/** MariaDB commands of one user, read back from the general log table. */
export interface MariaDbTruth {
  readonly user: string;
  snapshot(): Promise<Map<string, { calls: number; rows: number }>>;
  during(fn: () => Promise<unknown>): Promise<ServerDelta>;
  close(): Promise<void>;
}

/**
 * A MariaDB user of the test's own (no password, all privileges), with the server's general log
 * switched on and written to `mysql.general_log`. Rows are not logged: `rows` is always 0.
 */
export async function mariadbTruth(user: string): Promise<MariaDbTruth> {
  if (!/^[a-z_][a-z0-9_]*$/.test(user)) throw new Error(`mariadbTruth: user name ${user} must be a plain lower-case identifier`);
  const admin = await mysql.createConnection(MARIADB_ADMIN);
  await admin.query(`CREATE USER IF NOT EXISTS '${user}'@'%'`);
  await admin.query(`CREATE USER IF NOT EXISTS '${user}'@'localhost'`);
  await admin.query(`GRANT ALL PRIVILEGES ON *.* TO '${user}'@'%'`);
  await admin.query(`GRANT ALL PRIVILEGES ON *.* TO '${user}'@'localhost'`);
  await admin.query("SET GLOBAL log_output = 'TABLE'");
  await admin.query('SET GLOBAL general_log = 1');
  const snapshot = async () => {
    const [rows] = await admin.query<(mysql.RowDataPacket & { argument: string | Buffer; calls: number })[]>(
      `SELECT CONVERT(argument USING utf8mb4) AS argument, COUNT(*) AS calls FROM mysql.general_log
        WHERE user_host LIKE ? AND command_type IN ('Query', 'Execute') GROUP BY argument`,
      [`${user}[${user}] @ %`],
    );
    return new Map(rows.map((r) => [String(r.argument), { calls: Number(r.calls), rows: 0 }]));
  };
  return {
    user,
    snapshot,
    async during(fn) {
      const before = await snapshot();
      await fn();
      return deltaOf(before, await snapshot());
    },
    close: () => admin.end(),
  };
}

/** Redis commands sent to one database index, as MONITOR saw them. */
export interface RedisTruth {
  readonly db: number;
  /** Every command seen on `db` so far, lower-cased name first, e.g. `['set', 'k', 'v']`. */
  readonly commands: readonly string[][];
  during(fn: () => Promise<unknown>): Promise<string[][]>;
  close(): Promise<void>;
}

/**
 * Opens a MONITOR connection and keeps the commands run on database `db` (the app selects it).
 * MONITOR reports a command before it runs, so `during` waits for a PING round trip on the
 * monitor's own server before reading: everything sent earlier has been reported by then.
 */
export async function redisTruth(db: number): Promise<RedisTruth> {
  const socket = net.connect(6379, '127.0.0.1');
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const commands: string[][] = [];
  const fence = { waiting: [] as (() => void)[] };
  let buffer = '';
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => {
    buffer += chunk;
    let newline: number;
    while ((newline = buffer.indexOf('\r\n')) >= 0) {
      const line = buffer.slice(0, newline);
      buffer = buffer.slice(newline + 2);
      const match = /^\+\d+\.\d+ \[(\d+) [^\]]+\] (.*)$/.exec(line);
      if (match === null) continue;
      const args = [...match[2].matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]);
      if (args[0]?.toLowerCase() === 'echo' && args[1]?.startsWith('rb-truth-fence')) {
        fence.waiting.shift()?.();
        continue;
      }
      if (Number(match[1]) === db) commands.push([args[0].toLowerCase(), ...args.slice(1)]);
    }
  });
  socket.write('MONITOR\r\n');
  const fenceClient = net.connect(6379, '127.0.0.1');
  await new Promise<void>((resolve, reject) => fenceClient.once('connect', resolve).once('error', reject));
  fenceClient.on('data', () => {});
  let fences = 0;
  const settle = () =>
    new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('redisTruth: MONITOR did not report the fence within 2 s')), 2000);
      fence.waiting.push(() => {
        clearTimeout(timer);
        resolve();
      });
      fences += 1;
      fenceClient.write(`ECHO rb-truth-fence-${fences}\r\n`);
    });
  await settle();
  return {
    db,
    commands,
    async during(fn) {
      await settle();
      const start = commands.length;
      await fn();
      await settle();
      return commands.slice(start);
    },
    async close() {
      fenceClient.destroy();
      socket.destroy();
    },
  };
}
