'use strict';
// jest `preset: '@request-budget/node'`: jest looks for `jest-preset.js` at the package's root.
// The preset itself is built into dist (see src/testing/jest-preset.ts).
module.exports = require('./dist/testing/jest-preset.js');
