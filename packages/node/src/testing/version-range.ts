/**
 * Just enough of semver ranges to read the `supportedVersions` of instrumentations
 * (`>=8.0.3 <9`, `^4`, `4.x`, `*`, `a || b`), so a library of an unsupported version is not
 * mistaken for one loaded too early. A range it cannot read counts as satisfied.
 */

type Version = [number, number, number];

/** Whether `version` satisfies any of `ranges`. */
export function satisfiesAny(version: string, ranges: readonly string[]): boolean {
  const parsed = parseVersion(version);
  if (parsed === undefined) return true;
  return ranges.some((range) => range.split('||').some((set) => satisfiesSet(parsed, set.trim())));
}

function satisfiesSet(version: Version, set: string): boolean {
  if (set === '' || set === '*' || set === 'x') return true;
  return set.split(/\s+/).every((comparator) => satisfiesComparator(version, comparator));
}

function satisfiesComparator(version: Version, comparator: string): boolean {
  const match = /^(>=|<=|>|<|=|\^|~)?v?(\d+|x|\*)(?:\.(\d+|x|\*))?(?:\.(\d+|x|\*))?(?:-[\w.]+)?$/.exec(comparator);
  if (match === null) return true;
  const [, operator = '', majorText, minorText, patchText] = match;
  const part = (text: string | undefined) => (text === undefined || text === 'x' || text === '*' ? undefined : Number(text));
  const major = part(majorText);
  const minor = part(minorText);
  const patch = part(patchText);
  if (major === undefined) return true;
  const low: Version = [major, minor ?? 0, patch ?? 0];
  const cmp = compare(version, low);
  switch (operator) {
    case '>=':
      return cmp >= 0;
    case '>':
      return minor === undefined ? version[0] > major : patch === undefined ? compare(version, [major, minor, Infinity]) > 0 : cmp > 0;
    case '<':
      return cmp < 0;
    case '<=':
      return minor === undefined ? version[0] <= major : patch === undefined ? compare(version, [major, minor, Infinity]) <= 0 : cmp <= 0;
    case '^': {
      const high: Version =
        major > 0 || minor === undefined ? [major + 1, 0, 0] : minor > 0 || patch === undefined ? [0, minor + 1, 0] : [0, 0, (patch ?? 0) + 1];
      return cmp >= 0 && compare(version, high) < 0;
    }
    case '~': {
      const high: Version = minor === undefined ? [major + 1, 0, 0] : [major, minor + 1, 0];
      return cmp >= 0 && compare(version, high) < 0;
    }
    default:
      // `4`, `4.2`, `4.x`: every version with those leading parts.
      return version[0] === major && (minor === undefined || version[1] === minor) && (patch === undefined || version[2] === patch);
  }
}

function parseVersion(text: string): Version | undefined {
  const match = /^v?(\d+)\.(\d+)\.(\d+)/.exec(text.trim());
  return match === null ? undefined : [Number(match[1]), Number(match[2]), Number(match[3])];
}

function compare(a: Version, b: Version): number {
  return a[0] - b[0] || a[1] - b[1] || a[2] - b[2];
}
