/**
 * A word-level tokenizer over the captions' vocabulary, small enough to read in one sitting:
 *
 *   words(text) = the lower-cased runs of letters, digits and apostrophes ({@link textWords}),
 *   ids(text)   = [BOS, id(w₁), …, id(w_n), EOS, PAD, …, PAD]   (L ids),
 *   id(w)       = w's index in the vocabulary, or UNK when the vocabulary does not have it.
 *
 * Ids 0–3 are PAD, UNK, BOS and EOS; the vocabulary (ids from 4) is built from training captions
 * only, each word seen at least `minCount` times, ordered by count, then alphabetically, so that
 * the same captions always give the same ids. A text of more than L − 2 words keeps its first
 * L − 2 (the caption's name and first keywords come first) and says it was truncated, as CLIP's
 * tokenizer truncates to its context; the empty text is [BOS, EOS, PAD, …], the text model's
 * null prompt. The attention mask marks the ids that are not PAD.
 *
 * @module
 */
import { UserError } from "./errors.ts";

/** The words of a caption or prompt: its lower-cased runs of letters, digits and apostrophes. */
export function textWords(text: string): string[] {
  return text.toLowerCase().match(/[\p{L}\p{N}']+/gu) ?? [];
}

/** The special tokens, in id order. */
export const SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[BOS]", "[EOS]"] as const;
export const [PAD, UNK, BOS, EOS] = [0, 1, 2, 3];

/** One encoded text. */
export interface Encoding {
  /** L token ids. */
  ids: Int32Array;
  /** 1 where `ids` is not PAD. */
  mask: Int32Array;
  /** The words that became UNK, in order. */
  unknown: string[];
  /** Whether words past the context were dropped. */
  truncated: boolean;
}

/** What a tokenizer is stored as (in a text model's artefact). */
export interface TokenizerJson {
  contextLength: number;
  /** The words of ids 4, 5, …. */
  words: string[];
}

/** The tokenizer of the module comment. */
export class Tokenizer {
  readonly #ids: Map<string, number>;

  /**
   * @param words the vocabulary, ids 4, 5, … in order
   * @param contextLength L, the ids of every encoding (at least 3: BOS, a word, EOS)
   */
  constructor(readonly words: readonly string[], readonly contextLength: number) {
    if (!Number.isInteger(contextLength) || contextLength < 3) {
      throw new UserError(
        `a tokenizer's context length is a whole number of at least 3, not ${contextLength}`,
      );
    }
    this.#ids = new Map(words.map((w, i) => [w, SPECIAL_TOKENS.length + i]));
    if (this.#ids.size !== words.length) {
      throw new Error("Tokenizer: the vocabulary lists a word twice");
    }
  }

  /** The vocabulary of `captions`: their words seen at least `minCount` times (see the module). */
  static fromCaptions(
    captions: Iterable<string>,
    options: { contextLength: number; minCount?: number },
  ): Tokenizer {
    const counts = new Map<string, number>();
    for (const text of captions) {
      for (const w of textWords(text)) counts.set(w, (counts.get(w) ?? 0) + 1);
    }
    const words = [...counts].filter(([, n]) => n >= (options.minCount ?? 1))
      .sort(([a, m], [b, n]) => n - m || (a < b ? -1 : a > b ? 1 : 0))
      .map(([w]) => w);
    return new Tokenizer(words, options.contextLength);
  }

  /** Number of ids: the special tokens and the vocabulary. */
  get vocabularySize(): number {
    return SPECIAL_TOKENS.length + this.words.length;
  }

  /** The id of a word (UNK when the vocabulary does not have it). */
  id(word: string): number {
    return this.#ids.get(word.toLowerCase()) ?? UNK;
  }

  /** The L ids of `text`, its mask, its unknown words and whether it was truncated. */
  encode(text: string): Encoding {
    const words = textWords(text);
    const kept = words.slice(0, this.contextLength - 2);
    const ids = new Int32Array(this.contextLength); // PAD = 0
    const mask = new Int32Array(this.contextLength);
    const unknown: string[] = [];
    const sequence = [BOS, ...kept.map((w) => this.id(w)), EOS];
    sequence.forEach((id, i) => {
      ids[i] = id;
      mask[i] = 1;
    });
    kept.forEach((w, i) => {
      if (sequence[i + 1] === UNK) unknown.push(w);
    });
    return { ids, mask, unknown, truncated: kept.length < words.length };
  }

  /** The ids of every text, row after row ([texts.length · L], for a tensor [N, L]). */
  encodeBatch(texts: readonly string[]): Int32Array {
    const out = new Int32Array(texts.length * this.contextLength);
    texts.forEach((text, i) => out.set(this.encode(text).ids, i * this.contextLength));
    return out;
  }

  /** The words of `ids`, special tokens but UNK left out, joined by spaces. */
  decode(ids: ArrayLike<number>): string {
    const words: string[] = [];
    for (const id of Array.from(ids)) {
      if (id === UNK) words.push(SPECIAL_TOKENS[UNK]);
      else if (id >= SPECIAL_TOKENS.length) {
        const word = this.words[id - SPECIAL_TOKENS.length];
        if (word === undefined) throw new Error(`Tokenizer.decode: no token has id ${id}`);
        words.push(word);
      }
    }
    return words.join(" ");
  }

  /**
   * This vocabulary with `words` appended (ids vocabularySize, vocabularySize + 1, …): the
   * placeholder tokens of textual inversion. Refused for a word the vocabulary has, or one that
   * is not a single word of {@link textWords}.
   */
  withWords(words: readonly string[]): Tokenizer {
    for (const word of words) {
      const parsed = textWords(word);
      if (parsed.length !== 1 || parsed[0] !== word) {
        throw new UserError(
          `"${word}" is not one lower-case word of letters and digits, so prompts could not ` +
            `name it; choose a word like "sks" or "s1cat".`,
        );
      }
      if (this.#ids.has(word)) {
        throw new UserError(
          `"${word}" is already word ${this.#ids.get(word)} of the vocabulary; a new token ` +
            `needs a word the captions never used.`,
        );
      }
    }
    return new Tokenizer([...this.words, ...words], this.contextLength);
  }

  toJSON(): TokenizerJson {
    return { contextLength: this.contextLength, words: [...this.words] };
  }

  static fromJSON(json: TokenizerJson): Tokenizer {
    return new Tokenizer(json.words, json.contextLength);
  }
}
