'use strict';
// Schema and data for the demo. Deterministic (no random values), so every
// route returns the same answer on every run and tests can assert exact values.

const USERS = 50;
const ORDERS = 5000; // 100 orders per user

/**
 * Drops and recreates demo_users and demo_orders, so running it twice is safe.
 * Works with a pg Pool or a single pg Client (it only calls .query, in order).
 * @param {{ query(text: string, values?: unknown[]): Promise<unknown> }} db
 */
async function seed(db) {
  await db.query('DROP TABLE IF EXISTS demo_orders');
  await db.query('DROP TABLE IF EXISTS demo_users');
  await db.query(`
    CREATE TABLE demo_users (
      id    integer PRIMARY KEY,
      name  text NOT NULL,
      email text NOT NULL
    )`);
  await db.query(`
    CREATE TABLE demo_orders (
      id          integer PRIMARY KEY,
      user_id     integer NOT NULL REFERENCES demo_users (id),
      total_cents integer NOT NULL,
      created_at  timestamptz NOT NULL
    )`);
  // The per-user lookups are indexed: the N+1 route is slow because of the
  // number of round trips, not because of missing indexes.
  await db.query('CREATE INDEX demo_orders_user_id ON demo_orders (user_id)');

  await db.query(
    `INSERT INTO demo_users (id, name, email)
     SELECT g, 'User ' || g, 'user' || g || '@example.test'
     FROM generate_series(1, $1::int) AS g`,
    [USERS],
  );
  // user_id cycles 1..50, so each user gets exactly ORDERS / USERS orders.
  await db.query(
    `INSERT INTO demo_orders (id, user_id, total_cents, created_at)
     SELECT g,
            (g - 1) % $2::int + 1,
            100 + (g * 37) % 10000,
            timestamptz '2024-01-01 00:00:00+00' + g * interval '1 hour'
     FROM generate_series(1, $1::int) AS g`,
    [ORDERS, USERS],
  );
}

module.exports = { seed, USERS, ORDERS };
