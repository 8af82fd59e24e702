// start() in setupFiles without the preset: measureCost must fail, naming the preset.
module.exports = { setupFiles: ['<rootDir>/start-in-setup.js'] };
