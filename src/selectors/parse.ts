// Kubernetes selector syntax, parsed into requirements: label selectors
// (`a=b,c!=d,e in (x,y),f notin (z),g,!h`, also `==`, `>`, `<`) and field selectors
// (`metadata.name=x,status.phase!=Running`, also `==`; in values `\,` `\=` `\\` are escapes and
// an unescaped `=` is an error).
// Written from Kubernetes' documented grammar; what it accepts and rejects follows it, and
// every error names the selector and the 0-based position it points at.

export type LabelOp = "=" | "!=" | "in" | "notin" | "exists" | "!" | ">" | "<";

export interface LabelRequirement {
  key: string;
  op: LabelOp;
  /** the values for =, != (one), in, notin (one or more), > and < (one integer); none for exists and ! */
  values: string[];
}

export interface FieldTerm {
  field: string;
  op: "=" | "!=";
  value: string;
}

/** A selector that does not parse: `position` is the 0-based offset into `text` where the problem is. */
export class SelectorError extends Error {
  constructor(
    readonly which: "label" | "field",
    readonly text: string,
    readonly position: number,
    readonly problem: string,
  ) {
    super(`invalid ${which} selector ${JSON.stringify(text)}: at position ${position}: ${problem}`);
  }
}

type Token =
  | { kind: "id"; text: string; at: number }
  | { kind: "!" | "=" | "==" | "!=" | "(" | ")" | "," | ">" | "<" | "end"; text: string; at: number };

/** characters that end an identifier in a label selector */
const SPECIAL = new Set(["!", "=", ",", "(", ")", ">", "<"]);
const SPACE = /\s/;

function lex(text: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (SPACE.test(c)) {
      i++;
    } else if (c === "=" || c === "!") {
      if (text[i + 1] === "=") {
        out.push({ kind: c === "=" ? "==" : "!=", text: c + "=", at: i });
        i += 2;
      } else {
        out.push({ kind: c, text: c, at: i });
        i++;
      }
    } else if (SPECIAL.has(c)) {
      out.push({ kind: c as "(" | ")" | "," | ">" | "<", text: c, at: i });
      i++;
    } else {
      const start = i;
      while (i < text.length && !SPECIAL.has(text[i]!) && !SPACE.test(text[i]!)) i++;
      out.push({ kind: "id", text: text.slice(start, i), at: start });
    }
  }
  out.push({ kind: "end", text: "", at: text.length });
  return out;
}

const NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const INTEGER = /^[-+]?[0-9]+$/;

/** why `key` is not a label key (a qualified name: optional DNS-subdomain prefix and `/`, then a name of at most 63 characters), or undefined */
function badKey(key: string): string | undefined {
  const slash = key.indexOf("/");
  const [prefix, name] = slash >= 0 ? [key.slice(0, slash), key.slice(slash + 1)] : [undefined, key];
  if (prefix !== undefined && (prefix.length === 0 || prefix.length > 253 || !DNS_SUBDOMAIN.test(prefix))) {
    return `label key ${JSON.stringify(key)}: the prefix must be a DNS subdomain`;
  }
  if (name.length === 0 || name.length > 63 || !NAME.test(name)) {
    return `label key ${JSON.stringify(key)}: the name must be 1-63 characters, alphanumerics with '-', '_' or '.' inside`;
  }
  return undefined;
}

function badValue(value: string): string | undefined {
  if (value === "" || (value.length <= 63 && NAME.test(value))) return undefined;
  return `label value ${JSON.stringify(value)}: at most 63 characters, empty or alphanumerics with '-', '_' or '.' inside`;
}

/** Parses a label selector; the empty selector (only spaces) selects everything and parses to no requirement. */
export function parseLabelSelector(text: string): LabelRequirement[] {
  const tokens = lex(text);
  let p = 0;
  const fail = (at: number, problem: string): never => {
    throw new SelectorError("label", text, at, problem);
  };
  const peek = () => tokens[p]!;
  const next = () => tokens[p++]!;
  const describe = (t: Token) => (t.kind === "end" ? "the end" : JSON.stringify(t.text));
  const out: LabelRequirement[] = [];
  if (peek().kind === "end") return out;

  const key = (): { key: string; at: number } => {
    const t = next();
    if (t.kind !== "id") fail(t.at, `expected a label key, found ${describe(t)}`);
    const why = badKey(t.text);
    if (why) fail(t.at, why);
    return { key: t.text, at: t.at };
  };
  /** one value after =, == or !=: an identifier, or nothing (the empty value) */
  const single = (): string => {
    const t = peek();
    if (t.kind === "," || t.kind === "end") return "";
    if (t.kind !== "id") fail(t.at, `expected a label value, found ${describe(t)}`);
    p++;
    const why = badValue(t.text);
    if (why) fail(t.at, why);
    return t.text;
  };
  const set = (): string[] => {
    const open = next();
    if (open.kind !== "(") fail(open.at, `expected "(", found ${describe(open)}`);
    const values: string[] = [];
    for (;;) {
      const t = peek();
      if (t.kind === ")" && values.length === 0) fail(t.at, "a set of values must not be empty");
      if (t.kind === "id") {
        const why = badValue(t.text);
        if (why) fail(t.at, why);
        values.push(t.text);
        p++;
      } else if (t.kind === "," || t.kind === ")") {
        values.push(""); // an empty value between separators
      } else fail(t.at, `expected a label value, "," or ")", found ${describe(t)}`);
      const sep = next();
      if (sep.kind === ")") return values;
      if (sep.kind !== ",") fail(sep.at, `expected "," or ")", found ${describe(sep)}`);
    }
  };

  for (;;) {
    const t = peek();
    if (t.kind === "!") {
      p++;
      out.push({ key: key().key, op: "!", values: [] });
    } else {
      const k = key().key;
      const op = peek();
      if (op.kind === "," || op.kind === "end") out.push({ key: k, op: "exists", values: [] });
      else if (op.kind === "=" || op.kind === "==" || op.kind === "!=") {
        p++;
        out.push({ key: k, op: op.kind === "!=" ? "!=" : "=", values: [single()] });
      } else if (op.kind === ">" || op.kind === "<") {
        p++;
        const v = peek();
        if (v.kind !== "id" || !INTEGER.test(v.text)) fail(v.at, `expected an integer after ${JSON.stringify(op.text)}, found ${describe(v)}`);
        p++;
        out.push({ key: k, op: op.kind, values: [v.text] });
      } else if (op.kind === "id" && (op.text === "in" || op.text === "notin")) {
        p++;
        out.push({ key: k, op: op.text, values: set() });
      } else fail(op.at, `expected "=", "==", "!=", "in", "notin", ">", "<", "," or the end after label key ${JSON.stringify(k)}, found ${describe(op)}`);
    }
    const sep = next();
    if (sep.kind === "end") return out;
    if (sep.kind !== ",") fail(sep.at, `expected "," or the end, found ${describe(sep)}`);
    if (peek().kind === "end") fail(peek().at, "expected a requirement after \",\"");
  }
}

/** Parses a field selector; empty terms are skipped, so the empty selector selects everything. */
export function parseFieldSelector(text: string): FieldTerm[] {
  const out: FieldTerm[] = [];
  const fail = (at: number, problem: string): never => {
    throw new SelectorError("field", text, at, problem);
  };
  let i = 0;
  while (i <= text.length) {
    // one term: up to the next unescaped ","
    const start = i;
    let field: string | undefined, op: "=" | "!=" | undefined, opAt = -1;
    let value = "";
    let escaped = false;
    for (; i < text.length; i++) {
      const c = text[i]!;
      if (escaped) {
        if (c !== "\\" && c !== "," && c !== "=") fail(i - 1, `invalid escape sequence "\\${c}"`);
        if (op !== undefined) value += c;
        escaped = false;
        continue;
      }
      if (c === "\\") {
        if (op === undefined) fail(i, "a field name cannot hold an escape sequence");
        escaped = true;
        continue;
      }
      if (c === ",") break;
      if (op === undefined) {
        // the first operator in the term: != or ==, else =
        if (c === "!" && text[i + 1] === "=") [op, opAt] = ["!=", i++];
        else if (c === "=" && text[i + 1] === "=") [op, opAt] = ["=", i++];
        else if (c === "=") [op, opAt] = ["=", i];
        if (op !== undefined) field = text.slice(start, opAt).trim();
        continue;
      }
      if (c === "=") fail(i, 'an "=" in a value must be escaped as "\\="');
      value += c;
    }
    if (escaped) fail(i - 1, "an escape sequence needs a character after \"\\\"");
    const term = text.slice(start, i);
    if (term.trim() !== "") {
      if (op === undefined) fail(start, `expected "=", "==" or "!=" in ${JSON.stringify(term)}`);
      if (field === "") fail(start, "expected a field name before the operator");
      out.push({ field: field!, op: op!, value });
    }
    i++; // past the ","
  }
  return out;
}
