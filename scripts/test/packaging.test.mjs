// What a user installs: the packed tarballs of @parley/core and @parley/amqp install together from npm and load
// with import() and require(); @parley/cli with one adapter gives a working `npx parley`; their source maps
// resolve inside the tarball; the peer range on core survives
// pnpm's `workspace:` rewrite and changesets' versioning, so that a minor release of core is not a major of every
// adapter (the `fixed` group would make it 1.0.0 for all).
import { execFileSync, spawnSync } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../../', import.meta.url));
const packageJson = (dir) => JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
const PUBLISHED = ['core', 'amqp', 'conformance'];
const PEER_RANGE = '0.x';

/** Runs a command, failing the test with its output when it fails. */
function run(command, args, cwd) {
  const result = spawnSync(command, args, { cwd, encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } });
  if (result.status !== 0) {
    throw new Error(`${command} ${args.join(' ')} failed in ${cwd}:\n${result.stdout}\n${result.stderr}`);
  }
  return result.stdout;
}

describe('package.json of every published package', () => {
  it('peer-depends on any 0.x core (workspace:0.x), and ships its sources for the source maps', () => {
    for (const name of PUBLISHED) {
      const pkg = packageJson(join(root, 'packages', name));
      expect(pkg.files, name).toEqual(['dist', 'src']);
      if (name !== 'core') expect(pkg.peerDependencies['@parley/core'], name).toBe(`workspace:${PEER_RANGE}`);
    }
  });
});

describe('the tarballs', () => {
  const dir = mkdtempSync(join(tmpdir(), 'parley-pack-'));
  const tarballs = {};
  const extracted = {};

  beforeAll(() => {
    for (const name of ['core', 'amqp', 'cli']) {
      const pkg = join(root, 'packages', name);
      if (!existsSync(join(pkg, 'dist', 'index.js')))
        throw new Error(`packages/${name} is not built: ./pnpm build`);
      const before = new Set(readdirSync(dir));
      // The repository's pnpm, as a release packs: it rewrites `workspace:` ranges as `pnpm publish` does.
      run(join(root, 'pnpm'), ['pack', '--pack-destination', dir], pkg);
      const file = readdirSync(dir).find((f) => !before.has(f) && f.endsWith('.tgz'));
      tarballs[name] = join(dir, file);
      extracted[name] = join(dir, name);
      mkdirSync(extracted[name]);
      execFileSync('tar', ['-xzf', tarballs[name], '-C', extracted[name]]);
    }
  }, 60_000);

  it('carry the workspace version, a peer range npm understands, dist and src, and no tests', () => {
    const core = packageJson(join(extracted.core, 'package'));
    const amqp = packageJson(join(extracted.amqp, 'package'));
    expect(core.version).toBe(packageJson(join(root, 'packages/core')).version);
    expect(amqp.version).toBe(core.version);
    expect(amqp.peerDependencies).toEqual({ '@parley/core': PEER_RANGE });
    expect(JSON.stringify([core, amqp])).not.toContain('workspace:');
    for (const name of ['core', 'amqp']) {
      const files = listFiles(join(extracted[name], 'package'));
      expect(files, name).toContain('dist/index.js');
      expect(files, name).toContain('dist/index.d.ts');
      expect(files, name).toContain('src/index.ts');
      expect(
        files.filter((f) => f.startsWith('test/')),
        name,
      ).toEqual([]);
    }
  });

  it('have source maps whose sources are in the tarball (the maps point to ../src/*.ts)', () => {
    for (const name of ['core', 'amqp']) {
      const base = join(extracted[name], 'package');
      const maps = listFiles(base).filter((f) => f.endsWith('.map'));
      expect(maps.length, name).toBeGreaterThan(0);
      for (const map of maps) {
        const { sources } = JSON.parse(readFileSync(join(base, map), 'utf8'));
        for (const source of sources) {
          expect(existsSync(resolve(dirname(join(base, map)), source)), `${name}/${map} → ${source}`).toBe(
            true,
          );
        }
      }
    }
  });

  it('install together into a fresh npm app, and load with import() and require() (Node >= 20.19)', () => {
    const app = join(dir, 'app');
    mkdirSync(app);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
    // npm checks peer dependencies strictly: a range core's version does not satisfy fails the install.
    run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', tarballs.core, tarballs.amqp], app);
    const esm = run(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        "const m = await import('@parley/amqp'); console.log(typeof m.amqpBroker)",
      ],
      app,
    );
    expect(esm.trim()).toBe('function');
    const cjs = run(
      process.execPath,
      ['--input-type=commonjs', '-e', "console.log(typeof require('@parley/core').createBroker)"],
      app,
    );
    expect(cjs.trim()).toBe('function');
  }, 120_000);
  it('@parley/cli with core and one adapter, in a fresh npm app: `npx parley --help` and `npx parley check` work', async () => {
    const app = join(dir, 'cli-app');
    mkdirSync(app);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'cli-app', private: true }));
    run(
      'npm',
      ['install', '--no-audit', '--no-fund', '--prefer-offline', tarballs.cli, tarballs.core, tarballs.amqp],
      app,
    );
    // As a user runs it: without the NODE_PATH pnpm's bin shims set (it names the workspace's packages).
    const { NODE_PATH: _nodePath, ...env } = process.env;
    const npx = (args) =>
      spawnSync('npx', ['--no-install', 'parley', ...args], {
        cwd: app,
        encoding: 'utf8',
        env: { ...env, NO_COLOR: '1' },
        timeout: 30_000,
      });
    const help = npx(['--help']);
    expect(help.status, help.stderr).toBe(0);
    expect(help.stdout).toContain('Usage: parley');
    for (const command of ['tail', 'publish', 'dead-letters', 'bridge', 'export', 'check']) {
      expect(help.stdout).toMatch(new RegExp(`^ +${command}\\b`, 'm'));
    }

    // type: pika loads the installed @parley/amqp; at a port nothing listens on, check says why, exit 1.
    const port = await closedPort();
    writeFileSync(
      join(app, 'endpoints.yml'),
      `event_broker:\n  type: pika\n  url: 127.0.0.1\n  port: ${port}\n  username: guest\n  password: n0t-printed-Pw\n`,
    );
    const check = npx(['check', '--timeout', '2']);
    expect(check.status, check.stderr).toBe(1);
    expect(check.stdout).toContain('endpoints     ./endpoints.yml: valid');
    expect(check.stdout).toContain('adapter       amqp (type: pika)');
    expect(check.stdout).toContain('connection    failed');
    expect(check.stderr).toMatch(new RegExp(`^\\[parley\\] \\[amqp\\] .*127\\.0\\.0\\.1:${port}`, 'm'));
    expect(check.stdout + check.stderr).not.toContain('n0t-printed-Pw');

    // An adapter that is not installed: exit 2, saying what to install.
    writeFileSync(
      join(app, 'endpoints.yml'),
      'event_broker:\n  type: kafka\n  url: 127.0.0.1:9092\n  security_protocol: PLAINTEXT\n',
    );
    const missing = npx(['check']);
    expect(missing.status, missing.stderr).toBe(2);
    expect(missing.stderr).toContain('npm install @parley/kafka');
  }, 180_000);
});

describe('versioning with changesets', () => {
  /** The workspace's manifests and changesets, where `changeset version` may write without touching the repo. */
  function copyOfWorkspace() {
    const copy = mkdtempSync(join(tmpdir(), 'parley-version-'));
    const manifests = execFileSync('git', ['ls-files', 'package.json', '*/package.json'], { cwd: root })
      .toString()
      .split('\n')
      .filter(Boolean);
    for (const file of [...manifests, 'pnpm-workspace.yaml']) {
      mkdirSync(dirname(join(copy, file)), { recursive: true });
      cpSync(join(root, file), join(copy, file));
    }
    cpSync(join(root, '.changeset'), join(copy, '.changeset'), { recursive: true });
    return copy;
  }
  const changeset = join(root, 'node_modules', '.bin', 'changeset');
  const versions = (copy) =>
    Object.fromEntries(PUBLISHED.map((name) => [name, packageJson(join(copy, 'packages', name)).version]));

  it('releases the fixed group at one version below 1.0.0, and the peer ranges still hold', () => {
    const copy = copyOfWorkspace();
    const pending = readdirSync(join(copy, '.changeset')).filter(
      (f) => f.endsWith('.md') && f !== 'README.md',
    );
    const major = pending.some((f) =>
      /:\s*major\s*$/m.test(readFileSync(join(copy, '.changeset', f), 'utf8')),
    );
    run(changeset, ['version'], copy);
    const next = versions(copy);
    expect(new Set(Object.values(next)).size, JSON.stringify(next)).toBe(1);
    // Before workspace:0.x and onlyUpdatePeerDependentsWhenOutOfRange, the peer dependency made this 1.0.0.
    if (!major) expect(next.core.startsWith('0.'), next.core).toBe(true);
    for (const name of ['amqp', 'conformance']) {
      expect(packageJson(join(copy, 'packages', name)).peerDependencies['@parley/core']).toBe(
        `workspace:${PEER_RANGE}`,
      );
    }
  });

  it('a minor release of core after that is a minor release of the group, not a major one', () => {
    const copy = copyOfWorkspace();
    run(changeset, ['version'], copy);
    const released = versions(copy);
    writeFileSync(
      join(copy, '.changeset', 'core-minor.md'),
      "---\n'@parley/core': minor\n---\n\nA feature.\n",
    );
    run(changeset, ['version'], copy);
    const [major, minor] = released.core.split('.').map(Number);
    const expected = `${major}.${minor + 1}.0`;
    expect(versions(copy)).toEqual({ core: expected, amqp: expected, conformance: expected });
  });
});

function listFiles(dir) {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => relative(dir, join(entry.parentPath, entry.name)));
}

/** A port nothing listens on: bound, then released. */
async function closedPort() {
  const server = createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(() => resolve()));
  return port;
}
