/**
 * `COPY --chmod` / `ADD --chmod` values, as BuildKit takes them (dockerfile2llb
 * convert_copy.go): an octal number up to 07777 sets the mode; anything else is a symbolic
 * mode of chmod(1) (`u+x`, `go-w`, `a=rX`, `g=u-w`), applied to each copied file's and
 * directory's own mode. BuildKit parses it with tonistiigi/dchapes-mode, a Go port of BSD's
 * setmode(3), with a umask of 0: a clause without who (`+x`) changes every class. This is
 * our own reading of those semantics:
 * https://man.freebsd.org/cgi/man.cgi?query=chmod&sektion=1
 *
 * - Clauses are separated by ','; each is `[ugoa]* (op perms)+` with op one of `+ - =`.
 * - perms: r w x; X (execute, only with '+', when the source is a directory or already has an
 *   execute bit in its original mode); s (set-id, ignored for `o` alone); t (sticky, likewise);
 *   or one of u g o to copy that class's current bits (`g=u`, `go=u-w`).
 * - `=` clears the who-bits (all standard bits without who) before setting.
 */

/** A parsed --chmod: a fixed mode, or a change applied to each entry's mode. */
export type ChmodSpec = number | SymbolicMode;

const SUID = 0o4000;
const SGID = 0o2000;
const STICKY = 0o1000;
const STANDARD = SUID | SGID | 0o777;
const WHO: Readonly<Record<string, number>> = { a: STANDARD, u: SUID | 0o700, g: SGID | 0o070, o: 0o007 };
const SHIFT: Readonly<Record<'u' | 'g' | 'o', number>> = { u: 6, g: 3, o: 0 };

type Action =
  | { readonly kind: 'clear' | 'set' | 'X'; readonly bits: number }
  | { readonly kind: 'copy'; readonly from: 'u' | 'g' | 'o'; readonly clear: boolean; readonly set: boolean; readonly targets: ReadonlyArray<'u' | 'g' | 'o'> };

export class SymbolicMode {
  readonly #actions: readonly Action[];

  constructor(actions: readonly Action[]) {
    this.#actions = actions;
  }

  /** The mode (permission and set-id/sticky bits) after the change. */
  apply(mode: number, isDir: boolean): number {
    const original = mode & 0o7777;
    let m = original;
    for (const a of this.#actions) {
      switch (a.kind) {
        case 'clear':
          m &= ~a.bits;
          break;
        case 'set':
          m |= a.bits;
          break;
        case 'X':
          if (isDir || (original & 0o111) !== 0) m |= a.bits;
          break;
        case 'copy': {
          const value = (m >> SHIFT[a.from]) & 0o7;
          for (const t of a.targets) {
            if (a.clear) m &= ~((a.set ? 0o7 : value) << SHIFT[t]);
            if (a.set) m |= value << SHIFT[t];
          }
          break;
        }
      }
    }
    return m & 0o7777;
  }
}

/** Parses a --chmod value; throws a plain Error with the reason (the caller adds location). */
export function parseChmodSpec(s: string): ChmodSpec {
  if (s === '') throw new Error('an empty mode');
  if (/^[0-9]/.test(s)) {
    if (!/^[0-7]+$/.test(s) || parseInt(s, 8) > 0o7777) throw new Error('it should be octal string and between 0 and 07777');
    return parseInt(s, 8);
  }
  return new SymbolicMode(parseSymbolic(s));
}

function parseSymbolic(spec: string): Action[] {
  const actions: Action[] = [];
  let i = 0;
  const syntax = () => new Error(`invalid symbolic mode ${JSON.stringify(spec)}`);
  for (;;) {
    let who = 0;
    while (i < spec.length && WHO[spec[i]!] !== undefined) who |= WHO[spec[i++]!]!;
    // One or more `op perms` for this who.
    do {
      const op = spec[i++];
      if (op !== '+' && op !== '-' && op !== '=') throw syntax();
      let whoBits = who & ~STICKY;
      let perm = 0;
      let permX = 0;
      let equalDone = false;
      const add = (o: '+' | '-' | '=', bits: number) => {
        if (o === '=') {
          actions.push({ kind: 'clear', bits: whoBits !== 0 ? whoBits : STANDARD });
          o = '+';
        }
        actions.push({ kind: o === '+' ? 'set' : 'clear', bits: whoBits !== 0 ? whoBits & bits : bits });
      };
      for (;;) {
        const c = spec[i];
        if (c === 'r') perm |= 0o444;
        else if (c === 'w') perm |= 0o222;
        else if (c === 'x') perm |= 0o111;
        else if (c === 'X') permX = op === '+' ? 0o111 : permX;
        else if (c === 's') perm |= whoBits === 0 || (whoBits & ~0o007) !== 0 ? SUID | SGID : 0;
        else if (c === 't') {
          if (whoBits === 0 || (whoBits & ~0o007) !== 0) {
            whoBits |= STICKY;
            perm |= STICKY;
          }
        } else if (c === 'u' || c === 'g' || c === 'o') {
          if (perm !== 0) add(op, perm);
          perm = 0;
          if (op === '=') equalDone = true;
          if (permX !== 0) actions.push({ kind: 'X', bits: whoBits !== 0 ? whoBits & permX : permX });
          permX = 0;
          const targets = whoBits === 0 ? (['u', 'g', 'o'] as const) : (['u', 'g', 'o'] as const).filter((t) => (whoBits & (0o4 << SHIFT[t])) !== 0);
          actions.push({ kind: 'copy', from: c, clear: op !== '+', set: op !== '-', targets });
        } else {
          if (perm !== 0 || (op === '=' && !equalDone)) {
            equalDone = true;
            add(op, perm);
            perm = 0;
          }
          if (permX !== 0) actions.push({ kind: 'X', bits: whoBits !== 0 ? whoBits & permX : permX });
          break;
        }
        i++;
      }
    } while (i < spec.length && spec[i] !== ',');
    if (i >= spec.length) return actions;
    i++; // ','
    if (i >= spec.length) throw syntax();
  }
}
