import path from 'node:path';
import { createRequire } from 'node:module';

/**
 * Absolute path of the repository root (where the workspace node_modules live).
 * `__dirname` rather than `import.meta.dirname`: vitest provides both, and this one
 * also type-checks when the test tsconfig inherits the repo's CommonJS `node16` mode.
 */
export const repoRoot: string = path.resolve(__dirname, '..', '..');

/**
 * A `require` anchored at the repo root, so package lookups do not depend on the
 * caller's cwd or on where this file is transformed to.
 */
export const requireFromRoot: NodeJS.Require = createRequire(path.join(repoRoot, 'package.json'));
