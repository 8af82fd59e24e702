// No preset: run with --require @request-budget/node/register in NODE_OPTIONS, the SDK runs
// outside jest's sandbox, and measureCost must say so.
module.exports = {};
