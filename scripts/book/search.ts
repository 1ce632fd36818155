/**
 * The book's search index: every section of every built page (the text under one h2 or h3, or
 * a page's opening before its first heading), with its prose, its code and its outputs'
 * captions, in a MiniSearch index (the `minisearch` package) that the page's search box loads
 * (lib/browser/search_box.ts).
 *
 * The index is written as a script, `assets/search/index.js`, that defines
 * `self.workbookSearchIndex`: a page opened from disk (`file://`) may run scripts beside it but
 * may not fetch them, so a JSON file would not do.
 *
 * @module
 */
import MiniSearch from "minisearch";
import { parseHTML } from "linkedom";
import { sha256Hex, writeFileAtomic } from "../../lib/runtime/files.ts";
import { bundle } from "./live.ts";
import { SEARCH_OPTIONS } from "../../lib/browser/search_options.ts";

/** One searchable section. */
export interface SearchDocument {
  /** `page.html#heading-id` (or `page.html` for a page's opening). */
  id: string;
  /** The page's title ("7. Evaluation"). */
  page: string;
  /** The section's heading ("" for a page's opening). */
  section: string;
  /** Its prose and captions. */
  text: string;
  /** Its code. */
  code: string;
  /** The opening of its text, shown under a hit. */
  excerpt: string;
}

/** How much of a section's text a hit shows. */
const EXCERPT = 240;

const WHITESPACE = /\s+/g;
const text = (node: { textContent: string | null }) =>
  (node.textContent ?? "").replace(WHITESPACE, " ").trim();

/** The sections of one built page (`html`, served as `file`). */
export function pageSections(file: string, html: string): SearchDocument[] {
  const { document } = parseHTML(html);
  const body = document.querySelector(".chapter-body") ?? document.querySelector("main");
  if (!body) return [];
  // KaTeX writes each formula three times (HTML, MathML, TeX source): keep the MathML's text.
  for (const node of Array.from(body.querySelectorAll(".katex-html, annotation"))) {
    (node as Element).remove();
  }
  const title = text(document.querySelector("h1") ?? { textContent: file });
  const number = document.querySelector(".chapter-kicker");
  const page = number ? `${text(number)} · ${title}` : title;
  const documents: SearchDocument[] = [];
  const start = (id: string, section: string): SearchDocument => ({
    id,
    page,
    section,
    text: "",
    code: "",
    excerpt: "",
  });
  let current = start(file, "");
  const walk = (node: Element) => {
    for (const child of Array.from(node.children) as Element[]) {
      const tag = child.tagName.toLowerCase();
      if (tag === "h2" || tag === "h3") {
        documents.push(current);
        current = start(`${file}#${child.id}`, text(child));
      } else if (tag === "pre") {
        current.code += " " + text(child);
      } else if (tag === "script" || tag === "style" || tag === "svg" || tag === "nav") {
        continue;
      } else if (/^(p|li|figcaption|td|th|blockquote)$/.test(tag)) {
        current.text += " " + text(child);
      } else if (tag !== "h1") {
        walk(child);
      }
    }
  };
  walk(body as unknown as Element);
  documents.push(current);
  return documents.filter((d) => d.text.trim() || d.code.trim()).map((d) => {
    const prose = d.text.trim();
    return {
      ...d,
      text: prose,
      code: d.code.trim(),
      excerpt: prose.length > EXCERPT
        ? `${prose.slice(0, EXCERPT).replace(/\s\S*$/, "")} …`
        : prose,
    };
  });
}

/** The index of every page of `siteDir`, as MiniSearch's JSON. */
export async function searchIndex(siteDir: string): Promise<string> {
  const search = new MiniSearch<SearchDocument>({ ...SEARCH_OPTIONS });
  const names = [...Deno.readDirSync(siteDir)].map((e) => e.name)
    .filter((n) => n.endsWith(".html")).sort();
  for (const name of names) {
    search.addAll(pageSections(name, await Deno.readTextFile(`${siteDir}/${name}`)));
  }
  return JSON.stringify(search);
}

/** Write `assets/search/index.js` for the pages of `siteDir`. */
export async function writeSearchIndex(siteDir: string): Promise<void> {
  const json = await searchIndex(siteDir);
  await writeFileAtomic(
    `${siteDir}/assets/search/index.js`,
    `self.workbookSearchIndex = ${JSON.stringify(json)};\n`,
  );
}

/**
 * The search box's bundle (lib/browser/search_box.ts with MiniSearch), kept in
 * `.cache/search/KEY.js`, KEY hashing its sources and the lock file.
 */
async function searchBoxBundle(root: string): Promise<string> {
  const sources = ["lib/browser/search_box.ts", "lib/browser/search_options.ts", "deno.lock"];
  const parts = await Promise.all(sources.map((f) => Deno.readTextFile(`${root}/${f}`)));
  const key = (await sha256Hex(parts.join("\0"))).slice(0, 16);
  const cached = `${root}/.cache/search/${key}.js`;
  try {
    return await Deno.readTextFile(cached);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  const code = await bundle("search_box.ts", root);
  await writeFileAtomic(cached, code);
  return code;
}

/** Write the search box (`assets/widgets/search.js`) and the index of `siteDir`'s pages. */
export async function writeSearchAssets(root: string, siteDir: string): Promise<void> {
  await writeFileAtomic(`${siteDir}/assets/widgets/search.js`, await searchBoxBundle(root));
  await writeSearchIndex(siteDir);
}
