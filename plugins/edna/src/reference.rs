//! Reference sequences with taxonomy.
//!
//! Two header formats are read, the two that reference sets are distributed in:
//!
//! - SINTAX (`vsearch --sintax`, USEARCH, UNITE, RDP's SINTAX builds):
//!   `>AB001234;tax=d:Bacteria,p:Firmicutes,c:Bacilli,o:Lactobacillales,f:Lactobacillaceae,g:Lactobacillus;`
//!   where the letters d k p c o f g s name domain, kingdom, phylum, class, order, family,
//!   genus and species;
//! - a lineage after the label (RDP, QIIME, mothur style):
//!   `>AB001234 Bacteria;Firmicutes;Bacilli;Lactobacillales;Lactobacillaceae;Lactobacillus`
//!   with the ranks taken in order domain, phylum, class, order, family, genus, species.
//!
//! A taxon is identified by its whole lineage down to its rank, so two families both named
//! `Incertae_Sedis` under different orders stay apart.

use std::collections::HashMap;
use std::fmt;

use crate::fasta::{self, FastaError};

/// The ranks, top down, with their SINTAX letters.
pub const RANKS: [(char, &str); 8] = [
    ('d', "domain"),
    ('k', "kingdom"),
    ('p', "phylum"),
    ('c', "class"),
    ('o', "order"),
    ('f', "family"),
    ('g', "genus"),
    ('s', "species"),
];

/// Rank order for lineages given without rank letters.
const POSITIONAL_RANKS: [char; 7] = ['d', 'p', 'c', 'o', 'f', 'g', 's'];

/// A lineage: a name per rank slot of [`RANKS`], `None` where the reference gives none.
pub type Lineage = [Option<String>; 8];

/// One reference sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceSequence {
    pub id: String,
    pub sequence: Vec<u8>,
    /// Index into [`Reference::lineages`].
    pub lineage: usize,
}

/// A reference set.
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    pub sequences: Vec<ReferenceSequence>,
    /// Distinct lineages, in order of first appearance.
    pub lineages: Vec<Lineage>,
    /// The rank slots that some lineage uses, top down (indices into [`RANKS`]).
    pub ranks: Vec<usize>,
}

/// Why a reference was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum ReferenceError {
    Fasta(FastaError),
    Taxonomy { id: String, reason: String },
    Empty,
}

impl fmt::Display for ReferenceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReferenceError::Fasta(error) => error.fmt(f),
            ReferenceError::Taxonomy { id, reason } => write!(f, "`{id}`: {reason}"),
            ReferenceError::Empty => f.write_str("no sequences"),
        }
    }
}

impl Reference {
    /// Reads a reference FASTA with taxonomy in its headers (see the module doc).
    pub fn parse(text: &str, max_length: usize) -> Result<Reference, ReferenceError> {
        let records = fasta::parse_with_headers(text, max_length).map_err(ReferenceError::Fasta)?;
        if records.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let mut lineages: Vec<Lineage> = Vec::new();
        let mut lineage_index: HashMap<Lineage, usize> = HashMap::new();
        let mut sequences = Vec::with_capacity(records.len());
        for (record, header) in records {
            let lineage = parse_lineage(&header)
                .map_err(|reason| ReferenceError::Taxonomy { id: record.id.clone(), reason })?;
            let index = *lineage_index.entry(lineage.clone()).or_insert_with(|| {
                lineages.push(lineage);
                lineages.len() - 1
            });
            let id = record.label.split(';').next().unwrap_or_default().to_owned();
            sequences.push(ReferenceSequence { id, sequence: record.sequence, lineage: index });
        }
        let ranks = (0..RANKS.len()).filter(|&slot| lineages.iter().any(|l| l[slot].is_some())).collect();
        Ok(Reference { sequences, lineages, ranks })
    }

    /// The lineage as text, `d:Bacteria,p:Firmicutes,...`, down to `depth` rank slots.
    pub fn lineage_text(&self, lineage: usize, depth: usize) -> String {
        self.lineages[lineage][..depth]
            .iter()
            .enumerate()
            .filter_map(|(slot, name)| name.as_ref().map(|n| format!("{}:{n}", RANKS[slot].0)))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Reads the taxonomy in a full header line (without `>`).
fn parse_lineage(header: &str) -> Result<Lineage, String> {
    let mut lineage: Lineage = Default::default();
    let label = header.split_whitespace().next().unwrap_or("");
    if let Some(tax) = label.split(';').find_map(|part| part.strip_prefix("tax=")) {
        for field in tax.split(',').filter(|f| !f.is_empty()) {
            let (letter, name) = field
                .split_once(':')
                .ok_or_else(|| format!("taxonomy field `{field}` is not `letter:name`"))?;
            let slot = RANKS
                .iter()
                .position(|(l, _)| letter.len() == 1 && letter.starts_with(*l))
                .ok_or_else(|| format!("unknown rank letter `{letter}` (use d k p c o f g s)"))?;
            if name.is_empty() {
                return Err(format!("empty name for rank `{letter}`"));
            }
            lineage[slot] = Some(name.to_owned());
        }
    } else {
        let rest = header[header.find(char::is_whitespace).unwrap_or(header.len())..].trim();
        let names: Vec<&str> = rest.split(';').map(str::trim).filter(|n| !n.is_empty()).collect();
        if names.len() > POSITIONAL_RANKS.len() {
            return Err(format!("lineage has {} names; at most {}", names.len(), POSITIONAL_RANKS.len()));
        }
        for (name, letter) in names.iter().zip(POSITIONAL_RANKS) {
            let slot = RANKS.iter().position(|(l, _)| *l == letter).unwrap_or(0);
            lineage[slot] = Some(name.replace(' ', "_"));
        }
    }
    if lineage.iter().all(Option::is_none) {
        return Err(
            "no taxonomy: give `;tax=d:...,g:...` or a lineage `Bacteria;Firmicutes;...` after the label"
                .into(),
        );
    }
    Ok(lineage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_header_formats_give_the_same_lineage() {
        let sintax = ">a;tax=d:Bacteria,p:Firmicutes,g:Lactobacillus;\nACGT\n";
        let lineage = ">a Bacteria;Firmicutes;Bacilli\nACGT\n";
        let s = Reference::parse(sintax, 100).unwrap();
        let l = Reference::parse(lineage, 100).unwrap();
        assert_eq!(s.lineages[0][0].as_deref(), Some("Bacteria"));
        assert_eq!(s.lineages[0][2].as_deref(), Some("Firmicutes"));
        assert_eq!(s.lineages[0][6].as_deref(), Some("Lactobacillus"));
        assert_eq!(s.ranks, vec![0, 2, 6]);
        assert_eq!(l.lineages[0][3].as_deref(), Some("Bacilli"));
        assert_eq!(l.ranks, vec![0, 2, 3]);
        assert_eq!(s.lineage_text(0, 8), "d:Bacteria,p:Firmicutes,g:Lactobacillus");
    }

    #[test]
    fn identical_lineages_are_one_taxon() {
        let text = ">a;tax=d:B,g:X;\nACGT\n>b;tax=d:B,g:X;\nAGGT\n>c;tax=d:B,g:Y;\nACCT\n";
        let reference = Reference::parse(text, 100).unwrap();
        let lineages: Vec<usize> = reference.sequences.iter().map(|s| s.lineage).collect();
        assert_eq!(lineages, vec![0, 0, 1]);
    }

    #[test]
    fn headers_without_taxonomy_are_refused() {
        let error = Reference::parse(">a\nACGT\n", 100).unwrap_err();
        assert!(error.to_string().contains("`a`: no taxonomy"), "{error}");
        let error = Reference::parse(">a;tax=x:B;\nACGT\n", 100).unwrap_err();
        assert!(error.to_string().contains("unknown rank letter"), "{error}");
    }
}
