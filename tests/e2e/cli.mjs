// Where the native CLI is, and a cached generated export for the big tests.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync, writeFileSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { root, outDir } from './helpers.mjs';

/** $CAFE_ETL_BIN, else the release build in $CARGO_TARGET_DIR or target/. */
export function cliBinary() {
  const bin = process.env.CAFE_ETL_BIN
    || path.join(process.env.CARGO_TARGET_DIR || path.join(root, 'target'), 'release', 'cafe-etl');
  if (!existsSync(bin)) throw new Error(`no native CLI at ${bin}: run cargo build --release (scripts/test-www does)`);
  return bin;
}

/**
 * A generated export (cafe-etl generate --single), cached under
 * test-output/generated/ with the CLI's report beside it.
 * @returns {{file: string, report: object}}
 */
export function generated({ name, stores, days, seed, perDay }) {
  const dir = path.join(outDir, 'generated');
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, name);
  const reportFile = `${file}.report.json`;
  const args = ['generate', '--stores', String(stores), '--days', String(days), '--seed', String(seed),
    '--transactions-per-day', String(perDay), '--single', name, '--out', dir];
  const stamp = `${file}.args`;
  const fresh = existsSync(file) && existsSync(reportFile) && existsSync(stamp)
    && readFileSync(stamp, 'utf8') === args.join(' ') && statSync(reportFile).mtimeMs >= statSync(file).mtimeMs;
  if (!fresh) {
    execFileSync(cliBinary(), args, { stdio: ['ignore', 'ignore', 'inherit'] });
    const report = checkJson(dir, name);
    writeFileSync(reportFile, JSON.stringify(report));
    writeFileSync(stamp, args.join(' '));
  }
  return { file, report: JSON.parse(readFileSync(reportFile, 'utf8')) };
}

/** The CLI's report on one file (`check --json`; exit 1 just means rejected rows). */
export function checkJson(dir, name) {
  const run = spawnSync(cliBinary(), ['check', '--json', name], { cwd: dir, maxBuffer: 1 << 28 });
  if (run.status !== 0 && run.status !== 1) throw new Error(`cafe-etl check exited ${run.status}: ${run.stderr}`);
  return JSON.parse(run.stdout.toString())[0];
}
