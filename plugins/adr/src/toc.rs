//! `adr list` and `adr generate toc`, byte for byte.
//!
//! Transcribed from adr-tools 3.0.0 (`adr-list`, `_adr_generate_toc`, `_adr_title`):
//!
//! ```sh
//! find "$adr_dir" | grep -E "^$adr_dir/[0-9]+-[^/]*\\.md" | sort     # adr list
//!
//! cat <<EOF                                                        # adr generate toc
//! # Architecture Decision Records
//!
//! EOF
//! [ -s "$intro" ] && { cat "$intro"; echo; }                       # -i INTRO (a file)
//! for f in $(adr list); do
//!     echo "* [$(head -1 "$f" | cut -c 3-)](${link_prefix}$(basename "$f"))"
//! done
//! [ -s "$outro" ] && { echo; cat "$outro"; }                       # -o OUTRO
//! ```
//!
//! `sort` is taken in byte order (`LC_ALL=C`), and `cut -c` counts bytes, as GNU `cut` does. A
//! file name with white space in it is split into words by the shell's `for`, which breaks
//! adr-tools; such names are left out here and reported by the analysis instead.

use crate::naming::listed_by_adr_tools;
use crate::parse::adr_tools_title;

/// True when adr-tools can index a file of this name (listed, and no white space to split).
pub fn indexable(file_name: &str) -> bool {
    listed_by_adr_tools(file_name) && !file_name.contains(char::is_whitespace)
}

/// The files `adr list` lists, in its order.
pub fn adr_list<'a>(file_names: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut listed: Vec<&str> = file_names.into_iter().filter(|n| indexable(n)).collect();
    listed.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    listed
}

/// `adr generate toc [-i INTRO] [-o OUTRO] [-p LINK_PREFIX]` over `(file name, content)` pairs.
pub fn generate_toc<'a>(
    records: impl IntoIterator<Item = (&'a str, &'a str)>,
    intro: &str,
    outro: &str,
    link_prefix: &str,
) -> String {
    let records: std::collections::BTreeMap<&str, &str> = records.into_iter().collect();
    let mut toc = String::from("# Architecture Decision Records\n\n");
    if !intro.is_empty() {
        toc.push_str(intro);
        toc.push('\n');
    }
    for file_name in adr_list(records.keys().copied()) {
        let content = records.get(file_name).copied().unwrap_or_default();
        let first_line = content.split('\n').next().unwrap_or("");
        toc.push_str(&format!("* [{}]({link_prefix}{file_name})\n", adr_tools_title(first_line)));
    }
    if !outro.is_empty() {
        toc.push('\n');
        toc.push_str(outro);
    }
    toc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_toc_lists_records_in_byte_order_with_their_first_lines() {
        let records = [
            ("0002-b.md", "# 2. Bee\n"),
            ("README.md", "# Readme\n"),
            ("0001-a.md", "# 1. Ay\n\nDate: x\n"),
            ("0010-c.md", "---\nstatus: accepted\n---\n# C\n"),
        ];
        assert_eq!(
            generate_toc(records, "", "", ""),
            "# Architecture Decision Records\n\n* [1. Ay](0001-a.md)\n* [2. Bee](0002-b.md)\n* [-](0010-c.md)\n"
        );
        assert_eq!(
            generate_toc([("0001-a.md", "# 1. Ay\n")], "Intro.", "Outro.\n", "doc/adr/"),
            "# Architecture Decision Records\n\nIntro.\n* [1. Ay](doc/adr/0001-a.md)\n\nOutro.\n"
        );
    }
}
