/**
 * The site generator's configuration (Eleventy 3): Markdown with KaTeX math rendered at build
 * time, Prism-highlighted TypeScript, heading anchors and a per-page table of contents, and
 * filters that keep every link relative so the book works from `file://`.
 *
 * The builder (scripts/book.ts) passes this file to Eleventy as its config file, so the returned
 * options apply too. `markdownTemplateEngine: false` matters: LaTeX braces would otherwise be
 * read as template syntax.
 *
 * @module
 */

import syntaxHighlight from "@11ty/eleventy-plugin-syntaxhighlight";
import { katex } from "@mdit/plugin-katex";
import { attributionText } from "./lib/data/attribution.ts";

/** The parts of markdown-it's API the heading rule touches. */
interface MdToken {
  type: string;
  tag: string;
  content: string;
  children: MdToken[] | null;
  attrSet(name: string, value: string): void;
  attrGet(name: string): string | null;
}
interface MarkdownIt {
  use(plugin: unknown, options?: unknown): MarkdownIt;
  core: { ruler: { push(name: string, rule: (state: { tokens: MdToken[] }) => void): void } };
}

/** The Eleventy configuration API as used here. */
export interface EleventyConfig {
  setUseGitIgnore(enabled: boolean): void;
  addPlugin(plugin: unknown, options?: unknown): void;
  amendLibrary(name: "md", amend: (md: MarkdownIt) => void): void;
  addFilter(name: string, filter: (...args: never[]) => unknown): void;
  addGlobalData(name: string, data: unknown): void;
  setQuietMode(quiet: boolean): void;
  setUseTemplateCache(enabled: boolean): void;
}

/** Lower-case words joined by dashes; `$…$` math keeps only its letters and digits. */
export function slugify(text: string): string {
  return text
    .normalize("NFKD")
    .replace(/[\u0300-\u036f]/g, "")
    .toLowerCase()
    .replace(/\\[a-z]+/g, " ")
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "") || "section";
}

function inlineText(token: MdToken): string {
  if (!token.children) return token.content;
  return token.children.map((child) => child.content).join("");
}

/** markdown-it rule: gives every heading an id made from its text, unique within the page. */
function headingIds(md: MarkdownIt): void {
  md.core.ruler.push("heading_ids", (state) => {
    const used = new Map<string, number>();
    state.tokens.forEach((token, i) => {
      if (token.type !== "heading_open" || token.attrGet("id")) return;
      const base = slugify(inlineText(state.tokens[i + 1]));
      const count = used.get(base) ?? 0;
      used.set(base, count + 1);
      token.attrSet("id", count === 0 ? base : `${base}-${count + 1}`);
    });
  });
}

/** One table-of-contents entry. */
export interface TocEntry {
  /** 2 or 3. */
  level: number;
  /** The heading's id. */
  id: string;
  /** Its inner HTML (math included). */
  html: string;
}

/** The h2 and h3 headings of rendered HTML, in order. */
export function tableOfContents(html: string): TocEntry[] {
  const entries: TocEntry[] = [];
  for (const match of html.matchAll(/<h([23])\s+id="([^"]+)"[^>]*>([\s\S]*?)<\/h\1>/g)) {
    entries.push({ level: Number(match[1]), id: match[2], html: match[3].trim() });
  }
  return entries;
}

/** A page URL as a relative link: "/" → "index.html", "/a.html" → "a.html". */
export function relativeUrl(url: string): string {
  if (!url || url === "/") return "index.html";
  const path = url.replace(/^\/+/, "");
  return path.endsWith("/") ? `${path}index.html` : path;
}

function escapeHtml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

/** The attribution line with its URLs turned into links. */
export function linkifyAttribution(text: string): string {
  return escapeHtml(text).replace(
    /https?:\/\/[^\s)]+/g,
    (url) => `<a href="${url}" rel="license noopener">${url.replace(/^https?:\/\//, "")}</a>`,
  );
}

/** The site configuration: plugins, filters and global data; returns Eleventy's options. */
export default function siteConfig(eleventyConfig: EleventyConfig) {
  eleventyConfig.setUseGitIgnore(false);
  // Eleventy keeps read templates in a process-wide cache; the builder may build several times
  // in one process (tests, the dev server), and must see the pages it just rewrote.
  eleventyConfig.setUseTemplateCache(false);
  eleventyConfig.addPlugin(syntaxHighlight, { preAttributes: { tabindex: 0 } });
  eleventyConfig.amendLibrary("md", (md) => {
    md.use(katex, { throwOnError: false, strict: "ignore" });
    headingIds(md);
  });
  eleventyConfig.addFilter("toc", (html: string) => tableOfContents(html ?? ""));
  eleventyConfig.addFilter("rel", (url: string) => relativeUrl(url));
  let attribution: string;
  try {
    attribution = linkifyAttribution(attributionText());
  } catch (error) {
    attribution = `Image credits unavailable: ${(error as Error).message}`;
  }
  eleventyConfig.addGlobalData("attribution", attribution);
  return {
    markdownTemplateEngine: false,
    htmlTemplateEngine: "njk",
    dir: { includes: "_includes", data: "_data" },
  };
}
