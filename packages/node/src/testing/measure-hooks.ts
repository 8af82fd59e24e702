/**
 * Work a runner setup needs done right before each measurement (the jest setup patches the
 * libraries its module registry loaded since the last test).
 */
const hooks = new Set<() => void>();

/** Adds a hook run before each measurement; returns the function that removes it. */
export function beforeEachMeasurement(hook: () => void): () => void {
  hooks.add(hook);
  return () => {
    hooks.delete(hook);
  };
}

/** Runs the hooks (a failing hook is the measurement's error: it could not be made true). */
export function runMeasurementHooks(): void {
  for (const hook of hooks) hook();
}

let jestSetup = false;

/** Called by the jest setup file: measurements inside jest are made true by it. */
export function markJestSetup(): void {
  jestSetup = true;
}

/** Whether the jest setup file ran in this realm. */
export function jestSetupRan(): boolean {
  return jestSetup;
}
