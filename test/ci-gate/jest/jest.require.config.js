// --require @request-budget/node/register in NODE_OPTIONS and no preset: the SDK runs outside
// jest's sandbox, and measureCost must say so.
module.exports = { rootDir: __dirname, testMatch: ['<rootDir>/budgets.spec.js'] };
