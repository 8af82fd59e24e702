/** The ground-truth readers see exactly what the servers executed for their role, user or db. */
import mysql from 'mysql2/promise';
import pg from 'pg';
import { createClient } from 'redis';
import { expect, it } from 'vitest';
import { mariadbTruth, pgTruth, redisTruth } from '../support/db-truth';

it('pg_stat_statements: calls and rows of one role only', async () => {
  const truth = await pgTruth('rb_truth_selftest');
  const client = new pg.Client({ connectionString: truth.url });
  const other = new pg.Client({ connectionString: 'postgres://postgres@127.0.0.1:5432/test' });
  await Promise.all([client.connect(), other.connect()]);
  try {
    const delta = await truth.during(async () => {
      for (let i = 1; i <= 3; i += 1) await client.query('SELECT g FROM generate_series(1, $1::int) g', [i]);
      await other.query('SELECT 1'); // another role: not counted
    });
    expect(delta.statements).toBe(3);
    expect(delta.rows).toBe(6);
    expect([...delta.byStatement.values()]).toEqual([{ calls: 3, rows: 6 }]);
  } finally {
    await Promise.all([client.end(), other.end(), truth.close()]);
  }
});

it('MariaDB general log: text queries and executed prepared statements of one user', async () => {
  const truth = await mariadbTruth('rb_truth_selftest');
  const connection = await mysql.createConnection({ host: '127.0.0.1', user: 'rb_truth_selftest', database: 'test' });
  try {
    const delta = await truth.during(async () => {
      await connection.query('SELECT 1');
      await connection.execute('SELECT ? AS x', [2]);
      await connection.execute('SELECT ? AS x', [3]);
    });
    expect(delta.statements).toBe(3);
    expect(Object.fromEntries([...delta.byStatement].map(([k, v]) => [k, v.calls]))).toEqual({ 'SELECT 1': 1, 'SELECT 2 AS x': 1, 'SELECT 3 AS x': 1 });
  } finally {
    await connection.end();
    await truth.close();
  }
});

it('Redis MONITOR: the commands of one database index', async () => {
  const truth = await redisTruth(13);
  const client = createClient({ url: 'redis://127.0.0.1:6379/13' });
  const elsewhere = createClient({ url: 'redis://127.0.0.1:6379/12' });
  await Promise.all([client.connect(), elsewhere.connect()]);
  try {
    const seen = await truth.during(async () => {
      await client.set('rb-truth', '1');
      await elsewhere.get('rb-truth');
      await client.get('rb-truth');
    });
    expect(seen).toEqual([
      ['set', 'rb-truth', '1'],
      ['get', 'rb-truth'],
    ]);
  } finally {
    await Promise.all([client.quit(), elsewhere.quit()]);
    await truth.close();
  }
});
