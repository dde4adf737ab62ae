// Fetch OHIF's prebuilt viewer (npm @ohif/app, the version pinned in package.json "ohif") with
// `npm pack` (the tarball only: the dist/ is complete, none of OHIF's own dependencies are
// needed), check it against the pinned sha512 integrity, and unpack it to <out>/package/dist.
// Usage: node fetch-ohif.mjs <out-folder>      (idempotent: does nothing when already there)
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('.', import.meta.url));
const { ohif } = JSON.parse(readFileSync(join(here, 'package.json'), 'utf8'));
const out = process.argv[2];
if (!out) throw new Error('usage: node fetch-ohif.mjs <out-folder>');
if (existsSync(join(out, 'package', 'dist', ohif.appBundle))) process.exit(0);

const tmp = `${out}.partial`;
rmSync(tmp, { recursive: true, force: true });
mkdirSync(tmp, { recursive: true });
const packed = JSON.parse(
  execFileSync('npm', ['pack', `@ohif/app@${ohif.app}`, '--json', '--pack-destination', tmp], { encoding: 'utf8' })
)[0];
const tarball = join(tmp, packed.filename);
const digest = `sha512-${createHash('sha512').update(readFileSync(tarball)).digest('base64')}`;
if (digest !== ohif.integrity) {
  rmSync(tmp, { recursive: true, force: true });
  throw new Error(`@ohif/app@${ohif.app}: integrity ${digest} does not match the pinned ${ohif.integrity}`);
}
execFileSync('tar', ['xzf', tarball, '-C', tmp]);
rmSync(tarball);
if (!existsSync(join(tmp, 'package', 'dist', ohif.appBundle))) {
  throw new Error(`@ohif/app@${ohif.app} has no dist/${ohif.appBundle}: not the build the extension is pinned to`);
}
rmSync(out, { recursive: true, force: true });
renameSync(tmp, out);
console.log(`[fetch-ohif] @ohif/app@${ohif.app} unpacked to ${out}`);
