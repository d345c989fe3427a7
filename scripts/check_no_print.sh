#!/usr/bin/env bash
# Libraries never print: `println!`/`eprintln!`/`print!`/`eprint!`/`dbg!` in the library crates'
# sources, outside comments, the `#[cfg(test)]` modules that end each file and the `tests.rs`
# files such a module is declared from (`#[cfg(test)] mod tests;`), fail CI. The
# binaries (crate `mtl`, xtask) draw what the libraries report as events or log with tracing.
set -euo pipefail
cd "$(dirname "$0")/.."
found=0
for crate in crates/*/; do
  [ "$crate" = crates/mtl/ ] && continue
  while IFS= read -r -d '' file; do
    if awk -v file="$file" '
      /^[[:space:]]*#\[cfg\((all\()?test[,)]/ { exit }
      /^[[:space:]]*\/\// { next }
      /(^|[^[:alnum:]_])(e?println|e?print|dbg)!/ { printf "%s:%d: %s\n", file, NR, $0; hit = 1 }
      END { exit hit }
    ' "$file"; then :; else found=1; fi
  done < <(find "$crate/src" -name '*.rs' ! -name tests.rs -print0)
done
if [ "$found" = 1 ]; then
  echo "a library crate prints (above): report through events or tracing instead" >&2
  exit 1
fi
