/**
 * Numbered figures, tables and equations, and the cross-references that point at them, written
 * as Quarto writes them:
 *
 *   // %% {#fig-alphabar}         a code cell's marker labels the cell's first figure (cells.ts)
 *   // %% {#fig-a #fig-b #tbl-c}  …its first two figures and its first table
 *   $$ … $$ {#eq-forward}         a display equation of the prose, labelled
 *   @fig-alphabar                 → "Figure 2.1", a link to it, on its own page or from another
 *   @tbl-fid, @eq-forward         → "Table 7.2", "Eq. (1.3)"
 *
 * Every figure (a plot, an image grid, an animation, a widget) and every table of a chapter is
 * numbered, the chapter's number first, in the order of its page, whether labelled or not; an
 * equation is numbered when it is labelled, its number in the right margin. The numbers are made when the book is built, so they
 * follow any reordering of cells or chapters. Labels belong to the book, not to a page, so a
 * chapter can point at another's figure. A label on a page twice, or of an unknown kind, is an
 * error; a reference to a label no page holds reads "Figure ??" and is reported, since the chapter
 * holding it may simply not have run in this build.
 *
 * @module
 */
import { UserError } from "../../lib/core/errors.ts";
import type { OutputKind } from "../../lib/book/runtime.ts";
import { mapProse } from "./prose.ts";

/** What a label names: a figure, a table or an equation. */
export type TargetKind = "fig" | "tbl" | "eq";

/** Something a cross-reference can point at. */
export interface Target {
  label: string;
  kind: TargetKind;
  /** Its number, e.g. `4.3`. */
  number: string;
  /** The page it is on, e.g. `04-training.html`. */
  page: string;
}

/** A reference no page could answer. */
export interface UnresolvedReference {
  page: string;
  label: string;
}

const LABEL_BODY = "[a-z0-9](?:[a-z0-9-]*[a-z0-9])?";
const LABEL = new RegExp(`^(fig|tbl|eq)-${LABEL_BODY}$`);
const REFERENCE = new RegExp(`(^|[^\\w@/.\\[-])@((?:fig|tbl|eq)-${LABEL_BODY})(?![\\w-])`, "g");
const EQUATION = new RegExp(
  `^\\$\\$((?:[^$]|\\$(?!\\$))+?)\\$\\$[ \\t]*\\{#(eq-${LABEL_BODY})\\}[ \\t]*$`,
  "gm",
);
const TARGET = /\bid="((?:fig|tbl|eq)-[a-z0-9-]+)" data-number="([\d.]+)"/g;

/** How prose names a target: `Figure 4.3`, `Table 7.2`, `Eq. (2.1)`. */
export function targetName(kind: TargetKind, number: string): string {
  return kind === "fig"
    ? `Figure ${number}`
    : kind === "tbl"
    ? `Table ${number}`
    : `Eq. (${number})`;
}

/** The kind of target an output is numbered as, if any: plots, images and widgets are figures. */
export function targetKindOf(output: OutputKind): TargetKind | undefined {
  if (output === "table") return "tbl";
  return ["figure", "images", "animation", "widget"].includes(output) ? "fig" : undefined;
}

/** The kind a label names (`fig-…` → figure); undefined when it is not a label the book knows. */
export function labelKind(label: string): TargetKind | undefined {
  return LABEL.test(label) ? label.split("-")[0] as TargetKind : undefined;
}

/** What a numbered output on a page carries: its anchor, its number and what prose calls it. */
export interface OutputTarget {
  id: string;
  number: string;
  name: string;
}

/**
 * Numbers the targets of one chapter in page order. Labels of a code cell are handed out to its
 * outputs of their kind, in order; an output without one gets an anchor of its number
 * (`figure-4-3`), so that it can still be linked to.
 */
export class ChapterNumbering {
  #counts: Record<TargetKind, number> = { fig: 0, tbl: 0, eq: 0 };
  #labels = new Set<string>();

  /** `chapter`: its number; `where`: how errors name the chapter (its file). */
  constructor(readonly chapter: number, readonly where: string) {}

  #take(kind: TargetKind, label: string | undefined): OutputTarget {
    const number = `${this.chapter}.${++this.#counts[kind]}`;
    if (label !== undefined) {
      if (this.#labels.has(label)) {
        throw new UserError(`${this.where}: the label ${label} is given twice; labels must differ`);
      }
      this.#labels.add(label);
    }
    const id = label ??
      `${kind === "fig" ? "figure" : kind === "tbl" ? "table" : "equation"}-${
        number.replace(/\./g, "-")
      }`;
    return { id, number, name: targetName(kind, number) };
  }

  /**
   * The targets of one code cell's outputs (undefined for outputs that are not numbered), with
   * the cell's `labels` handed out in order to its figures and its tables. `complete`: the cell
   * ran to its end, so a label left without an output of its kind is a mistake.
   *
   * @throws UserError when a label is not `fig-…` or `tbl-…`, or names an output the cell lacks
   */
  outputs(
    kinds: OutputKind[],
    labels: string[] = [],
    line = 0,
    complete = false,
  ): (OutputTarget | undefined)[] {
    const queue: Record<TargetKind, string[]> = { fig: [], tbl: [], eq: [] };
    for (const label of labels) {
      const kind = labelKind(label);
      if (kind !== "fig" && kind !== "tbl") {
        if (label.endsWith("{")) {
          throw new UserError(
            `${this.where}:${line}: the cell's marker has "${label.slice(0, -1)}" in its ` +
              `{…} without a #; write a label as {#${label.slice(0, -1)}}`,
          );
        }
        throw new UserError(
          `${this.where}:${line}: the cell's label "${label}" is not one the book knows; ` +
            "a code cell labels its outputs fig-name (a plot, images, an animation, a widget) " +
            "or tbl-name (a table), the name of lower-case letters, digits and hyphens",
        );
      }
      queue[kind].push(label);
    }
    const targets = kinds.map((output) => {
      const kind = targetKindOf(output);
      return kind && this.#take(kind, queue[kind].shift());
    });
    const left = [...queue.fig, ...queue.tbl];
    if (complete && left.length > 0) {
      const count = (kind: TargetKind) => kinds.filter((k) => targetKindOf(k) === kind).length;
      throw new UserError(
        `${this.where}:${line}: the cell's label${left.length > 1 ? "s" : ""} ${left.join(", ")} ` +
          `name${left.length > 1 ? "" : "s"} nothing: the cell makes ${count("fig")} figure(s) ` +
          `and ${count("tbl")} table(s), labelled in that order; remove the label or move it to ` +
          "the cell that makes the output",
      );
    }
    return targets;
  }

  /**
   * `prose` with each labelled display equation (`$$ … $$ {#eq-name}`, the `$$` opening its line)
   * wrapped in an anchor beside its number. The number stays outside KaTeX (not its `\tag`), so
   * that an equation wider than a phone scrolls under it instead of running into it.
   */
  equations(prose: string): string {
    return prose.replace(EQUATION, (_whole, body: string, label: string) => {
      const { number } = this.#take("eq", label);
      // Blank lines around the block: text on the next line must not join the HTML block.
      return `\n<div class="equation" id="${label}" data-number="${number}">\n\n` +
        `$$${body.trimEnd()}$$\n\n<div class="equation-number">(${number})</div>\n</div>\n`;
    });
  }
}

/** The markup a numbered output carries on its element: ` id="…" data-number="…"`. */
export function targetAttributes(target: OutputTarget | undefined): string {
  return target ? ` id="${target.id}" data-number="${target.number}"` : "";
}

/**
 * The labelled targets of the pages (name → Markdown), found by the anchors numbering wrote.
 *
 * @throws UserError when two pages hold the same label
 */
export function collectTargets(pages: ReadonlyMap<string, string>): Map<string, Target> {
  const targets = new Map<string, Target>();
  for (const [name, markdown] of pages) {
    const page = name.replace(/\.md$/, ".html");
    for (const [, label, number] of markdown.matchAll(TARGET)) {
      const kind = labelKind(label)!;
      const other = targets.get(label);
      if (other && other.page !== page) {
        throw new UserError(
          `the label ${label} is on both ${other.page} and ${page}; labels are the book's, so ` +
            "rename one of them",
        );
      }
      targets.set(label, { label, kind, number, page });
    }
  }
  return targets;
}

/**
 * `markdown` (the page `page`) with its references (`@fig-name`, `@tbl-name`, `@eq-name`) made
 * links to their targets, and the references no target answers, which read `Figure ??`.
 */
export function resolveCrossReferences(
  markdown: string,
  page: string,
  targets: ReadonlyMap<string, Target>,
): { markdown: string; unresolved: UnresolvedReference[] } {
  const unresolved: UnresolvedReference[] = [];
  const resolved = mapProse(
    markdown,
    (prose) =>
      prose.replace(REFERENCE, (_whole, before: string, label: string) => {
        const target = targets.get(label);
        if (!target) {
          unresolved.push({ page, label });
          return `${before}<span class="xref xref-missing" title="@${label}: nothing in this build has this label">${
            targetName(labelKind(label)!, "??")
          }</span>`;
        }
        const href = `${target.page === page ? "" : target.page}#${label}`;
        return `${before}<a class="xref" href="${href}">${
          targetName(target.kind, target.number)
        }</a>`;
      }),
  );
  return { markdown: resolved, unresolved };
}
