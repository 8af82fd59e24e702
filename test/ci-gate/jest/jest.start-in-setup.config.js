// start() in setupFiles without the preset: measureCost must fail, naming the preset.
module.exports = { rootDir: __dirname, testMatch: ['<rootDir>/budgets.spec.js'], setupFiles: ['<rootDir>/start-in-setup.js'] };
