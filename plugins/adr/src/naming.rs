//! File names and numbers of decision records, by adr-tools' rules.
//!
//! adr-tools (Nat Pryce, version 3.0.0 as packaged by Debian) is the tool most ADR folders are
//! kept with, and MADR adopted its naming (MADR ADR-0005, "use dashes in filenames"): a record is
//! `NNNN-slug.md`, the number zero-padded to four digits, the slug made from the title. The rules
//! here are transcriptions of its shell code, so that a folder written by this plugin is numbered,
//! listed and indexed by adr-tools exactly as one written by `adr new`:
//!
//! - number of a new record (`adr-new`): `ls DIR | grep -Eo '^[0-9]+' | sed -e 's/^0*//' | sort -rn
//!   | head -1`, plus one: the largest leading number of *any* entry in the folder, plus one (1 in
//!   an empty folder, and also in a folder that only has `0000-…`);
//! - file name: `printf "%04d"` of the number, `-`, the slug, `.md`;
//! - slug: `echo -n "$title" | tr -Ccs '[:alnum:]' - | tr '[:upper:]' '[:lower:]' | sed -e
//!   's/[^[:alnum:]]*$//' -e 's/^[^[:alnum:]]*//'`. `tr` works on bytes, so every byte that is not
//!   an ASCII letter or digit (the bytes of a non-ASCII letter included) becomes a dash; runs of
//!   dashes are squeezed to one, letters are lowered, and dashes at either end are dropped;
//! - which files are records (`adr-list`): paths matching `^DIR/[0-9]+-[^/]*\.md`, an expression
//!   with no end anchor, so that `0001-x.md.orig` is listed too; listed in `sort` order (byte
//!   order under `LC_ALL=C`).

/// The slug of a title, as `adr new` makes it: `Use PostgreSQL (v16)!` → `use-postgresql-v16`.
pub fn slug(title: &str) -> String {
    let mut slug = String::with_capacity(title.len());
    for byte in title.bytes() {
        if byte.is_ascii_alphanumeric() {
            slug.push(byte.to_ascii_lowercase() as char);
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    slug.trim_matches('-').to_owned()
}

/// The file name of record `number` with `title`: `3`, `Use PostgreSQL` → `0003-use-postgresql.md`.
pub fn file_name(number: u32, title: &str) -> String {
    format!("{number:04}-{}.md", slug(title))
}

/// The leading decimal number of a folder entry (`0012-foo.md` → 12), as `grep -Eo '^[0-9]+'`
/// finds it; `None` when the name does not start with a digit or the number is absurdly large.
pub fn leading_number(name: &str) -> Option<u32> {
    let digits = name.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    name[..digits].parse().ok()
}

/// The number `adr new` gives the next record in a folder holding `entries`: the largest leading
/// number plus one, or 1.
pub fn next_number<'a>(entries: impl IntoIterator<Item = &'a str>) -> u32 {
    entries.into_iter().filter_map(leading_number).max().map_or(1, |max| max.saturating_add(1))
}

/// True when `adr list` lists a file of this name: `[0-9]+-[^/]*\.md` at its start (no end anchor).
pub fn listed_by_adr_tools(name: &str) -> bool {
    let digits = name.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || name.as_bytes().get(digits) != Some(&b'-') {
        return false;
    }
    let rest = &name[digits + 1..];
    // `[^/]*\.md`: some ".md" must follow, with no slash before it.
    match rest.find('/') {
        Some(slash) => rest[..slash].contains(".md"),
        None => rest.contains(".md"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_follow_tr_and_sed() {
        assert_eq!(slug("Use PostgreSQL (v16) for Persistence!"), "use-postgresql-v16-for-persistence");
        assert_eq!(slug("  --Record architecture decisions--  "), "record-architecture-decisions");
        assert_eq!(slug("Use C++ & Rust"), "use-c-rust");
        // Each byte of a non-ASCII letter is a non-alphanumeric byte to `tr`.
        assert_eq!(slug("Café au lait"), "caf-au-lait");
        assert_eq!(slug("Über-fast caches"), "ber-fast-caches");
        assert_eq!(slug("!!!"), "");
    }

    #[test]
    fn file_names_are_zero_padded_to_four_digits_at_least() {
        assert_eq!(file_name(2, "Use PostgreSQL"), "0002-use-postgresql.md");
        assert_eq!(file_name(12345, "Big"), "12345-big.md");
    }

    #[test]
    fn the_next_number_follows_the_largest_leading_number_of_any_entry() {
        assert_eq!(next_number([]), 1);
        assert_eq!(next_number(["0000-use-madr.md"]), 1);
        assert_eq!(next_number(["0001-a.md", "0007-b.md", "templates", "0003-c.md"]), 8);
        assert_eq!(next_number(["12-notes.txt", "0002-a.md"]), 13);
    }

    #[test]
    fn adr_list_takes_names_with_a_number_a_dash_and_md() {
        assert!(listed_by_adr_tools("0001-record-architecture-decisions.md"));
        assert!(listed_by_adr_tools("1-x.md"));
        assert!(listed_by_adr_tools("0001-x.md.orig"), "the expression has no end anchor");
        assert!(!listed_by_adr_tools("0001.md"));
        assert!(!listed_by_adr_tools("README.md"));
        assert!(!listed_by_adr_tools("0001-x.txt"));
        assert!(!listed_by_adr_tools("0001-dir/x.md"));
    }
}
