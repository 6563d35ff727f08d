// Writes every ```ts block of the READMEs and docs to generated/<source>-<n>.ts, one module each, so that
// `tsc` checks them against the real packages. A block whose lines stand, in order and whatever their
// indentation, in a source file of the repository is an excerpt of code that is compiled and tested already: it is
// not compiled alone. An excerpt that drifts from its source stops matching, is compiled alone, and fails.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';

const root = new URL('../../', import.meta.url).pathname;
const out = new URL('generated/', import.meta.url).pathname;
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

const sources = [
  'README.md',
  ...readdirSync(join(root, 'packages')).map((p) => `packages/${p}/README.md`),
  ...(existsSync(join(root, 'docs')) ? readdirSync(join(root, 'docs')).map((d) => `docs/${d}`) : []),
].filter((file) => file.endsWith('.md') && existsSync(join(root, file)));

/** Source files an excerpt may come from, as lists of trimmed lines. */
function tsFiles(dir) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory())
      return ['node_modules', 'dist', 'generated'].includes(entry.name) ? [] : tsFiles(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}
const sourceLines = [...tsFiles(join(root, 'packages')), ...tsFiles(join(root, 'examples'))].map((file) =>
  readFileSync(file, 'utf8')
    .split('\n')
    .map((line) => line.trim()),
);
function isExcerpt(code) {
  const lines = code
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '');
  if (lines.length === 0) return false;
  return sourceLines.some((source) => {
    const candidates = source.filter((line) => line !== '');
    for (let i = candidates.indexOf(lines[0]); i !== -1; i = candidates.indexOf(lines[0], i + 1)) {
      if (lines.every((line, k) => candidates[i + k] === line)) return true;
    }
    return false;
  });
}

let count = 0;
let excerpts = 0;
for (const file of sources) {
  const text = readFileSync(join(root, file), 'utf8');
  let n = 0;
  for (const match of text.matchAll(/```ts\n([\s\S]*?)```/g)) {
    const code = match[1];
    if (isExcerpt(code)) {
      excerpts++;
      continue;
    }
    const line = text.slice(0, match.index).split('\n').length;
    const name = `${relative(root, join(root, file)).replace(/[/.]/g, '_')}-${++n}.ts`;
    writeFileSync(join(out, name), `// ${file}:${line + 1}\n${code}\nexport {};\n`);
    count++;
  }
}
console.log(
  `[snippets] ${count} TypeScript snippets to compile, ${excerpts} excerpts found verbatim in the sources (${sources.length} files)`,
);
