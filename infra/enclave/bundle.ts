/**
 * The enclave bundle: a deterministic ustar archive of exactly what the enclave image runs — the
 * import closure of `enclave/main.ts` (every project module it reaches through static and dynamic
 * imports, computed from the sources, tests and type-only imports left out) and the npm packages
 * those modules import, with their dependencies, at the versions pinned in package-lock.json.
 * Entries are sorted, with mtime 0, uid/gid 0, mode 0644/0755 and no absolute paths, so two builds
 * from the same tree are byte-identical and a customer can rebuild and compare the SHA-384.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
/**
 * What goes into a bundle: the entry point and either the project modules it imports (computed)
 * or, for bundles not yet built that way, listed source directories and npm packages. The npm
 * packages' own dependency closure is always added.
 */
export type BundleSpec =
  | { name: string; main: string; closure: true }
  | {
      name: string;
      main: string;
      closure?: false;
      sourceDirs: string[];
      /** Only in development images: never part of a production bundle. */
      exclude: string[];
      dependencies: string[];
    };

/** The enclave image: the import closure of its production entry (the dev entry is not in it). */
export const ENCLAVE_BUNDLE: BundleSpec = { name: 'securegate-enclave', main: 'enclave/main.ts', closure: true };

/** The shareholder service, for operators who run it as a container (infra/shareholder/). */
export const SHAREHOLDER_BUNDLE: BundleSpec = {
  name: 'securegate-shareholder',
  main: 'shareholders/main.ts',
  sourceDirs: ['shareholders', 'storage', 'protocol', 'attestation'],
  exclude: ['attestation/dev.ts'],
  dependencies: [
    '@hpke/chacha20poly1305', '@hpke/core', '@noble/ciphers', '@noble/curves', '@noble/hashes',
    'cbor-x', 'fastify', 'pg', 'pino', 'secrets.js-grempe',
  ],
};

/** The project modules and npm packages reached from an entry point. */
export interface ImportClosure {
  /** Repository-relative paths, sorted. */
  modules: string[];
  /** npm package names, sorted. */
  packages: string[];
}

const BUILTINS = new Set(builtinModules);

/** The package a bare specifier names: `@scope/name/sub.js` → `@scope/name`, `undici` → `undici`. */
function packageName(specifier: string): string {
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!;
}

/**
 * The specifiers a module loads when it runs: static imports and re-exports (not `import type` /
 * `export type`, which type stripping removes) and `import()` of a string literal. An `import()`
 * of anything else cannot be followed, so it is refused rather than silently left out.
 */
export function runtimeImports(path: string, text: string): string[] {
  const source = ts.createSourceFile(path, text, ts.ScriptTarget.Latest, false, ts.ScriptKind.TS);
  const found: string[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier)) {
      if (!node.importClause?.isTypeOnly) found.push(node.moduleSpecifier.text);
    } else if (ts.isExportDeclaration(node) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      if (!node.isTypeOnly) found.push(node.moduleSpecifier.text);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const [arg] = node.arguments;
      if (!arg || !ts.isStringLiteralLike(arg)) {
        const { line } = source.getLineAndCharacterOfPosition(node.getStart(source));
        throw new Error(`${path}:${line + 1}: import() of a computed specifier; the enclave image is computed from literal imports only`);
      }
      found.push(arg.text);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

/** Follows the runtime imports of project modules from `entry` (repository-relative). */
export function importClosure(entry: string, root = REPO_ROOT): ImportClosure {
  const modules = new Set<string>();
  const packages = new Set<string>();
  const queue = [entry];
  while (queue.length > 0) {
    const file = queue.shift()!;
    if (modules.has(file)) continue;
    const abs = join(root, file);
    if (!existsSync(abs)) throw new Error(`import closure: ${file} does not exist`);
    modules.add(file);
    for (const specifier of runtimeImports(file, readFileSync(abs, 'utf8'))) {
      if (specifier.startsWith('./') || specifier.startsWith('../')) {
        const target = relative(root, resolve(dirname(abs), specifier)).split('\\').join('/');
        if (target.startsWith('..')) throw new Error(`import closure: ${file} imports ${specifier}, outside the repository`);
        queue.push(target);
      } else if (specifier.startsWith('node:') || BUILTINS.has(specifier)) {
        continue;
      } else if (specifier.startsWith('/') || specifier.includes(':')) {
        throw new Error(`import closure: ${file} imports ${specifier}; only relative paths, node: builtins and npm packages are followed`);
      } else {
        packages.add(packageName(specifier));
      }
    }
  }
  return { modules: [...modules].sort(), packages: [...packages].sort() };
}

/**
 * Lines of code in a TypeScript module: lines with something other than whitespace and comments
 * (comment ranges as the parser sees them, so `//` inside a string is code).
 */
export function codeLines(path: string, text: string): number {
  const source = ts.createSourceFile(path, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const blanked = text.split('');
  const seen = new Set<number>();
  const strip = (ranges: ts.CommentRange[] | undefined) => {
    for (const r of ranges ?? []) {
      if (seen.has(r.pos)) continue;
      seen.add(r.pos);
      for (let i = r.pos; i < r.end; i++) if (blanked[i] !== '\n') blanked[i] = ' ';
    }
  };
  const visit = (node: ts.Node): void => {
    strip(ts.getLeadingCommentRanges(text, node.pos));
    strip(ts.getTrailingCommentRanges(text, node.end));
    ts.forEachChild(node, visit);
  };
  visit(source);
  strip(ts.getLeadingCommentRanges(text, source.endOfFileToken.pos));
  return blanked.join('').split('\n').filter((line) => line.trim() !== '').length;
}

/** The image's own code (not npm dependencies), per module of the enclave closure: lines of code and all lines. */
export function enclaveImageLines(root = REPO_ROOT): { files: Array<{ path: string; code: number; lines: number }>; code: number; lines: number } {
  const files = importClosure(ENCLAVE_BUNDLE.main, root).modules.map((path) => {
    const text = readFileSync(join(root, path), 'utf8');
    return { path, code: codeLines(path, text), lines: text.split('\n').length - (text.endsWith('\n') ? 1 : 0) };
  });
  return { files, code: files.reduce((sum, f) => sum + f.code, 0), lines: files.reduce((sum, f) => sum + f.lines, 0) };
}

interface Entry {
  path: string;
  data: Buffer;
  executable: boolean;
}

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return e.name === 'node_modules' ? [] : walk(p);
    return e.isFile() ? [p] : [];
  });
}

function sourceEntries(root: string, spec: BundleSpec): Entry[] {
  const paths = spec.closure
    ? importClosure(spec.main, root).modules
    : spec.sourceDirs.flatMap((d) => walk(join(root, d)))
        .map((p) => relative(root, p).split('\\').join('/'))
        .filter((p) => p.endsWith('.ts') && !p.endsWith('.test.ts') && !spec.exclude.includes(p));
  return paths.map((p) => ({ path: p, data: readFileSync(join(root, p)), executable: false }));
}

/** Resolves `name` from `fromDir` the way Node does (nearest node_modules upwards). */
function packageDir(root: string, fromDir: string, name: string): string {
  let dir = fromDir;
  for (;;) {
    const candidate = join(dir, 'node_modules', name);
    if (existsSync(join(candidate, 'package.json'))) return candidate;
    if (dir === root || dir.length <= root.length) break;
    dir = join(dir, '..');
  }
  throw new Error(`dependency ${name} is not installed (run npm install)`);
}

function dependencyEntries(root: string, spec: BundleSpec): Entry[] {
  const seen = new Set<string>();
  const roots = spec.closure ? importClosure(spec.main, root).packages : spec.dependencies;
  const queue = roots.map((name) => ({ name, from: root }));
  while (queue.length > 0) {
    const { name, from } = queue.shift()!;
    const dir = packageDir(root, from, name);
    if (seen.has(dir)) continue;
    seen.add(dir);
    const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> };
    for (const dep of Object.keys(pkg.dependencies ?? {})) queue.push({ name: dep, from: dir });
  }
  return [...seen].flatMap((dir) =>
    walk(dir).map((p) => ({ path: relative(root, p).split('\\').join('/'), data: readFileSync(p), executable: (statSync(p).mode & 0o111) !== 0 })),
  );
}

function octal(value: number, width: number): Buffer {
  return Buffer.from(`${value.toString(8).padStart(width - 1, '0')}\0`, 'ascii');
}

/** An archive member: a regular file, a directory (path ends in `/`) or a symbolic link. */
export type TarEntry =
  | { path: string; type: 'file'; data: Buffer; mode: number }
  | { path: string; type: 'dir'; mode: number; uid?: number }
  | { path: string; type: 'symlink'; target: string };

/** One ustar header (POSIX.1-1988), with the path split into prefix/name when longer than 100. */
function header(entry: TarEntry): Buffer {
  const h = Buffer.alloc(512, 0);
  let name = entry.path;
  let prefix = '';
  if (Buffer.byteLength(name) > 100) {
    let i = name.indexOf('/');
    while (i >= 0 && Buffer.byteLength(name.slice(i + 1)) > 100) i = name.indexOf('/', i + 1);
    if (i < 0 || Buffer.byteLength(name.slice(0, i)) > 155) throw new Error(`path too long for ustar: ${entry.path}`);
    prefix = name.slice(0, i);
    name = name.slice(i + 1);
  }
  h.write(name, 0, 100, 'utf8');
  octal(entry.type === 'symlink' ? 0o777 : entry.mode, 8).copy(h, 100);
  const owner = entry.type === 'dir' ? (entry.uid ?? 0) : 0;
  octal(owner, 8).copy(h, 108);
  octal(owner, 8).copy(h, 116);
  octal(entry.type === 'file' ? entry.data.length : 0, 12).copy(h, 124);
  octal(0, 12).copy(h, 136);
  h.write('        ', 148, 8, 'ascii');
  h.write(entry.type === 'file' ? '0' : entry.type === 'dir' ? '5' : '2', 156, 1, 'ascii');
  if (entry.type === 'symlink') {
    if (Buffer.byteLength(entry.target) > 100) throw new Error(`symlink target too long for ustar: ${entry.target}`);
    h.write(entry.target, 157, 100, 'utf8');
  }
  h.write('ustar\0', 257, 6, 'ascii');
  h.write('00', 263, 2, 'ascii');
  // Named root only when owned by root: tar maps names before numbers when extracting.
  if (owner === 0) {
    h.write('root', 265, 32, 'ascii');
    h.write('root', 297, 32, 'ascii');
  }
  h.write(prefix, 345, 155, 'utf8');
  let sum = 0;
  for (const b of h) sum += b;
  Buffer.from(`${sum.toString(8).padStart(6, '0')}\0 `, 'ascii').copy(h, 148);
  return h;
}

export interface EnclaveBundle {
  tar: Buffer;
  sha384: string;
  files: string[];
}

/** Builds the enclave bundle in memory from the working tree at `root`. */
export function buildEnclaveBundle(root = REPO_ROOT): EnclaveBundle {
  return buildBundle(ENCLAVE_BUNDLE, root);
}

export function buildBundle(spec: BundleSpec, root = REPO_ROOT): EnclaveBundle {
  const manifest: Entry = {
    path: 'package.json',
    data: Buffer.from(`${JSON.stringify({ name: spec.name, private: true, type: 'module', main: spec.main }, null, 2)}\n`),
    executable: false,
  };
  const entries = [manifest, ...sourceEntries(root, spec), ...dependencyEntries(root, spec)];
  const tar = writeTar(entries.map((e): TarEntry => ({ path: e.path, type: 'file', data: e.data, mode: e.executable ? 0o755 : 0o644 })));
  return { tar, sha384: createHash('sha384').update(tar).digest('hex'), files: entries.map((e) => e.path).sort() };
}

/** A deterministic ustar archive: entries sorted by path, mtime 0, owner root, no extended headers. */
export function writeTar(entries: TarEntry[]): Buffer {
  const sorted = [...entries].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const parts: Buffer[] = [];
  for (const e of sorted) {
    parts.push(header(e));
    if (e.type !== 'file') continue;
    parts.push(e.data);
    const pad = (512 - (e.data.length % 512)) % 512;
    if (pad) parts.push(Buffer.alloc(pad));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}
