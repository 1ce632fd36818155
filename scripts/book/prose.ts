/**
 * The prose of a page's Markdown: everything but fenced code blocks and inline code spans, which
 * the book's own syntax (citations, cross-references) must leave as written.
 *
 * @module
 */

/**
 * `markdown` with `rewrite` applied to each stretch of prose between code: a stretch may run over
 * line breaks (a citation or a reference may too), and never holds a fence or a code span.
 */
export function mapProse(markdown: string, rewrite: (prose: string) => string): string {
  const out: string[] = [];
  let text: string[] = [];
  const flush = () => {
    if (text.length === 0) return;
    const block = text.join("\n");
    out.push(
      block.split(/(`[^`]*`)/).map((piece, i) => (i % 2 ? piece : rewrite(piece))).join(""),
    );
    text = [];
  };
  let inFence = false;
  for (const line of markdown.split("\n")) {
    if (/^\s*(```|~~~)/.test(line)) {
      flush();
      inFence = !inFence;
      out.push(line);
    } else if (inFence) {
      out.push(line);
    } else {
      text.push(line);
    }
  }
  flush();
  return out.join("\n");
}
