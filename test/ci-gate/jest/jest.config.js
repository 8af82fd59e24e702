// The sample service's jest suite, configured as a project configures its own. The preset starts
// request-budget in every test file, adds toBeWithinBudget, and runs the per-route baseline gate
// at the end of the run.
module.exports = { preset: '@request-budget/node' };
