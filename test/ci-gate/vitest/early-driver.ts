// Loads pg before request-budget starts: measureCost must refuse to pass on uncounted queries.
import { createRequire } from 'node:module';

createRequire(import.meta.url)('pg');
