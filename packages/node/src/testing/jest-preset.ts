/**
 * jest `preset: '@request-budget/node'`: request-budget in every test file, `toBeWithinBudget`,
 * and the per-route baseline gate at the end of the run. A configuration of one's own keeps
 * working: list its setup files after the preset's in setupFilesAfterEnv.
 */
export = {
  testEnvironment: 'node',
  setupFilesAfterEnv: [require.resolve('./jest-setup.js')],
  globalSetup: require.resolve('./jest-global-setup.js'),
  globalTeardown: require.resolve('./jest-global-teardown.js'),
};
