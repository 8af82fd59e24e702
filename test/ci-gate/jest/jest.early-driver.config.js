// The preset, with a setup file that loads the database driver before request-budget's setup
// runs (a common order): the preset's setup still instruments it.
module.exports = { preset: '@request-budget/node', setupFiles: ['<rootDir>/early-driver.js'] };
