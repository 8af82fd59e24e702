// The sample service's jest suite: one line of configuration for request-budget (the preset),
// which starts it in every test file, adds toBeWithinBudget, and runs the baseline gate.
module.exports = {
  preset: '@request-budget/node',
  rootDir: __dirname,
  testMatch: ['<rootDir>/*.spec.js'],
  // Plain CommonJS tests: nothing to transform.
  transform: {},
  // A setup file that loads the database driver before request-budget (a common order): the
  // preset's setup still instruments it.
  setupFiles: process.env.CIGATE_EARLY_DRIVER === '1' ? ['<rootDir>/early-driver.js'] : [],
};
