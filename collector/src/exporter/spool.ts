/**
 * The durable spool (--spool-dir): at the shutdown deadline, every batch a downstream has not
 * acknowledged is written here as the body it would have received, one file per batch, naming the
 * downstream by its endpoint; at the next start the files of a configured downstream go back into
 * its queue and each is deleted once its batch is delivered (or given up, counted as a drop).
 *
 * A file is written under a temporary name, fsynced, renamed, and the directory fsynced: a crash
 * mid-write leaves a temporary file (deleted at the next start), never half a batch under a real
 * name. Its header carries the body's length and SHA-256, so a damaged file is recognised and moved
 * aside to `corrupt/` instead of being sent or crashing the collector.
 */
import { createHash } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { unlink } from 'node:fs/promises';
import path from 'node:path';
import type { EncodedBatch } from './downstream';

const MAGIC = 'request-budget-spool 1\n';
const EXTENSION = '.batch';
const TEMPORARY = '.tmp';

/** A batch as spooled: its body and how many spans it holds. */
export interface SpooledBatch extends EncodedBatch {
  readonly spans: number;
}

interface Header {
  readonly downstream: string;
  readonly endpoint: string;
  readonly contentType: string;
  readonly spans: number;
  readonly bytes: number;
  readonly sha256: string;
}

/** What the spool needs of a downstream to refill its queue at start. */
export interface SpoolTarget {
  readonly name: string;
  readonly url: string;
  /** Queues a batch read from the spool; `settled` is called once, when it is delivered or given up (false) or left unsent at shutdown (true: its file stays). */
  enqueueSpooled(batch: SpooledBatch, settled: (keepFile: boolean) => void): void;
}

export interface SpoolEvents {
  readonly log: (message: string) => void;
  readonly onSpooled: (downstream: string, spans: number) => void;
  readonly onLoaded: (downstream: string, spans: number) => void;
}

export class Spool {
  private sequence = 0;
  /** Bytes of the batches loaded at start and not yet delivered or given up: memory held, with the spans held. */
  private loaded = 0;

  get loadedBytes(): number {
    return this.loaded;
  }

  /** Creates `dir` when missing (throws when it cannot: the collector must not start without its spool). */
  constructor(
    readonly dir: string,
    private readonly events: SpoolEvents,
  ) {
    mkdirSync(dir, { recursive: true });
  }

  /**
   * Writes `batches` for the downstream `name` at `endpoint`, one durable file each, and logs the
   * count. Throws when the disk refuses; files already written stay.
   */
  save(name: string, endpoint: string, batches: readonly SpooledBatch[]): void {
    let spans = 0;
    for (const batch of batches) {
      const body = Buffer.from(batch.body.buffer, batch.body.byteOffset, batch.body.byteLength);
      const header: Header = {
        downstream: name,
        endpoint,
        contentType: batch.contentType,
        spans: batch.spans,
        bytes: body.length,
        sha256: createHash('sha256').update(body).digest('hex'),
      };
      const file = `${Date.now().toString().padStart(15, '0')}-${process.pid}-${String((this.sequence += 1)).padStart(6, '0')}-${name}${EXTENSION}`;
      const temporary = path.join(this.dir, `${file}${TEMPORARY}`);
      const fd = openSync(temporary, 'w');
      try {
        writeSync(fd, `${MAGIC}${JSON.stringify(header)}\n`);
        writeSync(fd, body);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      renameSync(temporary, path.join(this.dir, file));
      spans += batch.spans;
    }
    if (batches.length === 0) return;
    this.syncDirectory();
    this.events.onSpooled(name, spans);
    this.events.log(`${spans} span(s) spooled to ${this.dir} for downstream ${name} (${endpoint}) in ${batches.length} file(s); sent at the next start`);
  }

  /**
   * Puts the spooled batches of each target back into its queue, oldest first, as long as they fit
   * in `maxSpans`; the rest stay on disk for the next start. Files of a downstream no longer
   * configured are left and reported; damaged ones are moved to `corrupt/`. Never throws.
   */
  /**
   * Queues the spooled batches on their downstreams: at most `maxSpans` spans a downstream and
   * `maxBytes` of batches in all; the rest stay on disk for the start after.
   */
  load(targets: readonly SpoolTarget[], maxSpans: number, maxBytes: number): void {
    let names: string[];
    try {
      names = readdirSync(this.dir, { withFileTypes: true })
        .filter((entry) => entry.isFile())
        .map((entry) => entry.name)
        .sort();
    } catch (error) {
      this.events.log(`spool ${this.dir} cannot be read (${describe(error)}); nothing loaded from it`);
      return;
    }
    const loaded = new Map<string, { spans: number; files: number }>();
    const leftOver = new Map<string, { key: string; spans: number; files: number; why: string }>();
    for (const name of names) {
      const file = path.join(this.dir, name);
      if (name.endsWith(TEMPORARY)) {
        // Written when the process died before its rename: never a whole batch.
        this.remove(file, 'unfinished spool file (the process stopped while writing it)');
        continue;
      }
      if (!name.endsWith(EXTENSION)) continue;
      let header: Header;
      let body: Buffer;
      try {
        ({ header, body } = readSpoolFile(file));
      } catch (error) {
        this.moveAside(name, (error as Error).message);
        continue;
      }
      const target = targets.find((candidate) => candidate.url === header.endpoint && candidate.name === header.downstream);
      const key = target?.name ?? `${header.downstream} ${header.endpoint}`;
      const sum = loaded.get(key) ?? { spans: 0, files: 0 };
      const why =
        target === undefined
          ? 'that downstream is no longer configured'
          : sum.spans + header.spans > maxSpans
            ? `they do not fit in --max-queue-spans (${maxSpans})`
            : this.loaded + body.length > maxBytes
              ? `they do not fit in half of --memory-limit (${maxBytes} bytes)`
              : undefined;
      if (target === undefined || why !== undefined) {
        // Reported by downstream and reason.
        const leftKey = `${key}\u0000${why}`;
        const left = leftOver.get(leftKey) ?? { key, spans: 0, files: 0, why: why ?? '' };
        left.spans += header.spans;
        left.files += 1;
        leftOver.set(leftKey, left);
        continue;
      }
      this.loaded += body.length;
      target.enqueueSpooled({ body, contentType: header.contentType, spans: header.spans }, (keepFile) => {
        this.loaded -= body.length;
        if (!keepFile) void this.delivered(file);
      });
      sum.spans += header.spans;
      sum.files += 1;
      loaded.set(key, sum);
    }
    for (const [name, { spans, files }] of loaded) {
      this.events.onLoaded(name, spans);
      this.events.log(`${spans} span(s) loaded from the spool ${this.dir} for downstream ${name} (${files} file(s)); each file is deleted once delivered`);
    }
    for (const { key, spans, files, why } of leftOver.values())
      this.events.log(`${spans} span(s) in ${files} spool file(s) for ${key} left in ${this.dir}: ${why}`);
  }

  /** A loaded batch was delivered or given up: its file goes. */
  private async delivered(file: string): Promise<void> {
    try {
      await unlink(file);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT')
        this.events.log(`could not delete the delivered spool file ${file} (${describe(error)}): its spans would be sent again at the next start`);
    }
  }

  private moveAside(name: string, problem: string): void {
    const aside = path.join(this.dir, 'corrupt');
    try {
      mkdirSync(aside, { recursive: true });
      renameSync(path.join(this.dir, name), path.join(aside, name));
      this.events.log(`spool file ${path.join(this.dir, name)} is damaged (${problem}); moved to ${path.join(aside, name)}, not sent`);
    } catch (error) {
      this.events.log(`spool file ${path.join(this.dir, name)} is damaged (${problem}) and could not be moved aside (${describe(error)}); not sent`);
    }
  }

  private remove(file: string, what: string): void {
    try {
      unlinkSync(file);
      this.events.log(`deleted ${what}: ${file}`);
    } catch (error) {
      this.events.log(`could not delete ${what} ${file}: ${describe(error)}`);
    }
  }

  /** The renames are durable only once the directory itself is on disk. */
  private syncDirectory(): void {
    const fd = openSync(this.dir, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }
}

/** A spool file's header and body; throws, saying what is wrong, for anything but a whole file. */
export function readSpoolFile(file: string): { header: Header; body: Buffer } {
  const content = readFileSync(file);
  if (!content.subarray(0, MAGIC.length).equals(Buffer.from(MAGIC))) throw new Error('not a spool file: it does not start with the spool marker');
  const end = content.indexOf(0x0a, MAGIC.length);
  if (end < 0) throw new Error('its header is cut off');
  let header: Header;
  try {
    header = JSON.parse(content.toString('utf8', MAGIC.length, end)) as Header;
  } catch {
    throw new Error('its header is not JSON');
  }
  const body = content.subarray(end + 1);
  if (
    typeof header?.endpoint !== 'string' ||
    typeof header.downstream !== 'string' ||
    typeof header.contentType !== 'string' ||
    !Number.isSafeInteger(header.spans) ||
    header.spans < 1
  )
    throw new Error('its header lacks the downstream, endpoint, content type or span count');
  if (body.length !== header.bytes) throw new Error(`its body has ${body.length} bytes, its header says ${header.bytes}`);
  if (createHash('sha256').update(body).digest('hex') !== header.sha256) throw new Error('its body does not match its SHA-256');
  return { header, body };
}

function describe(error: unknown): string {
  return (error as NodeJS.ErrnoException)?.code ?? (error as Error)?.message ?? String(error);
}
