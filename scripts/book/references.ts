/**
 * The book's references: one bibliography (`assets/references.json`), cited from the chapters'
 * prose by key, as Pandoc writes citations,
 *
 *   [@ho2020]                 → (Ho et al., 2020)
 *   [@ho2020, DDPM]           → (Ho et al., 2020, DDPM)
 *   [FID, @heusel2017]        → (FID, Heusel et al., 2017)
 *   [@ho2020; @song2021]      → (Ho et al., 2020; Song et al., 2021)
 *   @ho2020                   → Ho et al. (2020)
 *
 * each name a link to its entry on the references page, and each entry with links back to every
 * place that cites it. Code (fenced or inline) is left alone; an unknown key is an error that
 * names the page and what to do.
 *
 * @module
 */
import { UserError } from "../../lib/core/errors.ts";
import { mapProse } from "./prose.ts";

/** One work of the bibliography. */
export interface Reference {
  key: string;
  authors: string[];
  year: number;
  title: string;
  venue: string;
  url: string;
}

/** Where a work is cited: the page and the citation's anchor there. */
export interface Citation {
  page: string;
  anchor: string;
  /** What the page is called in a back-link ("6", "the introduction"). */
  label: string;
}

/** The page the bibliography is written to. */
export const REFERENCES_PAGE = "references.html";

const KEY = "[a-z][a-z-]*\\d{4}[a-z]?";
const BRACKETED = new RegExp(`\\[([^\\[\\]]*(?<![\\w@/.-])@${KEY}[^\\[\\]]*)\\](?!\\()`, "g");
const NARRATIVE = new RegExp(`(^|[^\\w@/.\\[-])@(${KEY})\\b`, "g");

/** "Ho et al.", "Ho & Salimans", "Vincent": the authors as a citation names them. */
export function citedNames(reference: Reference): string {
  const surname = (name: string) => name.split(" ").at(-1)!;
  const a = reference.authors;
  if (a.length === 1) return surname(a[0]);
  if (a.length === 2) return `${surname(a[0])} & ${surname(a[1])}`;
  return `${surname(a[0])} et al.`;
}

function escapeHtml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;");
}

/** The references of `assets/references.json`, checked, by key. */
export function parseReferences(json: string, source = "assets/references.json") {
  let list: unknown;
  try {
    list = JSON.parse(json);
  } catch (error) {
    throw new UserError(`${source} is not valid JSON (${(error as Error).message}); fix it there`);
  }
  if (!Array.isArray(list)) {
    throw new UserError(
      `${source} must hold a JSON array of entries {key, authors, year, title, venue, url}`,
    );
  }
  const byKey = new Map<string, Reference>();
  for (const [i, r] of (list as Reference[]).entries()) {
    const name = `${source}: the entry ${typeof r?.key === "string" ? r.key : `at index ${i}`}`;
    const problem = entryProblem(r);
    if (problem) throw new UserError(`${name} ${problem}`);
    if (byKey.has(r.key)) throw new UserError(`${source}: the key ${r.key} is there twice`);
    byKey.set(r.key, r);
  }
  return byKey;
}

/** What is wrong with an entry of the bibliography, if anything. */
function entryProblem(r: Reference): string | undefined {
  if (typeof r !== "object" || r === null) return "is not an object";
  const missing = ["key", "authors", "year", "title", "venue", "url"].filter((f) => !(f in r));
  if (missing.length) return `lacks ${missing.join(", ")}`;
  if (typeof r.key !== "string" || !new RegExp(`^${KEY}$`).test(r.key)) {
    return "has a key not of the form name2020 (lower-case letters and hyphens, then the year)";
  }
  if (/^(fig|tbl|eq)-/.test(r.key)) {
    return "has a key that reads as a cross-reference (fig-, tbl-, eq-)";
  }
  if (
    !Array.isArray(r.authors) || r.authors.length === 0 ||
    r.authors.some((a) => typeof a !== "string")
  ) {
    return 'needs authors as a list of names, e.g. ["Jonathan Ho", "Ajay Jain"]';
  }
  if (!Number.isInteger(r.year)) return "needs its year as a number, e.g. 2020";
  if (typeof r.title !== "string" || typeof r.venue !== "string") {
    return "needs a title and a venue";
  }
  if (typeof r.url !== "string" || !/^https?:\/\//.test(r.url)) return "needs an http(s) url";
  return undefined;
}

/**
 * `markdown` with its citations resolved into links (see the module comment), and where each
 * key was cited. `page` is the page's file name, `label` what back-links call it.
 *
 * @throws UserError naming the page and the key when a key is not in the bibliography
 */
export function resolveCitations(
  markdown: string,
  page: string,
  label: string,
  references: ReadonlyMap<string, Reference>,
): { markdown: string; citations: Map<string, Citation[]> } {
  const citations = new Map<string, Citation[]>();
  /** A link to the entry `key`, reading `text(entry)`; an unknown key is the writer's mistake. */
  const cite = (key: string, text: (reference: Reference) => string) => {
    const reference = references.get(key);
    if (!reference) {
      throw new UserError(
        `${page} cites @${key}, which assets/references.json does not have; add it there ` +
          `(key, authors, year, title, venue, url) or correct the key`,
      );
    }
    const list = citations.get(key) ?? [];
    const anchor = `cite-${key}-${list.length + 1}`;
    list.push({ page, anchor, label });
    citations.set(key, list);
    return `<a class="citation" id="${anchor}" href="${REFERENCES_PAGE}#ref-${key}" title="${
      escapeHtml(`${reference.title} (${reference.venue} ${reference.year})`)
    }">${escapeHtml(text(reference))}</a>`;
  };
  const prose = (text: string) =>
    text
      .replace(BRACKETED, (whole, inner: string) => {
        const parts = inner.split(";").map((part) => {
          const match = new RegExp(`^(.*?)@(${KEY})(.*)$`, "s").exec(part.trim());
          if (!match) return null;
          const [, prefix, key, suffix] = match;
          return `${prefix}${cite(key, (r) => `${citedNames(r)}, ${r.year}`)}${suffix}`;
        });
        return parts.some((p) => p === null) ? whole : `(${parts.join("; ")})`;
      })
      .replace(NARRATIVE, (_whole, before: string, key: string) =>
        `${before}${cite(key, citedNames)} (${references.get(key)!.year})`);
  // Code and HTML stay as they are (prose.ts); a citation may run over a line break.
  return { markdown: mapProse(markdown, prose), citations };
}

/** The references page: every entry, sorted by its first author, with its back-links. */
export function referencesPage(
  references: ReadonlyMap<string, Reference>,
  citations: ReadonlyMap<string, Citation[]>,
): string {
  const sorted = [...references.values()].sort((a, b) =>
    citedNames(a).localeCompare(citedNames(b)) || a.year - b.year
  );
  const entries = sorted.map((r) => {
    // One link a citing page, and a numbered one for each further place on it.
    const byPage = new Map<string, Citation[]>();
    for (const c of citations.get(r.key) ?? []) {
      byPage.set(c.page, [...(byPage.get(c.page) ?? []), c]);
    }
    const links = [...byPage.values()].map((places) =>
      places.map((c, i) =>
        `<a class="backlink" href="${c.page}#${c.anchor}" aria-label="back to where ${
          escapeHtml(c.label)
        } cites it${i ? ` (${i + 1})` : ""}">${i ? `<sup>${i + 1}</sup>` : escapeHtml(c.label)}</a>`
      ).join(" ")
    );
    return `<li id="ref-${r.key}"><span class="ref-authors">${
      escapeHtml(r.authors.join(", "))
    }</span> (${r.year}). <a class="ref-title" href="${escapeHtml(r.url)}">${
      escapeHtml(r.title)
    }</a>. <span class="ref-venue">${escapeHtml(r.venue)}</span>.${
      links.length ? ` <span class="ref-cited">Cited in ${links.join(", ")}.</span>` : ""
    }</li>`;
  });
  return [
    "---",
    'title: "References"',
    "layout: base.njk",
    `permalink: ${REFERENCES_PAGE}`,
    "templateEngineOverride: md",
    "---",
    "",
    '<article class="references">',
    "<h1>References</h1>",
    "<p>The papers the chapters cite, each with links back to where it is cited.</p>",
    '<ol class="reference-list">',
    ...entries,
    "</ol>",
    "</article>",
    "",
  ].join("\n");
}
