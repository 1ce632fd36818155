/**
 * How the book's search index is built (scripts/book/search.ts) and read back in the page
 * (lib/browser/search_box.ts): MiniSearch must load an index with the options it was made with.
 *
 * No Deno or Node API: the browser bundle imports it.
 *
 * @module
 */

/** The fields MiniSearch indexes, and those it keeps for showing a hit. */
export const SEARCH_OPTIONS = {
  fields: ["section", "text", "code", "page"],
  storeFields: ["page", "section", "excerpt"],
};

/** How a query is matched: words as prefixes, one typo in five letters, headings first. */
export const QUERY_OPTIONS = {
  prefix: true,
  fuzzy: 0.2,
  combineWith: "AND" as const,
  boost: { section: 3, page: 2, text: 1, code: 0.5 },
};
