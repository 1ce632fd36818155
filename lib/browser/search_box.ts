/**
 * The book's search box, in every page's top bar: the index (`assets/search/index.js`, written
 * by scripts/book/search.ts) is loaded on first use as a script, which works from a server and
 * from `file://` alike, and queried with MiniSearch; each hit links to its section.
 *
 * Keys: `/` focuses the box, ↑ and ↓ move through the hits, Enter opens one, Escape closes.
 *
 * This module is a bundle's entry (`assets/widgets/search.js`); it runs only in the page.
 *
 * @module
 */
import MiniSearch from "minisearch";
import { QUERY_OPTIONS, SEARCH_OPTIONS } from "./search_options.ts";

/** A stored hit, as the index keeps it. */
interface Hit {
  id: string;
  page: string;
  section: string;
  excerpt: string;
}

const page = globalThis as typeof globalThis & { workbookSearchIndex?: string };
const here = (document.currentScript as HTMLScriptElement | null)?.src ?? document.baseURI;
const MAX_HITS = 8;

let loading: Promise<MiniSearch<Hit>> | undefined;
/** The index, loaded once. */
function index(): Promise<MiniSearch<Hit>> {
  loading ??= new Promise<MiniSearch<Hit>>((resolve, reject) => {
    const script = document.createElement("script");
    script.src = new URL("../search/index.js", here).href;
    script.onload = () => {
      script.remove();
      if (typeof page.workbookSearchIndex !== "string") {
        reject(new Error("the search index is damaged: rebuild the book"));
        return;
      }
      resolve(MiniSearch.loadJSON<Hit>(page.workbookSearchIndex, SEARCH_OPTIONS));
      delete page.workbookSearchIndex;
    };
    script.onerror = () => reject(new Error("the search index is missing: rebuild the book"));
    document.head.append(script);
  });
  loading.catch(() => (loading = undefined));
  return loading;
}

function element<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attributes: Record<string, string> = {},
  text?: string,
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function mount(root: HTMLElement): void {
  const input = element("input", {
    type: "search",
    class: "search-input",
    placeholder: "Search the book  /",
    "aria-label": "Search the book",
    autocomplete: "off",
    spellcheck: "false",
    role: "combobox",
    "aria-autocomplete": "list",
    "aria-expanded": "false",
    "aria-controls": "search-results",
  });
  const results = element("ol", {
    class: "search-results",
    id: "search-results",
    role: "listbox",
    "aria-label": "Search results",
    hidden: "",
  });
  // What a screen reader hears after each query: how many sections matched.
  const status = element("p", { class: "visually-hidden", "aria-live": "polite" });
  root.append(input, results, status);
  let selected = -1;

  const links = () => Array.from(results.querySelectorAll<HTMLAnchorElement>("a"));
  const select = (k: number) => {
    const all = links();
    selected = all.length ? (k + all.length) % all.length : -1;
    all.forEach((a, i) => {
      a.classList.toggle("is-selected", i === selected);
      a.parentElement!.setAttribute("aria-selected", String(i === selected));
    });
    if (selected >= 0) input.setAttribute("aria-activedescendant", `search-hit-${selected}`);
    else input.removeAttribute("aria-activedescendant");
  };
  const open = (shown: boolean) => {
    results.hidden = !shown;
    input.setAttribute("aria-expanded", String(shown));
  };
  const close = () => {
    open(false);
    selected = -1;
    input.removeAttribute("aria-activedescendant");
  };

  async function show() {
    const query = input.value.trim();
    if (query.length < 2) return close();
    let hits: Hit[];
    try {
      hits = (await index()).search(query, QUERY_OPTIONS) as unknown as Hit[];
    } catch (error) {
      results.replaceChildren(element("li", { class: "search-note" }, (error as Error).message));
      open(true);
      return;
    }
    if (input.value.trim() !== query) return; // a newer query is on its way
    results.replaceChildren(
      ...(hits.length === 0
        ? [element("li", { class: "search-note" }, `Nothing in the book matches “${query}”.`)]
        : hits.slice(0, MAX_HITS).map((hit, i) => {
          const link = element("a", { href: hit.id, class: "search-hit" });
          link.append(
            element("span", { class: "search-where" }, hit.page),
            element("span", { class: "search-section" }, hit.section || "Introduction"),
            element("span", { class: "search-excerpt" }, hit.excerpt),
          );
          const item = element("li", {
            role: "option",
            id: `search-hit-${i}`,
            "aria-selected": "false",
          });
          item.append(link);
          return item;
        })),
    );
    open(true);
    selected = -1;
    status.textContent = hits.length === 0
      ? "No results"
      : `${Math.min(hits.length, MAX_HITS)} result${hits.length === 1 ? "" : "s"}`;
  }

  input.addEventListener("input", () => void show());
  input.addEventListener("focus", () => {
    void index().catch(() => {}); // start loading before the first key
    if (input.value.trim().length >= 2) void show();
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      select(selected + (event.key === "ArrowDown" ? 1 : -1));
    } else if (event.key === "Enter") {
      const target = links()[Math.max(0, selected)];
      if (target) target.click();
    } else if (event.key === "Escape") {
      close();
      input.blur();
    }
  });
  results.addEventListener("click", (event) => {
    if ((event.target as Element).closest("a")) close();
  });
  document.addEventListener("click", (event) => {
    if (!root.contains(event.target as Node)) close();
  });
  document.addEventListener("keydown", (event) => {
    const target = event.target as HTMLElement | null;
    const typing = target?.closest("input, textarea, select") || target?.isContentEditable;
    const modified = event.ctrlKey || event.metaKey || event.altKey;
    if (event.key === "/" && !typing && !modified) {
      event.preventDefault();
      input.focus();
    }
  });
}

for (const root of Array.from(document.querySelectorAll<HTMLElement>("[data-book-search]"))) {
  mount(root);
}
