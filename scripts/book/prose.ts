/**
 * The prose of a page's Markdown: what the book's own syntax (citations, cross-references) may
 * rewrite. Left as written are the front matter, fenced code blocks (a fence closes only with
 * its own character, at least as long), code spans (a run of backticks closed by a run of the
 * same length, within one paragraph), and HTML: a tag with its attributes (an image's alt text, a
 * link's title), and the whole content of `<script>`, `<pre>` and `<code>` elements.
 *
 * @module
 */

const FRONT_MATTER = /^---\n[\s\S]*?\n---\n/;
const FENCE = /^ {0,3}(`{3,}|~{3,})/;
const PROTECTED = new RegExp(
  [
    "(`+)[\\s\\S]*?(?<!`)\\1(?!`)", // a code span
    "<(script|pre|code)\\b[^>]*>[\\s\\S]*?<\\/\\2\\s*>", // an element whose text is not prose
    "<!--[\\s\\S]*?-->", // a comment
    "<\\/?[A-Za-z][\\w-]*(?:\\s[^<>]*)?\\/?>", // a tag, attributes and all
  ].join("|"),
  "g",
);

/** `text` with `rewrite` applied to each stretch between the matches of `pattern` (global). */
function mapBetween(text: string, pattern: RegExp, rewrite: (prose: string) => string): string {
  let out = "";
  let last = 0;
  for (const match of text.matchAll(pattern)) {
    out += rewrite(text.slice(last, match.index)) + match[0];
    last = match.index + match[0].length;
  }
  return out + rewrite(text.slice(last));
}

/**
 * `markdown` with `rewrite` applied to each stretch of prose (see the module comment). A stretch
 * may run over line breaks within a paragraph, as a citation or a reference may.
 */
export function mapProse(markdown: string, rewrite: (prose: string) => string): string {
  const front = FRONT_MATTER.exec(markdown)?.[0] ?? "";
  const out: string[] = [];
  let text: string[] = [];
  const flush = () => {
    if (text.length === 0) return;
    const paragraphs = text.join("\n").split(/(\n[ \t]*\n)/);
    out.push(paragraphs.map((p) => mapBetween(p, PROTECTED, rewrite)).join(""));
    text = [];
  };
  let fence: string | undefined; // the open fence's run of backticks or tildes
  for (const line of markdown.slice(front.length).split("\n")) {
    const run = FENCE.exec(line)?.[1];
    if (fence === undefined && run !== undefined) {
      flush();
      fence = run;
      out.push(line);
    } else if (fence !== undefined) {
      const closes = run !== undefined && run[0] === fence[0] && run.length >= fence.length &&
        line.trim() === run;
      if (closes) fence = undefined;
      out.push(line);
    } else {
      text.push(line);
    }
  }
  flush();
  return front + out.join("\n");
}
