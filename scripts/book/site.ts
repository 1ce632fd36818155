/**
 * From chapter pages to a static site: writes the Markdown sources, layouts and data into the
 * build folder, runs Eleventy on it, and copies styles, widgets, KaTeX and chapter outputs beside
 * the pages, all in a new folder that replaces the site only once it is complete. Every page sits
 * at the top of the site and every link is relative, so the site works from `file://` as well as
 * from a server.
 *
 * @module
 */

import Eleventy from "@11ty/eleventy";
import { exists, writeFileAtomic } from "../../lib/runtime/files.ts";
import { copyDir, OUTGOING, QUICK_TIMING, removeIfPresent, swapIn } from "./results.ts";
import { liveModelsOf, writeLiveAssets } from "./live.ts";
import { writeSearchAssets } from "./search.ts";
import { type Citation, parseReferences, referencesPage, resolveCitations } from "./references.ts";
import { collectTargets, resolveCrossReferences, type UnresolvedReference } from "./crossrefs.ts";

/** A chapter as the site's navigation lists it. */
export interface NavEntry {
  /** Its id. */
  id: string;
  /** Its number. */
  number: number;
  /** Its title. */
  title: string;
  /** Its page, relative. */
  url: string;
}

/** What the site is built from. */
export interface SiteInput {
  /** The project root (holds `_site_config.ts` and `node_modules/katex`). */
  root: string;
  /** The assets folder (layouts, styles, widgets, pages). */
  assetsDir: string;
  /** Where the Markdown sources are written (`_book/src`). */
  buildDir: string;
  /** Where the site is written (`_site`). */
  siteDir: string;
  /** Chapter pages: file name (`<id>.md`) → Markdown. */
  pages: Map<string, string>;
  /** The chapters in order, for the navigation. */
  nav: NavEntry[];
  /** Output folders to publish: chapter id → folder. */
  outputs: Map<string, string>;
  /** Zoo models the chapters load: name → folder (from the root), whose manifests are published. */
  models?: Map<string, string>;
  /** Extra global data for the layouts (`book.*`). */
  data?: Record<string, unknown>;
}

/** The entries of a folder; none when it does not exist. */
async function listEntries(dir: string): Promise<Deno.DirEntry[]> {
  const entries: Deno.DirEntry[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) entries.push(entry);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return entries;
}

/** The names of the files of a folder; none when it does not exist. */
async function listFiles(dir: string): Promise<string[]> {
  return (await listEntries(dir)).filter((e) => e.isFile).map((e) => e.name);
}

async function writeIfChanged(path: string, text: string): Promise<void> {
  const old = await Deno.readTextFile(path).catch(() => undefined);
  if (old !== text) await writeFileAtomic(path, text);
}

/**
 * Resolves the citations of `pages` (scripts/book/references.ts) against
 * `assets/references.json`, and adds the references page; false when there is no bibliography.
 */
async function citeReferences(pages: Map<string, string>, input: SiteInput): Promise<boolean> {
  const path = `${input.assetsDir}/references.json`;
  const json = await Deno.readTextFile(path).catch(() => undefined);
  if (json === undefined) return false;
  const references = parseReferences(json, path);
  const numbers = new Map(input.nav.map((n) => [`${n.id}.md`, String(n.number)]));
  const cited = new Map<string, Citation[]>();
  for (const [name, text] of pages) {
    if (!name.endsWith(".md")) continue;
    const page = name.replace(/\.md$/, ".html");
    const label = numbers.has(name) ? `chapter ${numbers.get(name)}` : "the introduction";
    const { markdown, citations } = resolveCitations(text, page, label, references);
    pages.set(name, markdown);
    for (const [key, list] of citations) cited.set(key, [...(cited.get(key) ?? []), ...list]);
  }
  pages.set("references.md", referencesPage(references, cited));
  return true;
}

/** Resolves the cross-references of `pages` (scripts/book/crossrefs.ts) across the book. */
function crossReference(pages: Map<string, string>): UnresolvedReference[] {
  const targets = collectTargets(pages);
  const unresolved: UnresolvedReference[] = [];
  for (const [name, text] of pages) {
    if (!name.endsWith(".md")) continue;
    const resolved = resolveCrossReferences(text, name.replace(/\.md$/, ".html"), targets);
    pages.set(name, resolved.markdown);
    unresolved.push(...resolved.unresolved);
  }
  return unresolved;
}

/**
 * Writes the Eleventy input: chapter pages, the landing page (assets/pages), layouts
 * (assets/layouts → `_includes`) and `_data/book.json`. Files are only rewritten when their text
 * changed, and pages of chapters no longer in the book are removed. Returns the cross-references
 * nothing in this build answers.
 */
export async function writeSources(input: SiteInput): Promise<UnresolvedReference[]> {
  const { buildDir, assetsDir } = input;
  await Deno.mkdir(`${buildDir}/_includes`, { recursive: true });
  await Deno.mkdir(`${buildDir}/_data`, { recursive: true });
  const wanted = new Map(input.pages);
  for (const name of await listFiles(`${assetsDir}/pages`)) {
    wanted.set(name, await Deno.readTextFile(`${assetsDir}/pages/${name}`));
  }
  const unresolved = crossReference(wanted);
  const hasReferences = await citeReferences(wanted, input);
  for (const name of await listFiles(buildDir)) {
    if (!wanted.has(name)) await Deno.remove(`${buildDir}/${name}`);
  }
  for (const [name, text] of wanted) await writeIfChanged(`${buildDir}/${name}`, text);
  const layouts = await listFiles(`${assetsDir}/layouts`);
  for (const name of await listFiles(`${buildDir}/_includes`)) {
    if (!layouts.includes(name)) await Deno.remove(`${buildDir}/_includes/${name}`);
  }
  for (const name of layouts) {
    await writeIfChanged(
      `${buildDir}/_includes/${name}`,
      await Deno.readTextFile(`${assetsDir}/layouts/${name}`),
    );
  }
  const data = { chapters: input.nav, hasReferences, ...(input.data ?? {}) };
  await writeIfChanged(`${buildDir}/_data/book.json`, JSON.stringify(data, null, 1));
  return unresolved;
}

/**
 * Copies what pages link to into the site: `assets/styles`, `assets/widgets`, KaTeX's CSS and
 * fonts (`assets/katex`), each chapter's outputs (`outputs/<id>/`, manifests left out), the
 * manifests of the zoo models the chapters load (`models/<name>.json`), and when
 * a page holds a live sampler, the bundled browser library and the live models (scripts/book/live.ts).
 */
export async function copyStatic(input: SiteInput): Promise<void> {
  const { siteDir, assetsDir, root } = input;
  for (const folder of ["styles", "widgets"]) {
    await removeIfPresent(`${siteDir}/assets/${folder}`);
    await copyDir(`${assetsDir}/${folder}`, `${siteDir}/assets/${folder}`);
  }
  const live = liveModelsOf(input.pages.values());
  if (live.length > 0) await writeLiveAssets(root, `${siteDir}/assets`, live);
  const katex = `${root}/node_modules/katex/dist`;
  await Deno.mkdir(`${siteDir}/assets/katex/fonts`, { recursive: true });
  await Deno.copyFile(`${katex}/katex.min.css`, `${siteDir}/assets/katex/katex.min.css`);
  for (const name of await listFiles(`${katex}/fonts`)) {
    if (name.endsWith(".woff2")) {
      await Deno.copyFile(`${katex}/fonts/${name}`, `${siteDir}/assets/katex/fonts/${name}`);
    }
  }
  await removeIfPresent(`${siteDir}/models`);
  for (const [name, path] of input.models ?? []) {
    await Deno.mkdir(`${siteDir}/models`, { recursive: true });
    await Deno.copyFile(`${root}/${path}/manifest.json`, `${siteDir}/models/${name}.json`);
  }
  await removeIfPresent(`${siteDir}/outputs`);
  for (const [id, dir] of input.outputs) {
    const target = `${siteDir}/outputs/${id}`;
    await Deno.mkdir(target, { recursive: true });
    for (const name of await listFiles(dir)) {
      if (["result.json", "outputs.json", QUICK_TIMING].includes(name) || name.endsWith(".tmp")) {
        continue;
      }
      await Deno.copyFile(`${dir}/${name}`, `${target}/${name}`);
    }
  }
}

/** An Eleventy from the build folder to the site folder, configured by `_site_config.ts`. */
export function eleventyFor(input: SiteInput): Eleventy {
  return new Eleventy(input.buildDir, input.siteDir, {
    quietMode: true,
    configPath: `${input.root}/_site_config.ts`,
  });
}

/** A piece of math KaTeX could not render. */
export interface MathError {
  /** The page, e.g. `01-forward-process.html`. */
  page: string;
  /** KaTeX's message (it names the offending TeX). */
  message: string;
}

function unescapeHtml(text: string): string {
  return text.replace(/&quot;/g, '"').replace(/&#x27;|&#39;/g, "'").replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">").replace(/&amp;/g, "&");
}

/** Math that KaTeX rendered as an error (`<span class="katex-error" title="…">`), page by page. */
export async function findMathErrors(siteDir: string): Promise<MathError[]> {
  const errors: MathError[] = [];
  for (const name of (await listFiles(siteDir)).sort()) {
    if (!name.endsWith(".html")) continue;
    const html = await Deno.readTextFile(`${siteDir}/${name}`);
    for (const match of html.matchAll(/class="katex-error"[^>]*?title="([^"]*)"/g)) {
      errors.push({ page: name, message: unescapeHtml(match[1]) });
    }
    // An unknown command is not a parse error: KaTeX draws its name in its error colour.
    for (const match of html.matchAll(/<mstyle mathcolor="#cc0000"><mtext>(\\[^<]*)<\/mtext>/g)) {
      errors.push({ page: name, message: `undefined control sequence ${unescapeHtml(match[1])}` });
    }
  }
  return errors;
}

/** The suffix of the new site's folder while it is built (the old one goes to `OUTGOING`). */
const INCOMING = ".incoming-";

/**
 * Tidies up after a build killed mid-way: a site caught between the two renames of the swap
 * (no `siteDir`, its old version in `*.outgoing-*`) is put back, and every other leftover
 * folder beside `siteDir` (`*.incoming-*`, `*.outgoing-*`) is removed.
 */
async function removeLeftovers(siteDir: string): Promise<void> {
  const slash = siteDir.lastIndexOf("/");
  const parent = slash < 0 ? "." : siteDir.slice(0, slash) || "/";
  const base = siteDir.slice(slash + 1);
  const leftovers = (await listEntries(parent)).map((e) => e.name)
    .filter((name) =>
      name.startsWith(`${base}${INCOMING}`) || name.startsWith(`${base}${OUTGOING}`)
    );
  const outgoing = leftovers.filter((name) => name.startsWith(`${base}${OUTGOING}`));
  if (!(await exists(siteDir)) && outgoing.length > 0) {
    const times = await Promise.all(
      outgoing.map(async (name) => (await Deno.stat(`${parent}/${name}`)).mtime?.getTime() ?? 0),
    );
    const newest = outgoing[times.indexOf(Math.max(...times))];
    await Deno.rename(`${parent}/${newest}`, siteDir);
    leftovers.splice(leftovers.indexOf(newest), 1);
  }
  for (const name of leftovers) await removeIfPresent(`${parent}/${name}`);
}

/**
 * Writes sources, runs Eleventy once and copies static files, all into a new folder beside the
 * site, which replaces the site only when everything succeeded: a failed build (a template error,
 * a missing asset) throws and leaves the previous site as it was. Returns the site's index.html,
 * the math KaTeX could not render (shown in red on the page) and the cross-references nothing
 * answered (shown as "Figure ??").
 */
export async function buildSite(
  input: SiteInput,
): Promise<{ index: string; mathErrors: MathError[]; unresolved: UnresolvedReference[] }> {
  const { siteDir } = input;
  const unresolved = await writeSources(input);
  await removeLeftovers(siteDir);
  const hadSite = await exists(siteDir);
  const incoming = { ...input, siteDir: `${siteDir}${INCOMING}${crypto.randomUUID().slice(0, 8)}` };
  try {
    await eleventyFor(incoming).write();
    await copyStatic(incoming);
    await writeSearchAssets(input.root, incoming.siteDir);
    await swapIn(incoming.siteDir, siteDir);
  } catch (error) {
    await removeIfPresent(incoming.siteDir);
    const message = `the site was not built: ${(error as Error).message}`;
    if (!hadSite) {
      throw new Error(`${message}; no site was written to ${siteDir}`, { cause: error });
    }
    if (!(await exists(siteDir))) throw new Error(message, { cause: error }); // it says where
    throw new Error(`${message}; the previous site in ${siteDir} is unchanged`, { cause: error });
  }
  return { index: `${siteDir}/index.html`, mathErrors: await findMathErrors(siteDir), unresolved };
}
