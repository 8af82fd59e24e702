/**
 * `node --require @request-budget/node/register app.js`: starts request-budget configured by the
 * environment before the app loads anything, so every library it requires gets instrumented.
 */
import { start } from './sdk';

start();
